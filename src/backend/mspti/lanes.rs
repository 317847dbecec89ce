//! The device lanes of an MSPTI profile in `trace_view.json`: kernels per stream, API slices on the launching
//! thread, flows launch → kernel by correlation id, communication lanes, memory counters and markers. The
//! records are read from the spool in passes ([`Spool::replay`]), never all held: memory is the lanes, the
//! correlation ids of launches and kernels (for the flows) and the open marker ranges.

use super::names_file::NameSource;
use super::records::*;
use super::replay::Spool;
use super::walk::DevRec;
use crate::device::{DeviceEvent, LaneStats, Lanes, TraceSink};
use crate::error::Result;
use crate::format::json;
use std::collections::HashMap;

pub struct MsptiLanes {
    /// `None`: no spool (nothing recorded); only the device's empty lane is drawn.
    pub spool: Option<Spool>,
    pub device: u32,
    pub names: NameSource,
}

impl Lanes for MsptiLanes {
    fn write(self: Box<Self>, tw: &mut dyn TraceSink) -> (LaneStats, Option<String>) {
        let mut st = LaneStats::default();
        let r = match &self.spool {
            Some(s) => write_lanes(s, self.device, &self.names, tw, &mut st),
            None => write_lanes_of(&mut |_| Ok(()), self.device, &self.names, tw, &mut st),
        };
        match r {
            Ok(()) => (st, None),
            Err(e) => (st, Some(e.msg)),
        }
    }
}

/// The device a record belongs to (`None`: host records, or MSPTI's invalid device id).
fn device_of(r: &DevRec) -> Option<u32> {
    let d = match r.kind {
        KIND_KERNEL | KIND_HCCL | KIND_COMMUNICATION => r.b as u32,
        KIND_MEMORY | KIND_MEMCPY | KIND_MEMSET => (r.c >> 32) as u32,
        _ => return None,
    };
    (d != u32::MAX).then_some(d)
}

/// The stream of a device record.
fn stream_of(r: &DevRec) -> u32 {
    match r.kind {
        KIND_MEMCPY | KIND_MEMSET => r.c as u32,
        _ => r.a,
    }
}

const SLOT_COMM: u32 = 3;
const SLOT_MEM: u32 = 4;

fn write_lanes(
    spool: &Spool,
    device: u32,
    names: &NameSource,
    tw: &mut dyn TraceSink,
    st: &mut LaneStats,
) -> Result<()> {
    write_lanes_of(
        &mut |each| spool.replay(each).map(|_| ()),
        device,
        names,
        tw,
        st,
    )
}

/// A replay of the records: calls its argument on each, in order.
type Replay<'a> = dyn FnMut(&mut dyn FnMut(&DevRec) -> Result<()>) -> Result<()> + 'a;

