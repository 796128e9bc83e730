//! The vision encoder's output of recent media, reused: the same image or video asked about
//! again skips the vision tower, the projector and the packing.
//!
//! A medium is keyed by its processed pixels (values and shape) and what packing reads besides
//! them (an image's original size and layout), hashed with SipHash under keys drawn at random per
//! cache, so a request cannot be crafted to collide with another's media. The processor's
//! settings are fixed for a pipeline, so equal pixels mean an equal medium. Entries are the
//! packed feature rows (n, H), evicted least recently used past a byte budget.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Tensor;
use onevision_processor::{ProcessedImage, ProcessedVideo};

/// Counters a server exports (vLLM's `encoder_cache` hit and query counts).
#[derive(Debug, Default)]
pub struct EncoderCacheStats {
    /// Media looked up.
    pub queries: AtomicU64,
    /// Media found (their encoding skipped).
    pub hits: AtomicU64,
}

/// The cache key of one medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaKey(u64, u64);

struct Entry {
    rows: Tensor,
    bytes: usize,
    last_use: u64,
}

/// Packed feature rows of recent media, within `budget` bytes.
pub struct EncoderCache {
    budget: usize,
    used: usize,
    clock: u64,
    entries: HashMap<MediaKey, Entry>,
    hasher: MediaHasher,
}

/// Computes media keys under random hash keys; clones share them, so the keys can be computed
/// on another thread than the one holding the cache (a medium's pixels take a while to hash).
#[derive(Clone)]
pub struct MediaHasher {
    keys: (RandomState, RandomState),
}

impl Default for MediaHasher {
    fn default() -> Self {
        Self {
            keys: (RandomState::new(), RandomState::new()),
        }
    }
}

impl MediaHasher {
    fn key(&self, feed: impl Fn(&mut dyn Hasher)) -> MediaKey {
        let mut a = self.keys.0.build_hasher();
        let mut b = self.keys.1.build_hasher();
        feed(&mut a);
        feed(&mut b);
        MediaKey(a.finish(), b.finish())
    }

    pub fn image_key(&self, img: &ProcessedImage) -> MediaKey {
        self.key(|h| {
            let mut h = HashInto(h);
            "image".hash(&mut h);
            img.pixels.shape.hash(&mut h);
            img.size.hash(&mut h);
            format!("{:?}", img.layout).hash(&mut h);
            h.write(f32_bytes(&img.pixels.data));
        })
    }

    pub fn video_key(&self, vid: &ProcessedVideo) -> MediaKey {
        self.key(|h| {
            let mut h = HashInto(h);
            "video".hash(&mut h);
            vid.pixels.shape.hash(&mut h);
            h.write(f32_bytes(&vid.pixels.data));
        })
    }
}

impl EncoderCache {
    /// A cache of at most `budget` bytes of feature rows (0: nothing is kept), keyed by
    /// `hasher`'s keys.
    pub fn new(budget: usize, hasher: MediaHasher) -> Self {
        Self {
            budget,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            hasher,
        }
    }

    /// The hasher whose keys this cache's entries are under.
    pub fn hasher(&self) -> &MediaHasher {
        &self.hasher
    }
    /// The rows of `key`, if cached (counted in `stats`).
    pub fn get(&mut self, key: MediaKey, stats: &EncoderCacheStats) -> Option<Tensor> {
        stats.queries.fetch_add(1, Ordering::Relaxed);
        self.clock += 1;
        let entry = self.entries.get_mut(&key)?;
        entry.last_use = self.clock;
        stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.rows.clone())
    }

    /// Keeps `rows` for `key`, evicting the least recently used entries past the budget (rows
    /// larger than the whole budget are not kept).
    pub fn put(&mut self, key: MediaKey, rows: &Tensor) {
        let bytes = rows.elem_count() * rows.dtype().size_in_bytes();
        if bytes > self.budget || self.entries.contains_key(&key) {
            return;
        }
        while self.used + bytes > self.budget {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_use) else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= e.bytes;
            }
        }
        self.clock += 1;
        self.used += bytes;
        self.entries.insert(
            key,
            Entry {
                rows: rows.clone(),
                bytes,
                last_use: self.clock,
            },
        );
    }

    /// Bytes of rows held.
    pub fn used(&self) -> usize {
        self.used
    }
}

/// The bytes of `v` (f32 has no padding and every byte pattern is a valid u8).
fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: the slice covers exactly the memory of `v`, which outlives it.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// `Hash::hash` needs a sized hasher; this forwards to a `dyn Hasher`.
struct HashInto<'a>(&'a mut dyn Hasher);

impl Hasher for HashInto<'_> {
    fn finish(&self) -> u64 {
        self.0.finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn rows(n: usize) -> Tensor {
        Tensor::zeros((n, 4), DType::F32, &Device::Cpu).unwrap()
    }

    /// Hits and misses are counted, the least recently used entry goes first, and an entry
    /// larger than the budget is not kept.
    #[test]
    fn keeps_recent_rows_within_the_budget() {
        let stats = EncoderCacheStats::default();
        let mut c = EncoderCache::new(3 * 16, MediaHasher::default()); // three rows of 4 f32
        let k = |i: u64| MediaKey(i, i);
        c.put(k(1), &rows(1));
        c.put(k(2), &rows(1));
        c.put(k(3), &rows(1));
        assert!(c.get(k(1), &stats).is_some()); // 1 is now the most recent
        c.put(k(4), &rows(1)); // evicts 2
        assert!(c.get(k(2), &stats).is_none());
        assert!(c.get(k(3), &stats).is_some());
        assert!(c.get(k(4), &stats).is_some());
        c.put(k(5), &rows(4)); // over the whole budget
        assert!(c.get(k(5), &stats).is_none());
        assert_eq!(c.used(), 3 * 16);
        assert_eq!(stats.queries.load(Ordering::Relaxed), 5);
        assert_eq!(stats.hits.load(Ordering::Relaxed), 3);
    }
}
