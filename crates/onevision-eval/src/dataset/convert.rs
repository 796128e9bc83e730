//! Arrow cells -> a [`Row`], as Python's `datasets` hands lmms-eval a document.
//!
//! `datasets`' Python formatter is `pa_table.to_pydict()` (datasets/formatting/formatting.py,
//! `PythonArrowExtractor.extract_row`), i.e. pyarrow's `as_py()` per cell, then its `Image`
//! feature decodes image structs into PIL images. So every non-image column becomes JSON the
//! way `as_py()` gives it:
//!
//! | Arrow | JSON |
//! |---|---|
//! | null (any type), the `null` type | `null` |
//! | bool | bool |
//! | int8..int64, uint8..uint64 | integer (exact, u64 included) |
//! | float16 / float32 / float64 | float, widened exactly as Python's `float(np.float32(x))`; **NaN and ±inf become `null`** (JSON has no NaN) |
//! | utf8 / large_utf8 / utf8_view | string |
//! | list / large_list / fixed_size_list / list_view | array |
//! | struct | object (keys in sorted order: `serde_json::Map` is a BTreeMap here; Python keeps the schema's order, which no task depends on) |
//! | map | array of `[key, value]` pairs (pyarrow's default `as_py()` gives a list of tuples) |
//! | dictionary-encoded anything | the decoded value |
//! | binary / large_binary / binary_view / fixed_size_binary (not an image) | **a base64 string** (standard alphabet, padded); Python would hold `bytes`, which no task reads |
//! | date32 / date64 | `date.isoformat()`: `"2024-02-29"` |
//! | time32 / time64 | `time.isoformat()`: `"01:02:03"`, `"01:02:03.000004"` (nanoseconds truncated to µs) |
//! | timestamp | `datetime.isoformat()`: `"2023-11-14T22:13:20"`, `".123456"` when the µs are not 0, pandas' 9 digits for nanosecond units with a sub-µs part; with a time zone `"+00:00"` / the fixed offset (`"+05:30"`); **a named zone other than UTC is given as the UTC instant with `"+00:00"`** (same instant; Python would show that zone's wall time) |
//! | decimal32/64/128/256 | `str(Decimal)`: `"1.500"` |
//! | duration, interval, union, run-end encoded | refused: an error naming the column, when it is read |
//!
//! Image columns are a struct with a binary `bytes` field and, optionally, a string `path`
//! field and nothing else (the Hub's `Image` feature), a list of such structs, or a column the
//! file's `huggingface` schema metadata declares an `Image` (a `null`-typed column of missing
//! images is one). They go into [`Row::images`], one [`EncodedImage`] per struct whose bytes
//! are not null; a null cell, a null struct or null bytes add nothing, but the column is always
//! present (the task decides whether a missing image is an error).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, TimeUnit};
use base64::Engine;
use serde_json::{Map, Value};

use crate::doc::{EncodedImage, Row};

/// How one column of a file goes into a [`Row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// A `{bytes, path}` struct: zero or one image.
    Image,
    /// A list of `{bytes, path}` structs.
    Images,
    /// A column declared an image that holds no images (`null` type).
    NoImages,
    /// Anything else, as JSON in [`Row::fields`].
    Field,
}

/// `datasets`' feature of a column in the `huggingface` metadata, when it names one.
fn hf_type(feature: Option<&Value>) -> Option<&str> {
    feature?.get("_type")?.as_str()
}

