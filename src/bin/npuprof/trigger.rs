//! `npuprof trigger start|stop --pid PID`: asks a running process (NPUPROF_CONTROL=1) to start or stop a
//! profile through its control directory, and waits for its answer.

use crate::text::{say, warn};
use crate::usage;
use npuprof::control::{
    self,
    channel::{self, Answer, Client, SendError},
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The wait for an answer when `--timeout` is not given (the process polls five times a second).
pub(crate) const DEFAULT_TIMEOUT_S: f64 = 10.0;
/// The longest `--timeout` accepted.
pub(crate) const MAX_TIMEOUT_S: f64 = 3600.0;

/// `--timeout S`: more than 0 and at most [`MAX_TIMEOUT_S`] seconds (negative, NaN, infinite or huge values
/// are usage errors, found before anything is sent).
fn timeout(args: &[String]) -> Result<Duration, String> {
    let Some(i) = args.iter().position(|a| a == "--timeout") else {
        return Ok(Duration::from_secs_f64(DEFAULT_TIMEOUT_S));
    };
    let t = args.get(i + 1).map(String::as_str).unwrap_or("");
    match t.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_S => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "trigger --timeout {t:?}: seconds to wait, a number more than 0 and at most {MAX_TIMEOUT_S}"
        )),
    }
}

/// What `trigger` is asked to do: the command, the process, its VLLM_TORCH_PROFILER_DIR and the wait.
struct Request<'a> {
    /// `start` or `stop`.
    cmd: &'a str,
    pid: u32,
    root: PathBuf,
    timeout: Duration,
}

pub(crate) fn run(args: &[String]) -> u8 {
    let req = match request(args) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let owner = match process_owner(req.pid) {
        Ok(uid) => uid,
        Err(code) => return code,
    };
    let ch = match open_channel(&req, owner) {
        Ok(ch) => ch,
        Err(code) => return code,
    };
    if let Err(e) = ch.send(req.cmd) {
        warn(&format!(
            "npuprof trigger: cannot write {}: {e}",
            control::dir(&req.root)
                .join(channel::cmd_name(req.pid))
                .display()
        ));
        return 1;
    }
    wait_answer(&ch, &req)
}

/// The request in `args`; a usage error (its exit code, the message printed) when one is missing or bad.
fn request(args: &[String]) -> Result<Request<'_>, u8> {
    let pos = crate::positional(args);
    let cmd = match pos.first() {
        Some(&c) if c == "start" || c == "stop" => c,
        _ => return Err(usage("trigger needs start or stop")),
    };
    let Some(pid) = crate::opt(args, "--pid").and_then(|p| p.parse::<u32>().ok()) else {
        return Err(usage("trigger needs --pid PID"));
    };
    let root = match crate::opt(args, "--dir")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VLLM_TORCH_PROFILER_DIR").map(PathBuf::from))
    {
        Some(r) => r,
        None => return Err(usage("trigger needs --dir DIR or $VLLM_TORCH_PROFILER_DIR")),
    };
    let timeout = timeout(args).map_err(|e| usage(&e))?;
    Ok(Request {
        cmd,
        pid,
        root,
        timeout,
    })
}

/// The uid of process `pid`, when we may trigger it; else exit code 2, the reason printed.
fn process_owner(pid: u32) -> Result<u32, u8> {
    // Same user only (the process also checks the command file's owner).
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    // The process's uid: it owns `.control` and its answers.
    match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(m) if m.uid() == uid || uid == 0 => Ok(m.uid()),
        Ok(_) => {
            eprintln!("npuprof trigger: process {pid} belongs to another user");
            Err(2)
        }
        Err(_) => {
            eprintln!("npuprof trigger: no process {pid}");
            Err(2)
        }
    }
}

/// The process's control channel; else exit code 3, with why it is not there or not trusted.
fn open_channel(req: &Request<'_>, owner: u32) -> Result<Client, u8> {
    let (pid, root) = (req.pid, &req.root);
    let dir = control::dir(root);
    match Client::open(root, pid, owner) {
        Ok(ch) => Ok(ch),
        Err(SendError::NotWatching) => {
            warn(&format!(
                "npuprof trigger: {} does not exist: process {pid} is not watching (run it with \
                 NPUPROF_CONTROL=1 and VLLM_TORCH_PROFILER_DIR={})",
                dir.display(),
                root.display()
            ));
            Err(3)
        }
        Err(SendError::Refused(r)) => {
            warn(&format!(
                "npuprof trigger: process {pid} refuses its control channel {}: it is {r} (it must be a \
                 directory owned by uid {owner} and writable by no one else; remove it and the process \
                 creates it)",
                dir.display()
            ));
            Err(3)
        }
    }
}

/// Waits up to the request's timeout for the process's answer and prints it; returns the exit code (3 when
/// none came: the command is withdrawn).
fn wait_answer(ch: &Client, req: &Request<'_>) -> u8 {
    let (cmd, pid) = (req.cmd, req.pid);
    let t0 = Instant::now();
    while t0.elapsed() < req.timeout {
        match ch.answer() {
            None => {}
            Some(Answer::Done(rest)) => {
                say(&format!(
                    "{}: {rest}",
                    if cmd == "start" { "started" } else { "stopped" }
                ));
                return 0;
            }
            Some(Answer::Failed { status, msg }) => {
                warn(&format!(
                    "npuprof trigger {cmd}: process {pid} answered: {msg} (status {status})"
                ));
                return 1;
            }
            Some(Answer::Refused(why)) => {
                warn(&format!(
                    "npuprof trigger {cmd}: process {pid} refused the command: {why}"
                ));
                return 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ch.withdraw();
    eprintln!(
        "npuprof trigger: no answer from process {pid} within {} s (is it running with \
         NPUPROF_CONTROL=1, and has it loaded libnpuprof.so?)",
        req.timeout.as_secs_f64()
    );
    3
}
