//! Writing one drained batch to the profile's spool: records after the stop are carried to the next
//! profile, those outside the window or over the disk cap are counted, the rest go out after the THREAD and
//! NAME frames they need.

use super::{Active, Carry, Span};
use crate::profile::Counters;
use crate::record::{self, names, Record};
use crate::spool;

impl Active {
    /// Writes one drained batch to the spool: records after the window's end are carried to the next
    /// profile; per thread, the records inside the window that fit the disk cap go out after their THREAD
    /// and NAME frames.
    pub(super) fn write(
        &mut self,
        scratch: &mut [Record],
        spans: &[Span],
        window_end: Option<u64>,
        carry: &mut Carry,
    ) -> std::io::Result<()> {
        let hi = window_end.unwrap_or(u64::MAX);
        if window_end.is_some() {
            carry_later(scratch, spans, hi, carry);
        }
        let Some(w) = self.w.as_mut() else {
            return Ok(());
        };
        if !spans.is_empty() {
            crate::fault::stall("drain.batch");
        }
        // Names after draining: a record's name was interned before the record was made, so every valid id in
        // `scratch` is <= the count read now.
        let known = names::count();
        let lo = self.profile.anchor.0;
        for &(ring, epoch, tid, s, e) in spans {
            let recs = &mut scratch[s..e];
            let dropped = &mut self.drain_dropped_by_kind;
            let kept = keep_in_window(recs, (lo, hi), &mut self.counters, dropped);
            if kept == 0 {
                continue;
            }
            // The spool's share of NPUPROF_MAX_DISK_MB: write what fits, count the rest, and let the
            // session stop recording (below, in `poll`).
            let room = (self.spool_cap.saturating_sub(w.bytes() + 64) / 16) as usize;
            let cap = (&mut self.truncated, &mut self.counters, dropped);
            let kept = fit_disk_cap(&recs[..kept], room, cap);
            if kept == 0 {
                continue;
            }
            thread_frame(w, &mut self.thread_epoch, (ring, epoch, tid))?;
            // The names these records use, before them (the reader names a range when it reads its END).
            name_frames(w, &mut self.names_used, &recs[..kept], known)?;
            w.records(ring, epoch, &recs[..kept])?;
            self.counters.recorded += kept as u64;
        }
        w.flush()?;
        self.counters.spool_bytes = w.bytes();
        Ok(())
    }
}

/// Copies the records of `spans` newer than `hi` (the stop tick) into `carry`, for the next profile.
fn carry_later(scratch: &[Record], spans: &[Span], hi: u64, carry: &mut Carry) {
    for &(ring, epoch, tid, s, e) in spans {
        let start = carry.records.len();
        carry
            .records
            .extend(scratch[s..e].iter().filter(|r| r.ts > hi));
        if carry.records.len() > start {
            carry
                .spans
                .push((ring, epoch, tid, start, carry.records.len()));
        }
    }
}

/// Moves the records of `recs` inside [`lo`, `hi`] to its front and returns how many; counts those before
/// `lo` as outside the window.
fn keep_in_window(
    recs: &mut [Record],
    (lo, hi): (u64, u64),
    counters: &mut Counters,
    dropped_by_kind: &mut [u64; 8],
) -> usize {
    // Keep records inside [start, stop] (stable compaction in place); those after the stop were
    // carried to the next profile (`carry_later`), those before the start raced this profile's start (or
    // the previous profile's stop) and are counted here.
    let mut kept = 0;
    let mut later = 0;
    for i in 0..recs.len() {
        let r = recs[i];
        if r.ts > hi {
            later += 1;
        } else if r.ts >= lo {
            recs[kept] = r;
            kept += 1;
        } else {
            dropped_by_kind[(r.kind() & 7) as usize] += 1;
        }
    }
    counters.outside_window += (recs.len() - kept - later) as u64;
    kept
}

/// How many of `kept` fit in `room` (none once truncated); the rest are counted over the disk cap and
/// mark the profile truncated.
fn fit_disk_cap(
    kept: &[Record],
    room: usize,
    (truncated, counters, dropped_by_kind): (&mut bool, &mut Counters, &mut [u64; 8]),
) -> usize {
    let fit = if *truncated { 0 } else { kept.len().min(room) };
    if fit < kept.len() {
        *truncated = true;
        counters.over_disk_cap += (kept.len() - fit) as u64;
        for r in &kept[fit..] {
            dropped_by_kind[(r.kind() & 7) as usize] += 1;
        }
    }
    fit
}

/// Writes a THREAD frame when ring `ring` holds a thread (`epoch`) this spool has not named yet.
fn thread_frame(
    w: &mut spool::Writer,
    thread_epoch: &mut Vec<u32>,
    (ring, epoch, tid): (u32, u32, u32),
) -> std::io::Result<()> {
    let idx = ring as usize;
    if thread_epoch.len() <= idx {
        thread_epoch.resize(idx + 1, 0);
    }
    if thread_epoch[idx] != epoch {
        thread_epoch[idx] = epoch;
        w.thread(ring, epoch, tid, &thread_name(tid))?;
    }
    Ok(())
}

/// Writes a NAME frame for each name `recs` use (BEGIN and MARK records) that is not in the spool yet.
fn name_frames(
    w: &mut spool::Writer,
    names_used: &mut Vec<u64>,
    recs: &[Record],
    known: u32,
) -> std::io::Result<()> {
    for r in recs {
        let k = r.kind();
        if k == record::kind::BEGIN || k == record::kind::MARK {
            let id = r.payload() as u32;
            if first_use(names_used, id, known) {
                if let Some(n) = names::get(id) {
                    w.name(id, n)?;
                }
            }
        }
    }
    Ok(())
}

/// Marks name `id` as used in the bitset `used`; true the first time (its NAME frame is due). Ids past
/// `known` (the name table's size when the batch was drained) are no names: never written.
fn first_use(used: &mut Vec<u64>, id: u32, known: u32) -> bool {
    if id == 0 || id > known {
        return false;
    }
    let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
    if used.len() <= word {
        // At most names::MAX_NAMES / 64 words (128 KiB).
        used.resize(word + 1, 0);
    }
    let first = used[word] & bit == 0;
    used[word] |= bit;
    first
}

/// The OS name of a thread of this process (empty if it is gone).
fn thread_name(tid: u32) -> Vec<u8> {
    let mut n = std::fs::read(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
    while n.last() == Some(&b'\n') {
        n.pop();
    }
    n
}
