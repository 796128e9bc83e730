//! What the user sees while training: the JSONL log (`--log`, default
//! `OUTPUT/train_log.jsonl`), one JSON object per optimizer step, written as the step ends so a
//! crash keeps every finished step; and a progress bar on a terminal.
//!
//! The log's fields are a stable interface (other tools and the next issues read them):
//! `{"step":12,"epoch":0.5,"loss":1.93,"lr":{"language":0.00001,"vision":2e-6},"grad_norm":0.84,
//! "tokens":8123,"samples_per_s":1.2,"tokens_per_s":4100.0,"skipped_samples":0,
//! "truncated_samples":0}`. A loss or norm that is not finite
//! is written as `null` (JSON has no NaN) and read back as NaN.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// One optimizer step, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done, counting this one (the Trainer's `global_step` after the update).
    pub step: usize,
    /// Fractional epochs done after this step.
    #[serde(deserialize_with = "f64_or_nan")]
    pub epoch: f64,
    /// Mean loss over the step's supervised tokens (all micro-batches of the accumulation).
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    /// The learning rate this update used, per trained group (`projector`, `vision`,
    /// `language`).
    #[serde(deserialize_with = "map_or_nan")]
    pub lr: BTreeMap<String, f64>,
    /// The global gradient norm before clipping (what the Trainer logs as `grad_norm`).
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_norm: f64,
    /// Tokens in the step's batches (media placeholders expanded, padding excluded).
    pub tokens: u64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub samples_per_s: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub tokens_per_s: f64,
    /// Samples skipped so far in this run: bad data left out by `--skip-bad-samples` plus
    /// samples found unusable when prepared (media longer than `--max-length`).
    #[serde(default)]
    pub skipped_samples: u64,
    /// Samples truncated to `--max-length` so far.
    #[serde(default)]
    pub truncated_samples: u64,
}

fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn map_or_nan<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// The log file, open for appending one line per step.
pub struct JsonlLog {
    path: PathBuf,
    file: File,
}

impl JsonlLog {
    /// Opens `path` for a new run (an existing file is truncated) or, with `append`, to continue
    /// after the lines already there. A last line cut short by a crash is dropped first, so the
    /// next line starts on a line of its own. Prefer [`JsonlLog::resume`] for `--resume`.
    pub fn create(path: &Path, append: bool) -> Result<Self> {
        if append && path.exists() {
            let text = read_text(path)?;
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            if whole < text.len() {
                rewrite(path, &text[..whole])?;
            }
        }
        Self::open(path, append)
    }

    /// Opens the log of a run resumed from the checkpoint of `step`: keeps the lines of steps up
    /// to `step` and drops later ones (logged after that checkpoint by the run that stopped; the
    /// resumed run logs those steps again), then appends.
    pub fn resume(path: &Path, step: usize) -> Result<Self> {
        if path.exists() {
            let text = read_text(path)?;
            let mut keep = String::with_capacity(text.len());
            for (line, rec) in parse_lines(path, &text)? {
                if rec.step <= step {
                    keep.push_str(line);
                    keep.push('\n');
                }
            }
            rewrite(path, &keep)?;
        }
        Self::open(path, true)
    }

    fn open(path: &Path, append: bool) -> Result<Self> {
        let mut opts = OpenOptions::new();
        opts.create(true);
        if append {
            opts.append(true);
        } else {
            opts.write(true).truncate(true);
        }
        let file = opts.open(path).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `rec` as one line, in one write, and flushes it to the OS (the file is
    /// unbuffered): a crash of the process after this returns keeps the line.
    pub fn write(&mut self, rec: &StepRecord) -> Result<()> {
        let write_err = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(rec)
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(write_err)?;
        self.file.flush().map_err(write_err)
    }
}

/// Every record of a log written by [`JsonlLog`]. Blank lines are skipped, and so is a last line
/// without its newline that does not parse (the line a crash cut short); any other line that is
/// not a record is an error naming the line.
pub fn read_log(path: &Path) -> Result<Vec<StepRecord>> {
    let text = read_text(path)?;
    Ok(parse_lines(path, &text)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

fn parse_lines<'a>(path: &Path, text: &'a str) -> Result<Vec<(&'a str, StepRecord)>> {
    let cut_short = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<StepRecord>(line) {
            Ok(rec) => out.push((*line, rec)),
            Err(_) if cut_short && i + 1 == lines.len() => {}
            Err(e) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {}: not a training-log record ({e})", i + 1),
                    ),
                })
            }
        }
    }
    Ok(out)
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces the file's content through a temporary file and a rename (never half-written).
fn rewrite(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, text).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

