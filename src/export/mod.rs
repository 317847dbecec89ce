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
mod job;
pub use crate::format::json;
pub use crate::layout;
pub mod overlap;
pub mod trace_view;

use crate::device::{DeviceResult, Kernels};
use crate::error::{Error, Result};
use crate::profile::BackendId;
use crate::record::{kind, names, Record};
use crate::spool::{self, Frame};
use csv::StepSpan;
use host::HostPass;
use info::{metadata, not_in_result, profiler_info};
pub use job::ExportJob;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;
use trace_view::TraceWriter;

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

use crate::device::pids::{device_pid, SLOT_HARDWARE, SLOT_OVERLAP};

fn progress(done: usize, total: usize, what: &str) {
    const W: usize = 20;
    let fill = W * done / total;
    log::info!(
        "Parsing: [{}{}] {done}/{total} {what}",
        "#".repeat(fill),
        " ".repeat(W - fill)
    );
}

/// Where a result's device data stands (`npuprof.device_data` in `profiler_metadata.json`). The host result is
/// written first, with `Pending` when device data is still to come; the export then adds the device data and
/// rewrites the result (each file replaced atomically). `npuprof recover` finishes a result whose device data is
/// `Pending` or `Abandoned` and refuses one that is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStage {
    /// Host data written; the device step (vendor stop, msprof, parse) has not finished: the process ended, or
    /// is still working on it.
    Pending,
    /// The device data is in the result.
    Parsed,
    /// The device step was given up (a vendor stop or msprof that did not return in time, or cut at exit):
    /// whatever raw device data exists stays for `npuprof recover`.
    Abandoned,
    /// The device step ended without device data in the result (no device backend, host-only, msprof missing
    /// or failing, ...): `device.status` says why.
    None,
}

impl DeviceStage {
    pub fn name(self) -> &'static str {
        match self {
            DeviceStage::Pending => "pending",
            DeviceStage::Parsed => "parsed",
            DeviceStage::Abandoned => "abandoned",
            DeviceStage::None => "none",
        }
    }

    pub fn from_name(n: &str) -> Option<DeviceStage> {
        [
            DeviceStage::Pending,
            DeviceStage::Parsed,
            DeviceStage::Abandoned,
            DeviceStage::None,
        ]
        .into_iter()
        .find(|s| s.name() == n)
    }

    /// Whether `npuprof recover` still has something to add.
    pub fn unfinished(self) -> bool {
        matches!(self, DeviceStage::Pending | DeviceStage::Abandoned)
    }

    /// The stage a collected device result stands at (from its `device.status`).
    fn of(dev: &DeviceResult) -> DeviceStage {
        let status = dev
            .meta
            .iter()
            .rev()
            .find(|(k, _)| k == "status")
            .map(|(_, v)| v.trim_matches('"').to_string());
        match status.as_deref() {
            Some("parsed") => DeviceStage::Parsed,
            Some("abandoned") | Some("pending") => DeviceStage::Abandoned,
            _ => DeviceStage::None,
        }
    }
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

