//! Writing one whole result: the host pass over the spool, the device lanes, the CSVs, `profiler_info_{rank}.json`
//! and, last, `profiler_metadata.json`.

use super::*;

fn progress(done: usize, total: usize, what: &str) {
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
