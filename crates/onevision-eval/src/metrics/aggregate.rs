//! lmms-eval's `mean` and `mean_stderr` (lmms_eval/api/metrics.py), with Python's summation
//! order so the results are bit-identical.

use serde_json::Value;

/// A metric value as a number: JSON numbers and booleans (Python's `True` sums as 1).
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn numbers(values: &[Value]) -> Result<Vec<f64>, String> {
    values
        .iter()
        .map(|v| as_number(v).ok_or_else(|| format!("`mean` needs numbers, got {v}")))
        .collect()
}

/// `sum(arr) / len(arr)`, summed left to right as Python's `sum` does.
pub fn mean(values: &[Value]) -> Result<f64, String> {
    let xs = numbers(values)?;
    if xs.is_empty() {
        return Err("no values to average".into());
    }
    Ok(py_mean(&xs))
}

pub fn py_mean(xs: &[f64]) -> f64 {
    let mut s = 0.0;
    for x in xs {
        s += x;
    }
    s / xs.len() as f64
}

/// `mean_stderr`: `sample_stddev(arr) / math.sqrt(len(arr))`, with
/// `sample_stddev = math.sqrt(sum([(x - mu) ** 2 for x in arr]) / (len(arr) - 1))`.
/// None for fewer than two values (lmms-eval then writes "N/A").
pub fn mean_stderr(values: &[Value]) -> Result<Option<f64>, String> {
    let xs = numbers(values)?;
    if xs.len() < 2 {
        return Ok(None);
    }
    let mu = py_mean(&xs);
    let mut s = 0.0;
    for x in &xs {
        s += (x - mu).powi(2);
    }
    let sd = (s / (xs.len() - 1) as f64).sqrt();
    Ok(Some(sd / (xs.len() as f64).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mean_and_stderr() {
        let v = vec![json!(1.0), json!(0), json!(true), json!(0.0)];
        assert_eq!(mean(&v).unwrap(), 0.5);
        // sqrt((0.25 * 4) / 3) / 2
        assert_eq!(
            mean_stderr(&v).unwrap().unwrap(),
            (1.0f64 / 3.0).sqrt() / 2.0
        );
        assert_eq!(mean_stderr(&v[..1]).unwrap(), None);
        assert!(mean(&[json!("x")]).is_err());
    }
}
