//! Directory layout of a result: names, creation through directory handles, atomic file writes.
//!
//! ```text
//! {VLLM_TORCH_PROFILER_DIR}/{worker}_{YYYYmmddHHMMSSmmm}_ascend_ms/
//!   profiler_info_{rank}.json  profiler_metadata.json
//!   ASCEND_PROFILER_OUTPUT/{trace_view.json, step_trace_time.csv, kernel_details.csv, op_statistic.csv}
//!   FRAMEWORK/npuprof.spool    (while recording; removed after export unless NPUPROF_KEEP_SPOOL)
//! ```

use crate::dir::{Dir, Kind};
use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub const OUTPUT_DIR: &str = "ASCEND_PROFILER_OUTPUT";
pub const FRAMEWORK_DIR: &str = "FRAMEWORK";
pub const SPOOL_NAME: &str = "npuprof.spool";
/// The MSPTI backend's device records' spool in `FRAMEWORK/`, created and read through the profile's
/// directory handle.
pub const MSPTI_SPOOL_NAME: &str = "mspti.spool";
/// The MSPTI backend's names file in `FRAMEWORK/`, created and read through the profile's directory handle.
pub const MSPTI_NAMES_NAME: &str = "mspti.names";
pub const SUFFIX: &str = "_ascend_ms";

// The files of a result, by name (the CLI, `recover` and the exporters spell them only here).
/// `profiler_metadata.json`, in the worker directory.
pub const METADATA: &str = "profiler_metadata.json";
/// `profiler_info_{rank}.json`, in the worker directory: this prefix, the rank, [`INFO_SUFFIX`].
pub const INFO_PREFIX: &str = "profiler_info_";
pub const INFO_SUFFIX: &str = ".json";
/// In `ASCEND_PROFILER_OUTPUT/`.
pub const TRACE_VIEW: &str = "trace_view.json";
/// `NPUPROF_TRACE_GZIP=1`: the JSON trace gzip-compressed.
pub const TRACE_VIEW_GZ: &str = "trace_view.json.gz";
/// `NPUPROF_TRACE_FORMAT=perfetto|both`: the trace in Perfetto's protobuf format.
pub const TRACE_PFTRACE: &str = "trace_view.pftrace";
pub const STEP_TRACE_TIME: &str = "step_trace_time.csv";
pub const KERNEL_DETAILS: &str = "kernel_details.csv";
pub const OP_STATISTIC: &str = "op_statistic.csv";
pub const COMMUNICATION: &str = "communication.json";
pub const COMMUNICATION_MATRIX: &str = "communication_matrix.json";
/// CANN's, copied by the aclprof backend when msprof wrote one.
pub const API_STATISTIC: &str = "api_statistic.csv";
/// With memory profiling and device memory operations (torch_npu's names).
pub const MEMORY_RECORD: &str = "memory_record.csv";
pub const OPERATOR_MEMORY: &str = "operator_memory.csv";

/// `profiler_info_{rank}.json`.
pub fn info_name(rank: u32) -> String {
    format!("{INFO_PREFIX}{rank}{INFO_SUFFIX}")
}

/// The rank part of a `profiler_info_*.json` name (unparsed), or `None` for any other name.
pub fn info_rank(name: &str) -> Option<&str> {
    name.strip_prefix(INFO_PREFIX)?.strip_suffix(INFO_SUFFIX)
}

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

/// The mode of every directory npuprof creates (the root and its missing parents, worker directories and
/// their subdirectories), set exactly with `fchmod` whatever the umask.
pub const DIR_MODE: u32 = 0o750;
/// The mode of every file npuprof creates (before the umask).
pub const FILE_MODE: u32 = 0o640;

/// A directory handle and the path it had when it was opened. Files are created and read through the handle;
/// the path is for messages only (someone may have renamed the directory since).
#[derive(Debug)]
pub struct Place {
    pub dir: Dir,
    pub path: PathBuf,
}

