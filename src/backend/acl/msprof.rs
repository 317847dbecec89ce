//! Finding and running CANN's `msprof --export=on` (export thread only).
//!
//! msprof is a script that runs Python, which may start processes of its own; some call `setsid` and so leave
//! msprof's process group. So that every descendant ends with msprof (and none writes into its output after
//! npuprof parsed it), msprof runs under a helper process of ours: a plain `fork` of the export thread that
//! makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`, a per-process attribute: set in the helper, never
//! in the host), forks and execs msprof in its own process group, waits for it up to the timeout (then kills
//! its group) — or until the host is gone (the helper's parent changes) or the export cancels it (a byte on the
//! cancel pipe: the exit hook's cut, see `process::Exit::cut_passed`), and then kills and reaps every process
//! left below it — orphans are re-parented to the helper,
//! which finds them in `/proc/thread-self/children` — before it exits. The export thread parses msprof's
//! output only after the helper has exited. Between `fork` and `exec`/`_exit` the helper makes only
//! async-signal-safe system calls on memory prepared before the fork (the host is multithreaded).

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `msprof` on PATH (as torch_npu looks it up), else in the toolkit's `tools/profiler/bin`.
pub(super) fn find_msprof() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("msprof");
            if exe(&p) {
                return Some(p);
            }
        }
    }
    for var in ["ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let p = Path::new(&home).join("tools/profiler/bin/msprof");
            if exe(&p) {
                return Some(p);
            }
        }
    }
    None
}

pub(super) enum RunError {
    Spawn(String),
    Failed(String),
    Timeout(u64),
    /// Stopped at process exit (the exit hook's cut): the host result is written, the device data is not.
    Cancelled,
}

/// What the helper reports through its pipe: (kind, value).
const EXITED: u32 = 0;
const SIGNALED: u32 = 1;
const TIMED_OUT: u32 = 2;
const EXEC_FAILED: u32 = 3;
const CANCELLED: u32 = 4;
/// Report size: kind, value, descendants killed after msprof ended.
const REPORT: usize = 12;
/// Time the helper spends ending msprof's leftover descendants.
const CLEANUP: Duration = Duration::from_secs(10);

