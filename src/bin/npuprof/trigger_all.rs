//! `npuprof trigger start|stop --all`: one command for every process that watches a results directory (all
//! tensor- and data-parallel workers of a server; every node's, when the directory is on a shared
//! filesystem). The files are `control::job`'s.
//!
//! 1. Reads the registrations and keeps the live ones: on this host a process that exists (`kill(pid, 0)`)
//!    and whose registration is fresh; on another host a fresh registration (the watchers rewrite theirs
//!    twice a second, so one older than [`STALE_S`] belongs to a process that no longer watches).
//! 2. For a start without `--at-step`, picks a common step a little ahead: the highest step any process
//!    will have reached `--lead` seconds from now, by its published count and rate, plus one. Every process
//!    then starts when its own count reaches that step, so the ranks of a job that step together record the
//!    same steps.
//! 3. Writes the command with a new id, waits for each live process's answer, prints pid, rank, host and
//!    result directory per process, and names those that did not answer.

use crate::text::{esc, say, warn};
use crate::trigger::Request;
use npuprof::control::channel::{self, Answer, SendError};
use npuprof::control::job::{self, Registration};
use npuprof::dir::Dir;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default `--lead`: the command reaches every watcher within a poll (0.2 s) plus the filesystem's delay.
pub(crate) const DEFAULT_LEAD_S: f64 = 2.0;
/// A registration older than this is of a process that no longer watches.
const STALE_S: f64 = 10.0;
/// The most registrations read (a hostile directory may hold millions of names).
const MAX_NAMES: usize = 100_000;

/// A registered process and whether it is live (else why not).
struct Watcher {
    reg: Registration,
    dead: Option<String>,
}

pub(crate) fn run(req: &Request<'_>) -> u8 {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let d = match open(req, uid) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let ws = watchers(&d, uid);
    for w in ws.iter().filter(|w| w.dead.is_some()) {
        say(&format!(
            "ignored: pid {} rank {} host {}: {}",
            w.reg.pid,
            w.reg.rank,
            esc(&w.reg.host),
            w.dead.as_deref().unwrap_or("")
        ));
    }
    let live: Vec<&Watcher> = ws.iter().filter(|w| w.dead.is_none()).collect();
    if live.is_empty() {
        warn(&format!(
            "npuprof trigger --all: no process watches {} (run them with NPUPROF_CONTROL=1 and \
             VLLM_TORCH_PROFILER_DIR={})",
            npuprof::control::dir(&req.root).display(),
            req.root.display()
        ));
        return 3;
    }
    let mut cmd = req.command.clone();
    if cmd.verb == job::Verb::Start && cmd.at_step.is_none() {
        let at = common_step(&live, req.lead);
        say(&format!(
            "aligning {} process(es): each starts at its step {at}",
            live.len()
        ));
        cmd.at_step = Some(at);
    }
    let id = new_id();
    cmd.id = Some(id.clone());
    if let Err(e) = channel::write_small(&d, job::JOB_CMD, cmd.text().as_bytes()) {
        warn(&format!(
            "npuprof trigger --all: cannot write the command: {e}"
        ));
        return 1;
    }
    collect(&d, req, (&id, uid), &live)
}

/// `.control` under the request's root, checked as the watchers check it (ours, mode 0700, no symlink).
fn open(req: &Request<'_>, uid: u32) -> Result<Dir, u8> {
    let shown = npuprof::control::dir(&req.root);
    channel::open_existing(&req.root, uid).map_err(|e| {
        let why = match e {
            SendError::NotWatching => "it does not exist".to_string(),
            SendError::Refused(r) => r.to_string(),
        };
        warn(&format!(
            "npuprof trigger --all: cannot use {}: {why} (no process watches there, or it is not a \
             directory of uid {uid} writable by no one else)",
            shown.display()
        ));
        3
    })
}

/// Every registration in `.control`, live or not (dead ones of this host are removed).
fn watchers(d: &Dir, uid: u32) -> Vec<Watcher> {
    let names = d.names(MAX_NAMES).unwrap_or_default();
    let me = npuprof::config::hostname();
    let my_ns = job::pid_namespace();
    let now_ns = wall_ns();
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| n.ends_with(job::REG_SUFFIX)) {
        let Ok(Some(text)) = channel::read_small(d, &name, uid) else {
            continue;
        };
        let Some(reg) = Registration::parse(&text) else {
            continue;
        };
        let age = now_ns.saturating_sub(reg.time_ns) as f64 / 1e9;
        // Only a pid of this host and PID namespace can be checked (a container with the host's network
        // shares its name, not its pids); any other is judged by its registration's age.
        let local = job::host_token(&reg.host) == job::host_token(&me)
            && !reg.pidns.is_empty()
            && reg.pidns == my_ns;
        let dead = if local && !alive(reg.pid) {
            let _ = d.unlink(&name);
            Some("the process has ended".to_string())
        } else if age > STALE_S {
            Some(format!("its registration is {age:.0} s old"))
        } else {
            None
        };
        out.push(Watcher { reg, dead });
    }
    out.sort_by_key(|w| (w.reg.rank, w.reg.pid));
    out
}

