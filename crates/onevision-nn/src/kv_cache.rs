//! The key/value cache of a decoder, passed explicitly to every forward call.
//!
//! Each layer's keys and values live in a buffer with spare room that new positions are
//! written into in place; the tensors handed to attention are views of the filled part. (The
//! first version concatenated, copying the whole cache at every decode step.) The cache is an
//! inference structure: training runs the full sequence without one.

use candle_core::Tensor;

/// One layer's buffers: (b, kvh, capacity, d) each, the first `len` positions filled.
#[derive(Debug)]
struct Layer {
    k: Tensor,
    v: Tensor,
    len: usize,
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<Layer>>,
    /// Positions the owner granted (a scheduler's block budget); buffers grow to exactly this
    /// when it covers what is needed, else by doubling.
    reserved: usize,
}

/// Buffers start with room for this many positions beyond the prompt, then double.
const MIN_CAPACITY: usize = 256;

impl Clone for KvCache {
    /// A deep copy: the buffers are written in place, so sharing them would let two caches
    /// overwrite each other.
    fn clone(&self) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref().map(|l| Layer {
                    k: l.k.copy().expect("copying a CPU/GPU tensor"),
                    v: l.v.copy().expect("copying a CPU/GPU tensor"),
                    len: l.len,
                })
            })
            .collect();
        Self {
            layers,
            reserved: self.reserved,
        }
    }
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            reserved: 0,
        }
    }

    /// Room for `positions` in all: the next buffer growth allocates exactly that much (when it
    /// covers the positions being appended), so a scheduler that grants memory in blocks
    /// knows what each cache holds. 0 (the default) grows by doubling.
    pub fn reserve(&mut self, positions: usize) {
        self.reserved = positions;
    }

    /// Positions the buffers have room for (0 before the first append).
    pub fn capacity(&self) -> usize {
        match self.layers.first() {
            Some(Some(l)) => l.k.dims()[2],
            _ => 0,
        }
    }

    /// Number of cached positions (0 when empty).
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some(l)) => l.len,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends this step's keys and values to `layer` and returns all of them so far.
    ///
    /// # Shapes
    /// `k`, `v`: (b, kvh, t, d) -> (b, kvh, len + t, d) each
    pub fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, kvh, t, d) = k.dims4()?;
        let needed = self.layers[layer].as_ref().map_or(0, |l| l.len) + t;
        let grow = match &self.layers[layer] {
            None => true,
            Some(l) => needed > l.k.dims()[2],
        };
        if grow {
            let capacity = if self.reserved >= needed {
                self.reserved
            } else {
                (needed + MIN_CAPACITY).next_power_of_two()
            };
            let new_k = Tensor::zeros((b, kvh, capacity, d), k.dtype(), k.device())?;
            let new_v = Tensor::zeros((b, kvh, capacity, d), v.dtype(), v.device())?;
            let len = match &self.layers[layer] {
                None => 0,
                Some(old) => {
                    if old.len > 0 {
                        new_k.slice_set(&old.k.narrow(2, 0, old.len)?.contiguous()?, 2, 0)?;
                        new_v.slice_set(&old.v.narrow(2, 0, old.len)?.contiguous()?, 2, 0)?;
                    }
                    old.len
                }
            };
            self.layers[layer] = Some(Layer {
                k: new_k,
                v: new_v,
                len,
            });
        }
        let l = self.layers[layer].as_mut().expect("allocated above");
        l.k.slice_set(&k.contiguous()?, 2, l.len)?;
        l.v.slice_set(&v.contiguous()?, 2, l.len)?;
        l.len += t;
        Ok((l.k.narrow(2, 0, l.len)?, l.v.narrow(2, 0, l.len)?))
    }

    /// Forgets every cached position and frees the buffers (and the reservation).
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.reserved = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn appends_in_place_across_growth_and_clones_deeply() {
        let dev = Device::Cpu;
        let mut c = KvCache::new(1);
        let mut all = vec![];
        for (step, t) in [300usize, 1, 1, 250, 3].into_iter().enumerate() {
            let k = Tensor::arange(0f32, (2 * t * 4) as f32, &dev)
                .unwrap()
                .affine(1.0, step as f64 * 1000.0)
                .unwrap()
                .reshape((1, 2, t, 4))
                .unwrap();
            all.push(k.clone());
            let (ck, cv) = c.append(0, &k, &k).unwrap();
            let want = Tensor::cat(&all, 2).unwrap();
            for got in [ck, cv] {
                let diff = (got - &want).unwrap().abs().unwrap().sum_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "step {step}");
            }
        }
        assert_eq!(c.len(), 555);
        let snapshot = c.clone();
        let k = Tensor::ones((1, 2, 1, 4), candle_core::DType::F32, &dev).unwrap();
        c.append(0, &k, &k).unwrap();
        assert_eq!((c.len(), snapshot.len()), (556, 555));
        let (sk, _) = snapshot.layers[0]
            .as_ref()
            .map(|l| (l.k.i((.., .., 555, ..)).unwrap(), ()))
            .unwrap();
        assert_eq!(
            sk.sum_all().unwrap().to_scalar::<f32>().unwrap(),
            0.0,
            "the clone was written to"
        );
    }

    #[test]
    fn a_reservation_sizes_the_buffers_exactly() {
        let dev = Device::Cpu;
        let mut c = KvCache::new(2);
        let k = |t: usize| Tensor::ones((1, 2, t, 4), candle_core::DType::F32, &dev).unwrap();
        c.reserve(48);
        for layer in 0..2 {
            c.append(layer, &k(40), &k(40)).unwrap();
        }
        assert_eq!((c.len(), c.capacity()), (40, 48));
        c.reserve(64);
        for layer in 0..2 {
            c.append(layer, &k(8), &k(8)).unwrap();
        }
        assert_eq!((c.len(), c.capacity()), (48, 48), "no growth while it fits");
        for layer in 0..2 {
            c.append(layer, &k(1), &k(1)).unwrap();
        }
        assert_eq!((c.len(), c.capacity()), (49, 64));
        // Past the reservation it grows by doubling, as without one.
        for layer in 0..2 {
            c.append(layer, &k(100), &k(100)).unwrap();
        }
        assert_eq!((c.len(), c.capacity()), (149, 512));
        c.clear();
        assert_eq!((c.len(), c.capacity()), (0, 0));
    }
}
