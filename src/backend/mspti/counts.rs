//! The MSPTI callbacks' counters, reported per profile (deltas) in `profiler_metadata.json` as `mspti_<name>`.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter of [`Counts`]; its index in [`Counts::snapshot`] and its metadata name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    BuffersRequested,
    BuffersDenied,
    BuffersCompleted,
    BuffersDropped,
    Records,
    RecordsDropped,
    UnknownRecords,
    ForeignBuffers,
    SinkBytes,
    /// A completion of a pool buffer MSPTI did not hold (completed twice, or never handed out): ignored.
    CompletionsUnmatched,
    /// Bytes after an unreadable record that no known record size could step over.
    BytesLost,
    /// Name pointers that could not be read (dangling, or no NUL before inaccessible memory).
    NamesUnreadable,
    /// Names longer than the cap, cut there.
    NamesTruncated,
    /// Names a completion during a fork could not intern (the name table was busy, see `vendor_str`).
    NamesSkippedInFork,
    /// Panics caught in a buffer callback (a bug of ours, on MSPTI's thread; never unwound into MSPTI).
    CallbackPanics,
}

pub(super) const N: usize = 15;

impl Count {
    pub const ALL: [Count; N] = [
        Count::BuffersRequested,
        Count::BuffersDenied,
        Count::BuffersCompleted,
        Count::BuffersDropped,
        Count::Records,
        Count::RecordsDropped,
        Count::UnknownRecords,
        Count::ForeignBuffers,
        Count::SinkBytes,
        Count::CompletionsUnmatched,
        Count::BytesLost,
        Count::NamesUnreadable,
        Count::NamesTruncated,
        Count::NamesSkippedInFork,
        Count::CallbackPanics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Count::BuffersRequested => "buffers_requested",
            Count::BuffersDenied => "buffers_denied_pool_empty",
            Count::BuffersCompleted => "buffers_completed",
            Count::BuffersDropped => "buffers_dropped_consumer_busy",
            Count::Records => "records",
            Count::RecordsDropped => "records_dropped",
            Count::UnknownRecords => "unknown_or_malformed_records",
            Count::ForeignBuffers => "foreign_buffers",
            Count::SinkBytes => "bytes_dropped_pool_empty",
            Count::CompletionsUnmatched => "buffers_completed_unmatched",
            Count::BytesLost => "bytes_lost_unparsable",
            Count::NamesUnreadable => "names_unreadable",
            Count::NamesTruncated => "names_truncated",
            Count::NamesSkippedInFork => "names_skipped_during_fork",
            Count::CallbackPanics => "callback_panics",
        }
    }
}

/// Counters shared by the callbacks (relaxed atomics: each is an independent tally).
#[derive(Default)]
pub struct Counts([AtomicU64; N]);

impl Counts {
    pub fn add(&self, c: Count, n: u64) {
        self.0[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: Count) -> u64 {
        self.0[c as usize].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> [u64; N] {
        Count::ALL.map(|c| self.get(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_has_its_own_slot_and_name() {
        for (i, c) in Count::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let mut names: Vec<&str> = Count::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N);
    }
}
