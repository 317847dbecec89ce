//! The texts of the control channel: a command (for one process, or for every watcher of a job), a watcher's
//! registration, and the file names of the job-wide channel of `npuprof trigger --all`.
//!
//! In `.control/` (see [`super::channel`] for the trust rules, which every file here follows):
//! * `<host>.<pid>.reg`: a watcher's registration, rewritten about twice a second while it watches, removed
//!   when it stops watching: pid, rank, host, its step count and step rate, the wall time of the write.
//! * `all.cmd`: the job's latest command, with its id. Each watcher runs a command id once; one that finds
//!   a command already there when it begins watching never runs that one (it was for the processes of then).
//! * `all.<id>.<host>.<pid>.ack`: one watcher's answer to command `id`: first `armed <step> <now>` for a
//!   start that waits for its step, then `0 <dir>`, `<status> <message>` or `refused <why>`.
//!
//! The channel is files, polled, so that it works across nodes when the results directory is on a shared
//! filesystem (inotify does not see other nodes' writes).

use std::fmt::Write as _;

/// The job's command file.
pub const JOB_CMD: &str = "all.cmd";
/// The suffix of registrations.
pub const REG_SUFFIX: &str = ".reg";
/// The longest host name kept in a file name.
const MAX_HOST: usize = 64;

/// What a command asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
        }
    }
}

/// A command: its verb and a start's window. The text is the verb on the first line, then `key=value`
/// lines (`id`, `steps`, `at_step`, `max_seconds`); a plain `start` or `stop` is a command too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    /// The job command's id (`all.cmd` only).
    pub id: Option<String>,
    pub steps: Option<u64>,
    pub at_step: Option<u64>,
    pub max_seconds: Option<u64>,
}

impl Command {
    pub fn new(verb: Verb) -> Command {
        Command {
            verb,
            id: None,
            steps: None,
            at_step: None,
            max_seconds: None,
        }
    }

    pub fn text(&self) -> String {
        let mut s = format!("{}\n", self.verb.name());
        let mut kv = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                let _ = writeln!(s, "{k}={v}");
            }
        };
        kv("id", self.id.clone());
        kv("steps", self.steps.map(|n| n.to_string()));
        kv("at_step", self.at_step.map(|n| n.to_string()));
        kv("max_seconds", self.max_seconds.map(|n| n.to_string()));
        s
    }

    /// Reads a command's text; the error names what is wrong (it is the answer the sender prints).
    pub fn parse(text: &str) -> Result<Command, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let verb = match lines.next() {
            Some("start") => Verb::Start,
            Some("stop") => Verb::Stop,
            other => {
                return Err(format!(
                    "unknown control command {:?} (start, stop)",
                    other.unwrap_or("")
                ))
            }
        };
        let mut c = Command::new(verb);
        for l in lines {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| format!("control command line {l:?} is not key=value"))?;
            let n = || {
                v.parse::<u64>()
                    .map_err(|_| format!("control command {k}={v:?}: not an unsigned integer"))
            };
            match k {
                "id" if valid_id(v) => c.id = Some(v.to_string()),
                "id" => return Err(format!("control command id {v:?} is not an id")),
                "steps" => c.steps = Some(n()?),
                "at_step" => c.at_step = Some(n()?),
                "max_seconds" => c.max_seconds = Some(n()?),
                _ => return Err(format!("unknown control command key {k:?}")),
            }
        }
        Ok(c)
    }
}

/// A command id: 1 to 48 digits, letters, `-` and `.` (it becomes part of answer file names).
pub fn valid_id(v: &str) -> bool {
    (1..=48).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        && !v.starts_with('.')
}

/// A host name as it appears in file names: letters, digits, `-`, `_` (anything else becomes `_`), at
/// most 64 bytes.
pub fn host_token(host: &str) -> String {
    let t: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_HOST)
        .collect();
    if t.is_empty() {
        "host".into()
    } else {
        t
    }
}

pub fn reg_name(host: &str, pid: u32) -> String {
    format!("{}.{pid}{REG_SUFFIX}", host_token(host))
}

pub fn ack_name(id: &str, host: &str, pid: u32) -> String {
    format!("all.{id}.{}.{pid}.ack", host_token(host))
}

/// A watcher's registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub pid: u32,
    pub rank: u32,
    pub host: String,
    /// The process's step count when written.
    pub step: u64,
    /// Its recent steps per second.
    pub rate: f64,
    /// CLOCK_REALTIME of the write, in ns.
    pub time_ns: u64,
    /// Its current or latest result directory ("" before its first profile).
    pub dir: String,
    /// Its PID namespace (`/proc/self/ns/pid`'s link, "" when unknown): a pid is checked for life only from
    /// the same host and namespace (containers with the host's network share its name, not its pids).
    pub pidns: String,
}

/// This process's PID namespace, as [`Registration::pidns`] records it.
pub fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Registration {
    pub fn text(&self) -> String {
        format!(
            "pid={}\nrank={}\nhost={}\nstep={}\nrate={:.3}\ntime_ns={}\npidns={}\ndir={}\n",
            self.pid,
            self.rank,
            self.host.replace('\n', " "),
            self.step,
            self.rate,
            self.time_ns,
            self.pidns.replace('\n', " "),
            self.dir.replace('\n', " ")
        )
    }

    /// Reads a registration; `None` when a field is missing or malformed (a partly written file of another
    /// version, or garbage: ignored).
    pub fn parse(text: &str) -> Option<Registration> {
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
        };
        let rate = get("rate")?.parse::<f64>().ok()?;
        Some(Registration {
            pid: get("pid")?.parse().ok()?,
            rank: get("rank")?.parse().ok()?,
            host: get("host")?.to_string(),
            step: get("step")?.parse().ok()?,
            rate: if rate.is_finite() && rate >= 0.0 {
                rate
            } else {
                0.0
            },
            time_ns: get("time_ns")?.parse().ok()?,
            dir: get("dir").unwrap_or("").to_string(),
            pidns: get("pidns").unwrap_or("").to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_bad_ones_are_named() {
        let mut c = Command::new(Verb::Start);
        c.id = Some("1765000000000-42".into());
        c.steps = Some(5);
        c.at_step = Some(120);
        assert_eq!(Command::parse(&c.text()), Ok(c));
        assert_eq!(Command::parse("stop\n"), Ok(Command::new(Verb::Stop)));
        assert!(Command::parse("reboot").unwrap_err().contains("reboot"));
        assert!(Command::parse("start\nsteps=-1")
            .unwrap_err()
            .contains("steps"));
        assert!(Command::parse("start\nid=../x").unwrap_err().contains("id"));
        assert!(Command::parse("start\nrm=1").unwrap_err().contains("rm"));
    }

    #[test]
    fn registrations_round_trip_and_names_stay_one_component() {
        let r = Registration {
            pid: 7,
            rank: 3,
            host: "node-1.cluster".into(),
            step: 99,
            rate: 12.5,
            time_ns: 1,
            dir: "/r/w_ascend_ms".into(),
            pidns: "pid:[4026531836]".into(),
        };
        assert_eq!(Registration::parse(&r.text()), Some(r));
        assert_eq!(Registration::parse("pid=1\n"), None);
        assert_eq!(reg_name("a/b.c", 5), "a_b_c.5.reg");
        assert_eq!(ack_name("9-1", "h", 5), "all.9-1.h.5.ack");
    }
}
