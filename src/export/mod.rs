//! Exporters: a finished spool (+ device rows from the backend) → the `*_ascend_ms` result files.
//!
//! Runs on the `npuprof-export` thread. One streaming pass over the spool writes `trace_view.json` (memory:
//! the open ranges of each thread, the steps and the name table, never the events), then the CSVs and the
//! two JSON metadata files. Every file is written to `name.tmp` and renamed, so a reader never sees half a
//! file. Progress is logged MindSpore-style: `Parsing: [####################] 3/3 Done`.

pub(crate) mod budget;
mod communication;
pub mod csv;
mod db;
mod device_pass;
mod group_info;
mod host;
mod info;
mod job;
mod lanes;
mod memory;
mod result;
mod stage;
mod tables;
use crate::format::json;
use crate::layout;
pub mod overlap;
pub(crate) mod perfetto;
pub mod trace;
pub mod trace_view;

use crate::device::{DeviceData, DeviceResult, NoDeviceData};
use crate::error::{Error, Result};
use crate::record::{kind, names, Record};
use crate::spool::{self, Frame};
use csv::StepSpan;
use host::HostPass;
use info::{metadata, not_in_result, profiler_info};
pub use job::ExportJob;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;
use trace::Trace;

use result::write_result;
pub use stage::DeviceStage;

/// What an export produced (for the log, the metadata and tests).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub trace_events: u64,
    pub slices: u64,
    pub steps: u64,
    pub threads: u64,
    /// The JSON trace's bytes (`trace_view_bytes`; 0 when only the Perfetto trace is written).
    pub trace_bytes: u64,
    /// Each trace file written and its bytes.
    pub trace_files: Vec<(&'static str, u64)>,
    /// Events the Perfetto trace left out beyond the JSON's (its share of the budget ran out first).
    pub pftrace_cut_events: u64,
    pub lost_range_ends: u64,
    pub lost_range_begins: u64,
    pub closed_at_stop: u64,
    pub unknown_records: u64,
    /// Spool records whose trace event was left out at the trace's disk budget.
    pub trace_cut_records: u64,
    /// Spool records that cannot be drawn: an END whose BEGIN was lost, a stack frame without its BEGIN.
    pub unpaired_records: u64,
    /// Trace events (host and device) left out at the disk budget.
    pub trace_cut_events: u64,
    pub spool_damage: Option<String>,
    pub truncated: bool,
    pub elapsed_ms: u64,
    /// The database's outcome as a JSON object (`{"written":true,"ms":..}` or `{"written":false,"error":..}`);
    /// `None` when NPUPROF_EXPORT_TYPE does not ask for it.
    pub database: Option<String>,
}

/// What every write of one profile's result shares: the job (its device data taken out) and when the export
/// began.
struct Ctx {
    job: ExportJob,
    t0: Instant,
}

impl Ctx {
    fn profile(&self) -> &crate::profile::Profile {
        &self.job.profile
    }
}

/// Exports one profile: the host result first (`trace_view.json` with the host timeline, the CSVs that need
/// no device data, the metadata with `device_data: pending`), committed before any device step runs, so a
/// process that ends while the vendor stop or msprof runs still has its result; then, once the device data
/// is in, the whole result again with it (each file replaced atomically). A profile without a device step
/// (the host backend) is written once. On success the spools (`npuprof.spool`, `mspti.spool` and its
/// `mspti.names`) are removed (unless `NPUPROF_KEEP_SPOOL`, or the device data is not in: then `npuprof
/// recover` needs them).
pub fn run(mut job: ExportJob) -> Result<Summary> {
    let device = std::mem::replace(&mut job.device, Box::new(NoDeviceData));
    let ctx = Ctx {
        job,
        t0: Instant::now(),
    };
    if device.pending() {
        write_host_result(&ctx)?;
    }
    let dev = collect_device_data(device, ctx.profile());
    let stage = DeviceStage::of(&dev);
    let summary = write_result(&ctx, dev, stage)?;
    log_written(&ctx, &summary);
    remove_spools_when_done(&ctx, &summary, stage);
    Ok(summary)
}

/// Writes and commits the host result, marked `device_data: pending`, before the device step runs.
fn write_host_result(ctx: &Ctx) -> Result<()> {
    let p = ctx.profile();
    let mut pending = DeviceResult {
        // The device spools are on disk while the host result is written: they count against the cap.
        disk_bytes: budget::device_spool_bytes(&p.dirs.framework),
        ..DeviceResult::default()
    };
    pending.set_status(
        "pending",
        Some(
            "the host data is written; the device data is being added (vendor stop, msprof, parse)",
        ),
    );
    write_result(ctx, pending, DeviceStage::Pending)?;
    log::info!(
        "host result written: {} (device data pending)",
        p.dir.display()
    );
    Ok(())
}

/// The backend's device step (vendor stop, msprof, parse); a failure becomes a result with `status: error`.
fn collect_device_data(device: Box<dyn DeviceData>, p: &crate::profile::Profile) -> DeviceResult {
    let t_collect = Instant::now();
    let dev = device.collect(p).unwrap_or_else(|e| {
        log::warn!(
            "device data of {} could not be read: {}",
            p.dir.display(),
            e.msg
        );
        let mut d = DeviceResult::default();
        d.set_status("error", Some(&e.msg));
        d
    });
    log::debug!("export: device data {} ms", t_collect.elapsed().as_millis());
    dev
}

fn log_written(ctx: &Ctx, summary: &Summary) {
    log::info!(
        "profile written: {} ({} steps, {} slices, {} records not in the result{})",
        ctx.profile().dir.display(),
        summary.steps,
        summary.slices,
        not_in_result(&ctx.job.counters, summary),
        if summary.truncated { ", truncated" } else { "" }
    );
}

/// Removes the spools once the result holds everything they had (kept with `NPUPROF_KEEP_SPOOL`, after a
/// spool error or damage, and while the device data is unfinished: `npuprof recover` needs them).
fn remove_spools_when_done(ctx: &Ctx, summary: &Summary, stage: DeviceStage) {
    let p = ctx.profile();
    if !p.config.keep_spool
        && ctx.job.spool_error.is_none()
        && summary.spool_damage.is_none()
        && !stage.unfinished()
    {
        p.dirs.remove_spool();
    }
}

/// The host pass over the bytes of a spool (the fuzz target's way in): what an export or `npuprof recover`
/// does with a spool, minus the device data and the result files (the trace goes to `trace_view.json` in
/// the directory `scratch`, at most 1 MiB, and is left uncommitted). Returns the events the trace would
/// hold.
#[doc(hidden)]
pub fn host_pass_bytes(bytes: &[u8], scratch: &std::path::Path) -> Result<u64> {
    let at = layout::Place::open(scratch)
        .map_err(|e| Error::io("cannot open the scratch directory", scratch, &e))?;
    let conv = crate::record::clock::Conversion {
        anchor_tick: 0,
        anchor_ns: 0,
        ticks_per: 1,
        ns_per: 1,
    };
    let mut host = HostPass::new(1, conv, 0, u64::MAX);
    let mut tw = Trace::create(&at, crate::config::TraceFormat::Json, false, 1 << 20, 1)?;
    let mut rd = spool::Reader::new(bytes, bytes.len() as u64);
    host.read_frames(&mut tw, &mut rd, scratch)?;
    host.finish(&mut tw, u64::MAX)?;
    Ok(tw.events())
}