/// Whether the `huggingface` feature is an `Image` or a sequence/list of them.
fn hf_says_image(feature: Option<&Value>) -> (bool, bool) {
    match feature {
        Some(Value::Array(items)) => (
            false,
            items.first().is_some_and(|f| hf_says_image(Some(f)).0),
        ),
        Some(f) => match hf_type(Some(f)) {
            Some("Image") => (true, false),
            Some("Sequence") | Some("List") | Some("LargeList") => {
                (false, hf_says_image(f.get("feature")).0)
            }
            _ => (false, false),
        },
        None => (false, false),
    }
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The Hub's image struct: `bytes` (binary) and optionally `path` (string), nothing else.
fn is_image_struct(t: &DataType) -> bool {
    let DataType::Struct(fields) = t else {
        return false;
    };
    let bytes = fields
        .iter()
        .any(|f| f.name() == "bytes" && is_binary(f.data_type()));
    let rest_ok = fields.iter().all(|f| {
        (f.name() == "bytes" && is_binary(f.data_type()))
            || (f.name() == "path" && is_string(f.data_type()))
    });
    bytes && rest_ok
}

fn list_item(t: &DataType) -> Option<&Field> {
    match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => Some(f),
        _ => None,
    }
}

/// Which kind a column is, from its Arrow type and its `huggingface` feature (if the file
/// has that metadata). A feature that says something other than `Image` (`Audio` has the same
/// `{bytes, path}` struct) keeps the column a field.
pub(crate) fn classify(field: &Field, feature: Option<&Value>) -> ColumnKind {
    let t = field.data_type();
    let (one, many) = hf_says_image(feature);
    let declared_other = hf_type(feature)
        .is_some_and(|ty| !matches!(ty, "Image" | "Sequence" | "List" | "LargeList"));
    if declared_other {
        return ColumnKind::Field;
    }
    if is_image_struct(t) {
        return ColumnKind::Image;
    }
    if list_item(t).is_some_and(|f| is_image_struct(f.data_type())) {
        return ColumnKind::Images;
    }
    let all_null = matches!(t, DataType::Null)
        || list_item(t).is_some_and(|f| f.data_type() == &DataType::Null);
    if (one || many) && all_null {
        return ColumnKind::NoImages;
    }
    ColumnKind::Field
}

/// Why a type cannot be converted (None when it can).
pub(crate) fn unsupported(t: &DataType) -> Option<String> {
    match t {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(_, _)
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => None,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => unsupported(f.data_type()),
        DataType::Struct(fields) => fields.iter().find_map(|f| unsupported(f.data_type())),
        DataType::Dictionary(_, v) => unsupported(v),
        other => Some(format!(
            "type {other} has no JSON form in a document (supported: null, bool, ints, floats, \
             strings, binary, lists, structs, maps, dictionaries, dates, times, timestamps, decimals)"
        )),
    }
}

/// Row `i` of `batch`; `kinds[c]` is column c's kind. Errors name the column.
pub(crate) fn row_at(batch: &RecordBatch, kinds: &[ColumnKind], i: usize) -> Result<Row, String> {
    let mut row = Row::default();
    let schema = batch.schema();
    for (c, (field, array)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        let name = field.name().clone();
        match kinds.get(c).copied().unwrap_or(ColumnKind::Field) {
            ColumnKind::Field => {
                let v = cell(array.as_ref(), i).map_err(|e| format!("column `{name}`: {e}"))?;
                row.fields.insert(name, v);
            }
            ColumnKind::NoImages => {
                row.images.insert(name, vec![]);
            }
            ColumnKind::Image => {
                let img = array
                    .as_struct_opt()
                    .ok_or_else(|| format!("column `{name}`: expected an image struct"))
                    .map(|s| image_at(s, i))?;
                row.images.insert(name, img.into_iter().collect());
            }
            ColumnKind::Images => {
                let mut images = vec![];
                if let Some(items) = list_at(array.as_ref(), i) {
                    let s = items.as_struct_opt().ok_or_else(|| {
                        format!("column `{name}`: expected a list of image structs")
                    })?;
                    images.extend((0..s.len()).filter_map(|j| image_at(s, j)));
                }
                row.images.insert(name, images);
            }
        }
    }
    Ok(row)
}

