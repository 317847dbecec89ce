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
//! Only the same user can trigger a process (see [`channel`]):
//! * The process creates `.control/` with mode 0700, through a handle of the root, and uses an existing one
//!   only when it is a directory of its own (no symlink) owned by its effective uid and writable by no one
//!   else; otherwise the channel is refused with one warning (retried at each poll, silently).
//! * A command file is opened without following a symlink and without blocking (a FIFO swapped in is
//!   refused at once), and run only when it is a regular file of the process's uid, at most
//!   [`channel::MAX_FILE`] bytes. Anything else is removed unread (a directory is left, and warned about
//!   once), with a warning and an answer `refused <why>` that `npuprof trigger` prints.
//! * The answer is written to a new file (`O_EXCL`, `O_NOFOLLOW`) and renamed into place, within the handle.
//!
//! The watcher needs the background threads, which normally start at the first `npuprof_start`. With
//! `NPUPROF_CONTROL=1` they start at the first npuprof call of any kind, the configuration read. A runtime
//! that was not changed at all and only got `LD_PRELOAD=libnpuprof.so` makes no call, so `preload_ctor`
//! starts them. `npuprof_shutdown` ends them; the next call that reads the configuration (`start`, `stop`,
//! `flush`, `output_dir`, ...) starts them again. The watcher's state (the `.control` handle) belongs to the
//! drain thread and ends with it.

pub mod channel;
pub mod job;
mod job_watch;

use crate::config::Config;
use crate::error::{Result, Status};
use crate::session::window::StartOptions;
use channel::{Answer, CmdRefusal, DirRefusal};
use std::cell::RefCell;
use std::fs;
use std::path::Path;

pub use channel::{dir, DIR_NAME};

/// What the watcher last warned about, not repeated while it persists.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Problem {
    Channel(DirRefusal),
    Command(CmdRefusal),
}

/// The watcher's state, owned by the drain thread (a new drain thread starts afresh).
#[derive(Default)]
struct Watch {
    /// `.control`, once accepted.
    dir: Option<crate::dir::Dir>,
    warned: Option<Problem>,
    /// The job-wide channel: registration, the job command last seen, the start waiting for its step.
    job: job_watch::JobWatch,
}

impl Drop for Watch {
    /// The watcher ends with its thread (`npuprof_shutdown`): it deregisters.
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            self.job.deregister(d);
        }
    }
}

thread_local! {
    static WATCH: RefCell<Watch> = RefCell::default();
}

/// Creates `.control/` (mode 0700, through a handle of the root) when watching begins, so that `npuprof
/// trigger` finds it at once. Nothing is trusted here: the watcher's first poll checks what is there (and
/// warns about it) before using it.
pub fn prepare(cfg: &Config) {
    let Some(root) = &cfg.profiler_dir else {
        return;
    };
    // The step count `npuprof trigger --all` aligns starts on (published in the registration).
    crate::session::window::count_steps_for_watcher();
    if let Ok(r) = crate::layout::open_root(root) {
        let _ = r.mkdir(DIR_NAME, channel::DIR_MODE);
    }
}

/// The drain thread's poll: runs a pending command of `npuprof trigger`, if any, and answers it.
pub fn poll(cfg: &Config) {
    // One line per poll at `NPUPROF_LOG=trace`: tests wait for polls instead of sleeping.
    log::trace!("NPUPROF_CONTROL: poll");
    let Some(root) = &cfg.profiler_dir else {
        return;
    };
    WATCH.with(|w| match w.try_borrow_mut() {
        Ok(mut w) => w.poll(root),
        Err(_) => log::error!("NPUPROF_CONTROL: poll re-entered (ignored)"),
    });
}

/// Logs `msg` unless `p` is what was warned about last; true when it logged.
fn warn_once(warned: &mut Option<Problem>, p: Problem, msg: impl FnOnce() -> String) -> bool {
    if warned.as_ref() == Some(&p) {
        return false;
    }
    log::warn!("{}", msg());
    *warned = Some(p);
    true
}

impl Watch {
    /// Runs this process's pending command, if any, and answers it; opens the channel first if needed.
    fn poll(&mut self, root: &Path) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let pid = std::process::id();
        if self.dir.is_none() && !self.open_channel(root, uid, pid) {
            return;
        }
        let Some(d) = &self.dir else {
            return;
        };
        if let Some(cmd) = take_command(d, &mut self.warned, root, (uid, pid)) {
            let (a, waiting) = self.job.run(&job::Command::parse(&cmd));
            answer(d, root, pid, &a);
            if let Some(w) = waiting {
                self.job.track(w, channel::ack_name(pid));
            }
        }
        self.job.poll(d, root, uid);
        if self.job.lost_channel() {
            // `.control` was removed under us: reopen (and recreate) it at the next poll.
            log::warn!(
                "NPUPROF_CONTROL: {} was removed; creating it again",
                dir(root).display()
            );
            self.dir = None;
        }
    }

    /// Opens `.control/` under `root` (checked: ours, mode 0700, not a symlink); false, warning once per
    /// problem, when it cannot be used.
    fn open_channel(&mut self, root: &Path, uid: u32, pid: u32) -> bool {
        let r = match crate::layout::open_root(root) {
            Ok(r) => r,
            Err(e) => {
                let p = Problem::Channel(DirRefusal::Io(e.msg.clone()));
                warn_once(&mut self.warned, p, || {
                    format!("NPUPROF_CONTROL: no control channel: {}", e.msg)
                });
                return false;
            }
        };
        match channel::open_dir(&r, uid, true) {
            Ok(d) => {
                log::info!(
                    "NPUPROF_CONTROL: accepting `npuprof trigger start|stop --pid {pid}` ({})",
                    dir(root).display()
                );
                self.dir = Some(d);
                self.warned = None;
                true
            }
            Err(r) => {
                let d = dir(root);
                warn_once(&mut self.warned, Problem::Channel(r.clone()), || {
                    format!(
                        "NPUPROF_CONTROL: refusing the control channel {}: it is {r}; `npuprof \
                         trigger` cannot reach this process (remove it: npuprof creates it with mode \
                         0700)",
                        d.display()
                    )
                });
                false
            }
        }
    }
}

