//! The engine worker: one thread that owns the model and runs every request on it, so the async
//! runtime of a server never runs the model. Requests wait in a queue of bounded length; up to
//! `max_running` of them run at once, batched continuously (as vLLM's and mistral.rs's
//! schedulers do): each step runs one chunk of at most `max_batched_tokens` prompt positions of
//! the oldest request still being prefilled, then one decode step for every request that is
//! generating, in one batched forward (each weight read once for all of them), and admits
//! waiting requests as running ones end. A request's outputs do not depend on the others': its
//! prompt is cut into the same chunks whatever else runs, and a batched decode row equals the
//! sequence's own step (`Qwen2::forward_decode_batch`). The encoder output of recent media is
//! kept (`encoder_cache`), so the same image asked about again skips the vision tower. Not yet:
//! a KV-cache budget with preemption, and encoding a new request's media in pieces between decode
//! steps (a request's vision encoder runs whole when it is admitted). Each request carries its
//! own event sink; a sink that returns `false` (its receiver is gone) cancels the request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::encoder_cache::{EncoderCache, EncoderCacheStats};
use crate::generate::{decode_step, guarded, Sequence};
use crate::pipeline::Pipeline;
use crate::request::{Event, GenRequest};

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Requests waiting beyond this many are refused ([`SubmitError::QueueFull`]).
    pub queue_capacity: usize,
    /// Requests running at once (prefilling or generating).
    pub max_running: usize,
    /// Prompt positions per prefill chunk: a long prompt is prefilled over several steps, with
    /// the running requests' decode steps in between.
    pub max_batched_tokens: usize,
    /// Bytes of recent media's encoder output kept for reuse (0: none).
    pub encoder_cache_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 64,
            max_running: 8,
            max_batched_tokens: 2048,
            encoder_cache_bytes: 256 << 20,
        }
    }
}

/// Receives a request's events; returns `false` to cancel the request.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

struct Job {
    request: GenRequest,
    sink: Sink,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue holds `capacity` waiting requests already.
    QueueFull { capacity: usize },
    /// The engine is shutting down.
    ShuttingDown,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::QueueFull { capacity } => write!(
                f,
                "the server is busy: {capacity} requests are already waiting; retry later"
            ),
            SubmitError::ShuttingDown => write!(f, "the server is shutting down"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Counters a server exports.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Requests queued, not yet started.
    pub queued: AtomicUsize,
    /// Requests running (prefilling or generating).
    pub running: AtomicUsize,
    /// The encoder cache's lookups and hits.
    pub encoder_cache: EncoderCacheStats,
}

/// A cloneable handle to the worker.
#[derive(Clone)]
pub struct Engine {
    tx: Sender<Job>,
    capacity: usize,
    stats: Arc<EngineStats>,
    closing: Arc<AtomicBool>,
    pipeline_info: Arc<PipelineInfo>,
}

/// What callers may know about the loaded model without touching it.
#[derive(Debug, Clone)]
pub struct PipelineInfo {
    /// The model's context length (max positions).
    pub context_length: usize,
}

/// Owns the worker thread; dropping it (or `shutdown`) finishes the queued requests and joins.
pub struct EngineThread {
    handle: Option<JoinHandle<()>>,
    engine: Engine,
}

impl Engine {
    /// Starts the worker thread with a queue of `capacity` waiting requests and the default
    /// batching.
    pub fn start(pipeline: Pipeline, capacity: usize) -> EngineThread {
        Self::start_with(
            pipeline,
            BatchConfig {
                queue_capacity: capacity,
                ..BatchConfig::default()
            },
        )
    }

    /// Starts the worker thread with `config`.
    pub fn start_with(pipeline: Pipeline, config: BatchConfig) -> EngineThread {
        let (tx, rx) = channel::<Job>();
        let stats = Arc::new(EngineStats::default());
        let info = Arc::new(PipelineInfo {
            context_length: pipeline.model.config().text.max_position_embeddings,
        });
        let worker_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("onevision-engine".into())
            .spawn(move || schedule(&pipeline, rx, &worker_stats, config))
            .expect("spawning the engine thread");
        let engine = Engine {
            tx,
            capacity: config.queue_capacity.max(1),
            stats,
            closing: Arc::new(AtomicBool::new(false)),
            pipeline_info: info,
        };
        EngineThread {
            handle: Some(handle),
            engine,
        }
    }

    /// Queues a request; its events go to `sink` from the worker thread.
    pub fn submit(&self, request: GenRequest, sink: Sink) -> Result<(), SubmitError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        if self.stats.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull {
                capacity: self.capacity,
            });
        }
        self.tx.send(Job { request, sink }).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            SubmitError::ShuttingDown
        })
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn info(&self) -> &PipelineInfo {
        &self.pipeline_info
    }

    /// Refuses new requests from now on (queued ones still run).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }
}

impl EngineThread {
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Stops accepting requests, lets the queued ones finish, and joins the worker once every
    /// `Engine` handle is dropped.
    pub fn shutdown(mut self) {
        self.engine.close();
        self.join();
    }

    fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            // The worker exits when all senders are gone; ours goes with `self.engine` below.
            let (tx, _) = channel();
            let _ = std::mem::replace(&mut self.engine.tx, tx);
            let _ = h.join();
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.engine.close();
        self.join();
    }
}

/// The worker's loop: intake, admission, one prefill chunk, one batched decode step, until
/// every sender is gone and nothing is left to run.
fn schedule(pipeline: &Pipeline, rx: Receiver<Job>, stats: &EngineStats, config: BatchConfig) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut running: Vec<Sequence<'_>> = Vec::new();
    let mut encoder = EncoderCache::new(config.encoder_cache_bytes);
    let mut open = true;
    loop {
        if running.is_empty() && waiting.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        while running.len() < config.max_running.max(1) {
            let Some(Job { request, sink }) = waiting.pop_front() else {
                break;
            };
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            let started = Sequence::start(
                pipeline,
                &request.request,
                &request.sampling,
                &request.stop,
                request.logprobs,
                sink,
                // No budget: no lookups either (hashing a medium's pixels would be wasted).
                (config.encoder_cache_bytes > 0).then_some((&mut encoder, &stats.encoder_cache)),
            );
            running.extend(started);
            stats.running.store(running.len(), Ordering::SeqCst);
        }
        if let Some(i) = running.iter().position(|s| s.is_prefilling()) {
            let chunk = config.max_batched_tokens.max(1);
            guarded(&mut running[i..=i], |_| true, |s| s[0].prefill(chunk));
        }
        guarded(
            &mut running,
            |s| s.is_decoding(),
            |seqs| decode_step(pipeline, seqs),
        );
        running.retain(|s| !s.ended());
        stats.running.store(running.len(), Ordering::SeqCst);
    }
}
