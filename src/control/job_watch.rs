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
    /// A write found `.control` gone (removed under us): the watcher reopens it.
    lost: bool,
    /// See [`JobWatch::me`].
    me: Option<Registration>,
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
    /// Runs a command (see `super::run_command`); a stop also ends the following of a waiting start
    /// (the stop cancelled it, and its answer stands).
    pub(super) fn run(&mut self, cmd: &Result<Command, String>) -> (Answer, Option<u64>) {
        if cmd.as_ref().is_ok_and(|c| c.verb == job::Verb::Stop) {
            self.tracking = None;
        }
        super::run_command(cmd)
    }

    /// True once after a write found `.control` gone.
    pub(super) fn lost_channel(&mut self) -> bool {
        if self.lost {
            self.lost = false;
            self.registered = None;
            return true;
        }
        false
    }

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
        let Some((id, ack)) = self.tracking.take() else {
            return;
        };
        let a = outcome_answer(id);
        if matches!(a, Answer::Armed { .. }) {
            self.tracking = Some((id, ack));
            return;
        }
        // Only while the sender still waits (it removes the answer when it stops waiting): a late outcome
        // must not be taken for the answer to a later command.
        if matches!(d.stat_at(&ack), Ok(Some(_))) {
            self.write(d, root, &ack, &a);
        }
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
        let ack = job::ack_name(&id, &self.me().host, std::process::id());
        let (a, waiting) = self.run(&cmd);
        log::info!(
            "NPUPROF_CONTROL: job command {id} ({}) answered: {}",
            cmd.map_or("?", |c| c.verb.name()),
            a.line().trim_end()
        );
        self.write(d, root, &ack, &a);
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
        let reg = Registration {
            step,
            rate: self.rate,
            time_ns: crate::record::clock::realtime_ns(),
            dir: crate::session::output_dir().map_or(String::new(), |p| p.display().to_string()),
            ..self.me().clone()
        };
        let name = job::reg_name(&reg.host, reg.pid);
        if self.write_text(d, root, &name, &reg.text()) {
            self.registered = Some(name);
        }
    }

    /// This process's registration fields that do not change while it watches (pid, rank, host, PID
    /// namespace), found once.
    fn me(&mut self) -> &Registration {
        self.me.get_or_insert_with(|| {
            let pid = std::process::id();
            Registration {
                pid,
                rank: crate::session::config().rank,
                host: crate::config::hostname(),
                step: 0,
                rate: 0.0,
                time_ns: 0,
                dir: String::new(),
                pidns: job::pid_namespace(),
            }
        })
    }

    /// Removes the registration (the watcher ends).
    pub(super) fn deregister(&mut self, d: &Dir) {
        if let Some(n) = self.registered.take() {
            let _ = d.unlink(&n);
        }
    }
}

impl JobWatch {
    fn write(&mut self, d: &Dir, root: &Path, name: &str, a: &Answer) {
        self.write_text(d, root, name, &a.line());
    }

    /// Writes `text` as `name`; false when it cannot (warned), and `.control` is marked lost when it is gone.
    fn write_text(&mut self, d: &Dir, root: &Path, name: &str, text: &str) -> bool {
        match super::write_file(d, root, name, text) {
            Ok(()) => true,
            Err(e) => {
                self.lost |= e.kind() == std::io::ErrorKind::NotFound;
                false
            }
        }
    }
}