/// Reads and removes this process's command file from `.control/` (handle `d`); a refused one is removed
/// unread where possible, warned about once and answered.
fn take_command(
    d: &crate::dir::Dir,
    warned: &mut Option<Problem>,
    root: &Path,
    (uid, pid): (u32, u32),
) -> Option<String> {
    let name = channel::cmd_name(pid);
    let cmd = match channel::read_small(d, &name, uid) {
        Ok(None) => {
            *warned = None;
            return None;
        }
        Ok(Some(c)) => c,
        Err(r) => {
            // Removed unread (a directory cannot be, and stays: warned about once while it does).
            let removed = r != CmdRefusal::Directory && d.unlink(&name).is_ok();
            let shown = dir(root).join(&name);
            let logged = warn_once(warned, Problem::Command(r), || {
                format!(
                    "NPUPROF_CONTROL: {}: {r}: {}",
                    shown.display(),
                    if removed { "removed unread" } else { "ignored" }
                )
            });
            if logged {
                answer(d, root, pid, &Answer::Refused(r.to_string()));
            }
            if removed {
                // The next file is a new event: warn about it too.
                *warned = None;
            }
            return None;
        }
    };
    *warned = None;
    let _ = d.unlink(&name);
    Some(cmd)
}

/// Runs a command (a `start` or `stop`, with a start's window; one that did not parse is refused with its
/// reason) and logs the outcome; returns the answer and, for a start that waits for its step, its id.
fn run_command(cmd: &std::result::Result<job::Command, String>) -> (Answer, Option<u64>) {
    let cmd = match cmd {
        Ok(c) => c,
        Err(msg) => {
            log::warn!("NPUPROF_CONTROL: {msg}");
            let status = Status::InvalidArgument as i32;
            let msg = msg.clone();
            return (Answer::Failed { status, msg }, None);
        }
    };
    let what = cmd.verb.name();
    let r: Result<u64> = match cmd.verb {
        job::Verb::Start => crate::session::start_with(&StartOptions {
            max_steps: cmd.steps,
            at_step: cmd.at_step,
            max_seconds: cmd.max_seconds,
            ..StartOptions::default()
        }),
        job::Verb::Stop => crate::session::stop().map(|()| 0),
    };
    match &r {
        Ok(0) => log::info!("NPUPROF_CONTROL: {what} done"),
        Ok(_) => log::info!("NPUPROF_CONTROL: {what} armed"),
        Err(e) => log::warn!("NPUPROF_CONTROL: {what}: {}", e.msg),
    }
    match r {
        Ok(0) => {
            let dir =
                crate::session::output_dir().map_or(String::new(), |d| d.display().to_string());
            (Answer::Done(dir), None)
        }
        Ok(id) => (job_watch::outcome_answer(id), Some(id)),
        Err(e) => {
            let status = e.status as i32;
            (Answer::Failed { status, msg: e.msg }, None)
        }
    }
}

/// Writes the answer to this process's command, through the `.control` handle.
fn answer(d: &crate::dir::Dir, root: &Path, pid: u32, a: &Answer) {
    let name = channel::ack_name(pid);
    if let Err(e) = write_file(d, root, &name, &a.line()) {
        if e.kind() == std::io::ErrorKind::NotFound {
            log::warn!(
                "NPUPROF_CONTROL: cannot write {}: {e}",
                dir(root).join(&name).display()
            );
        }
    }
}

/// Writes `text` as `name` in `.control` (handle `d`); an error other than "`.control` is gone" is warned
/// about here, and every error is returned.
fn write_file(d: &crate::dir::Dir, root: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let r = channel::write_small(d, name, text.as_bytes());
    if let Some(e) = r
        .as_ref()
        .err()
        .filter(|e| e.kind() != std::io::ErrorKind::NotFound)
    {
        log::warn!(
            "NPUPROF_CONTROL: cannot write {}: {e}",
            dir(root).join(name).display()
        );
    }
    r
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
    // SAFETY: Dl_info is plain pointers and integers, for which all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr on the address of one of our functions with a zeroed out-parameter.
    let ok = unsafe { libc::dladdr(preload_ctor as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader; LD_PRELOAD likewise from getenv.
    let me = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    // SAFETY: a NUL-terminated name; the result is read at once (see above).
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
