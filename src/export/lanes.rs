//! The device lanes of `trace_view.json`: the backend's timeline, or lanes drawn from the kernels, and the
//! `Overlap Analysis` lanes.

use super::csv::StepSpan;
use super::overlap;
use super::trace::Trace;
use crate::device::pids::{device_pid, SLOT_HARDWARE, SLOT_OVERLAP};
use crate::device::Kernels;
use crate::error::Result;
use crate::format::json;

/// Metadata entries of the lanes, and the kernels they yielded.
pub(super) type LanesOut = (Vec<(String, String)>, Kernels);

/// The device lanes: the backend's timeline when it has one (else lanes drawn from `kernels`). Returns the
/// metadata entries and the kernels the lanes yielded (when the backend asked for them).
pub(super) fn write_lanes(
    tw: &mut Trace,
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

/// `Overlap Analysis` lanes (torch_npu's names and tids), from which `step_trace_time.csv` is computed.
pub(super) fn write_overlap_lanes(
    tw: &mut Trace,
    device: u32,
    o: &overlap::Overlap,
    steps: &[StepSpan],
) -> Result<()> {
    let pid = device_pid(device, SLOT_OVERLAP);
    let spans: Vec<(u64, u64)> = steps.iter().map(|s| (s.start_ns, s.end_ns)).collect();
    let free = o.free_slices(&spans);
    tw.process(pid, "Overlap Analysis", &format!("NPU {device}"), 11)?;
    let lanes: [(&str, &overlap::Spans); 4] = [
        ("Computing", &o.computing),
        ("Communication", &o.communication),
        ("Communication(Not Overlapped)", &o.comm_not_overlapped),
        ("Free", &free),
    ];
    for (tid, (name, spans)) in lanes.into_iter().enumerate() {
        tw.thread(pid, tid as u32, name.as_bytes(), tid as u32)?;
        let n = json::string(name.as_bytes());
        for &(a, b) in spans.iter() {
            tw.complete(pid, tid as u32, &n, a, b - a, "overlap", "", false)?;
        }
    }
    Ok(())
}

pub(super) fn write_device_lanes(tw: &mut Trace, device: u32, kernels: &Kernels) -> Result<()> {
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
            false,
        )?;
    }
    Ok(())
}
