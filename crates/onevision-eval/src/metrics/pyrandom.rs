//! Python's `random` module (CPython 3.x `_randommodule.c` + `random.py`), bit for bit: the
//! parsers lmms-eval borrows from MMMU fall back to `random.choice(all_choices)` when no
//! answer is found, after the evaluator's `random.seed(0)` (`--seed 0,1234,1234,1234`).
//! Reproducing the generator makes those fallbacks deterministic and equal to lmms-eval's.

/// MT19937 seeded as `random.seed(n)` seeds it (init_by_array over n's 32-bit words).
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    /// `random.seed(n)` for an integer n (`abs(n)` is used, as CPython does).
    pub fn seed(n: i64) -> Self {
        let mut a = n.unsigned_abs();
        let mut key = vec![];
        while a > 0 {
            key.push(a as u32);
            a >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        let mut r = PyRandom {
            mt: [0; 624],
            index: 624,
        };
        r.init_by_array(&key);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(self.mt[i - 1] ^ (self.mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        self.index = 624;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        let n = 624;
        for _ in 0..n.max(key.len()) {
            self.mt[i] = (self.mt[i]
                ^ (self.mt[i - 1] ^ (self.mt[i - 1] >> 30)).wrapping_mul(1_664_525))
            .wrapping_add(key[j])
            .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= n {
                self.mt[0] = self.mt[n - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..n - 1 {
            self.mt[i] = (self.mt[i]
                ^ (self.mt[i - 1] ^ (self.mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
            .wrapping_sub(i as u32);
            i += 1;
            if i >= n {
                self.mt[0] = self.mt[n - 1];
                i = 1;
            }
        }
        self.mt[0] = 0x8000_0000;
        self.index = 624;
    }

    /// `genrand_uint32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.random()`: 53 random bits in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `random.getrandbits(k)` for 1 <= k <= 32.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        assert!((1..=32).contains(&k));
        self.next_u32() >> (32 - k)
    }

    /// `Random._randbelow_with_getrandbits(n)`: uniform in 0..n by rejection (n >= 1).
    pub fn randbelow(&mut self, n: usize) -> usize {
        assert!(n >= 1 && n <= u32::MAX as usize);
        let k = usize::BITS - n.leading_zeros(); // n.bit_length()
        let mut r = self.getrandbits(k) as usize;
        while r >= n {
            r = self.getrandbits(k) as usize;
        }
        r
    }

    /// `random.choice(seq)` (None for an empty sequence, where Python raises IndexError).
    pub fn choice<'a, T>(&mut self, seq: &'a [T]) -> Option<&'a T> {
        if seq.is_empty() {
            return None;
        }
        Some(&seq[self.randbelow(seq.len())])
    }

    /// `random.randint(a, b)`: a + randbelow(b - a + 1).
    pub fn randint(&mut self, a: i64, b: i64) -> i64 {
        a + self.randbelow((b - a + 1) as usize) as i64
    }

    /// `random.shuffle(x)`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by CPython 3.11:
    //   random.seed(0); [random.random() for _ in range(2)]
    //   random.seed(0); [random.choice("ABCD") for _ in range(10)]
    //   random.seed(2680); random.getrandbits(32); random.seed(2**40 + 5); random.randint(0, 9)
    const PY_SEED0_RANDOM: [f64; 2] = [0.8444218515250481, 0.7579544029403025];
    const PY_SEED0_CHOICES: &str = "DDACDDCDCB";
    const PY_SEED2680_BITS: u32 = 2245480085;
    const PY_BIG_SEED_RANDINT: i64 = 8;
    const PY_SEED1234_SHUFFLE: [u32; 10] = [2, 8, 3, 5, 6, 4, 9, 0, 1, 7];

    #[test]
    fn equals_cpython() {
        let mut r = PyRandom::seed(0);
        assert_eq!(r.random(), PY_SEED0_RANDOM[0]);
        assert_eq!(r.random(), PY_SEED0_RANDOM[1]);
        let mut r = PyRandom::seed(0);
        let letters = ['A', 'B', 'C', 'D'];
        let got: String = (0..10).map(|_| *r.choice(&letters).unwrap()).collect();
        assert_eq!(got, PY_SEED0_CHOICES);
        assert_eq!(PyRandom::seed(2680).getrandbits(32), PY_SEED2680_BITS);
        assert_eq!(
            PyRandom::seed((1i64 << 40) + 5).randint(0, 9),
            PY_BIG_SEED_RANDINT
        );
        let mut v: Vec<u32> = (0..10).collect();
        PyRandom::seed(1234).shuffle(&mut v);
        assert_eq!(v, PY_SEED1234_SHUFFLE);
    }
}
