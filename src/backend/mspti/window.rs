//! The profile's time window: which device records belong to it (with a slack for clock adjustments).

use super::walk::DevRec;

/// How far outside the profile's start..stop a record's time may be (clock adjustments, a kernel enqueued
/// before the start): one second.
pub(super) const WINDOW_SLACK_NS: u64 = 1_000_000_000;

/// Whether a record's times lie in the profile's window (with the slack): a start or end outside it is a
/// corrupt or foreign time (a start near u64::MAX would be drawn as a slice of 1.8e16 µs). An end before the
/// start is kept (its duration is 0).
pub(super) fn in_window(r: &DevRec, window: (u64, u64)) -> bool {
    let lo = window.0.saturating_sub(WINDOW_SLACK_NS);
    let hi = window.1.saturating_add(WINDOW_SLACK_NS);
    (lo..=hi).contains(&r.start) && r.end <= hi
}
