//! The engine worker: one thread that owns the model and runs every request on it, so the async
//! runtime of a server never runs the model. Requests wait in a queue of bounded length; up to
//! `max_running` of them run at once, batched continuously (as vLLM's and mistral.rs's
//! schedulers do). Each step:
//!
//! 1. admits waiting requests while fewer than `max_running` run (preempted ones first, when
//!    their whole recomputation fits the KV budget);
//! 2. gives the oldest request that is still encoding or prefilling one piece of work: a few
//!    tiles or frames through the vision tower (as many as `max_batched_tokens` positions'
//!    worth), or one prefill chunk of at most `max_batched_tokens` positions;
//! 3. runs one decode step for every request that is generating, in one batched forward (each
//!    weight read once for all of them).
//!
//! A request's outputs do not depend on the others': its media and prompt are cut into the same
//! pieces whatever else runs, and a batched decode row equals the sequence's own step
//! (`Qwen2::forward_decode_batch`). KV-cache memory is granted in blocks of [`KV_BLOCK`]
//! positions out of a budget (`kv_cache_bytes`) and taken back when a request ends; when a
//! request needs a block and none is free, the newest running request gives its cache back
//! and is recomputed later (prompt again, generated tokens replayed), never dropped: its
//! outputs stay those of an unconstrained run. The encoder output of recent media is kept
//! (`encoder_cache`), so the same image asked about again skips the vision tower. Each request
//! carries its own event sink; a sink that returns `false` (its receiver is gone) cancels it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::encoder_cache::{EncoderCache, EncoderCacheStats, MediaHasher};
use crate::generate::{decode_step, guarded, Prepared, Sequence};
use crate::pipeline::Pipeline;
use crate::request::{Event, GenRequest};
use crate::Error;

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
    /// Bytes of KV cache all running requests may hold together (None: no limit). Past it, the
    /// newest running request is preempted and recomputed later.
    pub kv_cache_bytes: Option<usize>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 64,
            max_running: 8,
            max_batched_tokens: 2048,
            encoder_cache_bytes: 256 << 20,
            kv_cache_bytes: None,
        }
    }
}

/// Receives a request's events; returns `false` to cancel the request.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

