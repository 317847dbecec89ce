//! The `npuprof-vendor` thread: a device backend's stop runs there, never on the caller's thread and never
//! under the control lock, and whoever needs its outcome waits for it with a bound.
//!
//! A vendor library's stop calls (`msptiActivityFlushAll`, `aclprofStop`, `aclprofDestroyConfig`,
//! `aclprofFinalize`) may block for as long as the device or the library likes. So:
//!
//! * `npuprof_stop` (and every other stop: step limit, disk cap, shutdown, the exit hook) hands the backend
//!   to [`stop`], which starts one `npuprof-vendor` thread for this stop and returns at once. The thread
//!   calls [`Backend::stop`], sends the [`DeviceData`] to the profile's export, and hands the backend back
//!   through the returned [`Stopping`].
//! * The export (on `npuprof-export`, after the drain has finished the host spool: the rings go on being
//!   drained meanwhile) waits for the device data until the stop's deadline, `NPUPROF_VENDOR_TIMEOUT_S` after
//!   the stop ([`Pending::collect`]); at exit, until half of the exit hook's wait (the cut of the
//!   `process::Exit` the profile carries). A stop that has not returned by then is **abandoned**: the
//!   profile is written with its host data, and
//!   `profiler_metadata.json` says `"device": {"status": "abandoned", "vendor_stop_abandoned": "<the call
//!   it was inside>", ...}`.
//! * npuprof never calls a vendor library while a stop of its own is still inside it. The next
//!   `npuprof_start` waits for the backend to come back, outside the control lock, until that stop's
//!   deadline; if it has not come back by then the start fails with `NPUPROF_ERR_BACKEND` and a message naming
//!   the call (with any `NPUPROF_BACKEND`: a silent host-only profile would hide that the device library is
//!   wedged). Once the stop returns, however late, the backend is usable again.
//!
//! The backend's stop reports the vendor call it is about to make through the [`VendorCall`] it is handed
//! (one per stop, owned by its [`Stopping`]), so an abandoned stop can be named.

use super::Backend;
use crate::device::{DeviceData, DeviceResult};
use crate::error::{Error, Result, Status};
use crate::profile::Profile;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The vendor call one backend stop is inside ("" between calls): the stop writes it, whoever gives up
/// waiting reads it.
#[derive(Default)]
pub struct VendorCall(Mutex<&'static str>);

impl VendorCall {
    /// Called by a backend's stop before each vendor call ("" after the last).
    pub fn enter(&self, call: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = call;
    }

    /// The call the stop is inside, for a message.
    fn current(&self) -> &'static str {
        match *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            "" => "the backend's stop",
            c => c,
        }
    }
}

/// A backend stop under way on the `npuprof-vendor` thread; the backend comes back through it.
pub(crate) struct Stopping {
    /// (the stop has returned, the backend until someone takes it back).
    back: Mutex<(bool, Option<Box<dyn Backend>>)>,
    cv: Condvar,
    /// The vendor call the stop is inside.
    call: VendorCall,
    began: Instant,
    /// After this the stop counts as abandoned.
    pub deadline: Instant,
}

impl Stopping {
    /// The backend, if its stop has returned (then taken: the caller owns it again).
    pub(crate) fn take(&self) -> Option<Box<dyn Backend>> {
        self.back.lock().unwrap_or_else(|e| e.into_inner()).1.take()
    }

    /// Waits, at most until the deadline, for the stop to return. Never call it holding the control lock.
    pub(crate) fn wait(&self) {
        let g = self.back.lock().unwrap_or_else(|e| e.into_inner());
        let left = self.deadline.saturating_duration_since(Instant::now());
        let _ = self.cv.wait_timeout_while(g, left, |b| !b.0);
    }

    /// Why a start cannot use the backend now (the stop has not returned by its deadline).
    pub(crate) fn busy_error(&self) -> Error {
        Error::new(
            Status::Backend,
            format!(
                "the previous profile's device stop ({}) has not returned after {} s (NPUPROF_VENDOR_TIMEOUT_S): \
                 npuprof does not call the device library again until it does; profile host data only with \
                 NPUPROF_BACKEND=host",
                self.call.current(),
                self.began.elapsed().as_secs()
            ),
        )
    }
}

