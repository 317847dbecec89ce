//! The watcher's side of `npuprof trigger --all` (see [`super::job`] for the files): it registers and keeps
//! its registration fresh (pid, rank, host, step count, step rate), runs each job command once, answers it
//! in its own answer file, and replaces an `armed` answer with the outcome once its start fires.

use super::channel::{self, Answer};
use super::job::{self, Command, Registration};
use crate::dir::Dir;
use crate::session::window::{self, Outcome};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the registration is rewritten (the CLI also reads its age: a stale one is of a dead process).
const REFRESH: Duration = Duration::from_millis(500);

/// The watcher's job-wide state, owned by the drain thread.
#[derive(Default)]
pub(super) struct JobWatch {
    /// The id of the job command last seen; `None` before the first look (a command already there then is
    /// not for this process).
    seen: Option<String>,
    /// A start that waits for its step, and the answer file its outcome goes to.
    tracking: Option<(u64, String)>,
    /// The registration's name once written.
    registered: Option<String>,
    last_write: Option<Instant>,
    /// (step count, when) of the previous refresh, for the rate.
    last_step: Option<(u64, Instant)>,
    rate: f64,
}

/// The answer for a start that waits (its step, and the process's), or its outcome if it already fired.
pub(super) fn outcome_answer(id: u64) -> Answer {
    match window::outcome(id) {
        Some(Outcome::Waiting { at, now }) => Answer::Armed { at, now },
        Some(Outcome::Started(d)) => Answer::Done(d.display().to_string()),
        Some(Outcome::Failed(e)) => Answer::Failed {
            status: e.status as i32,
            msg: e.msg,
        },
        Some(Outcome::Cancelled) => Answer::Failed {
            status: crate::error::Status::NotRunning as i32,
            msg: "the waiting start was cancelled by a stop".into(),
        },
        None => Answer::Failed {
            status: crate::error::Status::Internal as i32,
            msg: "the waiting start is gone".into(),
        },
    }
}

impl JobWatch {
    /// Follows start `id`: its outcome replaces the `armed` answer in `ack`.
    pub(super) fn track(&mut self, id: u64, ack: String) {
        self.tracking = Some((id, ack));
    }

    /// One poll: the tracked start's outcome, the job command, the registration.
    pub(super) fn poll(&mut self, d: &Dir, root: &Path, uid: u32) {
        self.follow(d, root);
        self.job_command(d, root, uid);
        self.refresh(d, root);
    }

    /// Writes the outcome of the tracked start once it is known.
    fn follow(&mut self, d: &Dir, root: &Path) {
        let Some((id, ack)) = &self.tracking else {
            return;
        };
        let a = outcome_answer(*id);
        if matches!(a, Answer::Armed { .. }) {
            return;
        }
        write(d, root, ack, &a);
        self.tracking = None;
    }

    /// Runs the job command if it is new (and not one that was there before this watcher looked).
    fn job_command(&mut self, d: &Dir, root: &Path, uid: u32) {
        let text = match channel::read_small(d, job::JOB_CMD, uid) {
            Ok(Some(t)) => t,
            // Nothing there, or not a file of ours (never run; the sender sees no answer).
            Ok(None) | Err(_) => {
                self.seen.get_or_insert_with(String::new);
                return;
            }
        };
        let cmd = Command::parse(&text);
        let id = cmd.as_ref().ok().and_then(|c| c.id.clone());
        let first_look = self.seen.is_none();
        if self.seen.as_deref() == Some(id.as_deref().unwrap_or("")) {
            return;
        }
        self.seen = Some(id.clone().unwrap_or_default());
        let Some(id) = id.filter(|_| !first_look) else {
            return;
        };
        let ack = job::ack_name(&id, &crate::config::hostname(), std::process::id());
        let (a, waiting) = super::run_command(&text);
        log::info!(
            "NPUPROF_CONTROL: job command {id} ({}) answered: {}",
            cmd.map_or("?", |c| c.verb.name()),
            a.line().trim_end()
        );
        write(d, root, &ack, &a);
        if let Some(w) = waiting {
            self.track(w, ack);
        }
    }

    /// Rewrites the registration when it is due.
    fn refresh(&mut self, d: &Dir, root: &Path) {
        let now = Instant::now();
        if self.last_write.is_some_and(|t| now - t < REFRESH) {
            return;
        }
        let step = window::counted_now();
        let Some((s0, t0)) = self.last_step.replace((step, now)) else {
            // The first sample: no rate yet. The registration waits for the second, so that the CLI never
            // aims a common step from a rate it cannot know (it would read an unknown rate as idle).
            self.last_write = Some(now);
            return;
        };
        let dt = (now - t0).as_secs_f64();
        if dt > 0.0 {
            let r = step.saturating_sub(s0) as f64 / dt;
            // Smoothed, so one slow step does not make the CLI aim too close.
            self.rate = if self.registered.is_none() {
                r
            } else {
                0.5 * self.rate + 0.5 * r
            };
        }
        self.last_write = Some(now);
        let cfg = crate::session::config();
        let host = crate::config::hostname();
        let reg = Registration {
            pid: std::process::id(),
            rank: cfg.rank,
            step,
            rate: self.rate,
            time_ns: crate::record::clock::realtime_ns(),
            dir: crate::session::output_dir().map_or(String::new(), |p| p.display().to_string()),
            host: host.clone(),
        };
        let name = job::reg_name(&host, reg.pid);
        write_text(d, root, &name, &reg.text());
        self.registered = Some(name);
    }

    /// Removes the registration (the watcher ends).
    pub(super) fn deregister(&mut self, d: &Dir) {
        if let Some(n) = self.registered.take() {
            let _ = d.unlink(&n);
        }
    }
}

fn write(d: &Dir, root: &Path, name: &str, a: &Answer) {
    write_text(d, root, name, &a.line());
}

fn write_text(d: &Dir, root: &Path, name: &str, text: &str) {
    if let Err(e) = channel::write_small(d, name, text.as_bytes()) {
        log::warn!(
            "NPUPROF_CONTROL: cannot write {}: {e}",
            super::dir(root).join(name).display()
        );
    }
}
