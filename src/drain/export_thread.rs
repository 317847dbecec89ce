//! The `npuprof-export` thread: runs each stopped profile's export (behind `catch_unwind`), keeps the errors
//! since the last flush and answers the next flush with the first of them.

use super::ExportMsg;
use crate::error::{Error, Status};
use crate::export;
use crossbeam_channel::Receiver;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(super) fn export_loop(rx: Receiver<ExportMsg>, export_ended: fn()) {
    // Errors since the last flush, reported (the first of them) by the next flush.
    let mut errors: Vec<Error> = Vec::new();
    while let Ok(msg) = rx.recv() {
        let (job, _lock) = match msg {
            ExportMsg::Job(job, lock) => (*job, lock),
            ExportMsg::Failed(e) => {
                errors.push(e);
                continue;
            }
            ExportMsg::Flush(ack) => {
                let first = std::mem::take(&mut errors).into_iter().next();
                let _ = ack.send(first.map_or(Ok(()), Err));
                continue;
            }
        };
        let dir = job.profile.dir.clone();
        let res = catch_unwind(AssertUnwindSafe(|| {
            crate::fault::point("export.run");
            crate::fault::stall("export.run");
            export::run(job)
        }));
        let err = match res {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                log::error!("export of {} failed: {}", dir.display(), e.msg);
                Some(e)
            }
            Err(_) => {
                log::error!("internal error while exporting {} (caught)", dir.display());
                Some(Error::new(Status::Internal, "export panicked"))
            }
        };
        errors.extend(err);
        export_ended();
    }
}