struct Job {
    request: GenRequest,
    sink: Sink,
    arrived: Instant,
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
    /// Requests preempted, waiting to be recomputed.
    pub preempted: AtomicUsize,
    /// Requests running (encoding, prefilling or generating).
    pub running: AtomicUsize,
    /// Preemptions so far.
    pub preemptions: AtomicU64,
    /// KV-cache bytes granted to running requests.
    pub kv_used_bytes: AtomicUsize,
    /// The KV-cache budget in bytes (0: no limit).
    pub kv_budget_bytes: AtomicUsize,
    /// Batched decode steps run, the rows they decoded (one per generating or replaying
    /// request) and the nanoseconds they took: decode throughput without the prompt work.
    pub decode_steps: AtomicU64,
    pub decode_rows: AtomicU64,
    pub decode_nanos: AtomicU64,
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
    /// The preprocessing thread, then the scheduler's.
    handles: Vec<JoinHandle<()>>,
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
        let pipeline = Arc::new(pipeline);
        let hasher = MediaHasher::default();
        let (ready_tx, ready_rx) = channel::<Ready>();
        let (prep_pipeline, prep_stats, prep_hasher) =
            (pipeline.clone(), stats.clone(), hasher.clone());
        let preprocess = std::thread::Builder::new()
            .name("onevision-preprocess".into())
            .spawn(move || {
                let hasher = (config.encoder_cache_bytes > 0).then_some(&prep_hasher);
                preprocess(&prep_pipeline, rx, ready_tx, &prep_stats, hasher)
            })
            .expect("spawning the preprocessing thread");
        let worker_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("onevision-engine".into())
            .spawn(move || schedule(&pipeline, ready_rx, &worker_stats, config, hasher))
            .expect("spawning the engine thread");
        let engine = Engine {
            tx,
            capacity: config.queue_capacity.max(1),
            stats,
            closing: Arc::new(AtomicBool::new(false)),
            pipeline_info: info,
        };
        EngineThread {
            handles: vec![preprocess, handle],
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
        let arrived = Instant::now();
        let job = Job {
            request,
            sink,
            arrived,
        };
        self.tx.send(job).map_err(|_| {
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
        if self.handles.is_empty() {
            return;
        }
        // The threads exit when all senders are gone; ours goes with `self.engine` below (the
        // preprocessing thread's sender to the scheduler goes with it).
        let (tx, _) = channel();
        let _ = std::mem::replace(&mut self.engine.tx, tx);
        for h in self.handles.drain(..) {
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

/// A request preprocessed, on its way to the scheduler.
struct Ready {
    prepared: Prepared,
    request: GenRequest,
    sink: Sink,
}

/// The preprocessing thread: decodes each queued request's media, renders and tokenizes its
/// prompt and sends `Started` (no model work), in arrival order, then hands it to the scheduler.
fn preprocess(
    pipeline: &Pipeline,
    rx: Receiver<Job>,
    tx: Sender<Ready>,
    stats: &EngineStats,
    hasher: Option<&MediaHasher>,
) {
    for Job {
        request,
        mut sink,
        arrived,
    } in rx
    {
        let prepared = Prepared::new(
            pipeline,
            &request.request,
            &request.stop,
            &mut *sink,
            hasher,
            arrived,
        );
        match prepared {
            Some(prepared) => {
                let ready = Ready {
                    prepared,
                    request,
                    sink,
                };
                if tx.send(ready).is_err() {
                    return;
                }
            }
            // Ended already (its last event went out): no longer queued.
            None => {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Positions per KV-cache block: the unit the budget is granted in (vLLM's default).
pub const KV_BLOCK: usize = 16;

/// The KV-cache budget, in blocks.
struct KvBudget {
    bytes_per_block: usize,
    /// None: no limit.
    total: Option<usize>,
    used: usize,
}

impl KvBudget {
    fn new(pipeline: &Pipeline, bytes: Option<usize>) -> Self {
        let t = &pipeline.model.config().text;
        let per_position = 2
            * t.num_hidden_layers
            * t.num_key_value_heads
            * t.head_dim
            * pipeline.model.dtype().size_in_bytes();
        let bytes_per_block = (per_position * KV_BLOCK).max(1);
        Self {
            bytes_per_block,
            total: bytes.map(|b| b / bytes_per_block),
            used: 0,
        }
    }

    fn blocks(positions: usize) -> usize {
        positions.div_ceil(KV_BLOCK)
    }

    fn free(&self) -> usize {
        self.total
            .map_or(usize::MAX, |t| t.saturating_sub(self.used))
    }

    /// Whether a request of `positions` could run were it alone.
    fn holds(&self, positions: usize) -> bool {
        self.total.is_none_or(|t| Self::blocks(positions) <= t)
    }

    fn too_small(&self, positions: usize) -> Error {
        let total = self.total.unwrap_or(usize::MAX);
        Error::Request(format!(
            "this request needs room for {positions} positions in the KV cache, and the server's \
             KV-cache budget (--kv-cache-mb, {:.1} MiB) holds {} positions of this model; ask \
             for fewer tokens, or raise --kv-cache-mb",
            (total * self.bytes_per_block) as f64 / (1 << 20) as f64,
            total * KV_BLOCK
        ))
    }

    fn publish(&self, stats: &EngineStats) {
        stats
            .kv_used_bytes
            .store(self.used * self.bytes_per_block, Ordering::Relaxed);
    }
}

/// Grants `running[i]` blocks for `need` positions, preempting the newest running requests
/// (`running` is in admission order) while the budget is short. `false` when `running[i]`
/// itself gave way: preempted (newer than every other holder), or failed (it cannot fit even
/// alone).
fn ensure(
    running: &mut [Sequence<'_>],
    i: usize,
    need: usize,
    kv: &mut KvBudget,
    stats: &EngineStats,
) -> bool {
    let want = KvBudget::blocks(need);
    let have = running[i].kv_blocks;
    if want <= have {
        return true;
    }
    if !kv.holds(need) {
        let e = kv.too_small(need);
        running[i].fail(e);
        return false;
    }
    // Decoding grows one position a step: an eighth more each time keeps the buffers from
    // being copied at every block.
    let extra = if running[i].is_decoding() {
        (want / 8).max(1)
    } else {
        0
    };
    loop {
        let free = kv.free();
        if want - have <= free {
            let grant = (want + extra).min(have.saturating_add(free));
            kv.used += grant - have;
            running[i].grant(grant, KV_BLOCK);
            return true;
        }
        let newest = (0..running.len())
            .rev()
            .find(|&j| j != i && running[j].kv_blocks > 0 && !running[j].ended());
        let victim = match newest {
            Some(j) if j > i => j,
            // `i` is the newest holder: it waits for the older ones.
            Some(_) => i,
            // Nobody else holds blocks, and `kv.holds(need)`: cannot happen, but never loop.
            None => {
                let e = kv.too_small(need);
                running[i].fail(e);
                return false;
            }
        };
        kv.used -= running[victim].kv_blocks;
        running[victim].preempt();
        stats.preemptions.fetch_add(1, Ordering::Relaxed);
        if victim == i {
            return false;
        }
    }
}

/// The worker's loop: intake, admission, one piece of prompt work, one batched decode step,
/// until every sender is gone and nothing is left to run.
fn schedule(
    pipeline: &Pipeline,
    rx: Receiver<Ready>,
    stats: &EngineStats,
    config: BatchConfig,
    hasher: MediaHasher,
) {
    let mut waiting: VecDeque<Ready> = VecDeque::new();
    // Both in admission order (by ticket).
    let mut preempted: VecDeque<Sequence<'_>> = VecDeque::new();
    let mut running: Vec<Sequence<'_>> = Vec::new();
    let mut encoder = EncoderCache::new(config.encoder_cache_bytes, hasher);
    let mut kv = KvBudget::new(pipeline, config.kv_cache_bytes);
    stats.kv_budget_bytes.store(
        kv.total.map_or(0, |t| t * kv.bytes_per_block),
        Ordering::Relaxed,
    );
    let chunk = config.max_batched_tokens.max(1);
    // As many tiles or frames per step as a prefill chunk has positions (a tile yields
    // (image_size / patch_size)^2 rows, and costs the vision tower about what a position costs
    // the decoder).
    let vision = &pipeline.model.config().vision;
    let tile_rows = (vision.image_size / vision.patch_size.max(1)).pow(2).max(1);
    let tiles = (chunk / tile_rows).max(1);
    let mut tickets = 0u64;
    let mut open = true;
    loop {
        if running.is_empty() && waiting.is_empty() && preempted.is_empty() {
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
            if let Some(seq) = preempted.front() {
                // Resumed only when its whole recomputation fits, so it is not preempted again
                // halfway; newer requests wait behind it.
                let positions = seq.prompt_len() + seq.generated_len();
                if KvBudget::blocks(positions) > kv.free() && !running.is_empty() {
                    break;
                }
                let mut seq = preempted.pop_front().expect("front");
                seq.parked = false;
                let at = running.partition_point(|r| r.ticket < seq.ticket);
                running.insert(at, seq);
                continue;
            }
            let Some(Ready {
                prepared,
                request,
                sink,
            }) = waiting.pop_front()
            else {
                break;
            };
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            let started = Sequence::new(
                pipeline,
                prepared,
                &request.sampling,
                request.logprobs,
                sink,
            );
            if let Some(mut seq) = started {
                tickets += 1;
                seq.ticket = tickets;
                if !kv.holds(seq.prompt_len() + 1) {
                    let e = kv.too_small(seq.prompt_len() + 1);
                    seq.fail(e);
                    continue;
                }
                running.push(seq);
            }
        }
        stats.running.store(running.len(), Ordering::SeqCst);
        // Prompt work for the oldest request that has some.
        if let Some(i) = running
            .iter()
            .position(|s| s.is_encoding() || s.is_prefilling())
        {
            if running[i].is_encoding() {
                let cache = (config.encoder_cache_bytes > 0)
                    .then_some((&mut encoder, &stats.encoder_cache));
                guarded(&mut running[i..=i], |_| true, |s| s[0].encode(tiles, cache));
            } else {
                let need = running[i].kv_need(chunk);
                if ensure(&mut running, i, need, &mut kv, stats) {
                    guarded(&mut running[i..=i], |_| true, |s| s[0].prefill(chunk));
                }
            }
        }
        for i in 0..running.len() {
            if running[i].is_decoding() && !running[i].parked {
                let need = running[i].kv_need(chunk);
                ensure(&mut running, i, need, &mut kv, stats);
            }
        }
        let rows = running.iter().filter(|s| s.is_decoding()).count();
        let t0 = Instant::now();
        guarded(
            &mut running,
            |s| s.is_decoding(),
            |seqs| decode_step(pipeline, seqs),
        );
        if rows > 0 {
            stats.decode_steps.fetch_add(1, Ordering::Relaxed);
            stats.decode_rows.fetch_add(rows as u64, Ordering::Relaxed);
            let nanos = t0.elapsed().as_nanos() as u64;
            stats.decode_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
        // Ended requests give their blocks back; preempted ones wait, in admission order.
        let mut kept = Vec::with_capacity(running.len());
        for seq in running.drain(..) {
            if seq.ended() {
                kv.used -= seq.kv_blocks;
            } else if seq.parked {
                let at = preempted.partition_point(|p| p.ticket < seq.ticket);
                preempted.insert(at, seq);
            } else {
                kept.push(seq);
            }
        }
        running = kept;
        kv.publish(stats);
        stats.running.store(running.len(), Ordering::SeqCst);
        stats.preempted.store(preempted.len(), Ordering::SeqCst);
    }
}
