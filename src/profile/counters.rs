//! The counters of a profile (drops, records, spool size), as `profiler_metadata.json` and the spool's
//! COUNTERS and STOP frames carry them.

use crate::record;
use std::collections::BTreeMap;

/// Counts reported in `profiler_metadata.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records written to the spool.
    pub recorded: u64,
    /// Dropped because a thread's ring was full.
    pub ring_full: u64,
    /// Drained but outside [start, stop] (raced with start/stop).
    pub outside_window: u64,
    /// Made by a thread after its ring was retired (thread exit) or when no ring could be allocated.
    pub after_thread_exit: u64,
    pub unbalanced_pops: u64,
    /// Drained after the spool reached its share of NPUPROF_MAX_DISK_MB (not written).
    pub over_disk_cap: u64,
    /// The four drops above (ring_full, outside_window, after_thread_exit, over_disk_cap) by record kind
    /// (index `record::kind::*`; see [`KIND_KEYS`]).
    pub dropped_by_kind: [u64; 8],
    pub spool_bytes: u64,
    /// CPU time the drain thread spent on this profile (start to stop), for the throughput figures.
    pub drain_cpu_ns: u64,
}

/// The counter keys of COUNTERS and STOP frames.
pub mod counter_keys {
    pub const TICK: &str = "tick";
    pub const RECORDED: &str = "recorded";
    pub const RING_FULL: &str = "ring_full";
    pub const OUTSIDE_WINDOW: &str = "outside_window";
    pub const AFTER_THREAD_EXIT: &str = "after_thread_exit";
    pub const UNBALANCED_POPS: &str = "unbalanced_pops";
    pub const OVER_DISK_CAP: &str = "over_disk_cap";
    pub const SPOOL_BYTES: &str = "spool_bytes";
}

/// The record kinds whose drops are counted apart, with their names in COUNTERS/STOP frames
/// (`dropped_<name>`) and in `profiler_metadata.json` (`dropped_by_kind`). "unknown" (index 0) also holds
/// the unused indices 6 and 7: in practice zeroed slots, records of an earlier profile left undrained when
/// `npuprof_shutdown` returned the rings' pages to the system (dropped as outside the next window).
pub const KIND_KEYS: [(u8, &str); 6] = [
    (0, "unknown"),
    (record::kind::BEGIN, "begin"),
    (record::kind::END, "end"),
    (record::kind::MARK, "mark"),
    (record::kind::STEP, "step"),
    (record::kind::STACK, "stack"),
];

impl Counters {
    /// The counters of a COUNTERS or STOP frame (missing keys are 0).
    pub fn from_kv(kv: &BTreeMap<String, String>) -> Counters {
        use counter_keys::*;
        let n = |k: &str| kv.get(k).and_then(|v| v.parse().ok()).unwrap_or(0u64);
        let mut dropped_by_kind = [0u64; 8];
        for (k, name) in KIND_KEYS {
            dropped_by_kind[k as usize] = n(&format!("dropped_{name}"));
        }
        Counters {
            dropped_by_kind,
            recorded: n(RECORDED),
            ring_full: n(RING_FULL),
            outside_window: n(OUTSIDE_WINDOW),
            after_thread_exit: n(AFTER_THREAD_EXIT),
            unbalanced_pops: n(UNBALANCED_POPS),
            over_disk_cap: n(OVER_DISK_CAP),
            spool_bytes: n(SPOOL_BYTES),
            ..Counters::default()
        }
    }
}
