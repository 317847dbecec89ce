//! The `npuprof-mspti` thread: appends the compact records of each walked buffer to the open profile's
//! `mspti.spool` (their new names to `mspti.names` first), flushed per buffer so that a process killed while
//! recording leaves whole buffers for `npuprof recover`, and returns the buffer to the pool. The two files hold
//! at most what their `Open` allows ([`SpoolCap`]: their share of `NPUPROF_MAX_DISK_MB`, and no more than
//! `NPUPROF_MAX_DEVICE_RECORDS` records): records beyond it are counted (`mspti_records_over_cap`), never
//! written, and so are names that no longer fit (`mspti_names_over_cap`).

use super::counts::Count;
use super::names_file::NamesWriter;
use super::{Control, SpoolCap, Spooled, REC, SHARED};
use crossbeam_channel::Receiver;
use std::io::Write;

/// The `npuprof-mspti` thread: compact records → the open profile's spool; buffers → back to the pool.
pub fn consumer(data_rx: Receiver<(u32, u32)>, ctl_rx: Receiver<Control>) {
    let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut names: Option<NamesWriter> = None;
    let mut written = Spooled::default();
    let mut cap = SpoolCap {
        records: 0,
        bytes: 0,
    };
    let mut err: Option<std::io::Error> = None;
    let handle = |file: &mut Option<std::io::BufWriter<std::fs::File>>,
                  names: &mut Option<NamesWriter>,
                  written: &mut Spooled,
                  cap: SpoolCap,
                  err: &mut Option<std::io::Error>,
                  (idx, n): (u32, u32)| {
        let Some(sh) = SHARED.get() else { return };
        crate::fault::stall("mspti.consumer");
        if let Some(f) = file.as_mut() {
            // The caps: the records that fit are written, the rest counted.
            let room = cap.bytes.saturating_sub(written.bytes()) / REC as u64;
            let fit = (n as u64)
                .min(cap.records.saturating_sub(written.records))
                .min(room);
            written.over_cap += n as u64 - fit;
            // SAFETY: the buffer was handed over by `on_complete` (taken, see `pool`); it is ours until released
            // below; `n` compact records fit in it (`fit` ≤ `n`).
            let bytes =
                unsafe { std::slice::from_raw_parts(sh.pool.buffer(idx), fit as usize * REC) };
            if let Some(w) = names.as_mut() {
                // The names get what the records leave of the cap.
                let left = cap
                    .bytes
                    .saturating_sub(written.bytes())
                    .saturating_sub(bytes.len() as u64);
                let r = w.add(bytes, left);
                written.names_bytes = w.bytes();
                match r {
                    Ok(skipped) => written.names_over_cap += skipped,
                    Err(e) => {
                        // Only a recovery needs the names: the records are still written.
                        log::debug!("mspti.names: {e}");
                        *names = None;
                    }
                }
            }
            match f.write_all(bytes).and_then(|_| f.flush()) {
                Ok(()) => written.records += fit,
                Err(e) => {
                    sh.counts.add(Count::RecordsDropped, fit);
                    err.get_or_insert(e);
                }
            }
        } else {
            sh.counts.add(Count::RecordsDropped, n as u64);
        }
        sh.pool.release(idx);
    };
    loop {
        crossbeam_channel::select! {
            recv(data_rx) -> m => match m {
                Ok(m) => handle(&mut file, &mut names, &mut written, cap, &mut err, m),
                Err(_) => return,
            },
            recv(ctl_rx) -> m => match m {
                Ok(Control::Open(f, n, c)) => {
                    file = Some(std::io::BufWriter::with_capacity(1 << 20, f));
                    names = n.map(NamesWriter::new);
                    written = Spooled::default();
                    cap = c;
                    err = None;
                }
                Ok(Control::Close(ack)) => {
                    // Everything completed before the close is in the data channel: take it first.
                    while let Ok(m) = data_rx.try_recv() {
                        handle(&mut file, &mut names, &mut written, cap, &mut err, m);
                    }
                    names = None;
                    let r = match (file.take().map(|mut f| f.flush()), err.take()) {
                        (_, Some(e)) | (Some(Err(e)), None) => Err(e),
                        _ => Ok(written),
                    };
                    let _ = ack.send(r);
                }
                Err(_) => return,
            },
        }
    }
}
