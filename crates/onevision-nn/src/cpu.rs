//! Which CPU kernels run: the AVX-512 or the AVX2 fast paths, or the portable reference (candle's
//! ops, whose matmul is `gemm`'s own run-time dispatch).
//!
//! The level is detected once at run time (never `-C target-cpu`), and can be forced lower so that
//! every level is testable on the machine that has the highest one:
//! `ONEVISION_CPU_KERNELS=reference|avx2|avx512` in the environment (read once, at the first
//! kernel choice), or [`force`] (the CLI's `--cpu-kernels`). A level above what the CPU has is an
//! error, never an illegal instruction. The choice is per process: kernels pick their path when
//! called, so a level forced while products are running takes effect at the next call.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::Error;

/// A level of CPU kernels, ordered: each level's CPUs run the levels below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelLevel {
    /// candle's ops (portable; its matmul dispatches SIMD on its own).
    Reference,
    /// AVX2 + FMA + F16C: Intel since Haswell (2013), AMD since Zen 1.
    Avx2,
    /// AVX-512 F + BW (+ BF16 for the bf16 dot products, where present): Intel server parts since
    /// Skylake-SP, AMD since Zen 4.
    Avx512,
}

impl KernelLevel {
    /// Every level, lowest first.
    pub const ALL: [KernelLevel; 3] = [Self::Reference, Self::Avx2, Self::Avx512];

    /// The name used by `--cpu-kernels` and `ONEVISION_CPU_KERNELS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

impl fmt::Display for KernelLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KernelLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownKernelLevel(s.to_string()))
    }
}

/// The highest level this CPU runs.
pub fn detected() -> KernelLevel {
    static DETECTED: OnceLock<KernelLevel> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            if avx2 && has!("avx512f") && has!("avx512bw") {
                return KernelLevel::Avx512;
            }
            if avx2 {
                return KernelLevel::Avx2;
            }
        }
        KernelLevel::Reference
    })
}

/// Whether the CPU has AVX512-BF16 (`vdpbf16ps`), used by the AVX-512 level's bf16 products.
pub fn detected_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        detected() == KernelLevel::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

const UNSET: u8 = u8::MAX;
static FORCED: AtomicU8 = AtomicU8::new(UNSET);

/// The level the kernels use now: the forced one, else `ONEVISION_CPU_KERNELS`, else
/// [`detected`]. An unusable environment value is reported once on stderr and ignored (the
/// CLI checks it up front with [`from_env`] and stops with the error instead).
pub fn level() -> KernelLevel {
    if let Some(l) = KernelLevel::from_u8(FORCED.load(Ordering::Relaxed)) {
        return l;
    }
    static FROM_ENV: OnceLock<KernelLevel> = OnceLock::new();
    *FROM_ENV.get_or_init(|| match from_env() {
        Ok(Some(l)) => l,
        Ok(None) => detected(),
        Err(e) => {
            eprintln!("warning: {e}; using {}", detected());
            detected()
        }
    })
}

/// The level `ONEVISION_CPU_KERNELS` asks for, checked against this CPU (`None` when unset or
/// empty).
pub fn from_env() -> Result<Option<KernelLevel>, Error> {
    match std::env::var("ONEVISION_CPU_KERNELS") {
        Ok(v) if !v.trim().is_empty() => {
            let l = v
                .parse()
                .and_then(check)
                .map_err(|e| Error::KernelLevelEnv(Box::new(e)))?;
            Ok(Some(l))
        }
        _ => Ok(None),
    }
}

fn check(l: KernelLevel) -> Result<KernelLevel, Error> {
    if l > detected() {
        return Err(Error::KernelLevelUnavailable {
            asked: l.to_string(),
            detected: detected().to_string(),
        });
    }
    Ok(l)
}

/// Forces the kernels to `l` from now on (for the whole process). Fails when the CPU lacks it.
pub fn force(l: KernelLevel) -> Result<(), Error> {
    FORCED.store(check(l)? as u8, Ordering::Relaxed);
    Ok(())
}

/// The levels this CPU can run, lowest first (the reference always).
pub fn available() -> Vec<KernelLevel> {
    KernelLevel::ALL
        .into_iter()
        .filter(|l| *l <= detected())
        .collect()
}

/// Runs `f` once at each level this CPU has, lowest first, with the level forced for the
/// process, and restores the previous choice. Tests that force levels hold one lock, so they do
/// not change each other's level (and tests whose expectations depend on the level use this).
#[cfg(test)]
pub(crate) fn for_each_level(mut f: impl FnMut(KernelLevel)) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = FORCED.load(Ordering::Relaxed);
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.store(self.0, Ordering::Relaxed);
        }
    }
    let _restore = Restore(before);
    for l in available() {
        force(l).expect("an available level");
        f(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_say_what_is_expected() {
        for l in KernelLevel::ALL {
            assert_eq!(l.name().parse::<KernelLevel>().unwrap(), l);
        }
        assert_eq!(" AVX2 ".parse::<KernelLevel>().unwrap(), KernelLevel::Avx2);
        let e = "sse9".parse::<KernelLevel>().unwrap_err().to_string();
        assert!(
            e.contains("sse9") && e.contains("reference, avx2, avx512"),
            "{e}"
        );
    }

    #[test]
    fn a_level_above_the_cpu_is_refused() {
        assert!(check(detected()).is_ok());
        assert!(check(KernelLevel::Reference).is_ok());
        if detected() < KernelLevel::Avx512 {
            let e = check(KernelLevel::Avx512).unwrap_err().to_string();
            assert!(e.contains("not available"), "{e}");
        }
        assert_eq!(available().first(), Some(&KernelLevel::Reference));
        assert_eq!(available().last(), Some(&detected()));
    }
}
