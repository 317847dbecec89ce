//! Directory layout of a result: names, safe creation, atomic file writes.
//!
//! ```text
//! {VLLM_TORCH_PROFILER_DIR}/{worker}_{YYYYmmddHHMMSSmmm}_ascend_ms/
//!   profiler_info_{rank}.json  profiler_metadata.json
//!   ASCEND_PROFILER_OUTPUT/{trace_view.json, step_trace_time.csv, kernel_details.csv, op_statistic.csv}
//!   FRAMEWORK/npuprof.spool    (while recording; removed after export unless NPUPROF_KEEP_SPOOL)
//! ```

use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const OUTPUT_DIR: &str = "ASCEND_PROFILER_OUTPUT";
pub const FRAMEWORK_DIR: &str = "FRAMEWORK";
pub const SPOOL_NAME: &str = "npuprof.spool";
pub const SUFFIX: &str = "_ascend_ms";

/// `YYYYmmddHHMMSSmmm` in UTC (MindSpore's choice) for a CLOCK_REALTIME time in ns.
pub fn stamp17(realtime_ns: u64) -> String {
    let ms = realtime_ns / 1_000_000;
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}{:03}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Creates the root (and parents) with mode 0750 if missing.
pub fn ensure_root(root: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(root)
        .map_err(|e| Error::io("cannot create VLLM_TORCH_PROFILER_DIR", root, &e))?;
    if !root.is_dir() {
        return Err(Error::new(
            crate::error::Status::Io,
            format!(
                "VLLM_TORCH_PROFILER_DIR {} is not a directory",
                root.display()
            ),
        ));
    }
    Ok(())
}

/// mkdir that never follows or reuses anything at the final component (EEXIST for a file, dir or symlink).
fn mkdir_new(p: &Path) -> io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkdir(c.as_ptr(), 0o750) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates a new, empty worker directory `{worker}_{stamp}_ascend_ms` under `root`. Never reuses an existing
/// path: on a clash (two starts in one millisecond, or a planted file/symlink) the millisecond is bumped, so
/// the name keeps the 17-digit timestamp msprof-analyze parses.
pub fn create_worker_dir(root: &Path, worker: &str, realtime_ns: u64) -> Result<PathBuf> {
    ensure_root(root)?;
    let mut t = realtime_ns;
    for _ in 0..1000 {
        let p = root.join(format!("{worker}_{}{SUFFIX}", stamp17(t)));
        match mkdir_new(&p) {
            Ok(()) => {
                for sub in [OUTPUT_DIR, FRAMEWORK_DIR] {
                    if let Err(e) = mkdir_new(&p.join(sub)) {
                        // Leave nothing half-made behind (the directory is ours and still empty-ish).
                        let _ = fs::remove_dir_all(&p);
                        return Err(Error::io("cannot create", &p.join(sub), &e));
                    }
                }
                return Ok(p);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => t += 1_000_000,
            Err(e) => return Err(Error::io("cannot create worker directory", &p, &e)),
        }
    }
    Err(Error::new(
        crate::error::Status::Io,
        format!("no free worker directory name under {}", root.display()),
    ))
}

/// Creates a new file that must not exist yet (O_EXCL, no symlink following).
pub fn create_new(p: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
}

/// Writes `path` atomically: into `path.tmp`, then fsync and rename. A crash leaves either no file or a
/// complete one (plus perhaps a stray `.tmp`).
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
    pub w: io::BufWriter<Writeback>,
}

/// A file that starts writing its pages back to disk every `Writeback::STEP` (8 MiB), without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the `fdatasync` before the rename waits only for the tail
/// instead of a whole 200 MB trace.
pub struct Writeback {
    f: File,
    pos: u64,
    kicked: u64,
}

impl Writeback {
    const STEP: u64 = 8 << 20;

