//! The device lanes of an MSPTI profile in `trace_view.json`: kernels per stream, API slices on the launching
//! thread, flows launch → kernel by correlation id, communication lanes, memory counters and markers. The
//! records are read from the spool in passes ([`Spool::replay`]), never all held: memory is the lanes, the
//! correlation ids of launches and kernels (for the flows) and the open marker ranges.

use super::corr::{is_api, CorrIds};
use super::names_file::NameSource;
use super::records::*;
use super::replay::Spool;
use super::walk::DevRec;
use crate::device::pids::{device_pid, SLOT_CANN, SLOT_HARDWARE};
use crate::device::{DeviceEvent, LaneStats, Lanes, Launches, TraceSink};
use crate::error::Result;
use crate::format::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) struct MsptiLanes {
    /// `None`: no spool (nothing recorded); only the device's empty lane is drawn.
    spool: Option<Spool>,
    device: u32,
    names: NameSource,
    /// The flows' correlation ids (from the kernel rows' replay) and, once the exporter's host pass found
    /// them, the kernels' launches with their framework ops.
    ops: FrameworkOps,
}

/// The kernels' launches with their framework ops (by correlation id), and the correlation ids the kernel
/// rows' replay gathered for the flows (sparing the lanes replays of the spool of their own).
#[derive(Default)]
struct FrameworkOps {
    ops: Launches,
    corr: CorrIds,
}

impl MsptiLanes {
    /// The lanes of `spool`, with the correlation ids `corr` gathered while reading it.
    pub(super) fn new(
        spool: Option<Spool>,
        device: u32,
        names: NameSource,
        corr: CorrIds,
    ) -> MsptiLanes {
        MsptiLanes {
            spool,
            device,
            names,
            ops: FrameworkOps {
                ops: Launches::default(),
                corr,
            },
        }
    }
}

impl Lanes for MsptiLanes {
    fn write(self: Box<Self>, tw: &mut dyn TraceSink) -> (LaneStats, Option<String>) {
        let mut st = LaneStats::default();
        let this = *self;
        let r = match &this.spool {
            Some(s) => write_lanes(s, this.device, &this.names, this.ops, tw, &mut st),
            None => write_lanes_of(
                &mut |_| Ok(()),
                this.device,
                &this.names,
                this.ops,
                tw,
                &mut st,
            ),
        };
        match r {
            Ok(()) => (st, None),
            Err(e) => (st, Some(e.msg)),
        }
    }

    /// The API calls that launched a kernel: (thread, start, correlation id), one per correlation id.
    fn launches(&mut self) -> Launches {
        Launches::new(std::mem::take(&mut self.ops.corr.launches))
    }

    fn set_framework_ops(&mut self, ops: Launches) {
        self.ops.ops = ops;
    }
}