fn write_lanes_of(
    recs: &mut Replay<'_>,
    device: u32,
    names: &NameSource,
    tw: &mut dyn TraceSink,
    st: &mut LaneStats,
) -> Result<()> {
    use crate::device::pids::{device_pid, SLOT_CANN, SLOT_HARDWARE};
    use std::collections::{BTreeMap, BTreeSet};
    let cann = device_pid(device, SLOT_CANN);
    // Lanes: (device, slot) → streams; host threads of the API calls and markers.
    let mut lanes: BTreeMap<(u32, u32), BTreeSet<u32>> = BTreeMap::new();
    let mut threads = BTreeSet::new();
    recs(&mut |r| {
        match r.kind {
            KIND_KERNEL | KIND_MEMCPY | KIND_MEMSET => {
                let d = device_of(r).unwrap_or(device);
                lanes
                    .entry((d, SLOT_HARDWARE))
                    .or_default()
                    .insert(stream_of(r));
            }
            KIND_HCCL | KIND_COMMUNICATION => {
                let d = device_of(r).unwrap_or(device);
                lanes.entry((d, SLOT_COMM)).or_default().insert(r.a);
            }
            KIND_MEMORY => {
                let d = device_of(r).unwrap_or(device);
                lanes.entry((d, SLOT_MEM)).or_default();
            }
            k if is_api(k) => {
                threads.insert(r.a);
            }
            KIND_MARKER => {
                threads.insert(r.b as u32);
            }
            _ => {}
        }
        Ok(())
    })?;
    lanes.entry((device, SLOT_HARDWARE)).or_default();
    for ((d, slot), streams) in &lanes {
        let pid = device_pid(*d, *slot);
        let (name, sort) = match *slot {
            SLOT_HARDWARE => ("Ascend Hardware", 8),
            SLOT_COMM => ("Communication", 9),
            _ => ("NPU MEM", 17),
        };
        tw.process(pid, name, &format!("NPU {d}"), sort)?;
        for s in streams {
            tw.thread(pid, *s, format!("Stream {s}").as_bytes(), *s)?;
        }
    }
    tw.process(cann, "CANN", "CPU", 2)?;
    for t in &threads {
        tw.thread(cann, *t, format!("Thread {t}").as_bytes(), *t)?;
    }
    let mut args = String::new();
    let mut id = String::new();
    let mut fname = String::new();
    // JSON literal of each name id (ids are small and dense), made once for every name in the table.
    let lit: Vec<String> = (0..=names.count())
        .map(|n| json::string(names.get(n)))
        .collect();
    let empty = String::from("\"\"");
    let name_lit = |n: u32| -> &String { lit.get(n as usize).unwrap_or(&empty) };
    // Correlation ids that have an API (flow start) and a kernel (flow end), sorted for binary search; none
    // without API records.
    let mut sorted = |kind: fn(u32) -> bool| -> Result<Vec<u64>> {
        let mut v: Vec<u64> = Vec::new();
        recs(&mut |r| {
            if kind(r.kind) && r.corr != 0 {
                // Fallible growth: without memory for more ids, the remaining flows are left out.
                if v.len() == v.capacity() && v.try_reserve(v.len().max(1024)).is_err() {
                    return Ok(());
                }
                v.push(r.corr);
            }
            Ok(())
        })?;
        v.sort_unstable();
        v.dedup();
        Ok(v)
    };
    let api_corr = sorted(is_api)?;
    let kernel_corr = if api_corr.is_empty() {
        Vec::new()
    } else {
        sorted(|k| k == KIND_KERNEL)?
    };
    // Allocated bytes per device (the NPU MEM counter).
    let mut allocated: HashMap<u32, i128> = HashMap::new();
    // One flow start per correlation id (several API kinds may report the same launch): a flag per entry of
    // `kernel_corr`.
    let mut started = vec![false; kernel_corr.len()];
    // Open marker ranges: id → (thread, start, name id).
    let mut open_markers: HashMap<u64, (u32, u64, u32)> = HashMap::new();
    // A HostToDevice flow end point (`s` on the API slice, `f` on the kernel), paired by correlation id.
    let mut flow = |tw: &mut dyn TraceSink,
                    st: &mut LaneStats,
                    ph: u8,
                    e: DeviceEvent<'_>,
                    corr: u64|
     -> Result<()> {
        id.clear();
        id.push('"');
        json::push_u64(&mut id, corr);
        id.push('"');
        fname.clear();
        fname.push_str("\"HostToDevice");
        json::push_u64(&mut fname, corr);
        fname.push('"');
        st.events += 1;
        tw.device_event(&DeviceEvent {
            ph,
            name: &fname,
            cat: "\"HostToDevice\"",
            args: "",
            id: &id,
            ..e
        })
    };
    recs(&mut |r| {
        let dur = r.end.saturating_sub(r.start);
        let d = device_of(r).unwrap_or(device);
        args.clear();
        let mut e = DeviceEvent {
            ph: b'X',
            pid: device_pid(d, SLOT_HARDWARE),
            tid: stream_of(r),
            ts_ns: r.start,
            dur_ns: dur,
            name: "",
            cat: "",
            args: "",
            id: "",
        };
        match r.kind {
            KIND_KERNEL => {
                let nm = name_lit((r.c >> 32) as u32);
                let ty = name_lit(r.c as u32);
                // The stream is the thread and the device the process: only what the lanes do not say.
                args.push_str("{\"Task Type\":");
                args.push_str(ty);
                args.push_str(",\"correlation_id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"kernel\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
                if api_corr.binary_search(&r.corr).is_ok() {
                    flow(tw, st, b'f', e, r.corr)?;
                }
            }
            k if is_api(k) => {
                let nm = name_lit(r.c as u32);
                args.push_str(match k {
                    KIND_ACL_API => "{\"level\":\"acl\"",
                    KIND_NODE_API => "{\"level\":\"node\"",
                    KIND_RUNTIME_API => "{\"level\":\"runtime\"",
                    _ => "{\"level\":\"api\"",
                });
                args.push_str(",\"correlation_id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                e.pid = cann;
                e.tid = r.a;
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"api\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
                if let Ok(i) = kernel_corr.binary_search(&r.corr) {
                    if !std::mem::replace(&mut started[i], true) {
                        flow(tw, st, b's', e, r.corr)?;
                    }
                }
            }
            KIND_HCCL | KIND_COMMUNICATION => {
                let nm = name_lit((r.c >> 32) as u32);
                args.push_str("{\"group\":");
                args.push_str(name_lit(r.c as u32));
                if r.kind == KIND_HCCL {
                    args.push_str(&format!(",\"bandwidth(GB/s)\":{}", f64::from_bits(r.corr)));
                }
                args.push('}');
                e.pid = device_pid(d, SLOT_COMM);
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"communication\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            KIND_MEMCPY | KIND_MEMSET => {
                args.push_str("{\"size(B)\":");
                json::push_u64(&mut args, r.b);
                args.push_str(",\"correlation_id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                let nm = if r.kind == KIND_MEMCPY {
                    "\"MEMCPY\""
                } else {
                    "\"MEMSET\""
                };
                tw.device_event(&DeviceEvent {
                    name: nm,
                    cat: "\"memory\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            KIND_MEMORY => {
                let a = allocated.entry(d).or_default();
                *a += if r.a == 1 {
                    -(r.b as i128)
                } else {
                    r.b as i128
                };
                args.push_str("{\"KB\":");
                json::push_u64(&mut args, ((*a).max(0) / 1024) as u64);
                args.push('}');
                e.ph = b'C';
                e.pid = device_pid(d, SLOT_MEM);
                e.tid = 0;
                tw.device_event(&DeviceEvent {
                    name: "\"NPU MEM allocated\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            KIND_MARKER => {
                // mstx ranges: START opens, END (same id) closes → one slice; instants stay instants.
                let tid = r.b as u32;
                const START: u32 = 1 << 1 | 1 << 4;
                const END: u32 = 1 << 2 | 1 << 5;
                if r.a & START != 0 {
                    open_markers.insert(r.corr, (tid, r.start, (r.c >> 32) as u32));
                    return Ok(());
                }
                let (tid, ts, dur, n) = match (r.a & END != 0, open_markers.remove(&r.corr)) {
                    (true, Some((t, s0, n))) => (t, s0, r.start.saturating_sub(s0), n),
                    (true, None) => {
                        st.skipped += 1;
                        return Ok(());
                    }
                    _ => (tid, r.start, 0, (r.c >> 32) as u32),
                };
                args.push_str("{\"domain\":");
                args.push_str(name_lit(r.c as u32));
                args.push_str(",\"id\":");
                json::push_u64(&mut args, r.corr);
                args.push('}');
                e.ph = if r.a & END != 0 { b'X' } else { b'i' };
                e.pid = cann;
                e.tid = tid;
                e.ts_ns = ts;
                e.dur_ns = dur;
                tw.device_event(&DeviceEvent {
                    name: name_lit(n),
                    cat: "\"marker\"",
                    args: &args,
                    ..e
                })?;
                st.events += 1;
            }
            _ => st.skipped += 1,
        }
        Ok(())
    })?;
    st.skipped += open_markers.len() as u64;
    Ok(())
}

fn is_api(kind: u32) -> bool {
    matches!(
        kind,
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API
    )
}
