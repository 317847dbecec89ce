//! Reading result directories (`*_ascend_ms`), for `npuprof check`, `summary` and `recover`: one reader the
//! three use. Results sit in trees other users may write, so everything is read through directory handles
//! ([`walk`]: finding results, listing a directory, what a name is without following it) with a size cap per
//! kind of file ([`files`]); the result's own state is read here ([`stage`], [`spool_is_regular`]).

pub mod files;
pub mod walk;

use crate::dir::{Dir, Kind};
use crate::error::{Error, Result};
use crate::export::DeviceStage;
use crate::layout::{FRAMEWORK_DIR, METADATA, SPOOL_NAME};
use std::path::Path;

/// The `npuprof.device_data` stage of the result in `wd` (`None`: no metadata yet). A metadata file without
/// the field, or one that cannot be read as JSON, was written whole (atomically) by an export that had no
/// such stage: a finished result.
pub fn stage(wd: &Dir, dir: &Path) -> Result<Option<DeviceStage>> {
    if wd
        .stat_at(METADATA)
        .map_err(|e| Error::io("cannot stat", &dir.join(METADATA), &e))?
        .is_none()
    {
        return Ok(None);
    }
    let text = match wd.open_file(METADATA) {
        Ok((f, st)) => {
            use std::io::Read;
            let mut b = Vec::new();
            // A metadata file is a few KiB; read no more than 16 MiB of one.
            let _ = f.take(st.size.min(16 << 20)).read_to_end(&mut b);
            b
        }
        Err(_) => return Ok(Some(DeviceStage::Parsed)),
    };
    let stage = crate::format::jsonparse::Parser::new(&text)
        .value(0)
        .ok()
        .and_then(|v| {
            v.get("npuprof")?
                .get("device_data")?
                .as_str()
                .and_then(DeviceStage::from_name)
        });
    Ok(Some(stage.unwrap_or(DeviceStage::Parsed)))
}

/// The spool of `dir` is a regular file (not a symlink, FIFO, socket, device or directory).
pub fn spool_is_regular(dir: &Path) -> std::result::Result<(), String> {
    let d = walk::open_arg(dir)?;
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
