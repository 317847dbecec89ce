//! The record path's clock: raw ticks on the hot path, conversion to wall-clock nanoseconds on the drain side.
//!
//! * x86_64 with an invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`): `rdtsc`, ~7 ns, no
//!   syscall. The tick rate is measured against `CLOCK_MONOTONIC_RAW` over the whole life of the process
//!   (the longer the baseline, the smaller the error), off the hot path.
//! * aarch64: `cntvct_el0`, whose rate `cntfrq_el0` is exact.
//! * anything else, or an x86 without an invariant TSC: `clock_gettime(CLOCK_MONOTONIC)` (a vDSO call on
//!   Linux; ticks are nanoseconds).
//!
//! Device data (aclprof, MSPTI) is on the CLOCK_REALTIME scale in ns (`shared/reference/ascend-api.md` §3.7),
//! so every profile takes an anchor pair (tick, CLOCK_REALTIME) at its start, and the exporter maps ticks
//! through it with the calibrated rate. All of that happens on the drain/export side.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

const SRC_UNSET: u8 = 0;
const SRC_MONO: u8 = 1;
const SRC_CYCLES: u8 = 2;

/// Which source `now()` reads. Chosen once by [`init`], before any profile starts.
static SOURCE: AtomicU8 = AtomicU8::new(SRC_UNSET);

/// The hardware cycle counter, if this build has one.
#[inline(always)]
fn cycles() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions; it is available on every x86_64 CPU.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: cntvct_el0 is readable from EL0 on Linux (the kernel enables it for the vDSO).
        unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
        Some(v)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// CLOCK_REALTIME in ns since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_MONOTONIC_RAW in ns.
pub fn monotonic_raw_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_RAW)
}

/// Reads the clock in raw ticks. The hot path: no syscall with a cycle counter, no lock, no allocation.
#[inline(always)]
pub fn now() -> u64 {
    // Relaxed: written once in `init`, before the first profile can start (STATE's Release/Acquire orders it
    // for the starting thread; any thread reading a stale value would only use the vDSO fallback).
    if SOURCE.load(Ordering::Relaxed) == SRC_CYCLES {
        if let Some(c) = cycles() {
            return c;
        }
    }
    clock_ns(libc::CLOCK_MONOTONIC)
}

#[cfg(not(target_arch = "aarch64"))]
fn cpu_has_invariant_tsc() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return false;
        };
        let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        has("constant_tsc") && has("nonstop_tsc")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "aarch64")]
fn counter_frequency() -> Option<u64> {
    let f: u64;
    // SAFETY: cntfrq_el0 is readable from EL0.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    (f != 0).then_some(f)
}

/// The first (tick, CLOCK_MONOTONIC_RAW) pair, the start of the calibration baseline.
struct Base {
    tick: u64,
    mono_ns: u64,
    /// Exact rate when the hardware tells it (aarch64, or ns ticks).
    exact_hz: Option<u64>,
}

static BASE: OnceLock<Base> = OnceLock::new();

/// Chooses the source and takes the calibration base. Idempotent; call before the first profile.
pub fn init() {
    BASE.get_or_init(|| {
        #[cfg(target_arch = "aarch64")]
        let (src, exact) = match counter_frequency() {
            Some(f) => (SRC_CYCLES, Some(f)),
            None => (SRC_MONO, Some(1_000_000_000)),
        };
        #[cfg(not(target_arch = "aarch64"))]
        let (src, exact) = if cycles().is_some() && cpu_has_invariant_tsc() {
            (SRC_CYCLES, None)
        } else {
            (SRC_MONO, Some(1_000_000_000))
        };
        if std::env::var_os("NPUPROF_CLOCK").is_some_and(|v| v == "monotonic") {
            SOURCE.store(SRC_MONO, Ordering::Relaxed);
        } else {
            SOURCE.store(src, Ordering::Relaxed);
        }
        let exact = if SOURCE.load(Ordering::Relaxed) == SRC_MONO {
            Some(1_000_000_000)
        } else {
            exact
        };
        let (tick, mono_ns) = sample_pair(monotonic_raw_ns);
        Base {
            tick,
            mono_ns,
            exact_hz: exact,
        }
    });
}

/// Name of the source in use, for the metadata.
pub fn source_name() -> &'static str {
    match SOURCE.load(Ordering::Relaxed) {
        SRC_CYCLES if cfg!(target_arch = "aarch64") => "cntvct_el0",
        SRC_CYCLES => "tsc",
        _ => "clock_gettime(CLOCK_MONOTONIC)",
    }
}

