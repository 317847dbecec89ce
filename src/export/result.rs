//! Writing one whole result: the host pass over the spool, the device lanes, the CSVs, `profiler_info_{rank}.json`
//! and, last, `profiler_metadata.json`.

use super::device_pass::{lanes_beside_tables, lanes_then_tables};
use super::tables::{note_tables_cut, Tables};
use super::*;
use std::time::Duration;

/// One line of MindSpore-style progress (`Parsing: [####    ] 1/3 host timeline`), when `show`.
fn progress(show: bool, done: usize, total: usize, what: &str) {
    if !show {
        return;
    }
    const W: usize = 20;
    let fill = W * done / total;
    log::info!(
        "Parsing: [{}{}] {done}/{total} {what}",
        "#".repeat(fill),
        " ".repeat(W - fill)
    );
}

/// Writes the whole result of `ctx` with the device data `dev` (standing at `stage`): the host pass over the
/// spool, the device lanes, the CSVs, `profiler_info_{rank}.json` and, last, `profiler_metadata.json`.
pub(super) fn write_result(
    ctx: &Ctx,
    mut dev: DeviceResult,
    stage: DeviceStage,
) -> Result<Summary> {
    let t0 = Instant::now();
    let p = ctx.profile();
    let span = profile_span(ctx);
    let (budget, csv_cap) = disk_shares(ctx, &dev);
    // Progress is shown for the result that completes the export (the host result before it is a step of it).
    let show = stage != DeviceStage::Pending;

    let text = p.config.export_type.text();
    let db = open_db(p);
    // The device tasks' launches get their framework ops from the host pass: compare's flows in the trace,
    // the database's CONNECTION_IDS (free_analysis's dispatch times).
    let mut launches = match dev.timeline.as_mut() {
        Some(l) if text || db.is_some() => l.launches(),
        _ => Default::default(),
    };
    // Tasks from a source without connection ids (msprof's op_summary) get them from the timeline: the
    // database (only it reads them) ties them to their API calls and framework ops.
    let keys = std::mem::take(&mut launches.tasks);
    if db.is_some() {
        let linked = keys.link(&mut dev.kernels, &mut dev.collectives);
        log::debug!("{linked} device tasks got their connection id from the timeline");
    }
    let (mut tw, mut host, steps) = write_host_timeline(ctx, budget, launches, db)?;
    let mut db = host.db.take();
    let t_host = t0.elapsed();
    progress(show, 1, 3, "host timeline");

    let mut timeline = dev.timeline.take();
    let mut ops = std::mem::take(&mut host.launches).by_key();
    ops.host_pid = p.pid;
    if let Some(db) = db.as_mut() {
        db.framework_links(&ops);
    }
    if let Some(l) = timeline.as_mut() {
        l.set_framework_ops(ops);
    }
    let files = std::mem::take(&mut dev.files);
    let header = dev.kernel_header.take();
    let memory = std::mem::take(&mut dev.memory);
    // The communication files share the device tables' part of NPUPROF_MAX_DISK_MB (at most half of it).
    let comm_cap = communication_need(&dev).min(csv_cap / 2);
    let tables = Tables {
        out: &p.dirs.output,
        p,
        steps: &steps,
        profile: span,
        header: header.as_deref(),
        files: &files,
        memory: &memory,
        cap: csv_cap - comm_cap,
    };
    let (lane_meta, tables_cut) = if dev.kernels.is_empty() {
        // The kernels come from the lanes: they are drawn even when the trace is not kept.
        let (meta, from_lanes, cut) = lanes_then_tables(&mut tw, timeline, &tables, p.device_id)?;
        dev.kernels = from_lanes;
        (meta, cut)
    } else if !text {
        // NPUPROF_EXPORT_TYPE=db: neither the trace's device lanes nor the CSVs are written.
        drop(timeline);
        (
            vec![(
                "timeline".into(),
                "\"not drawn (NPUPROF_EXPORT_TYPE=db)\"".into(),
            )],
            Default::default(),
        )
    } else {
        lanes_beside_tables(&mut tw, timeline, &dev.kernels, &tables, p.device_id)?
    };
    dev.meta.extend(lane_meta);
    note_tables_cut(&mut dev, tables_cut, csv_cap);
    write_communication(ctx, &mut dev, &steps, comm_cap);

    let mut summary = summarize(ctx, &tw, &host, steps.len());
    warn_if_trace_cut(ctx, &tw, &host, budget);
    if text {
        finish_trace(&mut summary, tw, t0, t_host)?;
    } else {
        // NPUPROF_EXPORT_TYPE=db: the trace is not kept (its temporary file goes with the writer).
        summary.trace_events = tw.events();
        drop(tw);
    }
    // After the text files: the database gets the room they left under NPUPROF_MAX_DISK_MB.
    summary.database = super::db::complete(
        db,
        &p.dirs.output,
        super::budget::db_room(
            p.config.max_disk_bytes(),
            &p.dirs,
            &[&super::db::name(p.rank), super::db::ANALYZER],
        ),
        &super::db::Input {
            rank: p.rank,
            device_id: p.device_id,
            dev: &dev,
            steps: &steps,
            span,
        },
    );
    progress(
        show,
        2,
        3,
        "trace_view.json, step_trace_time.csv, kernel_details.csv, op_statistic.csv",
    );

    summary.elapsed_ms = ctx.t0.elapsed().as_millis() as u64;
    write_metadata_files(ctx, span, &summary, (&dev, stage))?;
    progress(show, 3, 3, "Done");
    Ok(summary)
}

