//! On-demand start/stop from outside the process, like dynolog / msMonitor give CUDA and Ascend users:
//! `npuprof trigger start --pid P`. Opt-in with `NPUPROF_CONTROL=1`.
//!
//! The protocol is files, so it needs no socket code in the process and works wherever the results go:
//! * `npuprof trigger` writes `start` or `stop` into `$VLLM_TORCH_PROFILER_DIR/.control/<pid>.cmd`.
//! * The process's drain thread polls for that file about every 200 ms. There is never a signal handler
//!   doing work.
//! * The drain thread removes the file, runs the command as `npuprof_start` / `npuprof_stop` would, and
//!   answers in `<pid>.ack`: `0 <worker dir>`, or `<status> <message>`.
//!
//! Only the same user can trigger a process:
//! * The process creates `.control/` with mode 0700.
//! * A command file that is not a regular file owned by the process's effective uid is removed unread, with
//!   a warning.
//! * The answer is written to a new file (`O_EXCL`, `O_NOFOLLOW`) and renamed into place.
//!
//! The watcher needs the background threads, which normally start at the first `npuprof_start`. With
//! `NPUPROF_CONTROL=1` they start at the first npuprof call of any kind, the configuration read. A runtime
//! that was not changed at all and only got `LD_PRELOAD=libnpuprof.so` makes no call, so `preload_ctor`
//! starts them.

use crate::config::Config;
use crate::error::{Error, Result, Status};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const DIR_NAME: &str = ".control";

pub fn dir(root: &Path) -> PathBuf {
    root.join(DIR_NAME)
}

pub fn cmd_path(root: &Path, pid: u32) -> PathBuf {
    dir(root).join(format!("{pid}.cmd"))
}

pub fn ack_path(root: &Path, pid: u32) -> PathBuf {
    dir(root).join(format!("{pid}.ack"))
}

/// Creates `.control/` (mode 0700) under the results root; called when watching begins.
pub fn prepare(cfg: &Config) {
    if let Some(root) = &cfg.profiler_dir {
        let d = dir(root);
        if let Err(e) = fs::DirBuilder::new().recursive(true).mode(0o700).create(&d) {
            log::warn!("NPUPROF_CONTROL: cannot create {}: {e}", d.display());
        } else {
            log::info!(
                "NPUPROF_CONTROL: accepting `npuprof trigger start|stop --pid {}` ({})",
                std::process::id(),
                d.display()
            );
        }
    }
}

/// Writes `bytes` to `path` atomically: a new file next to it (never through a planted link), renamed.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut f = crate::export::layout::create_new(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Reads a control file written by this user (regular file, owned by `uid`, at most 256 bytes).
pub fn read_own(path: &Path, uid: u32) -> std::result::Result<String, String> {
    let m = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !m.file_type().is_file() || m.uid() != uid {
        return Err(format!(
            "{} is not a regular file of uid {uid}: ignored",
            path.display()
        ));
    }
    let mut s = String::new();
    fs::File::open(path)
        .and_then(|f| f.take(256).read_to_string(&mut s))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// The drain thread's poll: runs a pending command of `npuprof trigger`, if any, and answers it.
pub fn poll(cfg: &Config) {
    // One line per poll at `NPUPROF_LOG=trace`: tests wait for polls instead of sleeping.
    log::trace!("NPUPROF_CONTROL: poll");
    let Some(root) = &cfg.profiler_dir else {
        return;
    };
    let pid = std::process::id();
    let p = cmd_path(root, pid);
    if fs::symlink_metadata(&p).is_err() {
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let cmd = read_own(&p, uid);
    let _ = fs::remove_file(&p);
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => {
            log::warn!("NPUPROF_CONTROL: {e}");
            return;
        }
    };
    let r: Result<()> = match cmd.trim() {
        "start" => crate::session::start(),
        "stop" => crate::session::stop(),
        other => Err(Error::new(
            Status::InvalidArgument,
            format!("unknown control command {other:?} (start, stop)"),
        )),
    };
    let answer = match &r {
        Ok(()) => format!(
            "0 {}\n",
            crate::session::output_dir().map_or(String::new(), |d| d.display().to_string())
        ),
        Err(e) => format!("{} {}\n", e.status as i32, e.msg),
    };
    match &r {
        Ok(()) => log::info!("NPUPROF_CONTROL: {} done", cmd.trim()),
        Err(e) => log::warn!("NPUPROF_CONTROL: {}: {}", cmd.trim(), e.msg),
    }
    if let Err(e) = write_new(&ack_path(root, pid), answer.as_bytes()) {
        log::warn!(
            "NPUPROF_CONTROL: cannot answer in {}: {e}",
            dir(root).display()
        );
    }
}

/// The watcher for a runtime that only got `LD_PRELOAD=libnpuprof.so` and never calls npuprof.
///
/// Why a constructor here, and why it is safe only in this case:
/// * Without it, nothing in such a process would ever run our code.
/// * A thread started from the constructor of a library that is `dlopen`ed runs while the loader holds its
///   lock. If that thread needs the lock (lazy binding, dynamic TLS), and the `dlopen` caller's other code
///   waits for the thread, the process deadlocks. So this constructor does nothing unless both hold:
///   1. `NPUPROF_CONTROL` is true. That is one `getenv`, with no allocation and no side effect.
///   2. This very file is listed in `LD_PRELOAD`. Then the loader mapped it at program start, before
///      `main`, and ran this constructor from its initial `_dl_init`, which holds no `dlopen` lock. A later
///      `dlopen` of the same library finds it already loaded, and constructors do not run twice.
/// * A `dlopen`ed copy, even one named in `LD_PRELOAD` under another path, never starts a thread here. The
///   test `loading_the_library_starts_no_thread_and_creates_nothing` checks this with NPUPROF_CONTROL=1.
/// * When both hold, the constructor reads the configuration, which starts the background threads (the
///   watcher). It is the same code that runs on the first npuprof call of a changed runtime.
/// * Everything is behind `catch_unwind`: a failure logs and leaves the process alone.
extern "C" fn preload_ctor() {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: getenv with a NUL-terminated name; the result is only read before any setenv of ours.
        let on = unsafe { libc::getenv(c"NPUPROF_CONTROL".as_ptr()) };
        if on.is_null() {
            return;
        }
        // SAFETY: getenv returned a NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(on) };
        if !v
            .to_str()
            .ok()
            .and_then(crate::config::parse_bool)
            .unwrap_or(false)
            || !preloaded()
        {
            return;
        }
        crate::session::config();
    });
}

/// This library file is named in `LD_PRELOAD` (space or colon separated; by path or by file name).
fn preloaded() -> bool {
    // SAFETY: dladdr on the address of one of our functions with a zeroed out-parameter.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::dladdr(preload_ctor as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader; LD_PRELOAD likewise from getenv.
    let me = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    let pre = unsafe { libc::getenv(c"LD_PRELOAD".as_ptr()) };
    if pre.is_null() {
        return false;
    }
    // SAFETY: as above.
    let pre = unsafe { std::ffi::CStr::from_ptr(pre) }.to_bytes();
    let same = |a: &[u8]| -> bool {
        if a.is_empty() {
            return false;
        }
        if a == me {
            return true;
        }
        // The same file under another spelling of its path (relative, symlinked).
        match (
            fs::canonicalize(bytes_path(a)),
            fs::canonicalize(bytes_path(me)),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    };
    pre.split(|&c| c == b':' || c == b' ').any(same)
}

fn bytes_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

#[used]
#[link_section = ".init_array"]
static PRELOAD_CTOR: extern "C" fn() = preload_ctor;
