//! The background threads: `npuprof-drain` moves records from the rings into the profile's spool, and
//! `npuprof-export` turns a finished spool into the result files. Both start lazily on the first
//! `npuprof_start` (with `NPUPROF_CONTROL=1`, on the first call of any kind, or from load for a preloaded
//! library: see `control`), block every signal (signals stay with the host's threads), and catch panics per
//! message so one bad profile cannot take them down.
//!
//! Control messages (start, stop, flush, shutdown) arrive over a crossbeam channel; between messages the
//! drain polls the rings at a pace proportional to the data (`pace`: when the fullest ring would be a
//! quarter full, between 1 and 100 ms; every 200 ms without a profile). A flush travels the
//! same FIFO path as the stops before it (drain → export), so its answer means every earlier stop is written;
//! the drain makes one pass over the rings (and writes a COUNTERS frame) before forwarding it. Memory stays bounded however long a profile runs: the
//! rings are fixed and the spool is on disk.
//!
//! A device backend's stop runs on neither: it has a short-lived `npuprof-vendor` thread of its own
//! (`backend::vendor`), and the export waits for its device data, bounded, while the drain goes on draining.

use crate::device::DeviceData;
use crate::error::{Error, Result, Status};
use crate::export::ExportJob;
use crate::process::block_signals;
use crate::profile::{Counters, Profile, StopReason};
use crate::record::{self, clock, Record, Ring};
use crate::spool;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod batch;
mod counters;
mod export_thread;
mod pace;

pub(crate) use counters::config_vars;
use counters::thread_cpu_ns;
use export_thread::export_loop;

pub(crate) enum Msg {
    Start(Arc<Profile>, File, record::Baseline),
    Stop {
        profile: Arc<Profile>,
        stop_tick: u64,
        reason: StopReason,
        device: Box<dyn DeviceData>,
    },
    /// Answered once every profile stopped before it is written (with the first error since the last flush).
    Flush(Sender<Result<()>>),
    Shutdown,
}

/// What the drain hands to the export thread.
enum ExportMsg {
    /// With the spool's writer lock (see [`spool::try_lock`]), held until the export ends: `npuprof recover`
    /// leaves the spool alone meanwhile.
    Job(Box<ExportJob>, Option<File>),
    /// A profile that failed before it could be exported; reported at the next flush.
    Failed(Error),
    Flush(Sender<Result<()>>),
}

/// What the drain calls back into, installed by the session (which sits above it): the drain never calls
/// the session or the control watcher itself.
#[derive(Clone, Copy)]
pub(crate) struct Hooks {
    /// The drain ended the recording of profile `gen` (spool write error, `NPUPROF_MAX_DISK_MB`): stop it.
    pub limit_reached: fn(gen: u64, reason: StopReason),
    /// A stopped profile is no longer being written (exported, failed, or abandoned).
    pub export_ended: fn(),
    /// About every 200 ms on the drain thread while no message waits (the `NPUPROF_CONTROL` poll); a panic
    /// in it is caught.
    pub tick: fn(),
}

pub(crate) struct Threads {
    tx: Sender<Msg>,
    drain: JoinHandle<()>,
    export: JoinHandle<()>,
}

thread_local! {
    /// Set on the npuprof-drain and npuprof-export threads.
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on npuprof's own background threads: a flush requested there can never be answered (the exit hook
/// must not wait for one when a vendor library calls `exit()` on our thread).
pub(crate) fn on_background_thread() -> bool {
    BACKGROUND.try_with(|b| b.get()).unwrap_or(false)
}

impl Threads {
    pub(crate) fn spawn(hooks: Hooks) -> std::io::Result<Threads> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (etx, erx) = crossbeam_channel::unbounded::<ExportMsg>();
        let export = std::thread::Builder::new()
            .name("npuprof-export".into())
            .spawn(move || {
                block_signals();
                BACKGROUND.with(|b| b.set(true));
                export_loop(erx, hooks.export_ended)
            })?;
        let drain = std::thread::Builder::new()
            .name("npuprof-drain".into())
            .spawn(move || {
                block_signals();
                BACKGROUND.with(|b| b.set(true));
                drain_loop(rx, etx, hooks)
            })?;
        Ok(Threads { tx, drain, export })
    }

    pub(crate) fn send(&self, m: Msg) -> Result<()> {
        self.tx
            .send(m)
            .map_err(|_| Error::new(Status::Internal, "the npuprof-drain thread is gone"))
    }

    /// Asks for a flush; the answer arrives on the returned channel.
    pub(crate) fn request_flush(&self) -> Result<Receiver<Result<()>>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Msg::Flush(tx))?;
        Ok(rx)
    }

    pub(crate) fn alive(&self) -> bool {
        !self.drain.is_finished() && !self.export.is_finished()
    }

    /// Ends both threads after they finish what was sent before.
    pub(crate) fn shutdown(self) {
        let _ = self.tx.send(Msg::Shutdown);
        let _ = self.drain.join();
        let _ = self.export.join();
    }
}