/// Bytes the communication files may need (an op takes well under [`COMMUNICATION_OP_BYTES`] in both).
fn communication_need(dev: &DeviceResult) -> u64 {
    if !dev.collectives.is_empty() {
        dev.collectives.len() as u64 * COMMUNICATION_OP_BYTES
    } else if dev.kernels.is_empty() && dev.timeline.is_some() {
        // Kernels (and their communication rows) may come from the lanes: known only later.
        u64::MAX
    } else {
        dev.kernels
            .list
            .iter()
            .filter(|k| dev.kernels.is_communication(k))
            .count() as u64
            * COMMUNICATION_OP_BYTES
    }
}

const COMMUNICATION_OP_BYTES: u64 = 2048;

/// Writes `communication.json` and `communication_matrix.json` from the collectives (taken from the
/// communication rows when the backend gave none) within `cap` bytes; says in the device metadata how many
/// ops they hold and how many were left out. A failure is logged and noted, never fatal to the result.
fn write_communication(ctx: &Ctx, dev: &mut DeviceResult, steps: &[StepSpan], cap: u64) {
    let p = ctx.profile();
    if dev.collectives.is_empty() {
        dev.collectives =
            crate::device::from_kernels(&dev.kernels, p.device_id, p.config.max_device_records());
    }
    if dev.collectives.is_empty() {
        return;
    }
    let groups = crate::device::groups::snapshot();
    dev.collectives
        .default_group(&mut dev.kernels.strings, &groups);
    match super::communication::write(&p.dirs.output, dev, steps, p.rank, &groups, cap) {
        Ok(w) => {
            dev.meta
                .push(("communication_ops".into(), w.ops.to_string()));
            dev.meta
                .push(("communication_ops_cut".into(), w.cut.to_string()));
            if w.cut > 0 {
                log::warn!(
                    "communication.json reached its share of NPUPROF_MAX_DISK_MB ({cap} bytes): {} ops left out",
                    w.cut
                );
            }
        }
        Err(e) => {
            log::warn!("communication.json not written: {}", e.msg);
            dev.meta
                .push(("communication_error".into(), json::string(e.msg.as_bytes())));
        }
    }
}

/// The profile's span: its start and its stop (never before the start), CLOCK_REALTIME ns.
fn profile_span(ctx: &Ctx) -> (u64, u64) {
    let start_ns = ctx.profile().anchor.1;
    let stop_ns = ctx.job.conversion.to_ns(ctx.job.stop_tick).max(start_ns);
    (start_ns, stop_ns)
}

/// The shares of NPUPROF_MAX_DISK_MB: (the trace's, the device CSVs'). The spools count against it (they exist
/// while the trace is written, and stay with NPUPROF_KEEP_SPOOL), and so do the device CSVs and the small
/// files (see `budget`).
fn disk_shares(ctx: &Ctx, dev: &DeviceResult) -> (u64, u64) {
    let csv_need = communication_need(dev).saturating_add(if dev.kernels.is_empty() {
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
            + super::memory::bound(&dev.memory)
    });
    budget::split(
        ctx.profile().config.max_disk_bytes(),
        ctx.job.counters.spool_bytes.saturating_add(dev.disk_bytes),
        csv_need,
    )
}

/// Whether the result gets a database. `NPUPROF_EXPORT_TYPE` asks for it, except that a host-only result with
/// text files gets none: it holds no device data, and msprof-analyze 26.2.0's `advisor all` stops ("Do
/// analysis error": its slow-link analysis reads a cluster table that results without communication never
/// produce) on a cluster of databases without communication, where it reads the text files to the end.
pub(super) fn writes_db(p: &crate::profile::Profile) -> bool {
    let e = p.config.export_type;
    e.db() && !(e.text() && p.backend == crate::profile::BackendId::Host)
}