/// The progress bar: `step/total`, loss, learning rates, tokens/s and the ETA, redrawn after
/// each step, on stderr. It exists only when asked for and stderr is a terminal; otherwise every
/// method does nothing (logs and pipes get no escape codes), except [`Progress::println`].
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total_steps: usize, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let style = ProgressStyle::with_template(
            "step {pos}/{len} [{wide_bar}] {msg} | elapsed {elapsed} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = ProgressBar::new(total_steps as u64).with_style(style);
        Self { bar: Some(bar) }
    }

    /// Moves to `step` without counting it as progress made now (a resumed run: the ETA is
    /// estimated from the steps this process runs).
    pub fn set_position(&mut self, step: usize) {
        if let Some(b) = &self.bar {
            b.set_position(step as u64);
            b.reset_eta();
        }
    }

    /// Shows the step just done.
    pub fn update(&mut self, rec: &StepRecord) {
        if let Some(b) = &self.bar {
            b.set_message(summary(rec));
            b.set_position(rec.step as u64);
        }
    }

    /// Prints a line above the bar (or on stderr when there is none).
    pub fn println(&self, msg: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{}", msg.as_ref()),
        }
    }

    /// Leaves the bar drawn at its final state.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}

/// `loss 1.9312 | lr language 1.00e-5 vision 2.00e-6 | 4.1k tok/s`.
fn summary(rec: &StepRecord) -> String {
    let lrs: Vec<String> = rec
        .lr
        .iter()
        .map(|(g, lr)| format!("{g} {lr:.2e}"))
        .collect();
    let tps = if rec.tokens_per_s >= 1e3 {
        format!("{:.1}k", rec.tokens_per_s / 1e3)
    } else {
        format!("{:.0}", rec.tokens_per_s)
    };
    format!("loss {:.4} | lr {} | {tps} tok/s", rec.loss, lrs.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: usize, loss: f64) -> StepRecord {
        StepRecord {
            step,
            epoch: step as f64 / 4.0,
            loss,
            lr: BTreeMap::from([("language".into(), 1e-5), ("vision".into(), 2e-6)]),
            grad_norm: 0.5,
            tokens: 100,
            samples_per_s: 2.0,
            tokens_per_s: 4100.0,
            skipped_samples: 0,
            truncated_samples: 0,
        }
    }

    #[test]
    fn lines_round_trip_and_append() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let path = dir.path().join("log.jsonl");
        let mut log = JsonlLog::create(&path, false)?;
        log.write(&rec(1, 2.5))?;
        log.write(&rec(2, f64::NAN))?;
        drop(log);
        let text = read_text(&path)?;
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(r#"{"step":1,"epoch":0.25,"loss":2.5,"lr":{"language":0.00001,"vision":2e-6},"grad_norm":0.5"#), "{text}");
        assert!(text.contains(r#""loss":null"#));
        let mut log = JsonlLog::create(&path, true)?;
        log.write(&rec(3, 1.5))?;
        let back = read_log(&path)?;
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], rec(1, 2.5));
        assert!(back[1].loss.is_nan());
        assert_eq!(back[2].step, 3);
        // A new run truncates.
        JsonlLog::create(&path, false)?;
        assert!(read_log(&path)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_line_cut_short_is_dropped_and_resume_drops_later_steps() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let path = dir.path().join("log.jsonl");
        let mut log = JsonlLog::create(&path, false)?;
        for s in 1..=5 {
            log.write(&rec(s, 1.0))?;
        }
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::Config(e.to_string()))?;
        f.write_all(br#"{"step":6,"epo"#)
            .map_err(|e| Error::Config(e.to_string()))?;
        assert_eq!(read_log(&path)?.len(), 5);
        // Resuming from the checkpoint of step 3 forgets steps 4, 5 and the partial 6.
        let mut log = JsonlLog::resume(&path, 3)?;
        log.write(&rec(4, 0.5))?;
        let steps: Vec<usize> = read_log(&path)?.iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        assert_eq!(read_log(&path)?[3].loss, 0.5);
        // Appending after a cut line starts a new line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::Config(e.to_string()))?;
        f.write_all(b"{\"st")
            .map_err(|e| Error::Config(e.to_string()))?;
        JsonlLog::create(&path, true)?.write(&rec(5, 0.4))?;
        assert_eq!(read_log(&path)?.len(), 5);
        Ok(())
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"step\":1}\nnot json\n")
            .map_err(|e| Error::Config(e.to_string()))?;
        let e = read_log(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("log.jsonl") && e.contains("line 1: not a training-log record"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn progress_without_terminal_is_silent_and_summary_reads() {
        let mut p = Progress::new(10, false);
        p.set_position(3);
        p.update(&rec(4, 1.25));
        p.finish();
        assert!(p.bar.is_none());
        assert_eq!(
            summary(&rec(4, 1.25)),
            "loss 1.2500 | lr language 1.00e-5 vision 2.00e-6 | 4.1k tok/s"
        );
    }
}