/// The image in struct cell `i`: None when the struct or its bytes are null.
fn image_at(s: &StructArray, i: usize) -> Option<EncodedImage> {
    if s.is_null(i) {
        return None;
    }
    let bytes = binary_at(s.column_by_name("bytes")?.as_ref(), i)?;
    let path = s
        .column_by_name("path")
        .and_then(|p| string_at(p.as_ref(), i))
        .map(str::to_string);
    Some(EncodedImage {
        bytes: bytes.to_vec(),
        path,
    })
}

fn binary_at(a: &dyn Array, i: usize) -> Option<&[u8]> {
    if a.is_null(i) {
        return None;
    }
    if let Some(b) = a.as_binary_opt::<i32>() {
        Some(b.value(i))
    } else if let Some(b) = a.as_binary_opt::<i64>() {
        Some(b.value(i))
    } else if let Some(b) = a.as_binary_view_opt() {
        Some(b.value(i))
    } else {
        a.as_fixed_size_binary_opt().map(|b| b.value(i))
    }
}

fn string_at(a: &dyn Array, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
    }
    if let Some(s) = a.as_string_opt::<i32>() {
        Some(s.value(i))
    } else if let Some(s) = a.as_string_opt::<i64>() {
        Some(s.value(i))
    } else {
        a.as_string_view_opt().map(|s| s.value(i))
    }
}

/// The items of list cell `i` (None when null).
fn list_at(a: &dyn Array, i: usize) -> Option<ArrayRef> {
    if a.is_null(i) {
        return None;
    }
    if let Some(l) = a.as_list_opt::<i32>() {
        Some(l.value(i))
    } else if let Some(l) = a.as_list_opt::<i64>() {
        Some(l.value(i))
    } else if let Some(l) = a.as_fixed_size_list_opt() {
        Some(l.value(i))
    } else if let Some(l) = a.as_list_view_opt::<i32>() {
        Some(l.value(i))
    } else {
        a.as_list_view_opt::<i64>().map(|l| l.value(i))
    }
}

