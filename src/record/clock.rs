//! The record path's clock: raw ticks on the hot path, conversion to wall-clock nanoseconds on the drain side.
//!
//! * x86_64 with an invariant TSC (`constant_tsc` and `nonstop_tsc` in `/proc/cpuinfo`): `rdtsc`, ~7 ns, no
//!   syscall. The tick rate is measured against `CLOCK_MONOTONIC_RAW` over the whole life of the process
//!   (the longer the baseline, the smaller the error), off the hot path.
//! * aarch64: `cntvct_el0`, whose rate `cntfrq_el0` is exact.
//! * anything else, or an x86 without an invariant TSC: `clock_gettime(CLOCK_MONOTONIC)` (a vDSO call on
//!   Linux; ticks are nanoseconds).
//!
//! Device data (aclprof, MSPTI) is on the CLOCK_REALTIME scale in ns (`docs/ascend-api.md` §3.7),
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
pub(crate) fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CLOCK_MONOTONIC_RAW in ns.
pub(crate) fn monotonic_raw_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_RAW)
}

/// Reads the clock in raw ticks. The hot path: no syscall with a cycle counter, no lock, no allocation.
#[inline(always)]
pub(crate) fn now() -> u64 {
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
pub(crate) fn init() {
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
pub(crate) fn source_name() -> &'static str {
    match SOURCE.load(Ordering::Relaxed) {
        SRC_CYCLES if cfg!(target_arch = "aarch64") => "cntvct_el0",
        SRC_CYCLES => "tsc",
        _ => "clock_gettime(CLOCK_MONOTONIC)",
    }
}

/// Reads `other` bracketed by two tick reads and keeps the tightest of a few tries, so the pair's error is
/// the length of one `clock_gettime` call at worst.
fn sample_pair(other: fn() -> u64) -> (u64, u64) {
    tightest_pair(7, now, other)
}

/// `(bracket, other)` at one instant: `other` read between two reads of `bracket`, the tightest of `tries`
/// tries, with `bracket` taken at the middle of its two reads. A thread preempted between two reads (a loaded
/// machine, qemu-user) makes that try wide, and a wider try is never kept.
pub(crate) fn tightest_pair(
    tries: u32,
    mut bracket: impl FnMut() -> u64,
    mut other: impl FnMut() -> u64,
) -> (u64, u64) {
    let mut best = (u64::MAX, 0u64, 0u64);
    for _ in 0..tries.max(1) {
        let a = bracket();
        let o = other();
        let b = bracket();
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
    pub fn to_ns(self, tick: u64) -> u64 {
        let dt = tick as i128 - self.anchor_tick as i128;
        let ns = self.anchor_ns as i128 + dt * self.ns_per as i128 / self.ticks_per.max(1) as i128;
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

/// Takes a (tick, CLOCK_REALTIME) anchor now.
pub(crate) fn anchor_now() -> (u64, u64) {
    init();
    sample_pair(realtime_ns)
}

/// The current best tick rate as a ratio `(ticks, ns)`. With a measured rate, waits until the baseline is at
/// least `min_baseline_ms` long (export does this once per profile; the wait only matters for profiles that
/// start within a few ms of process start).
pub(crate) fn rate(min_baseline_ms: u64) -> (u64, u64) {
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
pub(crate) fn conversion(anchor: (u64, u64)) -> Conversion {
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

    /// Simulated clocks: one try is preempted between its reads (its bracket is wide and its `other` read
    /// late); the pair must come from the narrowest try and sit at the middle of its bracket.
    #[test]
    fn the_tightest_try_is_kept_and_a_preempted_one_never_is() {
        // Each try reads bracket, other, bracket. Try 0 is 10 wide, try 1 is preempted (1000 wide, other
        // read 900 in), try 2 is 2 wide: (bracket mid, other) of try 2.
        let brackets = [100u64, 110, 200, 1200, 1300, 1302];
        let others = [5_000u64, 6_000, 7_301];
        let (mut bi, mut oi) = (0, 0);
        let pair = tightest_pair(
            3,
            || {
                bi += 1;
                brackets[bi - 1]
            },
            || {
                oi += 1;
                others[oi - 1]
            },
        );
        assert_eq!(pair, (1301, 7_301));
        // A zero-width try wins over every later one.
        let brackets = [0u64, 10, 20, 30, 40, 40, 50, 51];
        let (mut bi, mut oi) = (0, 0);
        let pair = tightest_pair(
            4,
            || {
                bi += 1;
                brackets[bi - 1]
            },
            || {
                oi += 1;
                oi as u64
            },
        );
        assert_eq!(pair, (40, 3));
    }

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

    /// The anchor is a (tick, CLOCK_REALTIME) pair read together: each lies between reads of its own clock
    /// taken just before and just after it, and the conversion maps the anchor's tick to its realtime
    /// exactly. No tolerance: delays only widen the brackets. An NTP step of CLOCK_REALTIME inside the
    /// bracket is the one thing that could break it; `realtime_stepped` detects that and the test retries.
    #[test]
    fn the_anchor_lies_between_bracketing_reads_and_converts_to_itself() {
        init();
        let mut checked = false;
        for _ in 0..100 {
            let (m0, r0, t0) = (monotonic_raw_ns(), realtime_ns(), now());
            let anchor = anchor_now();
            let (t1, r1, m1) = (now(), realtime_ns(), monotonic_raw_ns());
            if realtime_stepped((m0, r0), (m1, r1)) {
                continue;
            }
            assert!(
                t0 <= anchor.0 && anchor.0 <= t1,
                "anchor tick {} outside [{t0}, {t1}] ({})",
                anchor.0,
                source_name()
            );
            assert!(
                r0 <= anchor.1 && anchor.1 <= r1,
                "anchor realtime {} outside [{r0}, {r1}]",
                anchor.1
            );
            assert_eq!(conversion(anchor).to_ns(anchor.0), anchor.1);
            checked = true;
            break;
        }
        assert!(checked, "CLOCK_REALTIME stepped during each of 100 tries");
    }

    /// Whether CLOCK_REALTIME was stepped between two (CLOCK_MONOTONIC_RAW, CLOCK_REALTIME) pairs: realtime
    /// advanced by more than monotonic did plus 1 ms, or went backwards. (Slewing changes the rate by at most
    /// 500 ppm, far below that.)
    fn realtime_stepped(a: (u64, u64), b: (u64, u64)) -> bool {
        let dm = b.0.saturating_sub(a.0);
        b.1 < a.1 || b.1 - a.1 > dm + 1_000_000
    }

    /// Ticks converted with the calibrated rate measure the same interval as CLOCK_MONOTONIC_RAW (the
    /// calibration's reference; immune to NTP steps): the converted length of an interval lies between the
    /// monotonic reads taken just inside and just outside it. Delays (preemption, a loaded machine) only widen
    /// the outer bracket, so the check has no timing bound; the only tolerance is a relative 1% for the rate's
    /// calibration error (in practice parts per million; a wrong rate or a swapped ratio is off by far more).
    /// The interval contains a 10 ms sleep, so it also measures at least its duration.
    #[test]
    fn converted_durations_lie_between_bracketing_monotonic_reads() {
        init();
        let c = conversion(anchor_now());
        for _ in 0..5 {
            let outer0 = monotonic_raw_ns();
            let t0 = now();
            let inner0 = monotonic_raw_ns();
            std::thread::sleep(std::time::Duration::from_millis(10));
            let inner1 = monotonic_raw_ns();
            let t1 = now();
            let outer1 = monotonic_raw_ns();
            let d = c.to_ns(t1) as i128 - c.to_ns(t0) as i128;
            let (lo, hi) = ((inner1 - inner0) as i128, (outer1 - outer0) as i128);
            assert!(
                d * 100 >= lo * 99 && d * 100 <= hi * 101,
                "{}: {d} ns of ticks for an interval of {lo}..{hi} ns of CLOCK_MONOTONIC_RAW",
                source_name()
            );
            assert!(
                d * 100 >= 10_000_000 * 99,
                "{}: a 10 ms sleep measured {d} ns",
                source_name()
            );
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
