//! Prometheus metrics, rendered as the text exposition format at `GET /metrics`. Counters and
//! histograms are updated from the engine worker's event sink, so a request whose client
//! went away is still counted. Names are vLLM's (`vllm:num_requests_waiting`, ...) under the
//! `onevision:` prefix where the meaning is the same, so dashboards and autoscalers written for
//! vLLM need only the prefix changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Latency bucket bounds in seconds, for time to first token (queue wait included).
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
/// Bucket bounds in seconds, for the mean time between output tokens of a request.
const TPOT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5,
];
/// Bucket bounds in seconds, for the wait before a request starts.
const QUEUE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
];
/// Bucket bounds in seconds, for whole requests.
const E2E_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0,
];

struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramData>,
}

#[derive(Default)]
struct HistogramData {
    /// One count per bound (not cumulative), then the count above the last bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            inner: Mutex::new(HistogramData {
                counts: vec![0; bounds.len() + 1],
                ..Default::default()
            }),
        }
    }

    fn observe(&self, x: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| x <= b)
            .unwrap_or(self.bounds.len());
        let mut d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        d.counts[i] += 1;
        d.sum += x;
        d.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let d = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&d.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", d.count);
        let _ = writeln!(out, "{name}_sum {}", d.sum);
        let _ = writeln!(out, "{name}_count {}", d.count);
    }
}

/// What the engine reports at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineGauges {
    /// Requests waiting: queued, and preempted ones waiting to be recomputed.
    pub waiting: usize,
    pub running: usize,
    pub preemptions: u64,
    pub kv_used_bytes: usize,
    /// 0: no budget.
    pub kv_budget_bytes: usize,
    pub encoder_cache_queries: u64,
    pub encoder_cache_hits: u64,
}

/// The server's counters.
pub struct Metrics {
    /// Finished chat-completion requests by HTTP status.
    requests: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    ttft: Histogram,
    tpot: Histogram,
    queue: Histogram,
    e2e: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            tpot: Histogram::new(TPOT_BUCKETS),
            queue: Histogram::new(QUEUE_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry(status).or_insert(0) += 1;
    }

    pub fn add_prompt_tokens(&self, n: usize) {
        self.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_generation_tokens(&self, n: usize) {
        self.generation_tokens
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Seconds from the request's arrival to its first generated token.
    pub fn observe_ttft(&self, seconds: f64) {
        self.ttft.observe(seconds);
    }

    /// The mean seconds between output tokens of one request (recorded for 2+ tokens).
    pub fn observe_tpot(&self, seconds: f64) {
        self.tpot.observe(seconds);
    }

    /// Seconds a request waited before the engine started it.
    pub fn observe_queue(&self, seconds: f64) {
        self.queue.observe(seconds);
    }

    /// Seconds from the request's arrival to its end.
    pub fn observe_e2e(&self, seconds: f64) {
        self.e2e.observe(seconds);
    }

    /// The text exposition format, with the engine's gauges and counters.
    pub fn render(&self, engine: EngineGauges) -> String {
        let EngineGauges {
            waiting,
            running,
            preemptions,
            kv_used_bytes,
            kv_budget_bytes,
            encoder_cache_queries,
            encoder_cache_hits,
        } = engine;
        let mut out = String::new();
        out.push_str(
            "# HELP onevision:requests_total Chat-completion requests answered, by HTTP status.\n",
        );
        out.push_str("# TYPE onevision:requests_total counter\n");
        {
            let r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for (status, n) in r.iter() {
                let _ = writeln!(out, "onevision:requests_total{{status=\"{status}\"}} {n}");
            }
        }
        let counters = [
            (
                "onevision:prompt_tokens_total",
                "Prompt tokens processed (media placeholders included).",
                self.prompt_tokens.load(Ordering::Relaxed),
            ),
            (
                "onevision:generation_tokens_total",
                "Tokens generated (cancelled requests included, up to their cancellation).",
                self.generation_tokens.load(Ordering::Relaxed),
            ),
            (
                "onevision:num_preemptions_total",
                "Running requests that gave their KV cache back to make room (each recomputed \
                 later, never dropped).",
                preemptions,
            ),
            (
                "onevision:mm_cache_queries_total",
                "Images and videos looked up in the encoder cache.",
                encoder_cache_queries,
            ),
            (
                "onevision:mm_cache_hits_total",
                "Images and videos whose encoder output came from the cache (vision tower skipped).",
                encoder_cache_hits,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let usage = match kv_budget_bytes {
            0 => 0.0,
            b => kv_used_bytes as f64 / b as f64,
        };
        let gauges = [
            (
                "onevision:num_requests_waiting",
                "Requests waiting for the engine (queued, or preempted and waiting to be recomputed).",
                waiting as f64,
            ),
            (
                "onevision:num_requests_running",
                "Requests the engine is running, batched (encoding, prefilling or generating).",
                running as f64,
            ),
            (
                "onevision:kv_cache_usage_perc",
                "Fraction of the KV-cache budget (--kv-cache-mb) granted to running requests (0 \
                 when there is no budget).",
                usage,
            ),
            (
                "onevision:kv_cache_used_bytes",
                "KV-cache bytes granted to running requests.",
                kv_used_bytes as f64,
            ),
            (
                "onevision:kv_cache_budget_bytes",
                "The KV-cache budget in bytes (0: no limit).",
                kv_budget_bytes as f64,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.ttft.render(
            &mut out,
            "onevision:time_to_first_token_seconds",
            "From a request's arrival (queue wait included) to its first generated token.",
        );
        self.tpot.render(
            &mut out,
            "onevision:time_per_output_token_seconds",
            "Mean time between a request's output tokens after the first.",
        );
        self.queue.render(
            &mut out,
            "onevision:request_queue_time_seconds",
            "From a request's arrival to the engine starting it.",
        );
        self.e2e.render(
            &mut out,
            "onevision:e2e_request_latency_seconds",
            "From a request's arrival to its last token.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_ttft(0.02);
        m.observe_ttft(0.3);
        m.observe_ttft(1000.0);
        m.observe_queue(0.2);
        m.count_request(200);
        m.count_request(200);
        m.count_request(429);
        let text = m.render(EngineGauges {
            waiting: 3,
            running: 1,
            preemptions: 5,
            kv_used_bytes: 1 << 20,
            kv_budget_bytes: 4 << 20,
            encoder_cache_queries: 4,
            encoder_cache_hits: 2,
        });
        assert!(text.contains("onevision:time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("onevision:time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("onevision:time_to_first_token_seconds_bucket{le=\"80\"} 2\n"));
        assert!(text.contains("onevision:time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("onevision:time_to_first_token_seconds_count 3\n"));
        assert!(text.contains("onevision:requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("onevision:requests_total{status=\"429\"} 1\n"));
        assert!(text.contains("onevision:num_requests_waiting 3\n"));
        assert!(text.contains("onevision:num_requests_running 1\n"));
        assert!(text.contains("onevision:num_preemptions_total 5\n"));
        assert!(text.contains("onevision:kv_cache_usage_perc 0.25\n"));
        assert!(text.contains("onevision:mm_cache_hits_total 2\n"));
        assert!(text.contains("onevision:mm_cache_queries_total 4\n"));
        assert!(text.contains("onevision:request_queue_time_seconds_bucket{le=\"0.1\"} 0\n"));
        assert!(text.contains("onevision:request_queue_time_seconds_bucket{le=\"0.25\"} 1\n"));
        // Every sample line is `name{labels} value` with a name Prometheus accepts.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(
                name.starts_with("onevision:")
                    && name[10..]
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{line}"
            );
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