fn cstring(b: &[u8]) -> Result<CString, RunError> {
    CString::new(b).map_err(|_| RunError::Spawn("a NUL byte in msprof's command line".into()))
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-parameter; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn nap(ms: i64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    // SAFETY: a valid timespec; nanosleep is async-signal-safe.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// SIGKILLs every child of the calling (single-threaded) process, listed in `children` (an open
/// `/proc/thread-self/children`), with its process group. Async-signal-safe: a stack buffer, raw syscalls.
/// Returns how many it signalled.
fn kill_children(children: &CStr) -> Option<usize> {
    // SAFETY: a NUL-terminated path; open/read/close are async-signal-safe.
    let fd = unsafe { libc::open(children.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 512];
    let (mut pid, mut digits, mut n) = (0i32, false, 0usize);
    loop {
        // SAFETY: reads at most buf.len() bytes into our stack buffer.
        let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let end = got <= 0;
        let len = if end { 0 } else { got as usize };
        for &c in buf[..len]
            .iter()
            .chain(if end { &b" "[..] } else { &[][..] })
        {
            if c.is_ascii_digit() {
                pid = pid.saturating_mul(10).saturating_add((c - b'0') as i32);
                digits = true;
            } else if digits {
                if pid > 1 {
                    // SAFETY: kill(2) of a child of ours, and of the group it may lead.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                        libc::kill(pid, libc::SIGKILL);
                    }
                    n += 1;
                }
                (pid, digits) = (0, false);
            }
        }
        if end {
            break;
        }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    Some(n)
}

/// Everything the helper needs, prepared before the fork.
struct Prepared {
    prog: CString,
    argv: Vec<*const libc::c_char>,
    devnull: CString,
    children: CString,
    cwd: RawFd,
    log: RawFd,
    report: RawFd,
    /// Read end of the cancel pipe (a byte: stop msprof now) and the write end (closed in the helper).
    cancel: RawFd,
    cancel_wr: RawFd,
    /// The host's pid: when the helper's parent is no longer it, the host has ended.
    host: libc::pid_t,
    timeout_ns: u64,
    /// Fault injection only (`hold@msprof.timeout=FILE`, see `crate::fault`): the timeout starts once FILE
    /// exists (polled, at most `fault::HOLD_LIMIT_NS`), so a test's timeout never races msprof's start.
    hold: Option<CString>,
}

/// Whether the helper must stop msprof now: the host process is gone (the helper was re-parented), or the
/// export asked (a byte, or every write end closed, on the cancel pipe). Async-signal-safe.
fn cancelled(p: &Prepared) -> bool {
    // SAFETY: getppid and poll are async-signal-safe; one pollfd on our stack.
    unsafe {
        if libc::getppid() != p.host {
            return true;
        }
        let mut fds = libc::pollfd {
            fd: p.cancel,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut fds, 1, 0) > 0 && fds.revents & (libc::POLLIN | libc::POLLHUP) != 0
    }
}

/// Reports to the parent through the pipe: what happened (`kind`, `value`) and the leftovers killed.
fn report(p: &Prepared, kind: u32, value: i32, killed: u32) {
    let mut b = [0u8; REPORT];
    b[..4].copy_from_slice(&kind.to_ne_bytes());
    b[4..8].copy_from_slice(&value.to_ne_bytes());
    b[8..].copy_from_slice(&killed.to_ne_bytes());
    // SAFETY: writes our stack buffer to the pipe (a single atomic write, < PIPE_BUF).
    unsafe { libc::write(p.report, b.as_ptr().cast(), REPORT) };
}

/// The helper's whole life (in the forked child; never returns): start msprof, wait for it within the
/// timeout (killing it at the timeout or on cancel), end and reap whatever it left behind, report.
fn helper(p: &Prepared) -> ! {
    // SAFETY: (this block) close/prctl/setpgid/fork/sigprocmask/_exit are async-signal-safe and change only
    // this process. No PR_SET_PDEATHSIG: killed with the host, the helper could not end msprof; it watches for
    // the host's end itself (`cancelled`). Adopt orphaned descendants; a group of our own (no terminal signal
    // meant for the host reaches msprof through us).
    let msprof = unsafe {
        libc::close(p.cancel_wr);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong);
        libc::setpgid(0, 0);
        // A host that ignores SIGCHLD would have msprof reaped behind our back.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::fork()
    };
    if msprof < 0 {
        report(
            p,
            EXEC_FAILED,
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            0,
        );
        // SAFETY: ends the helper without running the host's atexit handlers.
        unsafe { libc::_exit(0) };
    }
    if msprof == 0 {
        exec_msprof(p);
    }
    hold_for_fault_injection(p);
    let outcome = wait_for_msprof(p, msprof);
    // Whatever msprof left behind ends now, and is reaped, before npuprof reads a byte of the output.
    let killed = end_leftovers(p);
    let (kind, value) = outcome;
    report(p, kind, value, killed);
    // SAFETY: ends the helper without running the host's atexit handlers.
    unsafe { libc::_exit(0) }
}

/// msprof's side of the second fork: its own group, stdin from /dev/null, stdout and stderr to the log, the
/// worker directory as its working directory, then exec (an exec failure is reported).
fn exec_msprof(p: &Prepared) -> ! {
    // SAFETY: msprof's side: async-signal-safe calls on prepared memory, then exec (or _exit).
    unsafe {
        libc::setpgid(0, 0);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let null = libc::open(p.devnull.as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
        }
        libc::dup2(p.log, 1);
        libc::dup2(p.log, 2);
        if libc::fchdir(p.cwd) == 0 {
            libc::execv(p.prog.as_ptr(), p.argv.as_ptr());
        }
        let e = *libc::__errno_location();
        report(p, EXEC_FAILED, e, 0);
        libc::_exit(127);
    }
}

/// Fault injection: waits (bounded, cancellable) while the hold file is absent.
fn hold_for_fault_injection(p: &Prepared) {
    if let Some(h) = &p.hold {
        let until = now_ns().saturating_add(crate::fault::HOLD_LIMIT_NS);
        // SAFETY: access(2) on a path prepared before the fork; async-signal-safe.
        while unsafe { libc::access(h.as_ptr(), libc::F_OK) } != 0
            && now_ns() < until
            && !cancelled(p)
        {
            nap(10);
        }
    }
}

/// Waits for msprof (reaping orphans meanwhile) until it ends, the timeout passes or the host cancels (then
/// msprof and its group are killed). Returns the report's kind and value.
fn wait_for_msprof(p: &Prepared, msprof: libc::pid_t) -> (u32, i32) {
    let deadline = now_ns().saturating_add(p.timeout_ns);
    loop {
        let mut st = 0;
        // SAFETY: waits for any child (msprof, or an orphan re-parented to us), without blocking.
        let got = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if got == msprof {
            return if libc::WIFEXITED(st) {
                (EXITED, libc::WEXITSTATUS(st))
            } else {
                (SIGNALED, libc::WTERMSIG(st))
            };
        } else if got > 0 {
            continue;
        // SAFETY: reading errno right after the call.
        } else if got < 0 && unsafe { *libc::__errno_location() } == libc::ECHILD {
            return (EXITED, -1);
        } else if now_ns() >= deadline || cancelled(p) {
            let why = if now_ns() >= deadline {
                TIMED_OUT
            } else {
                CANCELLED
            };
            // SAFETY: kill(2) of msprof's own group and of msprof.
            unsafe {
                libc::kill(-msprof, libc::SIGKILL);
                libc::kill(msprof, libc::SIGKILL);
            }
            return (why, 0);
        } else {
            nap(10);
        }
    }
}

/// Kills and reaps every process msprof left behind (within CLEANUP). Returns how many were killed.
fn end_leftovers(p: &Prepared) -> u32 {
    let cleanup_end = now_ns().saturating_add(CLEANUP.as_nanos() as u64);
    let mut killed = 0u32;
    loop {
        killed = killed.saturating_add(kill_children(&p.children).unwrap_or(0) as u32);
        let mut st = 0;
        // SAFETY: reaps any child without blocking.
        let got = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if got > 0 {
            continue;
        }
        // SAFETY: reading errno right after the call.
        if got < 0 && unsafe { *libc::__errno_location() } == libc::ECHILD {
            break;
        }
        if now_ns() >= cleanup_end {
            break;
        }
        nap(2);
    }
    killed
}

/// Runs `msprof --export=on --output=<prof>` under the helper, its output going to `log`, killed after
/// `timeout` with everything it started. msprof starts in the worker directory we hold open (`fchdir(cwd)`)
/// and gets `prof` relative to it, so it works on the directory npuprof created even if someone renamed or
/// replaced its name in the root (a `/proc/self/fd/N` path would name the child's own descriptors, and msprof
/// rejects symlinked paths). Returns once msprof and all its descendants have ended.
pub(super) fn run_msprof(
    msprof: &Path,
    cwd: RawFd,
    prof: &Path,
    log: &std::fs::File,
    timeout: Duration,
    exit: &crate::process::Exit,
    leftovers: &mut u32,
) -> Result<(), RunError> {
    // A relative program path (a relative PATH entry) must not be looked up in the directory we chdir to.
    let prog_path = std::path::absolute(msprof).unwrap_or_else(|_| msprof.to_path_buf());
    let prog = cstring(prog_path.as_os_str().as_bytes())?;
    let mut out = b"--output=".to_vec();
    out.extend_from_slice(prof.as_os_str().as_bytes());
    let args = [prog.clone(), cstring(b"--export=on")?, cstring(&out)?];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // The helper's report (helper → us) and the cancel pipe (us → helper).
    let (rd, wr) = pipe()?;
    let (cancel_rd, cancel_wr) = pipe()?;
    let prep = Prepared {
        prog,
        argv,
        devnull: cstring(b"/dev/null")?,
        children: cstring(b"/proc/thread-self/children")?,
        cwd,
        log: log.as_raw_fd(),
        report: wr.as_raw_fd(),
        cancel: cancel_rd.as_raw_fd(),
        cancel_wr: cancel_wr.as_raw_fd(),
        // SAFETY: getpid has no preconditions.
        host: unsafe { libc::getpid() },
        timeout_ns: timeout.as_nanos().min(u64::MAX as u128) as u64,
        hold: crate::fault::hold_path("msprof.timeout"),
    };
    // SAFETY: the child runs only `helper`, which makes async-signal-safe calls on `prep` (prepared above)
    // and ends in `_exit`; the parent continues normally.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RunError::Spawn(format!(
            "cannot run {}: fork: {}",
            msprof.display(),
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        helper(&prep);
    }
    drop(wr);
    drop(cancel_rd);
    // The helper enforces the timeout and its cleanup is bounded; this bound only guards against a helper
    // that is itself stuck (then it is killed, and what it would have cleaned up may survive).
    let mut bound = timeout + CLEANUP + Duration::from_secs(30);
    if prep.hold.is_some() {
        bound += Duration::from_nanos(crate::fault::HOLD_LIMIT_NS);
    }
    wait_for_helper(pid, &cancel_wr, bound, timeout, exit)?;
    read_report(rd, msprof, timeout, leftovers)
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    let mut fds = [0; 2];
    // SAFETY: a valid two-element out-array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RunError::Spawn(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for the helper `pid` to end; tells it to cancel (through `cancel_wr`) at the exit hook's cut, and
/// kills it past `bound`.
fn wait_for_helper(
    pid: libc::pid_t,
    cancel_wr: &OwnedFd,
    bound: Duration,
    timeout: Duration,
    exit: &crate::process::Exit,
) -> Result<(), RunError> {
    let mut cancel_sent = false;
    let t0 = Instant::now();
    loop {
        let mut st = 0;
        // SAFETY: waits for our own helper without blocking.
        let got = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if got == pid || got < 0 {
            return Ok(());
        }
        if !cancel_sent && exit.cut_passed() {
            // The exit hook's cut: msprof must end now (the helper kills it and everything it started).
            // SAFETY: writes one byte from our stack to the pipe we own.
            unsafe { libc::write(cancel_wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            cancel_sent = true;
        }
        if t0.elapsed() >= bound {
            // SAFETY: kill(2) and reap of our own helper.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut st, 0);
            }
            return Err(RunError::Timeout(timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the helper's report from `rd` (an exec failure is reported first, then the helper's outcome: the
/// first message decides) and turns it into msprof's result; sets `leftovers`.
fn read_report(
    rd: OwnedFd,
    msprof: &Path,
    timeout: Duration,
    leftovers: &mut u32,
) -> Result<(), RunError> {
    let mut msg = [0u8; 2 * REPORT];
    let mut f = std::fs::File::from(rd);
    let n = std::io::Read::read(&mut f, &mut msg).unwrap_or(0);
    if n < REPORT {
        return Err(RunError::Failed(
            "the msprof helper ended without a report".into(),
        ));
    }
    let word = |i: usize| <[u8; 4]>::try_from(&msg[i..i + 4]).unwrap_or_default();
    let (kind, value) = (u32::from_ne_bytes(word(0)), i32::from_ne_bytes(word(4)));
    let killed = u32::from_ne_bytes(word(8));
    if killed > 0 {
        log::warn!(
            "msprof left {killed} process(es) running after it ended (some outside its process group): killed \
             before its output was read"
        );
    }
    *leftovers = killed;
    match kind {
        EXITED if value == 0 => Ok(()),
        EXITED => Err(RunError::Failed(format!("exit status: {value}"))),
        SIGNALED => Err(RunError::Failed(format!("killed by signal {value}"))),
        TIMED_OUT => Err(RunError::Timeout(timeout.as_secs())),
        CANCELLED => Err(RunError::Cancelled),
        _ => Err(RunError::Spawn(format!(
            "cannot run {}: {}",
            msprof.display(),
            std::io::Error::from_raw_os_error(value)
        ))),
    }
}