/// Writes the whole result of `ctx` with the device data `dev` (standing at `stage`): the host pass over the
/// spool, the device lanes, the CSVs, `profiler_info_{rank}.json` and, last, `profiler_metadata.json`.
fn write_result(ctx: &Ctx, mut dev: DeviceResult, stage: DeviceStage) -> Result<Summary> {
    let t0 = Instant::now();
    let p = ctx.p;
    let (stop_tick, conversion, counters) = (ctx.stop_tick, ctx.conversion, &ctx.counters);
    let out = &p.dirs.output;
    let start_ns = p.anchor.1;
    let stop_ns = conversion.to_ns(stop_tick).max(start_ns);
    // The spools count against NPUPROF_MAX_DISK_MB (they exist while the trace is written, and stay with
    // NPUPROF_KEEP_SPOOL), and so do the device CSVs and the small files (see `budget`).
    let csv_need = if dev.kernels.is_empty() {
        // Kernels may come from the lanes (msprof without op_summary): their size is known only later.
        if dev.timeline.is_some() {
            u64::MAX
        } else {
            0
        }
    } else {
        let columns = dev.kernel_header.is_some();
        let k = &dev.kernels;
        csv::kernel_header_bound(dev.kernel_header.as_deref())
            + k.list
                .iter()
                .map(|x| csv::kernel_row_bound(k, x, columns))
                .sum::<u64>()
            + dev.files.iter().map(|f| f.1.len() as u64).sum::<u64>()
    };
    let (budget, csv_cap) = budget::split(
        p.config.max_disk_bytes(),
        counters.spool_bytes.saturating_add(dev.disk_bytes),
        csv_need,
    );

    let mut host = HostPass::new(p.pid, conversion, p.anchor.0, stop_tick);
    let mut tw = TraceWriter::create(out, "trace_view.json", budget)?;
    host.read_spool(&mut tw, &p.dirs.framework)?;
    let steps = host.finish(&mut tw, stop_tick)?;
    let t_host = t0.elapsed();
    // Progress is shown for the result that completes the export (the host result before it is a step of it).
    let show = stage != DeviceStage::Pending;
    let progress = |done, total, what| {
        if show {
            progress(done, total, what)
        }
    };
    progress(1, 3, "host timeline");
    let timeline = dev.timeline.take();
    let files = std::mem::take(&mut dev.files);
    let header = dev.kernel_header.take();
    let tables = |kernels: &Kernels, ov: &overlap::Overlap| {
        write_tables(
            out,
            p,
            &steps,
            (start_ns, stop_ns),
            kernels,
            header.as_deref(),
            &files,
            ov,
            csv_cap,
        )
    };
    let lane_meta;
    let tables_cut;
    if dev.kernels.is_empty() {
        // Kernels may come from the lanes themselves (msprof without op_summary): one after the other.
        let (meta, from_lanes) = write_lanes(&mut tw, timeline, &Kernels::default(), p.device_id)?;
        lane_meta = meta;
        dev.kernels = from_lanes;
        let ov = overlap::Overlap::new(&dev.kernels);
        if !dev.kernels.is_empty() {
            write_overlap_lanes(&mut tw, p.device_id, &ov)?;
        }
        tables_cut = tables(&dev.kernels, &ov)?;
    } else {
        // The device lanes (trace_view.json) and the tables (CSVs) are independent: write them at once. The
        // CSV thread computes the overlap first (the lanes need it only at their end).
        let kernels = &dev.kernels;
        let ov_cell = std::sync::OnceLock::new();
        let overlap = || ov_cell.get_or_init(|| overlap::Overlap::new(kernels));
        let (lanes, tabs) = std::thread::scope(|sc| {
            // Dropped when the overlap is ready, or when the thread cannot start or panics.
            let (ready, ready_rx) = crossbeam_channel::bounded::<()>(0);
            let (overlap, tables) = (&overlap, &tables);
            let t = std::thread::Builder::new()
                .name("npuprof-export-csv".into())
                .spawn_scoped(sc, move || {
                    let t = Instant::now();
                    let ov = overlap();
                    drop(ready);
                    let r = tables(kernels, ov);
                    log::debug!("export: overlap + tables {} ms", t.elapsed().as_millis());
                    r
                });
            let t_lanes = Instant::now();
            let lanes = write_lanes(&mut tw, timeline, kernels, p.device_id).and_then(|m| {
                let _ = ready_rx.recv();
                write_overlap_lanes(&mut tw, p.device_id, overlap())?;
                Ok(m)
            });
            log::debug!("export: device lanes {} ms", t_lanes.elapsed().as_millis());
            let tabs = match t {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(Error::new(
                        crate::error::Status::Internal,
                        "the CSV writer panicked",
                    ))
                }),
                Err(_) => tables(kernels, overlap()),
            };
            (lanes, tabs)
        });
        lane_meta = lanes?.0;
        tables_cut = tabs?;
    }
    dev.meta.extend(lane_meta);
    note_tables_cut(&mut dev, tables_cut, csv_cap);
    let mut summary = Summary {
        trace_events: 0,
        slices: tw.slices,
        steps: steps.len() as u64,
        threads: host.thread_meta.len() as u64,
        lost_range_ends: host.lost_ends,
        lost_range_begins: host.lost_begins,
        closed_at_stop: host.closed_at_stop,
        unknown_records: host.unknown,
        trace_cut_records: host.trace_cut,
        unpaired_records: host.lost_begins + host.stray_stacks,
        trace_cut_events: tw.cut_events,
        spool_damage: host.damage.clone(),
        truncated: ctx.truncated || tw.truncated,
        ..Default::default()
    };
    if tw.truncated {
        log::warn!(
            "trace_view.json of {} reached its share of NPUPROF_MAX_DISK_MB ({} bytes): {} events ({} \
             recorded host records) left out, counted in profiler_metadata.json",
            p.dir.display(),
            budget,
            tw.cut_events,
            host.trace_cut
        );
    }
    summary.trace_events = tw.events;
    let t_device = t0.elapsed();
    summary.trace_bytes = tw.finish()?;
    log::debug!(
        "export phases (ms): host timeline {}, device lanes + tables {}, trace sync {}",
        t_host.as_millis(),
        (t_device - t_host).as_millis(),
        (t0.elapsed() - t_device).as_millis()
    );
    progress(
        2,
        3,
        "trace_view.json, step_trace_time.csv, kernel_details.csv, op_statistic.csv",
    );

    summary.elapsed_ms = ctx.t0.elapsed().as_millis() as u64;
    layout::write_atomic(
        &p.dirs.top,
        &format!("profiler_info_{}.json", p.rank),
        profiler_info(p, start_ns, stop_ns, &summary).as_bytes(),
    )?;
    let meta = metadata(
        p,
        start_ns,
        stop_ns,
        ctx.reason,
        counters,
        &summary,
        &ctx.spool_error,
        (&dev, stage),
        (ctx.recovered, ctx.counters_as_of_ns),
    );
    layout::write_atomic(&p.dirs.top, "profiler_metadata.json", meta.as_bytes())?;
    progress(3, 3, "Done");
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