fn items(list: &dyn Array) -> Result<Value, String> {
    (0..list.len())
        .map(|j| cell(list, j))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

macro_rules! prim {
    ($a:expr, $t:ty, $i:expr) => {
        $a.as_primitive::<$t>().value($i)
    };
}

/// The dictionary key of cell `i` (None when null), for any key type.
fn dictionary_key(a: &dyn Array, k: &DataType, i: usize) -> Option<usize> {
    macro_rules! key {
        ($t:ty) => {
            a.as_dictionary_opt::<$t>().and_then(|d| d.key(i))
        };
    }
    match k {
        DataType::Int8 => key!(Int8Type),
        DataType::Int16 => key!(Int16Type),
        DataType::Int32 => key!(Int32Type),
        DataType::Int64 => key!(Int64Type),
        DataType::UInt8 => key!(UInt8Type),
        DataType::UInt16 => key!(UInt16Type),
        DataType::UInt32 => key!(UInt32Type),
        DataType::UInt64 => key!(UInt64Type),
        _ => None,
    }
}

/// One cell as JSON (see the module docs for the mapping).
pub(crate) fn cell(a: &dyn Array, i: usize) -> Result<Value, String> {
    let t = a.data_type();
    if matches!(t, DataType::Null) || a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match t {
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => prim!(a, Int8Type, i).into(),
        DataType::Int16 => prim!(a, Int16Type, i).into(),
        DataType::Int32 => prim!(a, Int32Type, i).into(),
        DataType::Int64 => prim!(a, Int64Type, i).into(),
        DataType::UInt8 => prim!(a, UInt8Type, i).into(),
        DataType::UInt16 => prim!(a, UInt16Type, i).into(),
        DataType::UInt32 => prim!(a, UInt32Type, i).into(),
        DataType::UInt64 => prim!(a, UInt64Type, i).into(),
        // Widening is exact; serde_json turns NaN/inf into null.
        DataType::Float16 => Value::from(prim!(a, Float16Type, i).to_f64()),
        DataType::Float32 => Value::from(prim!(a, Float32Type, i) as f64),
        DataType::Float64 => Value::from(prim!(a, Float64Type, i)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Value::String(string_at(a, i).unwrap_or_default().to_string())
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Value::String(
            base64::engine::general_purpose::STANDARD.encode(binary_at(a, i).unwrap_or_default()),
        ),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => match list_at(a, i) {
            Some(list) => items(list.as_ref())?,
            None => Value::Null,
        },
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut m = Map::new();
            for (f, col) in fields.iter().zip(s.columns()) {
                m.insert(f.name().clone(), cell(col.as_ref(), i)?);
            }
            Value::Object(m)
        }
        DataType::Map(_, _) => {
            let entries = a.as_map().value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut pairs = Vec::with_capacity(entries.len());
            for j in 0..entries.len() {
                pairs.push(Value::Array(vec![
                    cell(keys.as_ref(), j)?,
                    cell(values.as_ref(), j)?,
                ]));
            }
            Value::Array(pairs)
        }
        DataType::Dictionary(k, _) => {
            let values = a
                .as_any_dictionary_opt()
                .map(|d| d.values().clone())
                .ok_or_else(|| format!("{t} is not a dictionary array"))?;
            match dictionary_key(a, k, i) {
                Some(key) if key < values.len() => cell(values.as_ref(), key)?,
                _ => Value::Null,
            }
        }
        DataType::Date32 => Value::String(iso_date(prim!(a, Date32Type, i) as i64)),
        DataType::Date64 => Value::String(iso_date(prim!(a, Date64Type, i).div_euclid(86_400_000))),
        DataType::Time32(unit) => {
            let v = match unit {
                TimeUnit::Second => prim!(a, Time32SecondType, i) as i64 * 1_000_000_000,
                _ => prim!(a, Time32MillisecondType, i) as i64 * 1_000_000,
            };
            Value::String(iso_time(v))
        }
        DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Nanosecond => prim!(a, Time64NanosecondType, i),
                _ => prim!(a, Time64MicrosecondType, i) * 1_000,
            };
            Value::String(iso_time(v))
        }
        DataType::Timestamp(unit, tz) => {
            let raw = match unit {
                TimeUnit::Second => prim!(a, TimestampSecondType, i),
                TimeUnit::Millisecond => prim!(a, TimestampMillisecondType, i),
                TimeUnit::Microsecond => prim!(a, TimestampMicrosecondType, i),
                TimeUnit::Nanosecond => prim!(a, TimestampNanosecondType, i),
            };
            Value::String(iso_timestamp(raw, *unit, tz.as_deref()))
        }
        DataType::Decimal32(_, _) => {
            Value::String(a.as_primitive::<Decimal32Type>().value_as_string(i))
        }
        DataType::Decimal64(_, _) => {
            Value::String(a.as_primitive::<Decimal64Type>().value_as_string(i))
        }
        DataType::Decimal128(_, _) => {
            Value::String(a.as_primitive::<Decimal128Type>().value_as_string(i))
        }
        DataType::Decimal256(_, _) => {
            Value::String(a.as_primitive::<Decimal256Type>().value_as_string(i))
        }
        other => {
            return Err(
                unsupported(other).unwrap_or_else(|| format!("type {other} is not supported"))
            );
        }
    })
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn iso_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `time.isoformat()` of nanoseconds since midnight (µs precision, as Python's `time`).
fn iso_time(nanos: i64) -> String {
    let nanos = nanos.rem_euclid(86_400_000_000_000);
    let secs = nanos / 1_000_000_000;
    let micros = (nanos % 1_000_000_000) / 1_000;
    let hms = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if micros == 0 {
        hms
    } else {
        format!("{hms}.{micros:06}")
    }
}

/// A fixed UTC offset in seconds for an Arrow time zone string, when it is one (`UTC`, `Z`,
/// `+05:30`, `-0800`); None for a named zone.
fn fixed_offset(tz: &str) -> Option<i64> {
    if matches!(tz, "UTC" | "Z" | "Etc/UTC" | "GMT" | "Etc/GMT" | "utc") {
        return Some(0);
    }
    let (sign, rest) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// `datetime.isoformat()` of a timestamp (pandas' `Timestamp.isoformat()` for nanosecond
/// units with a sub-microsecond part, which is what pyarrow returns for those).
fn iso_timestamp(raw: i64, unit: TimeUnit, tz: Option<&str>) -> String {
    let per_sec: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let offset = tz.map(|z| fixed_offset(z).unwrap_or(0));
    let secs = raw.div_euclid(per_sec) + offset.unwrap_or(0);
    let nanos = raw.rem_euclid(per_sec) * (1_000_000_000 / per_sec);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos % 1_000 != 0 {
        s.push_str(&format!(".{nanos:09}"));
    } else if nanos != 0 {
        s.push_str(&format!(".{:06}", nanos / 1_000));
    }
    if let Some(off) = offset {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_python() {
        // datetime.date.fromordinal(...).isoformat() for these day counts.
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(-1), "1969-12-31");
        assert_eq!(iso_date(19_782), "2024-02-29");
        assert_eq!(iso_date(-719_162), "0001-01-01");
        assert_eq!(iso_date(2_932_896), "9999-12-31");
    }

    #[test]
    fn times_and_timestamps_match_python() {
        assert_eq!(iso_time(0), "00:00:00");
        assert_eq!(iso_time(3_723_000_004_000), "01:02:03.000004");
        // datetime.fromtimestamp(1700000000, timezone.utc).isoformat()
        assert_eq!(
            iso_timestamp(1_700_000_000, TimeUnit::Second, Some("UTC")),
            "2023-11-14T22:13:20+00:00"
        );
        assert_eq!(
            iso_timestamp(-1, TimeUnit::Microsecond, None),
            "1969-12-31T23:59:59.999999"
        );
        assert_eq!(
            iso_timestamp(1_000, TimeUnit::Nanosecond, None),
            "1970-01-01T00:00:00.000001"
        );
        assert_eq!(
            iso_timestamp(1, TimeUnit::Nanosecond, None),
            "1970-01-01T00:00:00.000000001"
        );
        assert_eq!(
            iso_timestamp(-3600, TimeUnit::Second, Some("+05:30")),
            "1970-01-01T04:30:00+05:30"
        );
        assert_eq!(
            iso_timestamp(0, TimeUnit::Second, Some("-08:00")),
            "1969-12-31T16:00:00-08:00"
        );
    }

    #[test]
    fn image_structs_are_recognised_by_shape() {
        use arrow_schema::Fields;
        let img = DataType::Struct(Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ]));
        let extra = DataType::Struct(Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("extra", DataType::Int8, true),
        ]));
        let f = |t: DataType| Field::new("c", t, true);
        assert_eq!(classify(&f(img.clone()), None), ColumnKind::Image);
        let list = DataType::List(std::sync::Arc::new(Field::new("item", img.clone(), true)));
        assert_eq!(classify(&f(list), None), ColumnKind::Images);
        assert_eq!(classify(&f(extra), None), ColumnKind::Field);
        let audio = serde_json::json!({"_type": "Audio"});
        assert_eq!(classify(&f(img), Some(&audio)), ColumnKind::Field);
        let image = serde_json::json!({"_type": "Image"});
        assert_eq!(
            classify(&f(DataType::Null), Some(&image)),
            ColumnKind::NoImages
        );
        assert_eq!(classify(&f(DataType::Null), None), ColumnKind::Field);
        let seq = serde_json::json!([{"_type": "Image"}]);
        assert_eq!(
            classify(&f(DataType::Null), Some(&seq)),
            ColumnKind::NoImages
        );
    }
}
