//! `npuprof trigger start|stop --pid PID`: asks a running process (NPUPROF_CONTROL=1) to start or stop a
//! profile through its control directory, and waits for its answer. `--all` is the job-wide form
//! (`trigger_all`); both share the request parsed here.

use crate::text::{say, warn};
use crate::usage;
use npuprof::control::{
    self,
    channel::{self, Answer, Client, SendError},
    job::{Command, Verb},
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

/// What `trigger` is asked to do: the command, the process (none with `--all`), its
/// VLLM_TORCH_PROFILER_DIR and the wait.
pub(crate) struct Request<'a> {
    /// `start` or `stop`.
    pub cmd: &'a str,
    pub pid: u32,
    pub root: PathBuf,
    pub timeout: Duration,
    /// The command as sent: the verb and a start's window (`--steps`, `--at-step`, `--max-seconds`).
    pub command: Command,
    /// `--lead S` (`--all` without `--at-step`): how far ahead the common step is aimed, in seconds.
    pub lead: Duration,
}

pub(crate) fn run(args: &[String]) -> u8 {
    let all = args.iter().any(|a| a == "--all");
    let args: Vec<String> = args.iter().filter(|a| *a != "--all").cloned().collect();
    let req = match request(&args, all) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if all {
        return crate::trigger_all::run(&req);
    }
    let owner = match process_owner(req.pid) {
        Ok(uid) => uid,
        Err(code) => return code,
    };
    let ch = match open_channel(&req, owner) {
        Ok(ch) => ch,
        Err(code) => return code,
    };
    if let Err(e) = ch.send(&req.command.text()) {
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

/// `--NAME N`: an unsigned integer in `1..=max` when given; a usage error otherwise.
fn number(args: &[String], name: &str, max: u64) -> Result<Option<u64>, u8> {
    match crate::opt(args, name) {
        None if args.iter().any(|a| a == name) => {
            Err(usage(&format!("trigger {name} needs a value")))
        }
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(usage(&format!(
                "trigger {name} {v:?}: a whole number from 1 to {max}"
            ))),
        },
    }
}

/// The command to send: the verb, and for a start its window options.
fn command(args: &[String], verb: Verb) -> Result<Command, u8> {
    let mut c = Command::new(verb);
    c.steps = number(args, "--steps", npuprof::config::MAX_WINDOW_STEPS)?;
    c.at_step = number(args, "--at-step", u64::from(u32::MAX))?;
    c.max_seconds = number(args, "--max-seconds", npuprof::config::MAX_WINDOW_SECONDS)?;
    if verb == Verb::Stop && (c.steps.is_some() || c.at_step.is_some() || c.max_seconds.is_some()) {
        return Err(usage(
            "trigger stop takes no --steps, --at-step or --max-seconds",
        ));
    }
    Ok(c)
}

/// The request in `args`; a usage error (its exit code, the message printed) when one is missing or bad.
fn request(args: &[String], all: bool) -> Result<Request<'_>, u8> {
    let pos = crate::positional(args);
    let (cmd, verb) = match pos.first() {
        Some(&"start") => ("start", Verb::Start),
        Some(&"stop") => ("stop", Verb::Stop),
        _ => return Err(usage("trigger needs start or stop")),
    };
    let pid = match (crate::opt(args, "--pid"), all) {
        (Some(_), true) => return Err(usage("trigger takes --pid PID or --all, not both")),
        (None, true) => 0,
        (p, false) => match p.and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) => pid,
            None => return Err(usage("trigger needs --pid PID (or --all)")),
        },
    };
    let root = match crate::opt(args, "--dir")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VLLM_TORCH_PROFILER_DIR").map(PathBuf::from))
    {
        Some(r) => r,
        None => return Err(usage("trigger needs --dir DIR or $VLLM_TORCH_PROFILER_DIR")),
    };
    let timeout = timeout(args).map_err(|e| usage(&e))?;
    let command = command(args, verb)?;
    let lead = match crate::opt(args, "--lead").map(str::parse::<f64>) {
        None => Duration::from_secs_f64(crate::trigger_all::DEFAULT_LEAD_S),
        Some(Ok(s)) if s.is_finite() && s > 0.0 && s <= 600.0 => Duration::from_secs_f64(s),
        Some(_) => {
            return Err(usage(
                "trigger --lead S: seconds, more than 0 and at most 600",
            ))
        }
    };
    Ok(Request {
        cmd,
        pid,
        root,
        timeout,
        command,
        lead,
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
/// none came: the command is withdrawn). A start that waits for its step answers `armed` first: then the
/// wait goes on for its outcome, and a timeout prints that it is armed (exit 0).
fn wait_answer(ch: &Client, req: &Request<'_>) -> u8 {
    let (cmd, pid) = (req.cmd, req.pid);
    let t0 = Instant::now();
    let mut armed = None;
    while t0.elapsed() < req.timeout {
        match ch.answer() {
            None => {}
            Some(Answer::Armed { at, now }) => armed = Some((at, now)),
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
    if let Some((at, now)) = armed {
        ch.withdraw();
        say(&format!(
            "armed: process {pid} starts at its step {at} (it was at step {now}); `npuprof trigger stop` \
             cancels"
        ));
        return 0;
    }
    ch.withdraw();
    eprintln!(
        "npuprof trigger: no answer from process {pid} within {} s (is it running with \
         NPUPROF_CONTROL=1, and has it loaded libnpuprof.so?)",
        req.timeout.as_secs_f64()
    );
    3
}