/// The device a record belongs to (`None`: host records, or MSPTI's invalid device id).
fn device_of(r: &DevRec) -> Option<u32> {
    let d = match r.kind {
        KIND_KERNEL | KIND_HCCL => r.b as u32,
        KIND_COMMUNICATION => super::walk::CommFields::unpack(r.b, r.c).device,
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
    ops: FrameworkOps,
    tw: &mut dyn TraceSink,
    st: &mut LaneStats,
) -> Result<()> {
    write_lanes_of(
        &mut |each| spool.replay(each).map(|_| ()),
        device,
        names,
        ops,
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
    ops: FrameworkOps,
    tw: &mut dyn TraceSink,
    st: &mut LaneStats,
) -> Result<()> {
    let cann = device_pid(device, SLOT_CANN);
    let (lanes, threads) = find_lanes(recs, device)?;
    write_lane_names(tw, &lanes, &threads, cann, names)?;
    let names = NameLits::new(names);
    let mut flows = Flows::new(ops.corr);
    flows.ops = ops.ops;
    let mut events = EventWriter {
        device,
        cann,
        names,
        flows,
        args: String::new(),
        allocated: HashMap::new(),
        open_markers: HashMap::new(),
    };
    recs(&mut |r| events.write(tw, st, r))?;
    // Marker ranges never closed.
    st.skipped += events.open_markers.len() as u64;
    Ok(())
}

/// The lanes: (device, slot) → streams.
type LaneMap = BTreeMap<(u32, u32), BTreeSet<u32>>;

/// First pass: the lanes the records draw on, and the host threads of the API calls and markers. The
/// device's hardware lane is always there.
fn find_lanes(recs: &mut Replay<'_>, device: u32) -> Result<(LaneMap, BTreeSet<u32>)> {
    let mut lanes = LaneMap::new();
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
                lanes
                    .entry((d, SLOT_COMM))
                    .or_default()
                    .insert(group_tid(r));
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
    Ok((lanes, threads))
}

/// The thread of a collective on the `Communication` process: one per communication group, its tid the group
/// name's id (`commName`).
fn group_tid(r: &DevRec) -> u32 {
    r.name_and_group().1
}

/// The process and thread names of the lanes: one process per (device, slot), one thread per stream (per
/// communication group on `Communication`), and the `CANN` process with a thread per host thread.
fn write_lane_names(
    tw: &mut dyn TraceSink,
    lanes: &LaneMap,
    threads: &BTreeSet<u32>,
    cann: u32,
    names: &NameSource,
) -> Result<()> {
    for ((d, slot), streams) in lanes {
        let pid = device_pid(*d, *slot);
        let (name, sort) = match *slot {
            SLOT_HARDWARE => ("Ascend Hardware", 8),
            SLOT_COMM => ("Communication", 9),
            _ => ("NPU MEM", 17),
        };
        tw.process(pid, name, &format!("NPU {d}"), sort)?;
        for s in streams {
            if *slot == SLOT_COMM {
                // `Group <commName> Communication`, as CANN names a group's thread: msprof-analyze compare
                // files the threads of this process under the last `...Communication` thread sorted before
                // them, and crashes on one sorted before all of them.
                let mut n = b"Group ".to_vec();
                n.extend_from_slice(names.get(*s));
                n.extend_from_slice(b" Communication");
                tw.thread(pid, *s, &n, *s)?;
            } else {
                tw.thread(pid, *s, format!("Stream {s}").as_bytes(), *s)?;
            }
        }
    }
    tw.process(cann, "CANN", "CPU", 2)?;
    for t in threads {
        tw.thread(cann, *t, format!("Thread {t}").as_bytes(), *t)?;
    }
    Ok(())
}

/// The JSON literal of each name id (ids are small and dense), made once for every name in the table.
struct NameLits {
    lit: Vec<String>,
    empty: String,
}

impl NameLits {
    fn new(names: &NameSource) -> NameLits {
        NameLits {
            lit: (0..=names.count())
                .map(|n| json::string(names.get(n)))
                .collect(),
            empty: String::from("\"\""),
        }
    }

    fn get(&self, n: u32) -> &str {
        self.lit.get(n as usize).unwrap_or(&self.empty)
    }
}

/// The HostToDevice flows: correlation ids that have an API (flow start) and a kernel (flow end), sorted for
/// binary search; none without API records.
struct Flows {
    api: Vec<u64>,
    kernel: Vec<u64>,
    /// One flow start per correlation id (several API kinds may report the same launch): a flag per entry of
    /// `kernel`.
    started: Vec<bool>,
    id: String,
    name: String,
    /// The kernels' launches with their framework ops.
    ops: Launches,
}

impl Flows {
    /// The flows of the correlation ids `corr` (gathered by the kernel rows' replay).
    fn new(corr: CorrIds) -> Flows {
        let kernel = if corr.api.is_empty() {
            Vec::new()
        } else {
            corr.kernels
        };
        Flows {
            started: vec![false; kernel.len()],
            api: corr.api,
            kernel,
            id: String::new(),
            name: String::new(),
            ops: Launches::default(),
        }
    }

    /// The framework op → kernel flow of the kernel `e` (correlation id `corr`) when a framework op enclosed its
    /// launch: cat `async_npu`, named as MindSpore names it, the start on the op (its exact `ts`, on the host
    /// process and the launching thread), the end on the kernel (its exact `ts`, pid and tid), which is what
    /// msprof-analyze compare pairs kernels with framework ops by.
    fn framework_op(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        e: DeviceEvent<'_>,
        corr: u64,
    ) -> Result<()> {
        let Some(l) = self.ops.get(corr).copied() else {
            return Ok(());
        };
        self.id.clear();
        self.id.push('"');
        json::push_u64(&mut self.id, corr);
        self.id.push('"');
        let flow = DeviceEvent {
            name: "\"mindspore_to_npu\"",
            cat: "\"async_npu\"",
            args: "",
            id: &self.id,
            ..e
        };
        tw.device_event(&DeviceEvent {
            ph: b's',
            pid: self.ops.host_pid,
            tid: l.tid,
            ts_ns: l.op_ns,
            ..flow
        })?;
        tw.device_event(&DeviceEvent { ph: b'f', ..flow })?;
        st.events += 2;
        Ok(())
    }

    /// A flow end point (`s` on the API slice, `f` on the kernel), paired by correlation id.
    fn point(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        ph: u8,
        e: DeviceEvent<'_>,
        corr: u64,
    ) -> Result<()> {
        self.id.clear();
        self.id.push('"');
        json::push_u64(&mut self.id, corr);
        self.id.push('"');
        self.name.clear();
        self.name.push_str("\"HostToDevice");
        json::push_u64(&mut self.name, corr);
        self.name.push('"');
        st.events += 1;
        tw.device_event(&DeviceEvent {
            ph,
            name: &self.name,
            cat: "\"HostToDevice\"",
            args: "",
            id: &self.id,
            ..e
        })
    }
}

/// The last pass: one trace event (or more, with flows) per record.
struct EventWriter {
    device: u32,
    cann: u32,
    names: NameLits,
    flows: Flows,
    /// The args of the event being written (reused).
    args: String,
    /// Allocated bytes per device (the NPU MEM counter).
    allocated: HashMap<u32, i128>,
    /// Open marker ranges: id → (thread, start, name id).
    open_markers: HashMap<u64, (u32, u64, u32)>,
}

impl EventWriter {
    fn write(&mut self, tw: &mut dyn TraceSink, st: &mut LaneStats, r: &DevRec) -> Result<()> {
        let d = device_of(r).unwrap_or(self.device);
        self.args.clear();
        let e = DeviceEvent {
            ph: b'X',
            pid: device_pid(d, SLOT_HARDWARE),
            tid: stream_of(r),
            ts_ns: r.start,
            dur_ns: r.end.saturating_sub(r.start),
            name: "",
            cat: "",
            args: "",
            id: "",
        };
        match r.kind {
            KIND_KERNEL => self.kernel(tw, st, r, e),
            k if is_api(k) => self.api(tw, st, r, e),
            KIND_HCCL | KIND_COMMUNICATION => self.communication(tw, st, r, e, d),
            KIND_MEMCPY | KIND_MEMSET => self.memcpy_or_memset(tw, st, r, e),
            KIND_MEMORY => self.memory_counter(tw, st, r, e, d),
            KIND_MARKER => self.marker(tw, st, r, e),
            _ => {
                st.skipped += 1;
                Ok(())
            }
        }
    }

    /// A kernel on its stream; the flow's end when an API launched it.
    fn kernel(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        r: &DevRec,
        e: DeviceEvent<'_>,
    ) -> Result<()> {
        let nm = self.names.get((r.c >> 32) as u32);
        // The stream is the thread and the device the process: only what the lanes do not say.
        self.args.push_str("{\"Task Type\":");
        self.args.push_str(super::op_type::task_type_literal(
            self.names.get(r.c as u32),
        ));
        self.args.push_str(",\"correlation_id\":");
        json::push_u64(&mut self.args, r.corr);
        self.args.push('}');
        tw.device_event(&DeviceEvent {
            name: nm,
            cat: "\"kernel\"",
            args: &self.args,
            ..e
        })?;
        st.events += 1;
        if self.flows.api.binary_search(&r.corr).is_ok() {
            self.flows.point(tw, st, b'f', e, r.corr)?;
            self.flows.framework_op(tw, st, e, r.corr)?;
        }
        Ok(())
    }

    /// An API call on its host thread; the flow's start (once per correlation id) when it launched a kernel.
    fn api(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        r: &DevRec,
        mut e: DeviceEvent<'_>,
    ) -> Result<()> {
        let nm = self.names.get(r.c as u32);
        self.args.push_str(match r.kind {
            KIND_ACL_API => "{\"level\":\"acl\"",
            KIND_NODE_API => "{\"level\":\"node\"",
            KIND_RUNTIME_API => "{\"level\":\"runtime\"",
            _ => "{\"level\":\"api\"",
        });
        self.args.push_str(",\"correlation_id\":");
        json::push_u64(&mut self.args, r.corr);
        self.args.push('}');
        e.pid = self.cann;
        e.tid = r.a;
        tw.device_event(&DeviceEvent {
            name: nm,
            cat: "\"api\"",
            args: &self.args,
            ..e
        })?;
        st.events += 1;
        if let Ok(i) = self.flows.kernel.binary_search(&r.corr) {
            if !std::mem::replace(&mut self.flows.started[i], true) {
                self.flows.point(tw, st, b's', e, r.corr)?;
            }
        }
        Ok(())
    }

    /// A collective (HCCL) or communication record on the device's communication lane.
    fn communication(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        r: &DevRec,
        mut e: DeviceEvent<'_>,
        d: u32,
    ) -> Result<()> {
        let (name, group) = r.name_and_group();
        let nm = self.names.get(name);
        self.args.push_str("{\"group\":");
        self.args.push_str(self.names.get(group));
        if r.kind == KIND_HCCL {
            self.args
                .push_str(&format!(",\"bandwidth(GB/s)\":{}", f64::from_bits(r.corr)));
        }
        self.args.push('}');
        e.pid = device_pid(d, SLOT_COMM);
        e.tid = group_tid(r);
        tw.device_event(&DeviceEvent {
            name: nm,
            cat: "\"communication\"",
            args: &self.args,
            ..e
        })?;
        st.events += 1;
        Ok(())
    }

    /// A memcpy or memset on its stream.
    fn memcpy_or_memset(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        r: &DevRec,
        e: DeviceEvent<'_>,
    ) -> Result<()> {
        self.args.push_str("{\"size(B)\":");
        json::push_u64(&mut self.args, r.b);
        self.args.push_str(",\"correlation_id\":");
        json::push_u64(&mut self.args, r.corr);
        self.args.push('}');
        let nm = if r.kind == KIND_MEMCPY {
            "\"MEMCPY\""
        } else {
            "\"MEMSET\""
        };
        tw.device_event(&DeviceEvent {
            name: nm,
            cat: "\"memory\"",
            args: &self.args,
            ..e
        })?;
        st.events += 1;
        Ok(())
    }

    /// An allocation or release: the device's `NPU MEM allocated` counter.
    fn memory_counter(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        r: &DevRec,
        mut e: DeviceEvent<'_>,
        d: u32,
    ) -> Result<()> {
        let a = self.allocated.entry(d).or_default();
        *a += if r.a == 1 {
            -(r.b as i128)
        } else {
            r.b as i128
        };
        self.args.push_str("{\"KB\":");
        json::push_u64(&mut self.args, ((*a).max(0) / 1024) as u64);
        self.args.push('}');
        e.ph = b'C';
        e.pid = device_pid(d, SLOT_MEM);
        e.tid = 0;
        tw.device_event(&DeviceEvent {
            name: "\"NPU MEM allocated\"",
            args: &self.args,
            ..e
        })?;
        st.events += 1;
        Ok(())
    }

    /// An mstx marker: START opens, END (same id) closes → one slice; instants stay instants.
    fn marker(
        &mut self,
        tw: &mut dyn TraceSink,
        st: &mut LaneStats,
        r: &DevRec,
        mut e: DeviceEvent<'_>,
    ) -> Result<()> {
        let tid = r.b as u32;
        const START: u32 = 1 << 1 | 1 << 4;
        const END: u32 = 1 << 2 | 1 << 5;
        if r.a & START != 0 {
            self.open_markers
                .insert(r.corr, (tid, r.start, (r.c >> 32) as u32));
            return Ok(());
        }
        let (tid, ts, dur, n) = match (r.a & END != 0, self.open_markers.remove(&r.corr)) {
            (true, Some((t, s0, n))) => (t, s0, r.start.saturating_sub(s0), n),
            (true, None) => {
                st.skipped += 1;
                return Ok(());
            }
            _ => (tid, r.start, 0, (r.c >> 32) as u32),
        };
        self.args.push_str("{\"domain\":");
        self.args.push_str(self.names.get(r.c as u32));
        self.args.push_str(",\"id\":");
        json::push_u64(&mut self.args, r.corr);
        self.args.push('}');
        e.ph = if r.a & END != 0 { b'X' } else { b'i' };
        e.pid = self.cann;
        e.tid = tid;
        e.ts_ns = ts;
        e.dur_ns = dur;
        tw.device_event(&DeviceEvent {
            name: self.names.get(n),
            cat: "\"marker\"",
            args: &self.args,
            ..e
        })?;
        st.events += 1;
        Ok(())
    }
}
