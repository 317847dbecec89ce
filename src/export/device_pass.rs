//! The device part of a result: the device lanes of `trace_view.json` and the CSV tables, one after the other
//! when the kernels come from the lanes, else side by side (the tables on a thread of their own).

use super::lanes::{write_lanes, write_overlap_lanes, LanesOut};
use super::overlap::Overlap;
use super::tables::{Tables, TablesCut};
use super::trace::Trace;
use crate::device::{Kernels, Lanes};
use crate::error::{Error, Result, Status};
use std::time::Instant;

/// Metadata entries of the lanes, the kernels the lanes yielded and what the tables left out.
pub(super) type DeviceOut = (Vec<(String, String)>, Kernels, TablesCut);

/// Kernels that come from the lanes themselves (msprof without op_summary): the lanes first, then the tables
/// from the kernels they yielded.
pub(super) fn lanes_then_tables(
    tw: &mut Trace,
    timeline: Option<Box<dyn Lanes>>,
    tables: &Tables,
    device: u32,
) -> Result<DeviceOut> {
    let (meta, kernels) = write_lanes(tw, timeline, &Kernels::default(), device)?;
    let ov = Overlap::new(&kernels);
    if !kernels.is_empty() {
        write_overlap_lanes(tw, device, &ov, tables.steps)?;
    }
    let cut = tables.write(&kernels, &ov)?;
    Ok((meta, kernels, cut))
}

/// The device lanes (trace_view.json) and the tables (CSVs) are independent: write them at once. The CSV
/// thread computes the overlap first (the lanes need it only at their end). Without a thread, the tables are
/// written after the lanes; a panicking CSV writer becomes an error.
pub(super) fn lanes_beside_tables(
    tw: &mut Trace,
    timeline: Option<Box<dyn Lanes>>,
    kernels: &Kernels,
    tables: &Tables,
    device: u32,
) -> Result<(Vec<(String, String)>, TablesCut)> {
    let ov_cell = std::sync::OnceLock::new();
    let overlap = || ov_cell.get_or_init(|| Overlap::new(kernels));
    let (lanes, tabs): (Result<LanesOut>, Result<TablesCut>) = std::thread::scope(|sc| {
        // Dropped when the overlap is ready, or when the thread cannot start or panics.
        let (ready, ready_rx) = crossbeam_channel::bounded::<()>(0);
        let overlap = &overlap;
        let t = std::thread::Builder::new()
            .name("npuprof-export-csv".into())
            .spawn_scoped(sc, move || {
                let t = Instant::now();
                let ov = overlap();
                drop(ready);
                let r = tables.write(kernels, ov);
                log::debug!("export: overlap + tables {} ms", t.elapsed().as_millis());
                r
            });
        let t_lanes = Instant::now();
        let lanes = write_lanes(tw, timeline, kernels, device).and_then(|m| {
            let _ = ready_rx.recv();
            write_overlap_lanes(tw, device, overlap(), tables.steps)?;
            Ok(m)
        });
        log::debug!("export: device lanes {} ms", t_lanes.elapsed().as_millis());
        let tabs = match t {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::new(Status::Internal, "the CSV writer panicked"))),
            Err(_) => tables.write(kernels, overlap()),
        };
        (lanes, tabs)
    });
    Ok((lanes?.0, tabs?))
}