struct Active {
    profile: Arc<Profile>,
    w: Option<spool::Writer>,
    /// The spool's writer lock (a dup of the spool's descriptor): held until the export of this profile
    /// ends, even when the writer is dropped after an error.
    lock: Option<File>,
    /// Bit `id` set: the name `id` is in this profile's spool. Only names the profile's records use are
    /// written (a process may have interned a million names before it).
    names_used: Vec<u64>,
    /// When the counters were last written to the spool.
    counters_at: std::time::Instant,
    /// A flush asked for a COUNTERS frame at the next pass, whatever the time since the last one.
    counters_due: bool,
    /// Last epoch written as a THREAD frame, per ring id (0 = none yet).
    thread_epoch: Vec<u32>,
    /// Ring counters at start, per ring id, to report this profile's share.
    base_dropped_by_kind: Vec<[u64; 8]>,
    base_unbalanced: Vec<u64>,
    base_orphans_by_kind: [u64; 8],
    /// Records drained but not written (outside the window, over the disk cap), by record kind.
    drain_dropped_by_kind: [u64; 8],
    counters: Counters,
    spool_cap: u64,
    truncated: bool,
    cap_reported: bool,
    spool_error: Option<String>,
}

/// (ring id, epoch, tid, start, end): a run of one thread's records in a scratch buffer.
type Span = (u32, u32, u32, usize, usize);

/// Records drained at a profile's stop that are newer than its stop tick: they were made by the next
/// profile (already started while this one was being closed) and are handed to it.
#[derive(Default)]
struct Carry {
    records: Vec<Record>,
    spans: Vec<Span>,
}

struct Drain {
    hooks: Hooks,
    etx: Sender<ExportMsg>,
    active: Option<Active>,
    rings: Vec<&'static Ring>,
    scratch: Vec<Record>,
    spans: Vec<Span>,
    carry: Carry,
    /// The Stop being handled has reached the export thread (or been accounted as ended).
    stop_handed_off: bool,
    pacer: pace::Pacer,
}

fn drain_loop(rx: Receiver<Msg>, etx: Sender<ExportMsg>, hooks: Hooks) {
    let mut d = Drain {
        hooks,
        etx,
        active: None,
        rings: Vec::new(),
        scratch: Vec::new(),
        spans: Vec::new(),
        carry: Carry::default(),
        stop_handed_off: false,
        pacer: pace::Pacer::new(),
    };
    let mut last_control = std::time::Instant::now();
    loop {
        let msg = match rx.recv_timeout(d.pacer.wait(d.active.is_some())) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Msg::Shutdown),
        };
        let shutdown = matches!(msg, Some(Msg::Shutdown));
        // A stopped profile is counted as "being written" until its export ends; a Stop whose handling
        // panics before it reaches the export thread must end that count here.
        let stopping = match &msg {
            Some(Msg::Stop { profile, .. }) => Some(profile.dir.clone()),
            _ => None,
        };
        d.stop_handed_off = false;
        let r = catch_unwind(AssertUnwindSafe(|| d.handle(msg)));
        // NPUPROF_CONTROL: `npuprof trigger` commands, about every 200 ms (never while a message waits).
        if !shutdown && last_control.elapsed() >= Duration::from_millis(200) && rx.is_empty() {
            last_control = std::time::Instant::now();
            if let Err(p) = catch_unwind(d.hooks.tick) {
                drop(p);
                log::error!("internal error while polling NPUPROF_CONTROL (caught)");
            }
        }
        if r.is_err() {
            d.abandon_after_panic(stopping);
        }
        if shutdown {
            break;
        }
    }
}