    pub fn file(&self) -> &File {
        &self.f
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.f.write(buf)?;
        self.pos += n as u64;
        if self.pos - self.kicked >= Self::STEP {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid open fd and a range of it just written; the call only schedules writeback
                // (an error, e.g. on a filesystem without it, changes nothing: the later fdatasync still runs).
                unsafe {
                    libc::sync_file_range(
                        self.f.as_raw_fd(),
                        self.kicked as libc::off64_t,
                        (self.pos - self.kicked) as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    )
                };
            }
            self.kicked = self.pos;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.f.flush()
    }
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let mut tmp = dest.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = create_new(&tmp).map_err(|e| Error::io("cannot create", &tmp, &e))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
            w: io::BufWriter::with_capacity(
                1 << 20,
                Writeback {
                    f,
                    pos: 0,
                    kicked: 0,
                },
            ),
        })
    }

    pub fn commit(mut self) -> Result<()> {
        self.w
            .flush()
            .map_err(|e| Error::io("cannot write", &self.tmp, &e))?;
        self.w
            .get_ref()
            .file()
            .sync_data()
            .map_err(|e| Error::io("cannot sync", &self.tmp, &e))?;
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| Error::io("cannot rename into", &self.dest, &e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed (error path): remove the partial file.
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whole small file atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.w.write_all(bytes)
        .map_err(|e| Error::io("cannot write", dest, &e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_17_digit_utc() {
        // 2025-01-01T03:04:05.678Z
        assert_eq!(stamp17(1_735_700_645_678_000_000), "20250101030405678");
        assert_eq!(stamp17(0), "19700101000000000");
        assert_eq!(stamp17(951_782_400_000_000_000), "20000229000000000");
    }

    #[test]
    fn worker_dirs_never_reuse_and_never_follow_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/b");
        let t = 1_735_700_645_678_000_000;
        let p1 = create_worker_dir(&root, "w", t).unwrap();
        let p2 = create_worker_dir(&root, "w", t).unwrap();
        assert_ne!(p1, p2);
        assert!(p2
            .to_str()
            .unwrap()
            .ends_with("w_20250101030405679_ascend_ms"));
        // A symlink planted at the next name is skipped, not followed.
        let target = d.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, root.join("w_20250101030405680_ascend_ms")).unwrap();
        let p3 = create_worker_dir(&root, "w", t).unwrap();
        assert!(p3
            .to_str()
            .unwrap()
            .ends_with("w_20250101030405681_ascend_ms"));
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
        assert!(p3.join(OUTPUT_DIR).is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o027, 0, "root mode {mode:o}");
    }

    #[test]
    fn atomic_file_is_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.w.write_all(b"partial").unwrap();
            // dropped without commit
        }
        assert!(!p.exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        write_atomic(&p, b"[]").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"[]");
    }

    #[test]
    fn files_are_never_created_through_a_planted_symlink_or_over_an_existing_file() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let spool = d.path().join("npuprof.spool");
        std::os::unix::fs::symlink(&victim, &spool).unwrap();
        assert!(create_new(&spool).is_err());
        // A planted `<name>.tmp` symlink: the atomic writer refuses it rather than follow it.
        let out = d.path().join("trace_view.json");
        std::os::unix::fs::symlink(&victim, d.path().join("trace_view.json.tmp")).unwrap();
        assert!(AtomicFile::create(&out).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn early_writeback_keeps_every_byte_in_order() {
        // Several writeback steps, written in odd-sized pieces: the committed file is exactly what was written.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big.json");
        let mut f = AtomicFile::create(&p).unwrap();
        let mut expect = Vec::new();
        let mut i = 0u32;
        while expect.len() < 3 * Writeback::STEP as usize + 12_345 {
            let piece: Vec<u8> = (0..(i % 7919) + 1).map(|j| (i ^ j) as u8).collect();
            f.w.write_all(&piece).unwrap();
            expect.extend_from_slice(&piece);
            i += 1;
        }
        assert!(f.w.get_ref().kicked >= 2 * Writeback::STEP);
        f.commit().unwrap();
        assert!(fs::read(&p).unwrap() == expect);
    }
}