impl Place {
    /// Opens an existing directory by path (never through a symlink at its last component).
    pub fn open(path: &Path) -> io::Result<Place> {
        Ok(Place {
            dir: Dir::open(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The subdirectory `name`, opened through this handle.
    pub fn open_dir(&self, name: &str) -> io::Result<Place> {
        Ok(Place {
            dir: self.dir.open_dir(name)?,
            path: self.path.join(name),
        })
    }

    /// `name` inside this directory, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the regular file `name` for reading (never a symlink, FIFO or device).
    pub fn open_file(&self, name: &str) -> Result<(File, crate::dir::Stat)> {
        self.dir
            .open_file(name)
            .map_err(|e| Error::io("cannot open", &self.shown(name), &e))
    }

    /// Creates the new file `name` (`O_EXCL`, never through a symlink).
    pub fn create_new(&self, name: &str) -> Result<File> {
        self.dir
            .create_new(name, FILE_MODE)
            .map_err(|e| Error::io("cannot create", &self.shown(name), &e))
    }
}

/// The directories of one worker result, opened once when the profile starts and held until its export
/// ends: a name in the root that someone renames or replaces (a symlink to a directory of their choosing)
/// changes nothing for us, every file goes where we created the directory.
#[derive(Debug)]
pub struct WorkerDirs {
    /// The results root, as opened at start.
    pub root: Dir,
    /// The worker directory's name in the root.
    pub name: String,
    pub top: Place,
    /// `ASCEND_PROFILER_OUTPUT/`.
    pub output: Place,
    /// `FRAMEWORK/`.
    pub framework: Place,
}

impl WorkerDirs {
    /// Opens an existing worker directory by path (`npuprof recover`): the directory and its two
    /// subdirectories are opened without following a symlink; `ASCEND_PROFILER_OUTPUT/` is created if
    /// missing.
    pub fn open(path: &Path) -> Result<WorkerDirs> {
        let top = Place::open(path).map_err(|e| Error::io("cannot open", path, &e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let root = Dir::open_follow(parent).map_err(|e| Error::io("cannot open", parent, &e))?;
        let output = match top.dir.mkdir(OUTPUT_DIR, DIR_MODE) {
            Ok(d) => Place {
                dir: d,
                path: top.shown(OUTPUT_DIR),
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => top
                .open_dir(OUTPUT_DIR)
                .map_err(|e| Error::io("cannot open", &top.shown(OUTPUT_DIR), &e))?,
            Err(e) => return Err(Error::io("cannot create", &top.shown(OUTPUT_DIR), &e)),
        };
        let framework = top
            .open_dir(FRAMEWORK_DIR)
            .map_err(|e| Error::io("cannot open", &top.shown(FRAMEWORK_DIR), &e))?;
        Ok(WorkerDirs {
            root,
            name,
            top,
            output,
            framework,
        })
    }

    /// Removes what we created, through the handles (a failed start): the worker directory's contents, then
    /// its name in the root only if that name is still our directory (never a symlink or a directory someone
    /// put in its place).
    pub fn discard(&self) {
        let _ = self.top.dir.clear(8);
        if let (Ok(ours), Ok(Some(now))) = (self.top.dir.stat(), self.root.stat_at(&self.name)) {
            if (ours.dev, ours.ino) == (now.dev, now.ino) {
                let _ = self.root.rmdir(&self.name);
            }
        }
    }

    /// Removes `FRAMEWORK/npuprof.spool`, `FRAMEWORK/mspti.spool` and its `mspti.names` (only `npuprof
    /// recover` needs them), then `FRAMEWORK/` if it is empty (after a successful export).
    pub fn remove_spool(&self) {
        let _ = self.framework.dir.unlink(SPOOL_NAME);
        let _ = self.framework.dir.unlink(MSPTI_SPOOL_NAME);
        let _ = self.framework.dir.unlink(MSPTI_NAMES_NAME);
        let ours = self.framework.dir.stat().ok();
        if let (Some(ours), Ok(Some(now))) = (ours, self.top.dir.stat_at(FRAMEWORK_DIR)) {
            if (ours.dev, ours.ino) == (now.dev, now.ino) {
                let _ = self.top.dir.rmdir(FRAMEWORK_DIR);
            }
        }
    }
}

fn not_a_directory(root: &Path) -> Error {
    Error::new(
        crate::error::Status::Io,
        format!(
            "VLLM_TORCH_PROFILER_DIR {} is not a directory",
            root.display()
        ),
    )
}

/// Opens the results root, creating it and its missing parents (mode [`DIR_MODE`] exactly) first. The root
/// may be reached through symlinks in its parents (the administrator's path); a symlink at the root itself
/// is followed only when it belongs to us or to root (as the kernel's `protected_symlinks` does in sticky
/// directories), since another user could point it anywhere.
pub fn open_root(root: &Path) -> Result<Dir> {
    let d = open_or_create(root, 0)?;
    let st = d
        .stat()
        .map_err(|e| Error::io("cannot stat VLLM_TORCH_PROFILER_DIR", root, &e))?;
    if st.kind != Kind::Dir {
        return Err(not_a_directory(root));
    }
    warn_if_shared(root, &st);
    Ok(d)
}

fn open_or_create(path: &Path, depth: u32) -> Result<Dir> {
    let err = match Dir::open(path) {
        Ok(d) => return Ok(d),
        Err(e) => e,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            if depth > 0 || m.uid() == euid || m.uid() == 0 {
                return Dir::open_follow(path).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOTDIR) => not_a_directory(path),
                    _ => Error::io("cannot open VLLM_TORCH_PROFILER_DIR", path, &e),
                });
            }
            return Err(Error::new(
                crate::error::Status::Io,
                format!(
                    "VLLM_TORCH_PROFILER_DIR {} is a symlink owned by another user (uid {}): not followed",
                    path.display(),
                    m.uid()
                ),
            ));
        }
        Ok(m) if !m.is_dir() => return Err(not_a_directory(path)),
        Ok(_) if depth > 0 => {
            // A parent: followed wherever it leads (Dir::open refused only a symlink, handled above).
            return Dir::open_follow(path)
                .map_err(|e| Error::io("cannot open VLLM_TORCH_PROFILER_DIR", path, &e));
        }
        Ok(_) => return Err(Error::io("cannot open VLLM_TORCH_PROFILER_DIR", path, &err)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot open VLLM_TORCH_PROFILER_DIR", path, &e)),
    }
    // Missing: create it in its parent (itself opened or created first), mode exact.
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| depth < 256);
    let (Some(name), Some(parent)) = (name, path.parent()) else {
        return Err(Error::io(
            "cannot create VLLM_TORCH_PROFILER_DIR",
            path,
            &err,
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let p = open_or_create(parent, depth + 1)?;
    match p.mkdir(name, DIR_MODE) {
        Ok(d) => Ok(d),
        // Created meanwhile by someone else (another worker starting): use it as if it had been there.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            p.open_dir(name).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => not_a_directory(path),
                _ => Error::io("cannot open VLLM_TORCH_PROFILER_DIR", path, &e),
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(not_a_directory(parent)),
        Err(e) => Err(Error::io("cannot create VLLM_TORCH_PROFILER_DIR", path, &e)),
    }
}

/// One warning per process for a root in which other users can rename or replace our worker directories:
/// owned by another user than us or root (its owner can always do so, sticky bit or not), or writable by
/// group or others without the sticky bit. Such a root is still used (every file goes through the handles
/// we opened), but others may move or delete results.
fn warn_if_shared(root: &Path, st: &crate::dir::Stat) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let why = if st.uid != euid && st.uid != 0 {
        format!("is owned by another user (uid {})", st.uid)
    } else if st.mode & 0o022 != 0 && st.mode & libc::S_ISVTX == 0 {
        format!(
            "is writable by {} without the sticky bit (mode {:o})",
            if st.mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            st.mode
        )
    } else {
        return;
    };
    if !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "VLLM_TORCH_PROFILER_DIR {} {why}: other users can rename or replace the result directories in it \
             (npuprof writes only through the directories it opened, but results may be moved or deleted); \
             use a directory of your own with mode 0750",
            root.display()
        );
    }
}

/// Creates a new, empty worker directory `{worker}_{stamp}_ascend_ms` (and its two subdirectories) under
/// `root`, opened once through the root's handle. Never reuses an existing name: on a clash (two starts in one
/// millisecond, or a planted file/symlink) the millisecond is bumped, so the name keeps the 17-digit
/// timestamp msprof-analyze parses.
pub fn create_worker_dir(root_path: &Path, worker: &str, realtime_ns: u64) -> Result<WorkerDirs> {
    let root = open_root(root_path)?;
    let mut t = realtime_ns;
    for _ in 0..1000 {
        let name = format!("{worker}_{}{SUFFIX}", stamp17(t));
        let shown = root_path.join(&name);
        let top = match root.mkdir(&name, DIR_MODE) {
            Ok(d) => Place {
                dir: d,
                path: shown,
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                t += 1_000_000;
                continue;
            }
            Err(e) => return Err(Error::io("cannot create worker directory", &shown, &e)),
        };
        let sub = |n: &str| {
            top.dir
                .mkdir(n, DIR_MODE)
                .map(|d| Place {
                    dir: d,
                    path: top.shown(n),
                })
                .map_err(|e| Error::io("cannot create", &top.shown(n), &e))
        };
        let made = sub(OUTPUT_DIR).and_then(|o| Ok((o, sub(FRAMEWORK_DIR)?)));
        let (output, framework) = match made {
            Ok(x) => x,
            Err(e) => {
                // Leave nothing half-made behind: what we created, through the handles.
                let _ = top.dir.clear(1);
                let _ = root.rmdir(&name);
                return Err(e);
            }
        };
        return Ok(WorkerDirs {
            root,
            name,
            top,
            output,
            framework,
        });
    }
    Err(Error::new(
        crate::error::Status::Io,
        format!(
            "no free worker directory name under {}",
            root_path.display()
        ),
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

/// Writes `name` in a directory atomically: into `name.tmp` created through the directory's handle, then
/// fdatasync and rename in that same directory. A crash leaves either no file or a complete one (plus perhaps
/// a stray `.tmp`).
pub struct AtomicFile {
    dir: Dir,
    tmp: String,
    name: String,
    /// `dir`'s path when opened, for messages.
    at: PathBuf,
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

    /// The bytes written to the file so far.
    pub fn position(&self) -> u64 {
        self.pos
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
    pub fn create(at: &Place, name: &str) -> Result<AtomicFile> {
        let tmp = format!("{name}.tmp");
        let f = at.create_new(&tmp)?;
        let dir = at
            .dir
            .try_clone()
            .map_err(|e| Error::io("cannot use", &at.path, &e))?;
        Ok(AtomicFile {
            dir,
            tmp,
            name: name.to_string(),
            at: at.path.clone(),
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

    /// The destination, for messages.
    pub fn shown(&self) -> PathBuf {
        self.at.join(&self.name)
    }

    pub fn commit(mut self) -> Result<()> {
        let tmp = self.at.join(&self.tmp);
        self.w
            .flush()
            .map_err(|e| Error::io("cannot write", &tmp, &e))?;
        self.w
            .get_ref()
            .file()
            .sync_data()
            .map_err(|e| Error::io("cannot sync", &tmp, &e))?;
        self.dir
            .rename(&self.tmp, &self.name)
            .map_err(|e| Error::io("cannot rename into", &self.shown(), &e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed (error path): remove the partial file.
        if !self.committed {
            let _ = self.dir.unlink(&self.tmp);
        }
    }
}

/// Writes a whole small file atomically.
pub fn write_atomic(at: &Place, name: &str, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(at, name)?;
    f.w.write_all(bytes)
        .map_err(|e| Error::io("cannot write", &at.shown(name), &e))?;
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
        let p1 = create_worker_dir(&root, "w", t).unwrap().top.path;
        let p2 = create_worker_dir(&root, "w", t).unwrap().top.path;
        assert_ne!(p1, p2);
        assert!(p2
            .to_str()
            .unwrap()
            .ends_with("w_20250101030405679_ascend_ms"));
        // A symlink planted at the next name is skipped, not followed.
        let target = d.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, root.join("w_20250101030405680_ascend_ms")).unwrap();
        let p3 = create_worker_dir(&root, "w", t).unwrap().top.path;
        assert!(p3
            .to_str()
            .unwrap()
            .ends_with("w_20250101030405681_ascend_ms"));
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
        assert!(p3.join(OUTPUT_DIR).is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, DIR_MODE, "root mode {mode:o}");
    }

    #[test]
    fn a_failed_start_removes_only_what_it_created_never_through_a_swapped_name() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let w = create_worker_dir(&root, "w", 0).unwrap();
        write_atomic(&w.output, "x.json", b"[]").unwrap();
        // The name is swapped for another directory (someone else's) holding files.
        let other = d.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("keep"), b"keep").unwrap();
        fs::rename(&w.top.path, d.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&other, &w.top.path).unwrap();
        w.discard();
        assert_eq!(fs::read(other.join("keep")).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&w.top.path).unwrap().is_symlink());
        // Ours was emptied through its handle (its new name is not ours to remove).
        assert_eq!(fs::read_dir(d.path().join("moved")).unwrap().count(), 0);
        // Not swapped: removed whole.
        let w2 = create_worker_dir(&root, "w", 0).unwrap();
        write_atomic(&w2.framework, SPOOL_NAME, b"s").unwrap();
        w2.discard();
        assert!(!w2.top.path.exists());
    }

    #[test]
    fn atomic_file_is_all_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let at = Place::open(d.path()).unwrap();
        let p = d.path().join("x.json");
        {
            let mut f = AtomicFile::create(&at, "x.json").unwrap();
            f.w.write_all(b"partial").unwrap();
            // dropped without commit
        }
        assert!(!p.exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        write_atomic(&at, "x.json", b"[]").unwrap();
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
        let at = Place::open(d.path()).unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("trace_view.json.tmp")).unwrap();
        assert!(AtomicFile::create(&at, "trace_view.json").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn early_writeback_keeps_every_byte_in_order() {
        // Several writeback steps, written in odd-sized pieces: the committed file is exactly what was written.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big.json");
        let mut f = AtomicFile::create(&Place::open(d.path()).unwrap(), "big.json").unwrap();
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
