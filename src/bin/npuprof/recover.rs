//! `npuprof recover DIR...`: the command-line side of `npuprof::recover`. Before handing a directory over,
//! its spool must be a regular file reached without a symlink: a FIFO named `npuprof.spool` blocked the
//! recovery forever in open(2).

use crate::text::{say, warn};
use crate::usage;
use npuprof::dir::Kind;
use npuprof::layout::{FRAMEWORK_DIR, SPOOL_NAME};
use std::path::Path;

/// The spool of `dir` is a regular file (not a symlink, FIFO, socket, device or directory).
fn spool_is_regular(dir: &Path) -> Result<(), String> {
    let d = crate::walk::open_arg(dir)?;
    let fw_path = dir.join(FRAMEWORK_DIR);
    let fw = match d.open_dir(FRAMEWORK_DIR) {
        Ok(fw) => fw,
        // Missing: the recovery says so.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(format!(
                "{}: cannot open directory ({e})",
                fw_path.display()
            ))
        }
    };
    let spool = fw_path.join(SPOOL_NAME);
    match fw.stat_at(SPOOL_NAME) {
        Ok(Some(st)) => match st.kind {
            Kind::File => Ok(()),
            Kind::Symlink => Err(format!("{}: a symlink (never followed)", spool.display())),
            Kind::Dir | Kind::Other => Err(format!(
                "{}: not a regular file (a directory, FIFO, socket or device)",
                spool.display()
            )),
        },
        // Missing: the recovery says so.
        Ok(None) => Ok(()),
        Err(e) => Err(format!("{}: {e}", spool.display())),
    }
}

pub fn run(args: &[String]) -> u8 {
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
        if let Err(e) = spool_is_regular(dir) {
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
