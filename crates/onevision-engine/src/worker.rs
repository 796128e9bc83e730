//! The engine worker: one thread that owns the model and runs requests one at a time from a
//! bounded queue, so the async runtime of a server never runs the model. Each request carries
//! its own event sink; a sink that returns `false` (its receiver is gone) cancels the request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::generate::run_request;
use crate::pipeline::Pipeline;
use crate::request::{Event, GenRequest};

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
    /// 1 while a request runs.
    pub running: AtomicUsize,
}

/// A cloneable handle to the worker.
#[derive(Clone)]
pub struct Engine {
    tx: SyncSender<Job>,
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
    /// Starts the worker thread with a queue of `capacity` waiting requests.
    pub fn start(pipeline: Pipeline, capacity: usize) -> EngineThread {
        let (tx, rx) = sync_channel::<Job>(capacity.max(1));
        let stats = Arc::new(EngineStats::default());
        let info = Arc::new(PipelineInfo {
            context_length: pipeline.model.config().text.max_position_embeddings,
        });
        let worker_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("onevision-engine".into())
            .spawn(move || {
                while let Ok(mut job) = rx.recv() {
                    worker_stats.queued.fetch_sub(1, Ordering::SeqCst);
                    worker_stats.running.store(1, Ordering::SeqCst);
                    run_request(&pipeline, &job.request, &mut *job.sink);
                    worker_stats.running.store(0, Ordering::SeqCst);
                }
            })
            .expect("spawning the engine thread");
        let engine = Engine {
            tx,
            capacity: capacity.max(1),
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
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(Job { request, sink }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull {
                        capacity: self.capacity,
                    },
                    TrySendError::Disconnected(_) => SubmitError::ShuttingDown,
                })
            }
        }
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
            let (tx, _) = sync_channel(1);
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
