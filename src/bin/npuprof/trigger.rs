//! `npuprof trigger start|stop --pid PID`: asks a running process (NPUPROF_CONTROL=1) to start or stop a
//! profile through its control directory, and waits for its answer.

use crate::text::{say, warn};
use crate::usage;
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

pub(crate) fn run(args: &[String]) -> u8 {
    use npuprof::control;
    let pos = crate::positional(args);
    let cmd = match pos.first() {
        Some(&c) if c == "start" || c == "stop" => c,
        _ => return usage("trigger needs start or stop"),
    };
    let Some(pid) = crate::opt(args, "--pid").and_then(|p| p.parse::<u32>().ok()) else {
        return usage("trigger needs --pid PID");
    };
    let root = match crate::opt(args, "--dir")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VLLM_TORCH_PROFILER_DIR").map(PathBuf::from))
    {
        Some(r) => r,
        None => return usage("trigger needs --dir DIR or $VLLM_TORCH_PROFILER_DIR"),
    };
    let timeout = match timeout(args) {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    // Same user only (the process also checks the command file's owner).
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    // The process's uid: it owns `.control` and its answers.
    let owner = match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(m) if m.uid() == uid || uid == 0 => m.uid(),
        Ok(_) => {
            eprintln!("npuprof trigger: process {pid} belongs to another user");
            return 2;
        }
        Err(_) => {
            eprintln!("npuprof trigger: no process {pid}");
            return 2;
        }
    };
    let dir = control::dir(&root);
    let ch = match control::channel::Client::open(&root, pid, owner) {
        Ok(ch) => ch,
        Err(control::channel::SendError::NotWatching) => {
            warn(&format!(
                "npuprof trigger: {} does not exist: process {pid} is not watching (run it with \
                 NPUPROF_CONTROL=1 and VLLM_TORCH_PROFILER_DIR={})",
                dir.display(),
                root.display()
            ));
            return 3;
        }
        Err(control::channel::SendError::Refused(r)) => {
            warn(&format!(
                "npuprof trigger: process {pid} refuses its control channel {}: it is {r} (it must be a \
                 directory owned by uid {owner} and writable by no one else; remove it and the process \
                 creates it)",
                dir.display()
            ));
            return 3;
        }
    };
    if let Err(e) = ch.send(cmd) {
        warn(&format!(
            "npuprof trigger: cannot write {}: {e}",
            dir.join(control::channel::cmd_name(pid)).display()
        ));
        return 1;
    }
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        use control::channel::Answer;
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
        timeout.as_secs_f64()
    );
    3
}