/// Stops `backend` for `profile` on a new `npuprof-vendor` thread. Returns at once: the [`Stopping`] gives the
/// backend back when the stop returns; the [`DeviceData`] goes to the export, which waits for it at most
/// `timeout` (see the module docs).
pub(crate) fn stop(
    backend: Box<dyn Backend>,
    profile: Arc<Profile>,
    timeout: Duration,
) -> (Arc<Stopping>, Box<dyn DeviceData>) {
    let now = Instant::now();
    let stopping = Arc::new(Stopping {
        back: Mutex::new((false, None)),
        cv: Condvar::new(),
        call: VendorCall::default(),
        began: now,
        deadline: now + timeout,
    });
    let (tx, rx) = crossbeam_channel::bounded(1);
    let pending = Box::new(Pending {
        rx,
        stopping: stopping.clone(),
        exit: profile.exit,
    });
    // Handed to the thread through a slot, so that if it cannot be started the stop still runs (here).
    let job = Arc::new(Mutex::new(Some((backend, profile, tx))));
    let (s, j) = (stopping.clone(), job.clone());
    let spawned = std::thread::Builder::new()
        .name("npuprof-vendor".into())
        .spawn(move || {
            crate::process::block_signals();
            run(&s, &j)
        });
    if let Err(e) = spawned {
        log::warn!(
            "cannot start the npuprof-vendor thread ({e}): stopping the device backend here"
        );
        run(&stopping, &job);
    }
    (stopping, pending)
}

type Job = Mutex<
    Option<(
        Box<dyn Backend>,
        Arc<Profile>,
        Sender<Result<Box<dyn DeviceData>>>,
    )>,
>;

fn run(stopping: &Stopping, job: &Job) {
    let Some((mut backend, profile, tx)) = job.lock().unwrap_or_else(|e| e.into_inner()).take()
    else {
        return;
    };
    let r = catch_unwind(AssertUnwindSafe(|| backend.stop(&profile, &stopping.call)))
        .unwrap_or_else(|_| {
            Err(Error::new(
                Status::Internal,
                "the device backend's stop panicked (caught)",
            ))
        });
    stopping.call.enter("");
    if Instant::now() > stopping.deadline {
        log::warn!(
            "the device stop of {}, abandoned after {} s, has returned: the device backend is usable again",
            profile.dir.display(),
            stopping.began.elapsed().as_secs()
        );
    }
    // The backend first: once the export has the device data (and a flush has returned), the backend is
    // back, so `npuprof_shutdown` after a flush never finds it still out.
    *stopping.back.lock().unwrap_or_else(|e| e.into_inner()) = (true, Some(backend));
    stopping.cv.notify_all();
    // The export may have given up (abandoned): then nobody reads this.
    let _ = tx.send(r);
}

/// The device data of a stop still running on the `npuprof-vendor` thread: [`DeviceData::collect`] waits
/// for it (bounded) on the export thread.
struct Pending {
    rx: Receiver<Result<Box<dyn DeviceData>>>,
    stopping: Arc<Stopping>,
    /// The process's exit: its cut shortens the wait.
    exit: &'static crate::process::Exit,
}

impl Pending {
    /// The stop's outcome, or `None` when it has not returned by its deadline (or the exit cut).
    fn wait(&self) -> Option<Result<Box<dyn DeviceData>>> {
        loop {
            let until = match self.exit.cut() {
                Some(c) => self.stopping.deadline.min(c),
                None => self.stopping.deadline,
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Last look: it may have returned just now.
                return self.rx.try_recv().ok();
            }
            // In slices: the exit hook may cut the wait short meanwhile.
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(r) => return Some(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(Err(Error::new(
                        Status::Internal,
                        "the npuprof-vendor thread ended without a result",
                    )))
                }
            }
        }
    }
}

impl DeviceData for Pending {
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult> {
        match self.wait() {
            Some(Ok(d)) => d.collect(profile),
            Some(Err(e)) => {
                log::warn!(
                    "device stop failed, {} keeps its host data only: {}",
                    profile.dir.display(),
                    e.msg
                );
                let mut r = DeviceResult::default();
                r.set_status("error", Some(&e.msg));
                Ok(r)
            }
            None => {
                let call = self.stopping.call.current();
                let waited = self.stopping.began.elapsed();
                let msg = format!(
                    "{call} did not return within {} s: the device stop was abandoned and the profile has host \
                     data only (NPUPROF_VENDOR_TIMEOUT_S{})",
                    waited.as_secs(),
                    if self.exit.cut().is_some() {
                        "; shortened at process exit"
                    } else {
                        ""
                    }
                );
                log::warn!("{}: {msg}", profile.dir.display());
                let mut r = DeviceResult::default();
                r.set_status("abandoned", Some(&msg));
                r.meta.push((
                    "vendor_stop_abandoned".into(),
                    crate::format::json::string(call.as_bytes()),
                ));
                r.meta.push((
                    "vendor_stop_waited_ms".into(),
                    waited.as_millis().to_string(),
                ));
                Ok(r)
            }
        }
    }
}
