//! The `npuprof-mspti` thread: appends the compact records of each walked buffer to the open profile's
//! `mspti.spool` (their new names to `mspti.names` first), flushed per buffer so that a process killed while
//! recording leaves whole buffers for `npuprof recover`, and returns the buffer to the pool. The two files hold
//! at most what their `Open` allows ([`SpoolCap`]: their share of `NPUPROF_MAX_DISK_MB`, and no more than
//! `NPUPROF_MAX_DEVICE_RECORDS` records): records beyond it are counted (`mspti_records_over_cap`), never
//! written, and so are names that no longer fit (`mspti_names_over_cap`).
//!
//! Records are attributed by time (issue 15 item 13): MSPTI may complete a buffer late (after the stop's
//! flush). A record that arrives while no profile is open, or while a profile is open but timestamped
//! before it (before its start less [`WINDOW_SLACK_NS`], or before the previous profile closed), belongs
//! to a profile whose spool is closed: it is not spooled, and it is counted in the metadata of the profile
//! that is open when it arrives (`mspti_records_from_before_profile`) or, arriving between profiles, of the
//! next profile (`mspti_records_completed_between_profiles`).

use super::names_file::NamesWriter;
use super::window::WINDOW_SLACK_NS;
use super::{realtime_ns, Control, SpoolCap, Spooled, REC, SHARED};
use crossbeam_channel::Receiver;
use std::io::Write;

/// What the consumer tells the stop about the profile it closed.
pub(super) struct Closed {
    /// What was written to the spool and the names file, or the first write error.
    pub spooled: std::io::Result<Spooled>,
    /// Records that arrived while the profile was open, timestamped before it.
    pub before_profile: u64,
    /// Records that arrived while no profile was open, before this one opened.
    pub between_profiles: u64,
}

/// The open profile.
struct Open {
    file: std::io::BufWriter<std::fs::File>,
    /// The names the records use, for `npuprof recover` (dropped after its first write error).
    names: Option<NamesWriter>,
    written: Spooled,
    cap: SpoolCap,
    err: Option<std::io::Error>,
    /// Records whose start is earlier are not this profile's.
    lo: u64,
    before_profile: u64,
    between_profiles: u64,
}

/// The lowest start time of the profile started at `started_ns` (CLOCK_REALTIME ns), the previous one
/// having closed at `last_close_ns`.
pub(super) fn lowest_start(started_ns: u64, last_close_ns: u64) -> u64 {
    started_ns
        .saturating_sub(WINDOW_SLACK_NS)
        .max(last_close_ns.min(started_ns))
}

/// Moves the records of `buf` (`n` compact records) whose start is at least `lo` to its front, keeping
/// their order; returns how many there are.
pub(super) fn keep_from(buf: &mut [u8], n: usize, lo: u64) -> usize {
    let mut kept = 0;
    for i in 0..n {
        let at = i * REC;
        let start = u64::from_le_bytes(buf[at + 8..at + 16].try_into().unwrap_or_default());
        if start >= lo {
            if kept != i {
                buf.copy_within(at..at + REC, kept * REC);
            }
            kept += 1;
        }
    }
    kept
}

/// The `npuprof-mspti` thread: compact records → the open profile's spool; buffers → back to the pool.
pub(super) fn consumer(data_rx: Receiver<(u32, u32)>, ctl_rx: Receiver<Control>) {
    let mut open: Option<Open> = None;
    // Records completed while no profile was open, since the last open.
    let mut between = 0u64;
    let mut last_close_ns = 0u64;
    loop {
        crossbeam_channel::select! {
            recv(data_rx) -> m => match m {
                Ok(m) => handle(&mut open, &mut between, m),
                Err(_) => return,
            },
            recv(ctl_rx) -> m => match m {
                Ok(Control::Open(f, names, cap, started_ns)) => {
                    open = Some(Open {
                        file: std::io::BufWriter::with_capacity(1 << 20, f),
                        names: names.map(NamesWriter::new),
                        written: Spooled::default(),
                        cap,
                        err: None,
                        lo: lowest_start(started_ns, last_close_ns),
                        before_profile: 0,
                        between_profiles: std::mem::take(&mut between),
                    });
                }
                Ok(Control::Close(ack)) => {
                    // Everything completed before the close is in the data channel: take it first.
                    while let Ok(m) = data_rx.try_recv() {
                        handle(&mut open, &mut between, m);
                    }
                    last_close_ns = realtime_ns();
                    let closed = open.take().map(Open::close);
                    let _ = ack.send(closed.unwrap_or(Closed {
                        spooled: Ok(Spooled::default()),
                        before_profile: 0,
                        between_profiles: 0,
                    }));
                }
                Err(_) => return,
            },
        }
    }
}

