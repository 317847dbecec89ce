//! `npuprof recover DIR...`: the command-line side of `npuprof::recover`. Before handing a directory over,
//! its spool must be a regular file reached without a symlink: a FIFO named `npuprof.spool` blocked the
//! recovery forever in open(2).

use crate::text::{say, warn};
use crate::usage;
use std::path::Path;

pub(crate) fn run(args: &[String]) -> u8 {
    if args.is_empty() {
        return usage("recover needs DIR...");
    }
    // The export's progress lines ("Parsing: [####  ] 1/3 ...") go to stderr: a progress bar for long
    // recoveries.
    if std::env::var_os("NPUPROF_LOG").is_none() {
        std::env::set_var("NPUPROF_LOG", "info");
    }
    npuprof::session::init_logging();
    let mut failed = false;
    for d in args {
        let dir = Path::new(d);
        if let Err(e) = npuprof::results::spool_is_regular(dir) {
            warn(&format!("npuprof recover: {e}"));
            failed = true;
            continue;
        }
        match npuprof::recover::recover(dir) {
            Ok(r) => say(&format!(
                "recovered {}: {} records, {} slices{}",
                dir.display(),
                r.records,
                r.slices,
                r.torn_frame_at.map_or(String::new(), |o| format!(
                    ", torn last frame at byte {o} skipped"
                ))
            )),
            Err(e) => {
                warn(&format!("npuprof recover: {}: {}", dir.display(), e.msg));
                failed = true;
            }
        }
    }
    u8::from(failed)
}
