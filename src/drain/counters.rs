//! Sampling a profile's counters (`crate::profile::Counters`) for the spool's COUNTERS and STOP frames, and
//! its configuration for the START frame.

use super::Active;
use crate::profile::{counter_keys, KIND_KEYS};
use crate::record::{self, clock, Ring};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// CPU time of the calling thread (drain side only; a system call on most kernels).
pub(super) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How often the drop counters reach the spool while a profile records.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// The effective configuration as environment variables (their own spelling and a value each parses to
/// the same setting), for the START frame: `npuprof recover` rebuilds it with `Config::from_lookup`.
pub(crate) fn config_vars(c: &crate::config::Config) -> Vec<(&'static str, String)> {
    c.env_vars()
}

impl Active {
    /// Reads the rings' drop counters into `counters` (this profile's share: minus the baseline at start).
    pub(super) fn sample_counters(&mut self, rings: &[&'static Ring]) {
        // One read of each counter: the totals by reason are sums of the same by-kind values, so the
        // two views agree exactly however the producers race this sample.
        let (mut full, mut unbalanced) = (0u64, 0u64);
        let mut by_kind = self.drain_dropped_by_kind;
        for (i, r) in rings.iter().enumerate() {
            let base = self.base_dropped_by_kind.get(i).copied().unwrap_or([0; 8]);
            for (k, d) in r.dropped_by_kind().into_iter().enumerate() {
                let d = d.saturating_sub(base[k]);
                full += d;
                by_kind[k] += d;
            }
            unbalanced += r
                .unbalanced()
                .saturating_sub(self.base_unbalanced.get(i).copied().unwrap_or(0));
        }
        let mut orphans = 0u64;
        for (k, d) in by_kind.iter_mut().enumerate() {
            let o = record::ORPHAN_DROPS_BY_KIND[k]
                .load(Ordering::Relaxed)
                .saturating_sub(self.base_orphans_by_kind[k]);
            orphans += o;
            *d += o;
        }
        self.counters.ring_full = full;
        self.counters.unbalanced_pops = unbalanced;
        self.counters.after_thread_exit = orphans;
        by_kind[0] += by_kind[6] + by_kind[7];
        (by_kind[6], by_kind[7]) = (0, 0);
        self.counters.dropped_by_kind = by_kind;
    }

    /// About every second, and at every flush: the counters so far, as a COUNTERS frame (what `npuprof
    /// recover` reports if the process dies before its STOP frame).
    pub(super) fn periodic_counters(&mut self, rings: &[&'static Ring]) -> std::io::Result<()> {
        if self.w.is_none() || (!self.counters_due && self.counters_at.elapsed() < COUNTERS_EVERY) {
            return Ok(());
        }
        self.counters_due = false;
        self.counters_at = std::time::Instant::now();
        self.sample_counters(rings);
        let kv = self.counters_kv(clock::now());
        match self.w.as_mut() {
            Some(w) => w.counters(&kv).and_then(|_| w.flush()),
            None => Ok(()),
        }
    }

    /// The counters as a COUNTERS (or STOP) frame, taken at `tick`.
    pub(super) fn counters_kv(&self, tick: u64) -> BTreeMap<String, String> {
        use counter_keys::*;
        let c = &self.counters;
        let mut kv = BTreeMap::new();
        for (k, v) in [
            (TICK, tick),
            (RECORDED, c.recorded),
            (RING_FULL, c.ring_full),
            (OUTSIDE_WINDOW, c.outside_window),
            (AFTER_THREAD_EXIT, c.after_thread_exit),
            (UNBALANCED_POPS, c.unbalanced_pops),
            (OVER_DISK_CAP, c.over_disk_cap),
            (SPOOL_BYTES, c.spool_bytes),
        ] {
            kv.insert(k.to_string(), v.to_string());
        }
        for (k, name) in KIND_KEYS {
            kv.insert(
                format!("dropped_{name}"),
                c.dropped_by_kind[k as usize].to_string(),
            );
        }
        kv
    }
}
