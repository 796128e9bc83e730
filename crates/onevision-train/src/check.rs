//! `onevision train --check-data`: every sample prepared exactly as training would (media
//! decoded, conversation labelled, markers expanded), without a model. Reports samples per
//! modality, token-length percentiles, what truncation would cut, and every problem.

use std::fmt;

use candle_core::Device;
use onevision_processor::Processor;

use crate::data::{self, Modality};
use crate::example::{prepare, Unusable};
use crate::settings::TrainConfig;
use crate::Result;

/// What checking a dataset found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub samples: usize,
    pub by_modality: Vec<(String, usize)>,
    /// Token lengths (media included, before truncation) of the usable samples, sorted.
    pub lengths: Vec<usize>,
    pub supervised: usize,
    pub truncated: Vec<String>,
    /// Data problems (file, line, id, what) and samples that cannot be used once prepared.
    pub problems: Vec<String>,
    pub max_length: usize,
}

impl CheckReport {
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The `p`-th percentile (nearest rank) of the token lengths.
    pub fn percentile(&self, p: f64) -> Option<usize> {
        if self.lengths.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.lengths.len() as f64).ceil() as usize;
        Some(self.lengths[rank.clamp(1, self.lengths.len()) - 1])
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "samples: {}", self.samples)?;
        for (m, n) in &self.by_modality {
            writeln!(f, "  {m:<13} {n}")?;
        }
        if let (Some(p0), Some(p50), Some(p90), Some(p99), Some(p100)) = (
            self.percentile(0.0),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(100.0),
        ) {
            writeln!(
                f,
                "tokens per sample (media included): min {p0}, p50 {p50}, p90 {p90}, p99 {p99}, max {p100}"
            )?;
        }
        writeln!(f, "supervised tokens: {}", self.supervised)?;
        writeln!(
            f,
            "truncated at --max-length {}: {}",
            self.max_length,
            self.truncated.len()
        )?;
        for t in &self.truncated {
            writeln!(f, "  {t}")?;
        }
        writeln!(f, "problems: {}", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Checks the dataset of `cfg` against the processor of `cfg.model`.
pub fn check_data(cfg: &TrainConfig) -> Result<CheckReport> {
    let (model_cfg, _) = crate::trainer::run_config(&cfg.model, cfg.images)?;
    let proc = Processor::from_dir(&cfg.model, &model_cfg)?;
    let ds = data::load(&cfg.data, &cfg.data_options())?;
    let prep = cfg.prep_settings();
    let mut report = CheckReport {
        samples: ds.samples.len(),
        max_length: cfg.max_length,
        problems: ds.problems.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    let counts = ds.modality_counts();
    report.by_modality = vec![
        (Modality::Text.to_string(), counts.text),
        (Modality::SingleImage.to_string(), counts.single_image),
        (Modality::MultiImage.to_string(), counts.multi_image),
        (Modality::Video.to_string(), counts.video),
    ];
    for s in &ds.samples {
        match prepare(s, &proc, &prep, &Device::Cpu) {
            Ok(ex) => {
                report.lengths.push(ex.input_ids.len());
                report.supervised += ex.supervised();
                if ex.truncated() {
                    report.truncated.push(format!(
                        "{} (id {}): {} -> {} tokens",
                        s.origin,
                        s.id,
                        ex.input_ids.len(),
                        ex.len
                    ));
                }
            }
            Err(why) => report.problems.push(format!(
                "{} (id {}): {}",
                s.origin,
                s.id,
                match &why {
                    Unusable::Failed(e) => format!("cannot be prepared: {e}"),
                    other => format!("would be skipped: {other}"),
                }
            )),
        }
    }
    report.lengths.sort_unstable();
    Ok(report)
}