impl Drain {
    /// Handles one message (`None`: the wait timed out) and polls the rings. Returns the records moved.
    fn handle(&mut self, msg: Option<Msg>) -> usize {
        if msg.is_some() {
            crate::fault::point("drain.msg");
        }
        match msg {
            Some(Msg::Start(p, f, b)) => {
                self.start(p, f, b);
                0
            }
            Some(Msg::Stop {
                profile,
                stop_tick,
                reason,
                device,
            }) => {
                self.stop(profile, stop_tick, reason, device);
                0
            }
            Some(Msg::Flush(ack)) => self.flush(ack),
            _ => self.poll(None),
        }
    }

    /// What was recorded before the flush is spooled, with current counters, before the flush is answered: a
    /// process killed right after a flush loses nothing it recorded and `recover` reports its drops as of the
    /// flush. Returns the records moved.
    fn flush(&mut self, ack: Sender<Result<()>>) -> usize {
        if let Some(a) = self.active.as_mut() {
            a.counters_due = true;
        }
        let moved = self.poll(None);
        if let Err(e) = self.etx.send(ExportMsg::Flush(ack)) {
            if let ExportMsg::Flush(ack) = e.into_inner() {
                let _ = ack.send(Err(Error::new(
                    Status::Internal,
                    "the npuprof-export thread is gone",
                )));
            }
        }
        moved
    }

    /// After a panic while handling a message: the profile being stopped (`stopping`, unless it reached the
    /// export thread) and the open profile are abandoned, reported at the next flush.
    fn abandon_after_panic(&mut self, stopping: Option<std::path::PathBuf>) {
        if let Some(dir) = stopping.filter(|_| !self.stop_handed_off) {
            // Reported at the next flush, like every abandoned profile, and no longer "being written".
            if self.active.as_ref().map_or(true, |a| a.profile.dir != dir) {
                self.fail(Error::new(
                    Status::Internal,
                    format!("the drain thread failed while finishing {}", dir.display()),
                ));
            }
            (self.hooks.export_ended)();
        }
        log::error!(
            "internal error in the npuprof-drain thread (caught); the current profile is abandoned"
        );
        if let Some(a) = self.active.take() {
            self.fail(Error::new(
                Status::Internal,
                format!(
                    "the drain thread failed while writing {}",
                    a.profile.dir.display()
                ),
            ));
        }
    }
}

impl Drain {
    /// Reports a profile that cannot be exported at the next flush.
    fn fail(&self, e: Error) {
        let _ = self.etx.send(ExportMsg::Failed(e));
    }

