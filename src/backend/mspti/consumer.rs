//! The `npuprof-mspti` thread: appends the compact records of each walked buffer to the open profile's
//! `mspti.spool` and returns the buffer to the pool. The spool holds at most the records its `Open` allows
//! (its share of `NPUPROF_MAX_DISK_MB`, and no more than `NPUPROF_MAX_DEVICE_RECORDS`): the rest are counted
//! (`mspti_records_over_cap`), never written.

use super::counts::Count;
use super::{Control, Spooled, REC, SHARED};
use crossbeam_channel::Receiver;
use std::io::Write;

/// The `npuprof-mspti` thread: compact records → the open profile's spool; buffers → back to the pool.
pub fn consumer(data_rx: Receiver<(u32, u32)>, ctl_rx: Receiver<Control>) {
    let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut written = Spooled::default();
    let mut cap = 0u64;
    let mut err: Option<std::io::Error> = None;
    let handle = |file: &mut Option<std::io::BufWriter<std::fs::File>>,
                  written: &mut Spooled,
                  cap: u64,
                  err: &mut Option<std::io::Error>,
                  (idx, n): (u32, u32)| {
        let Some(sh) = SHARED.get() else { return };
        crate::fault::stall("mspti.consumer");
        if let Some(f) = file.as_mut() {
            // The spool's cap: what fits is written, the rest counted.
            let fit = (n as u64).min(cap.saturating_sub(written.records));
            written.over_cap += n as u64 - fit;
            // SAFETY: the buffer was handed over by `on_complete` (taken, see `pool`); it is ours until released
            // below; `n` compact records fit in it (`fit` ≤ `n`).
            let bytes =
                unsafe { std::slice::from_raw_parts(sh.pool.buffer(idx), fit as usize * REC) };
            match f.write_all(bytes) {
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
                Ok(m) => handle(&mut file, &mut written, cap, &mut err, m),
                Err(_) => return,
            },
            recv(ctl_rx) -> m => match m {
                Ok(Control::Open(f, max_records)) => {
                    file = Some(std::io::BufWriter::with_capacity(1 << 20, f));
                    written = Spooled::default();
                    cap = max_records;
                    err = None;
                }
                Ok(Control::Close(ack)) => {
                    // Everything completed before the close is in the data channel: take it first.
                    while let Ok(m) = data_rx.try_recv() {
                        handle(&mut file, &mut written, cap, &mut err, m);
                    }
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