/// Whether `pid` exists. Not `spool::process_start_time` (pid + start time, as `recover` uses): under
/// qemu-user a process reads a different start time for itself than another process reads for it, so a
/// live watcher run under qemu was declared ended.
fn alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists (EPERM: it exists, another user's).
    let rc = unsafe { libc::kill(p, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The step every live process starts at: the highest step any of them reaches `lead` from now (from its
/// published count, its rate and its registration's age), plus one.
fn common_step(live: &[&Watcher], lead: Duration) -> u64 {
    let now_ns = wall_ns();
    live.iter()
        .map(|w| {
            let age = now_ns.saturating_sub(w.reg.time_ns) as f64 / 1e9;
            let ahead = (w.reg.rate * (age + lead.as_secs_f64())).ceil();
            w.reg.step.saturating_add(ahead.min(1e12) as u64)
        })
        .max()
        .unwrap_or(0)
        .saturating_add(1)
        .min(u64::from(u32::MAX))
}

/// Waits for every live process's final answer (an `armed` one is kept until the timeout), prints them,
/// and removes the answers read. Exit code: 0 all answered, 1 one failed or refused, 3 one did not answer.
fn collect(d: &Dir, req: &Request<'_>, (id, uid): (&str, u32), live: &[&Watcher]) -> u8 {
    let acks: Vec<String> = live
        .iter()
        .map(|w| job::ack_name(id, &w.reg.host, w.reg.pid))
        .collect();
    let mut got: Vec<Option<Answer>> = vec![None; live.len()];
    let t0 = Instant::now();
    loop {
        for (i, a) in acks.iter().enumerate() {
            if !matches!(got[i], None | Some(Answer::Armed { .. })) {
                continue;
            }
            if let Ok(Some(t)) = channel::read_small(d, a, uid) {
                got[i] = Some(Answer::parse(&t));
            }
        }
        let finished = got
            .iter()
            .all(|g| g.is_some() && !matches!(g, Some(Answer::Armed { .. })));
        if finished || t0.elapsed() >= req.timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for a in &acks {
        let _ = d.unlink(a);
    }
    let code = report(req, live, &got);
    also_answered(d, (id, uid), &acks);
    code
}

/// Answers to this command from processes that were not listed when it was sent (they began watching just
/// before it came): printed and removed, so none is left behind.
fn also_answered(d: &Dir, (id, uid): (&str, u32), expected: &[String]) {
    let prefix = format!("all.{id}.");
    let names = d.names(MAX_NAMES).unwrap_or_default();
    for n in names
        .iter()
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".ack") && !expected.contains(n))
    {
        if let Ok(Some(t)) = channel::read_small(d, n, uid) {
            let who = &n[prefix.len()..n.len() - ".ack".len()];
            say(&format!(
                "also answered (began watching as the command was sent): {}: {}",
                esc(who),
                esc(Answer::parse(&t).line().trim_end())
            ));
        }
        let _ = d.unlink(n);
    }
}

/// One line per process; the exit code.
fn report(req: &Request<'_>, live: &[&Watcher], got: &[Option<Answer>]) -> u8 {
    let mut code = 0;
    for (w, g) in live.iter().zip(got) {
        let who = format!(
            "pid {} rank {} host {}",
            w.reg.pid,
            w.reg.rank,
            esc(&w.reg.host)
        );
        match g {
            Some(Answer::Done(dir)) => say(&format!(
                "{}: {who}: {}",
                if req.cmd == "start" {
                    "started"
                } else {
                    "stopped"
                },
                esc(dir)
            )),
            Some(Answer::Armed { at, now }) => say(&format!(
                "armed: {who}: starts at its step {at} (at step {now} when it answered)"
            )),
            Some(Answer::Failed { status, msg }) => {
                warn(&format!("failed: {who}: {} (status {status})", esc(msg)));
                code = code.max(1);
            }
            Some(Answer::Refused(why)) => {
                warn(&format!("refused: {who}: {}", esc(why)));
                code = code.max(1);
            }
            None => {
                warn(&format!(
                    "no answer: {who} within {} s",
                    req.timeout.as_secs_f64()
                ));
                code = 3;
            }
        }
    }
    code
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A new command id: the wall time in ns and this process's pid.
fn new_id() -> String {
    format!("{}-{}", wall_ns(), std::process::id())
}