    fn start(&mut self, profile: Arc<Profile>, file: File, base: record::Baseline) {
        crate::fault::stall("drain.start");
        self.pacer.reset();
        // Records still in the rings from before this profile are dropped by the window filter (their
        // ticks are older than the start tick); draining here would race with the first records of the
        // new profile, which may already be in the rings.
        let mut kv = BTreeMap::new();
        kv.insert("gen".into(), profile.gen.to_string());
        kv.insert("pid".into(), profile.pid.to_string());
        kv.insert("rank".into(), profile.rank.to_string());
        kv.insert("device_id".into(), profile.device_id.to_string());
        kv.insert("worker".into(), profile.worker.clone());
        kv.insert("start_tick".into(), profile.anchor.0.to_string());
        kv.insert("anchor_ns".into(), profile.anchor.1.to_string());
        // CLOCK_REALTIME and CLOCK_MONOTONIC_RAW read together: `npuprof recover` maps CANN's clock onto ours
        // with them (see `backend::acl::export`).
        kv.insert("clock_realtime_ns".into(), clock::realtime_ns().to_string());
        kv.insert(
            "clock_monoraw_ns".into(),
            clock::monotonic_raw_ns().to_string(),
        );
        kv.insert("clock".into(), clock::source_name().into());
        kv.insert("auto".into(), profile.auto.to_string());
        let w = profile.window;
        kv.insert("window_delay_steps".into(), w.delay_steps.to_string());
        kv.insert("window_max_steps".into(), w.max_steps.to_string());
        kv.insert("window_max_seconds".into(), w.max_seconds.to_string());
        kv.insert("first_step".into(), profile.first_step.to_string());
        if let Some(t) = &profile.tag {
            kv.insert("tag".into(), t.clone());
        }
        kv.insert("backend".into(), profile.backend.name().into());
        // The tick rate known now: what `npuprof recover` uses when the process dies before its stop frame.
        let (ticks_per, ns_per) = clock::rate(0);
        kv.insert("ticks_per".into(), ticks_per.to_string());
        kv.insert("ns_per".into(), ns_per.to_string());
        if let Some(t) = spool::process_start_time(profile.pid) {
            kv.insert("pid_start_time".into(), t.to_string());
        }
        for (k, v) in config_vars(profile.config) {
            kv.insert(format!("{}{k}", spool::CONFIG_PREFIX), v);
        }
        // The writer lock, held from the first frame to the end of the export: `npuprof recover` refuses a
        // spool whose lock is held (its process is alive).
        let lock = match spool::try_lock(&file) {
            spool::Lock::Acquired => file.try_clone().ok(),
            spool::Lock::Busy => {
                log::warn!(
                    "spool {} is locked by another process; `npuprof recover` will not see this profile as live",
                    profile.spool_path.display()
                );
                None
            }
            spool::Lock::Unsupported(e) => {
                log::debug!(
                    "spool {} cannot be locked ({e}); `npuprof recover` checks the pid instead",
                    profile.spool_path.display()
                );
                None
            }
        };
        let (w, spool_error) = match spool::Writer::new(file).and_then(|mut w| {
            w.start(&kv)?;
            Ok(w)
        }) {
            Ok(w) => (Some(w), None),
            Err(e) => {
                log::error!("cannot write spool {}: {e}", profile.spool_path.display());
                (None, Some(e.to_string()))
            }
        };
        // An eighth of NPUPROF_MAX_DISK_MB, at least 1 MiB but never more than half of it: the trace needs
        // the rest (the spool counts against the cap, see `export::run`).
        let max = profile.config.max_disk_bytes();
        let cap = (max / 8).max((1 << 20).min(max / 2));
        self.active = Some(Active {
            base_dropped_by_kind: base.dropped_by_kind,
            base_unbalanced: base.unbalanced,
            base_orphans_by_kind: base.orphans_by_kind,
            drain_dropped_by_kind: [0; 8],
            profile,
            w,
            lock,
            names_used: Vec::new(),
            counters_at: std::time::Instant::now(),
            counters_due: false,
            thread_epoch: Vec::new(),
            counters: Counters {
                drain_cpu_ns: thread_cpu_ns(),
                ..Counters::default()
            },
            spool_cap: cap,
            truncated: false,
            cap_reported: false,
            spool_error,
        });
    }