/// One completed buffer (`n` compact records in the pool's buffer `idx`): its records into the open profile,
/// or counted between profiles; the buffer back to the pool.
fn handle(open: &mut Option<Open>, between: &mut u64, (idx, n): (u32, u32)) {
    let Some(sh) = SHARED.get() else { return };
    crate::fault::stall("mspti.consumer");
    match open.as_mut() {
        Some(o) => {
            // SAFETY: the buffer was handed over by `on_complete` (taken, see `pool`); it is ours until
            // released below; `n` compact records fit in it.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(sh.pool.buffer(idx), n as usize * REC) };
            o.write_records(bytes, n as u64, &sh.counts);
        }
        None => *between += n as u64,
    }
    sh.pool.release(idx);
}

impl Open {
    /// Writes the `n` records in `bytes` that are this profile's and fit its caps (the rest counted), their
    /// names first; a write error drops the records (counted in `counts`) and is kept for the close.
    fn write_records(&mut self, bytes: &mut [u8], n: u64, counts: &super::counts::Counts) {
        let kept = keep_from(bytes, n as usize, self.lo) as u64;
        self.before_profile += n - kept;
        let fit = self.fit(kept);
        let bytes = &bytes[..fit as usize * REC];
        self.add_names(bytes);
        match self.file.write_all(bytes).and_then(|_| self.file.flush()) {
            Ok(()) => self.written.records += fit,
            Err(e) => {
                counts.add(super::counts::Count::RecordsDropped, fit);
                self.err.get_or_insert(e);
            }
        }
    }

    /// The caps: how many of `kept` records fit (the rest are counted as over the cap).
    fn fit(&mut self, kept: u64) -> u64 {
        let w = &mut self.written;
        let room = self.cap.bytes.saturating_sub(w.bytes()) / REC as u64;
        let fit = kept
            .min(self.cap.records.saturating_sub(w.records))
            .min(room);
        w.over_cap += kept - fit;
        fit
    }

    /// The new names of `records` into `mspti.names`, within what the records leave of the cap.
    fn add_names(&mut self, records: &[u8]) {
        let w = &mut self.written;
        let Some(nw) = self.names.as_mut() else {
            return;
        };
        let left = self
            .cap
            .bytes
            .saturating_sub(w.bytes())
            .saturating_sub(records.len() as u64);
        let r = nw.add(records, left);
        w.names_bytes = nw.bytes();
        match r {
            Ok(skipped) => w.names_over_cap += skipped,
            Err(e) => {
                // Only a recovery needs the names: the records are still written.
                log::debug!("mspti.names: {e}");
                self.names = None;
            }
        }
    }

    /// What the stop is told: what was written, or the first write error.
    fn close(mut self) -> Closed {
        Closed {
            spooled: match (self.file.flush(), self.err.take()) {
                (_, Some(e)) | (Err(e), None) => Err(e),
                (Ok(()), None) => Ok(self.written),
            },
            before_profile: self.before_profile,
            between_profiles: self.between_profiles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mspti::DevRec;

    #[test]
    fn records_before_the_lowest_start_are_left_out_in_order() {
        let starts = [5u64, 1, 7, 2, 9];
        let mut buf: Vec<u8> = starts
            .iter()
            .flat_map(|&s| {
                DevRec {
                    kind: 2,
                    start: s,
                    end: s + 1,
                    ..Default::default()
                }
                .to_bytes()
            })
            .collect();
        let kept = keep_from(&mut buf, starts.len(), 5);
        assert_eq!(kept, 3);
        let got: Vec<u64> = buf[..kept * REC]
            .chunks_exact(REC)
            .map(|c| DevRec::from_bytes(c).start)
            .collect();
        assert_eq!(got, [5, 7, 9]);
        let s = 10 * WINDOW_SLACK_NS;
        assert_eq!(lowest_start(s, 0), s - WINDOW_SLACK_NS);
        assert_eq!(lowest_start(s, s - 5), s - 5, "after the previous close");
        assert_eq!(
            lowest_start(s, s + 5),
            s,
            "a close after the start (clock step) counts as the start"
        );
    }
}
