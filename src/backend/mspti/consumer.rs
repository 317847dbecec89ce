//! The `npuprof-mspti` thread: appends the compact records of each walked buffer to the open profile's
//! `mspti.spool` and returns the buffer to the pool.

use super::counts::Count;
use super::{Control, REC, SHARED};
use crossbeam_channel::Receiver;
use std::io::Write;

/// The `npuprof-mspti` thread: compact records → the open profile's spool; buffers → back to the pool.
pub fn consumer(data_rx: Receiver<(u32, u32)>, ctl_rx: Receiver<Control>) {
    let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut written = 0u64;
    let mut err: Option<std::io::Error> = None;
    let handle = |file: &mut Option<std::io::BufWriter<std::fs::File>>,
                  written: &mut u64,
                  err: &mut Option<std::io::Error>,
                  (idx, n): (u32, u32)| {
        let Some(sh) = SHARED.get() else { return };
        crate::fault::stall("mspti.consumer");
        if let Some(f) = file.as_mut() {
            // SAFETY: the buffer was handed over by `on_complete` (taken, see `pool`); it is ours until released
            // below; `n` compact records fit in it.
            let bytes =
                unsafe { std::slice::from_raw_parts(sh.pool.buffer(idx), n as usize * REC) };
            match f.write_all(bytes) {
                Ok(()) => *written += n as u64,
                Err(e) => {
                    sh.counts.add(Count::RecordsDropped, n as u64);
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
                Ok(m) => handle(&mut file, &mut written, &mut err, m),
                Err(_) => return,
            },
            recv(ctl_rx) -> m => match m {
                Ok(Control::Open(f)) => {
                    file = Some(std::io::BufWriter::with_capacity(1 << 20, f));
                    written = 0;
                    err = None;
                }
                Ok(Control::Close(ack)) => {
                    // Everything completed before the close is in the data channel: take it first.
                    while let Ok(m) = data_rx.try_recv() {
                        handle(&mut file, &mut written, &mut err, m);
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
