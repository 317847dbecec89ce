//! Exporters: a finished spool (+ device rows from the backend) → the `*_ascend_ms` result files.
//!
//! Runs on the `npuprof-export` thread. One streaming pass over the spool writes `trace_view.json` (memory:
//! the open ranges of each thread, the steps and the name table, never the events), then the CSVs and the
//! two JSON metadata files. Every file is written to `name.tmp` and renamed, so a reader never sees half a
//! file. Progress is logged MindSpore-style: `Parsing: [####################] 3/3 Done`.

pub mod budget;
pub mod csv;
mod host;
mod info;
mod lanes;
mod result;
mod stage;
mod tables;
pub use crate::format::json;
pub mod jsonparse;
pub use crate::layout;
pub mod overlap;
pub mod trace_view;

use crate::device::{DeviceResult, Kernels};
use crate::error::{Error, Result};
use crate::profile::ExportJob;
use crate::record::{kind, names, Record};
use crate::spool::{self, Frame};
use csv::StepSpan;
use host::HostPass;
use info::{metadata, not_in_result, profiler_info};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;
use trace_view::TraceWriter;

use lanes::{write_lanes, write_overlap_lanes};
use result::write_result;
pub use stage::DeviceStage;
use tables::{note_tables_cut, write_tables};

/// What an export produced (for the log, the metadata and tests).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub trace_events: u64,
    pub slices: u64,
    pub steps: u64,
    pub threads: u64,
    pub trace_bytes: u64,
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
}

/// What every write of one profile's result shares.
struct Ctx<'a> {
    p: &'a crate::profile::Profile,
    stop_tick: u64,
    reason: crate::profile::StopReason,
    counters: crate::profile::Counters,
    conversion: crate::record::clock::Conversion,
    truncated: bool,
    spool_error: Option<String>,
    recovered: bool,
    counters_as_of_ns: Option<u64>,
    t0: Instant,
}

/// Exports one profile: the host result first (`trace_view.json` with the host timeline, the CSVs that need
/// no device data, the metadata with `device_data: pending`), committed before any device step runs, so a
/// process that ends while the vendor stop or msprof runs still has its result; then, once the device data
/// is in, the whole result again with it (each file replaced atomically). A profile without a device step
/// (the host backend) is written once. On success the spools (`npuprof.spool`, `mspti.spool` and its
/// `mspti.names`) are removed (unless `NPUPROF_KEEP_SPOOL`, or the device data is not in: then `npuprof
/// recover` needs them).
pub fn run(job: ExportJob) -> Result<Summary> {
    let ExportJob {
        profile,
        stop_tick,
        reason,
        device,
        counters,
        conversion,
        truncated,
        spool_error,
        recovered,
        counters_as_of_ns,
    } = job;
    let p = &*profile;
    let ctx = Ctx {
        p,
        stop_tick,
        reason,
        counters,
        conversion,
        truncated,
        spool_error,
        recovered,
        counters_as_of_ns,
        t0: Instant::now(),
    };
    if device.pending() {
        let mut pending = DeviceResult {
            // The device spools are on disk while the host result is written: they count against the cap.
            disk_bytes: budget::device_spool_bytes(&p.dirs.framework),
            ..DeviceResult::default()
        };
        pending.set_status(
            "pending",
            Some("the host data is written; the device data is being added (vendor stop, msprof, parse)"),
        );
        write_result(&ctx, pending, DeviceStage::Pending)?;
        log::info!(
            "host result written: {} (device data pending)",
            p.dir.display()
        );
    }
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
    let stage = DeviceStage::of(&dev);
    let summary = write_result(&ctx, dev, stage)?;
    log::info!(
        "profile written: {} ({} steps, {} slices, {} records not in the result{})",
        p.dir.display(),
        summary.steps,
        summary.slices,
        not_in_result(&ctx.counters, &summary),
        if summary.truncated { ", truncated" } else { "" }
    );
    if !p.config.keep_spool
        && ctx.spool_error.is_none()
        && summary.spool_damage.is_none()
        && !stage.unfinished()
    {
        p.dirs.remove_spool();
    }
    Ok(summary)
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
    let mut tw = TraceWriter::create(&at, "trace_view.json", 1 << 20)?;
    let mut rd = spool::Reader::new(bytes, bytes.len() as u64);
    host.read_frames(&mut tw, &mut rd, scratch)?;
    host.finish(&mut tw, u64::MAX)?;
    Ok(tw.events)
}