/// Metadata entries of the lanes, and the kernels they yielded.
type LanesOut = (Vec<(String, String)>, Kernels);

/// The device lanes: the backend's timeline when it has one (else lanes drawn from `kernels`). Returns the
/// metadata entries and the kernels the lanes yielded (when the backend asked for them).
fn write_lanes(
    tw: &mut TraceWriter,
    timeline: Option<Box<dyn crate::device::Lanes>>,
    kernels: &Kernels,
    device: u32,
) -> Result<LanesOut> {
    let mut meta = Vec::new();
    let Some(lanes) = timeline else {
        write_device_lanes(tw, device, kernels)?;
        return Ok((meta, Kernels::default()));
    };
    let (stats, err) = lanes.write(tw);
    meta.push(("timeline_events".to_string(), stats.events.to_string()));
    meta.push(("timeline_skipped".to_string(), stats.skipped.to_string()));
    if let Some(e) = err {
        log::warn!(
            "device timeline unreadable after {} events: {e}",
            stats.events
        );
        meta.push(("timeline_error".to_string(), json::string(e.as_bytes())));
        if stats.events == 0 {
            write_device_lanes(tw, device, kernels)?;
        }
    }
    Ok((meta, stats.kernels))
}

/// Writes the CSV tables of one profile; the device CSVs within `cap` bytes (their share of NPUPROF_MAX_DISK_MB, see [`budget`]).
/// Returns what did not fit.
#[allow(clippy::too_many_arguments)]
fn write_tables(
    out: &layout::Place,
    p: &crate::profile::Profile,
    steps: &[StepSpan],
    profile: (u64, u64),
    kernels: &Kernels,
    header: Option<&[String]>,
    files: &[(String, String)],
    ov: &overlap::Overlap,
    cap: u64,
) -> Result<TablesCut> {
    let mut cut = TablesCut::default();
    csv::step_trace_time(
        out,
        "step_trace_time.csv",
        p.device_id,
        steps,
        profile,
        (!kernels.is_empty()).then_some(ov),
    )?;
    // CANN's copied tables first (small, whole or not at all), then kernel_details.csv in what is left.
    let mut left = cap;
    let mut cann_statistic = false;
    for (name, content) in files {
        let n = content.len() as u64;
        if n > left {
            cut.files_skipped.push(name.clone());
            continue;
        }
        left -= n;
        layout::write_atomic(out, name, content.as_bytes())?;
        cann_statistic |= name == "op_statistic.csv";
    }
    cut.kernel_rows = csv::kernel_details(
        out,
        "kernel_details.csv",
        kernels,
        header,
        matches!(p.backend, BackendId::Mspti),
        steps,
        left,
    )?;
    if !cann_statistic {
        csv::op_statistic(out, "op_statistic.csv", p.device_id, kernels)?;
    }
    Ok(cut)
}

