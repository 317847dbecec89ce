//! The `npuprof-mspti` thread: appends the compact records of each walked buffer to the open profile's
//! `mspti.spool` (their new names to `mspti.names` first), flushed per buffer so that a process killed while
//! recording leaves whole buffers for `npuprof recover`, and returns the buffer to the pool.

use super::counts::Count;
use super::names_file::NamesWriter;
use super::{Control, REC, SHARED};
use crossbeam_channel::Receiver;
use std::io::Write;

/// The `npuprof-mspti` thread: compact records → the open profile's spool; buffers → back to the pool.
pub fn consumer(data_rx: Receiver<(u32, u32)>, ctl_rx: Receiver<Control>) {
    let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut names: Option<NamesWriter> = None;
    let mut written = 0u64;
    let mut err: Option<std::io::Error> = None;
    let handle = |file: &mut Option<std::io::BufWriter<std::fs::File>>,
                  names: &mut Option<NamesWriter>,
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
            if let Some(Err(e)) = names.as_mut().map(|w| w.add(bytes)) {
                // Only a recovery needs the names: the records are still written.
                log::debug!("mspti.names: {e}");
                *names = None;
            }
            match f.write_all(bytes).and_then(|_| f.flush()) {
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
                Ok(m) => handle(&mut file, &mut names, &mut written, &mut err, m),
                Err(_) => return,
            },
            recv(ctl_rx) -> m => match m {
                Ok(Control::Open(f, n)) => {
                    file = Some(std::io::BufWriter::with_capacity(1 << 20, f));
                    names = n.map(NamesWriter::new);
                    written = 0;
                    err = None;
                }
                Ok(Control::Close(ack)) => {
                    // Everything completed before the close is in the data channel: take it first.
                    while let Ok(m) = data_rx.try_recv() {
                        handle(&mut file, &mut names, &mut written, &mut err, m);
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