/// Reads `other` bracketed by two tick reads and keeps the tightest of a few tries, so the pair's error is
/// the length of one `clock_gettime` call at worst.
fn sample_pair(other: fn() -> u64) -> (u64, u64) {
    let mut best = (u64::MAX, 0u64, 0u64);
    for _ in 0..7 {
        let a = now();
        let o = other();
        let b = now();
        let width = b.wrapping_sub(a);
        if width < best.0 {
            best = (width, a + width / 2, o);
        }
    }
    (best.1, best.2)
}

/// Maps ticks to CLOCK_REALTIME ns: `realtime = anchor_ns + (tick - anchor_tick) * ns_per / ticks_per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversion {
    pub anchor_tick: u64,
    pub anchor_ns: u64,
    pub ticks_per: u64,
    pub ns_per: u64,
}

impl Conversion {
    pub fn to_ns(&self, tick: u64) -> u64 {
        let dt = tick as i128 - self.anchor_tick as i128;
        let ns = self.anchor_ns as i128 + dt * self.ns_per as i128 / self.ticks_per.max(1) as i128;
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

/// Takes a (tick, CLOCK_REALTIME) anchor now.
pub fn anchor_now() -> (u64, u64) {
    init();
    sample_pair(realtime_ns)
}

/// The current best tick rate as a ratio `(ticks, ns)`. With a measured rate, waits until the baseline is at
/// least `min_baseline_ms` long (export does this once per profile; the wait only matters for profiles that
/// start within a few ms of process start).
pub fn rate(min_baseline_ms: u64) -> (u64, u64) {
    init();
    let base = BASE.get().expect("init() sets BASE");
    if let Some(hz) = base.exact_hz {
        return (hz, 1_000_000_000);
    }
    loop {
        let (tick, mono) = sample_pair(monotonic_raw_ns);
        let dns = mono.saturating_sub(base.mono_ns);
        if dns >= min_baseline_ms * 1_000_000 {
            return (tick.saturating_sub(base.tick).max(1), dns.max(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(
            min_baseline_ms - dns / 1_000_000,
        ));
    }
}

/// A conversion anchored at `(anchor_tick, anchor_ns)` with the current best rate.
pub fn conversion(anchor: (u64, u64)) -> Conversion {
    let (ticks_per, ns_per) = rate(20);
    Conversion {
        anchor_tick: anchor.0,
        anchor_ns: anchor.1,
        ticks_per,
        ns_per,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_monotonic_on_one_thread() {
        init();
        let mut last = now();
        for _ in 0..100_000 {
            let t = now();
            assert!(t >= last);
            last = t;
        }
    }

    #[test]
    fn conversion_matches_clock_gettime_realtime() {
        init();
        let anchor = anchor_now();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let c = conversion(anchor);
        // A tick taken between two realtime reads must convert to a time between them (with a small margin
        // for the calibration error over this short baseline: 50 us).
        for _ in 0..5 {
            let before = realtime_ns();
            let t = now();
            let after = realtime_ns();
            let ns = c.to_ns(t);
            assert!(
                ns + 50_000 >= before && ns <= after + 50_000,
                "{before} <= {ns} <= {after} ({})",
                source_name()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn the_record_path_reads_the_architectures_counter() {
        init();
        let name = source_name();
        #[cfg(target_arch = "aarch64")]
        assert_eq!(name, "cntvct_el0");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            name,
            if cpu_has_invariant_tsc() {
                "tsc"
            } else {
                "clock_gettime(CLOCK_MONOTONIC)"
            }
        );
        // Ticks advance at the rate the conversion uses: 10 ms of sleep is 10 ms (+-2 ms) of ticks.
        let (tp, np) = rate(20);
        let t0 = now();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let dt_ns = (now() - t0) as u128 * np as u128 / tp as u128;
        assert!(
            (9_000_000..14_000_000).contains(&dt_ns),
            "{name}: {dt_ns} ns for a 10 ms sleep"
        );
    }

    #[test]
    fn conversion_arithmetic() {
        let c = Conversion {
            anchor_tick: 1000,
            anchor_ns: 1_700_000_000_000_000_000,
            ticks_per: 3,
            ns_per: 1,
        };
        assert_eq!(c.to_ns(1000), 1_700_000_000_000_000_000);
        assert_eq!(c.to_ns(1300), 1_700_000_000_000_000_100);
        assert_eq!(c.to_ns(700), 1_700_000_000_000_000_000 - 100);
    }
}