    /// Moves every ring's records into the spool (or discards them when no profile is active). Returns the
    /// number of records moved.
    fn poll(&mut self, window_end: Option<u64>) -> usize {
        if self.active.is_none() {
            // Between profiles, leave the rings alone: a profile whose Start message is still in the channel
            // may already be recording. Late records of the previous profile are filtered out by the next
            // one's window.
            return 0;
        }
        // A regular poll (no stop tick yet) must not write records of the *next* profile into this one's
        // spool: if another thread stopped this profile and started the next one since the last poll, the
        // rings already hold the next profile's records. The clock is read first, then the state: if this
        // profile is still recording now, it stops later, so the next profile's records are all newer than
        // `t0`. Records newer than `t0` wait in the carry for the next poll (or the stop's window); if this
        // profile has already stopped, its Stop message (sent right after, under the session lock) drains it.
        let window_end = match window_end {
            Some(w) => Some(w),
            None => {
                let t0 = clock::now();
                let s = record::STATE.load(Ordering::Acquire);
                let gen = self.active.as_ref().map_or(u64::MAX, |a| a.profile.gen);
                if s & record::REC == 0 || s >> record::GEN_SHIFT != gen {
                    return 0;
                }
                Some(t0)
            }
        };
        record::rings_into(&mut self.rings);
        self.scratch.clear();
        self.spans.clear();
        // Carried records first: they are older than anything still in the rings.
        self.scratch.extend_from_slice(&self.carry.records);
        self.spans.extend_from_slice(&self.carry.spans);
        self.carry.records.clear();
        self.carry.spans.clear();
        let mut fullest = 0f64;
        for r in &self.rings {
            let start = self.scratch.len();
            let scratch = &mut self.scratch;
            let n = r.drain(|s| scratch.extend_from_slice(s));
            fullest = fullest.max(n as f64 / r.capacity().max(1) as f64);
            if n > 0 {
                // Epoch and tid after draining: a ring changes owner only once empty and recycled (by this
                // thread), so these belong to whoever made the records we just took.
                self.spans
                    .push((r.id, r.epoch(), r.tid(), start, self.scratch.len()));
            }
        }
        record::recycle_exited();
        self.pacer.polled(std::time::Instant::now(), fullest);
        let moved = self.scratch.len();
        let Some(a) = self.active.as_mut() else {
            return moved;
        };
        let written = a
            .write(&mut self.scratch, &self.spans, window_end, &mut self.carry)
            .and_then(|_| a.periodic_counters(&self.rings));
        if let Err(e) = written {
            if a.spool_error.is_none() {
                log::error!(
                    "cannot write spool {}: {e}; recording stops, what was written is kept",
                    a.profile.spool_path.display()
                );
                a.spool_error = Some(e.to_string());
                a.w = None;
                let gen = a.profile.gen;
                (self.hooks.limit_reached)(gen, StopReason::IoError);
            }
        }
        if a.truncated && !a.cap_reported {
            a.cap_reported = true;
            log::warn!(
                "profile {} reached NPUPROF_MAX_DISK_MB={} ({} bytes; the spool may use {} bytes of it and \
                 holds {} bytes); recording stops and the result is marked truncated",
                a.profile.dir.display(),
                a.profile.config.max_disk_mb,
                a.profile.config.max_disk_bytes(),
                a.spool_cap,
                a.counters.spool_bytes
            );
            let gen = a.profile.gen;
            (self.hooks.limit_reached)(gen, StopReason::DiskLimit);
        }
        moved
    }

    fn stop(
        &mut self,
        profile: Arc<Profile>,
        stop_tick: u64,
        reason: StopReason,
        device: Box<dyn DeviceData>,
    ) {
        self.poll(Some(stop_tick));
        let Some(mut a) = self.active.take().filter(|a| a.profile.gen == profile.gen) else {
            log::error!(
                "stop for a profile the drain does not know: {}",
                profile.dir.display()
            );
            self.fail(Error::new(
                Status::Internal,
                format!("the drain lost track of {}", profile.dir.display()),
            ));
            self.stop_handed_off = true;
            (self.hooks.export_ended)();
            return;
        };
        a.sample_counters(&self.rings);
        a.counters.drain_cpu_ns = thread_cpu_ns().saturating_sub(a.counters.drain_cpu_ns);
        let conversion = clock::conversion(profile.anchor);
        let mut kv = a.counters_kv(stop_tick);
        kv.insert("stop_tick".into(), stop_tick.to_string());
        kv.insert("reason".into(), reason.name().into());
        kv.insert("ticks_per".into(), conversion.ticks_per.to_string());
        kv.insert("ns_per".into(), conversion.ns_per.to_string());
        kv.insert("truncated".into(), a.truncated.to_string());
        if let Some(mut w) = a.w.take() {
            let done = w.stop(&kv).and_then(|_| w.finish());
            if let Err(e) = done {
                log::error!("cannot finish spool {}: {e}", profile.spool_path.display());
                a.spool_error.get_or_insert(e.to_string());
            }
        }
        let job = ExportJob {
            profile,
            stop_tick,
            reason,
            device,
            counters: a.counters,
            conversion,
            truncated: a.truncated,
            spool_error: a.spool_error,
            recovered: false,
            counters_as_of_ns: None,
        };
        self.stop_handed_off = true;
        if self
            .etx
            .send(ExportMsg::Job(Box::new(job), a.lock))
            .is_err()
        {
            log::error!("the npuprof-export thread is gone; a profile stays unexported");
            (self.hooks.export_ended)();
        }
    }
}