/// What the device CSVs' share of NPUPROF_MAX_DISK_MB left out.
#[derive(Default)]
struct TablesCut {
    kernel_rows: u64,
    /// CANN's tables not copied (npuprof's op_statistic.csv stands in for CANN's).
    files_skipped: Vec<String>,
}

/// Says in the device metadata (and the log) what the device CSVs' disk share left out.
fn note_tables_cut(dev: &mut DeviceResult, cut: TablesCut, cap: u64) {
    dev.meta.push((
        "kernel_details_rows_cut".into(),
        cut.kernel_rows.to_string(),
    ));
    if cut.kernel_rows > 0 {
        log::warn!(
            "kernel_details.csv reached its share of NPUPROF_MAX_DISK_MB ({cap} bytes): {} rows left out",
            cut.kernel_rows
        );
    }
    if !cut.files_skipped.is_empty() {
        let msg = format!(
            "CANN's {} not copied: over the device tables' share of NPUPROF_MAX_DISK_MB ({cap} bytes)",
            cut.files_skipped.join(", ")
        );
        log::warn!("{msg}");
        dev.meta
            .push(("cann_outputs_cut".into(), json::string(msg.as_bytes())));
    }
}

/// `Overlap Analysis` lanes (torch_npu's names and tids), from which `step_trace_time.csv` is computed.
fn write_overlap_lanes(tw: &mut TraceWriter, device: u32, o: &overlap::Overlap) -> Result<()> {
    let pid = device_pid(device, SLOT_OVERLAP);
    tw.process(pid, "Overlap Analysis", &format!("NPU {device}"), 11)?;
    let lanes: [(&str, &overlap::Spans); 4] = [
        ("Computing", &o.computing),
        ("Communication", &o.communication),
        ("Communication(Not Overlapped)", &o.comm_not_overlapped),
        ("Free", &o.free),
    ];
    for (tid, (name, spans)) in lanes.into_iter().enumerate() {
        tw.thread(pid, tid as u32, name.as_bytes(), tid as u32)?;
        let n = json::string(name.as_bytes());
        for &(a, b) in spans.iter() {
            tw.complete(pid, tid as u32, &n, a, b - a, "overlap", "")?;
        }
    }
    Ok(())
}