/// The result's database, begun (when `writes_db`); `None` after one warning when it cannot be made (the
/// text files are written all the same).
fn open_db(p: &crate::profile::Profile) -> Option<super::db::Db> {
    if !writes_db(p) {
        return None;
    }
    super::db::Db::create(&p.dirs.output, p.rank, p.pid)
        .map_err(|e| log::warn!("the result's database is not written: {}", e.msg))
        .ok()
}

/// Opens `trace_view.json` (within `budget` bytes) and writes the host timeline into it from the spool (and
/// the host rows into the database `db`, which the returned pass holds).
fn write_host_timeline(
    ctx: &Ctx,
    budget: u64,
    launches: crate::device::Launches,
    db: Option<super::db::Db>,
) -> Result<(Trace, HostPass, Vec<StepSpan>)> {
    let p = ctx.profile();
    let stop_tick = ctx.job.stop_tick;
    let mut host = HostPass::new(p.pid, ctx.job.conversion, p.anchor.0, stop_tick);
    host.launches = launches;
    host.db = db;
    let c = &p.config;
    let mut tw = Trace::create(&p.dirs.output, c.trace_format, c.trace_gzip, budget, p.pid)?;
    host.read_spool(&mut tw, &p.dirs.framework)?;
    let steps = host.finish(&mut tw, stop_tick)?;
    Ok((tw, host, steps))
}

/// The summary of the trace as written so far (its size and event count come with [`finish_trace`]).
fn summarize(ctx: &Ctx, tw: &Trace, host: &HostPass, steps: usize) -> Summary {
    Summary {
        trace_events: 0,
        slices: tw.slices(),
        steps: steps as u64,
        threads: host.thread_meta.len() as u64,
        lost_range_ends: host.lost_ends,
        lost_range_begins: host.lost_begins,
        closed_at_stop: host.closed_at_stop,
        unknown_records: host.unknown,
        trace_cut_records: host.trace_cut,
        unpaired_records: host.lost_begins + host.stray_stacks,
        trace_cut_events: tw.cut_events(),
        pftrace_cut_events: tw.pftrace_cut_events(),
        spool_damage: host.damage.clone(),
        truncated: ctx.job.truncated || tw.truncated(),
        ..Default::default()
    }
}

fn warn_if_trace_cut(ctx: &Ctx, tw: &Trace, host: &HostPass, budget: u64) {
    if tw.truncated() {
        log::warn!(
            "trace_view.json of {} reached its share of NPUPROF_MAX_DISK_MB ({} bytes): {} events ({} \
             recorded host records) left out, counted in profiler_metadata.json",
            ctx.profile().dir.display(),
            budget,
            tw.cut_events(),
            host.trace_cut
        );
    }
}

/// Commits `trace_view.json`; adds its event count and size to `summary` and logs the phases' times.
fn finish_trace(summary: &mut Summary, tw: Trace, t0: Instant, t_host: Duration) -> Result<()> {
    summary.trace_events = tw.events();
    let t_device = t0.elapsed();
    let gzip = tw.gzip();
    let bytes = tw.finish()?;
    summary.trace_bytes = bytes.json.unwrap_or(0);
    summary.trace_files = [
        (super::trace::json_name(gzip), bytes.json),
        (layout::TRACE_PFTRACE, bytes.pftrace),
    ]
    .into_iter()
    .filter_map(|(n, b)| Some((n, b?)))
    .collect();
    log::debug!(
        "export phases (ms): host timeline {}, device lanes + tables {}, trace sync {}",
        t_host.as_millis(),
        (t_device - t_host).as_millis(),
        (t0.elapsed() - t_device).as_millis()
    );
    Ok(())
}

/// Writes `profiler_info_{rank}.json` and, last (it says how far the result got), `profiler_metadata.json`.
fn write_metadata_files(
    ctx: &Ctx,
    (start_ns, stop_ns): (u64, u64),
    summary: &Summary,
    device: (&DeviceResult, DeviceStage),
) -> Result<()> {
    let p = ctx.profile();
    let job = &ctx.job;
    layout::write_atomic(
        &p.dirs.top,
        &layout::info_name(p.rank),
        profiler_info(p, start_ns, stop_ns, summary).as_bytes(),
    )?;
    let meta = metadata(
        p,
        start_ns,
        stop_ns,
        job.reason,
        &job.counters,
        summary,
        &job.spool_error,
        device,
        (job.recovered, job.counters_as_of_ns),
    );
    layout::write_atomic(&p.dirs.top, layout::METADATA, meta.as_bytes())
}