fn write_device_lanes(tw: &mut TraceWriter, device: u32, kernels: &Kernels) -> Result<()> {
    if kernels.is_empty() {
        return Ok(());
    }
    let pid = device_pid(device, SLOT_HARDWARE);
    tw.process(pid, "Ascend Hardware", &format!("NPU {device}"), 8)?;
    let mut streams: Vec<u32> = kernels.list.iter().map(|k| k.stream_id).collect();
    streams.sort_unstable();
    streams.dedup();
    for (i, s) in streams.iter().enumerate() {
        tw.thread(pid, *s, format!("Stream {s}").as_bytes(), i as u32)?;
    }
    for k in &kernels.list {
        let args = format!(
            "\"Model Id\":{},\"Task Type\":{},\"Stream Id\":{},\"Task Id\":{},\"Batch Id\":0,\"Subtask Id\":4294967295",
            k.model_id,
            kernels.str(k.core).json,
            k.stream_id,
            k.task_id
        );
        tw.complete(
            pid,
            k.stream_id,
            &kernels.str(k.name).json,
            k.start_ns,
            k.dur_ns,
            "kernel",
            &args,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::clock::Conversion;
    use crate::record::Record;

    fn rec(ts: u64, k: u8, depth: u64, name: u64) -> Record {
        Record::new(ts, k, (depth << 32) | name)
    }

    /// Builds a spool from frames and runs the host pass over it; returns the trace events.
    fn host_pass(
        frames: impl FnOnce(&mut spool::Writer),
    ) -> (Vec<serde_json::Value>, HostPass, Vec<StepSpan>) {
        let d = tempfile::tempdir().unwrap();
        let sp = d.path().join(layout::SPOOL_NAME);
        let mut w = spool::Writer::new(std::fs::File::create(&sp).unwrap()).unwrap();
        w.name(5, b"outer").unwrap();
        w.name(6, b"inner").unwrap();
        frames(&mut w);
        w.finish().unwrap();
        let conv = Conversion {
            anchor_tick: 0,
            anchor_ns: 1_000_000,
            ticks_per: 1,
            ns_per: 1,
        };
        let mut hp = HostPass::new(42, conv, 0, 10_000);
        let tv = d.path().join("t.json");
        let at = layout::Place::open(d.path()).unwrap();
        let mut tw = TraceWriter::create(&at, "t.json", u64::MAX).unwrap();
        hp.read_spool(&mut tw, &at).unwrap();
        let steps = hp.finish(&mut tw, 10_000).unwrap();
        tw.finish().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&tv).unwrap()).unwrap();
        (v.as_array().unwrap().clone(), hp, steps)
    }

    fn x<'a>(t: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
        t.iter()
            .filter(|e| e["ph"] == "X" && e["name"] == name)
            .collect()
    }

    #[test]
    fn pairs_ranges_by_depth_and_repairs_lost_records() {
        let (t, hp, _) = host_pass(|w| {
            w.thread(0, 1, 100, b"main").unwrap();
            w.records(
                0,
                1,
                &[
                    rec(10, kind::BEGIN, 0, 5),
                    rec(20, kind::BEGIN, 1, 6),
                    rec(30, kind::END, 1, 0),
                    // inner's END lost: the next BEGIN at depth 1 closes it
                    rec(40, kind::BEGIN, 1, 6),
                    rec(50, kind::BEGIN, 1, 6),
                    rec(60, kind::END, 1, 0),
                    rec(70, kind::END, 0, 0),
                    // an END whose BEGIN was lost
                    rec(80, kind::END, 0, 0),
                    rec(90, kind::MARK, 0, 5),
                    rec(95, 0x7f, 0, 0),
                    // left open: closed at stop
                    rec(100, kind::BEGIN, 0, 6),
                ],
            )
            .unwrap();
        });
        let outer = x(&t, "outer");
        assert_eq!(outer.len(), 1);
        assert_eq!(
            (outer[0]["ts"].as_str(), outer[0]["dur"].as_str()),
            (Some("1000.010"), Some("0.060"))
        );
        let inner = x(&t, "inner");
        assert_eq!(inner.len(), 4);
        assert_eq!(
            inner
                .iter()
                .filter(|e| e["args"]["npuprof"] == "end lost (buffer full)")
                .count(),
            1
        );
        assert_eq!(
            inner
                .iter()
                .filter(|e| e["args"]["npuprof"] == "closed at stop")
                .count(),
            1
        );
        assert_eq!(
            (hp.lost_ends, hp.lost_begins, hp.closed_at_stop, hp.unknown),
            (1, 1, 1, 1)
        );
        assert_eq!(t.iter().filter(|e| e["ph"] == "i").count(), 1);
    }

    #[test]
    fn a_reused_ring_closes_the_previous_owners_ranges_at_its_last_event() {
        let (t, _, _) = host_pass(|w| {
            w.thread(3, 1, 100, b"a").unwrap();
            w.records(
                3,
                1,
                &[rec(10, kind::BEGIN, 0, 5), rec(20, kind::MARK, 0, 6)],
            )
            .unwrap();
            w.thread(3, 2, 200, b"b").unwrap();
            w.records(
                3,
                2,
                &[rec(30, kind::BEGIN, 0, 6), rec(40, kind::END, 0, 0)],
            )
            .unwrap();
        });
        let outer = x(&t, "outer");
        assert_eq!(outer[0]["tid"], 100);
        assert_eq!(outer[0]["dur"], "0.010");
        assert_eq!(outer[0]["args"]["npuprof"], "thread exited");
        assert_eq!(x(&t, "inner")[0]["tid"], 200);
        let names: Vec<_> = t
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].clone())
            .collect();
        assert_eq!(names, ["Thread 100 (a)", "Thread 200 (b)"]);
    }

    /// A range crossing a step boundary (opened in step 2, closed in step 3) would overlap the steps on the
    /// thread's track: those two steps go to the `Steps` lane, the others stay on the thread.
    #[test]
    fn steps_crossed_by_a_range_move_to_the_steps_lane() {
        let (t, _, steps) = host_pass(|w| {
            w.thread(0, 1, 7, b"main").unwrap();
            w.records(
                0,
                1,
                &[
                    rec(100, kind::STEP, 1, 0),
                    rec(110, kind::BEGIN, 0, 5),
                    rec(120, kind::END, 0, 0),
                    rec(200, kind::STEP, 2, 0),
                    rec(250, kind::BEGIN, 0, 6), // crosses the end of step 2 / the start of step 3
                    rec(300, kind::STEP, 3, 0),
                    rec(350, kind::END, 0, 0),
                    rec(400, kind::STEP, 4, 0),
                    rec(410, kind::BEGIN, 0, 5), // open at stop: inside the last step
                ],
            )
            .unwrap();
        });
        let tid_of = |n: &str| x(&t, n)[0]["tid"].as_u64().unwrap();
        assert_eq!(tid_of("ProfilerStep#1"), 7);
        assert_eq!(tid_of("ProfilerStep#2"), host::STEPS_TID as u64);
        assert_eq!(tid_of("ProfilerStep#3"), host::STEPS_TID as u64);
        assert_eq!(tid_of("ProfilerStep#4"), 7);
        assert!(t.iter().any(|e| e["ph"] == "M"
            && e["tid"] == host::STEPS_TID
            && e["args"]["name"] == "Steps"));
        // The step spans (kernel attribution, step_trace_time) do not depend on the lane.
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[1].end_ns, steps[2].start_ns);
    }

    #[test]
    fn steps_span_to_the_next_step_or_the_stop() {
        let (t, _, steps) = host_pass(|w| {
            w.thread(0, 1, 7, b"").unwrap();
            w.records(
                0,
                1,
                &[
                    rec(100, kind::STEP, 1, 64),
                    rec(400, kind::STEP, 2, 8),
                    rec(900, kind::STEP, 3, 8),
                ],
            )
            .unwrap();
        });
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.step, s.end_ns - s.start_ns))
                .collect::<Vec<_>>(),
            [(1, 300), (2, 500), (3, 9100)]
        );
        let s1 = x(&t, "ProfilerStep#1");
        assert_eq!(s1[0]["args"]["num_scheduled_tokens"], 64);
        assert_eq!(s1[0]["tid"], 7);
    }
}
