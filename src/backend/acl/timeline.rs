//! msprof's `msprof_*.json` timeline → the device and CANN processes of `trace_view.json`.

use super::launches::{framework_op_flow, LaunchCollector};
use super::outputs::{open_output, Deadline};
use super::time_base::rebase;
use crate::device::pids::*;
use crate::device::{DeviceEvent, Kernel, Kernels, LaneStats, Lanes, Launches, TraceSink};
use crate::dir::Dir;
use crate::error::Result;
use crate::format::json;
use crate::format::jsonparse::{stream_array_bounded, us_to_ns, PResult, Parser, Value};
use std::collections::HashMap;

/// The device and CANN processes of `msprof_*.json`, written into `trace_view.json` on npuprof's pids and
/// time base while the files are read (one file in memory at a time, events not kept).
pub(super) struct MsprofLanes {
    /// msprof's output directory (its handle) and the timeline files in it.
    pub(super) dir: Dir,
    pub(super) files: Vec<String>,
    /// How long reading may take, from when the exporter starts writing the lanes (the rest of the timeline
    /// is left out, and the lanes say why).
    pub(super) budget: std::time::Duration,
    pub(super) device: u32,
    pub(super) shift: i128,
    /// Also return the `Ascend Hardware` slices as kernels (when msprof wrote no op_summary).
    pub(super) want_kernels: bool,
    /// The most launches read for the framework op flows (NPUPROF_MAX_DEVICE_RECORDS).
    pub(super) launch_limit: usize,
    /// The launches with their framework ops (by `connection_id`), from the exporter's host pass.
    pub(super) ops: Launches,
}

pub(super) const CUT: &str =
    "not read to its end: the parse of msprof's output ran out of time (NPUPROF_MSPROF_TIMEOUT_S)";

/// The longest timeline event read (msprof's are well under 64 KiB): a longer one ends the file's parse
/// instead of being held whole and parsed again with every 8 MiB block.
pub(super) const MAX_EVENT_BYTES: usize = 16 << 20;

/// The most bytes of events kept waiting for their process's name (msprof names processes first; events of a
/// process named late or never beyond this are left out and counted in `timeline_skipped`).
const MAX_PENDING_BYTES: usize = 16 << 20;

/// An event whose process is not named yet (msprof normally names processes first): kept until it is, within
/// [`MAX_PENDING_BYTES`].
struct Pending {
    ph: u8,
    tid: u32,
    ts: u64,
    dur: u64,
    name: String,
    cat: String,
    args: String,
    id: String,
}

/// The mapping from msprof's processes to npuprof's device pids, built as `M` events arrive.
struct Procs {
    device: u32,
    /// Source pid → our slot (`None`: a process npuprof leaves out).
    slots: HashMap<u64, Option<u32>>,
    labels: HashMap<u64, String>,
    labelled: std::collections::HashSet<u64>,
    next: u32,
    pending: HashMap<u64, Vec<Pending>>,
    pending_threads: HashMap<u64, Vec<(u32, String, String)>>,
    /// Bytes of events ever kept in `pending` / `pending_threads` (bounded by [`MAX_PENDING_BYTES`]).
    pending_bytes: usize,
    /// Source pids of the `Communication` / `HCCL` processes (see [`GROUP_TID`]).
    comm: std::collections::HashSet<u64>,
    /// (source pid, tid) of their threads named `...Communication...` (a group's operation thread).
    comm_op_threads: std::collections::HashSet<(u64, u32)>,
}

/// The thread npuprof adds to msprof's `Communication` / `HCCL` process: `Group <name> Communication`, sorted
/// before every thread msprof names there (their sort indexes move up by one). msprof-analyze compare files
/// the named threads of that process under the last `...Communication...` thread sorted before them and
/// crashes (`sequence item 1: expected str instance, NoneType found`) on one sorted before all of them; its
/// `hcom_*` operations found on no such thread (msprof's `Plane N` threads) are moved onto it, where compare
/// reads communication operations.
const GROUP_TID: u32 = 0x7fff_fff0;

/// The name of the [`GROUP_TID`] thread: msprof's timeline does not say the operations' communicator.
const GROUP_THREAD: &str = "\"Group default Communication\"";
impl Procs {
    /// Whether `n` more bytes of events may wait for their process's name.
    fn may_wait(&mut self, n: usize) -> bool {
        let ok = self.pending_bytes + n <= MAX_PENDING_BYTES;
        if ok {
            self.pending_bytes += n;
        }
        ok
    }
}

impl Procs {
    fn pid(&self, slot: u32) -> u32 {
        device_pid(self.device, slot)
    }

    fn write_label(
        &mut self,
        tw: &mut dyn TraceSink,
        src: u64,
        slot: u32,
        label: &str,
    ) -> Result<()> {
        if self.labelled.insert(src) {
            let args = format!("{{\"labels\":{}}}", json::string(label.as_bytes()));
            tw.device_event(&meta(self.pid(slot), 0, "\"process_labels\"", &args))?;
        }
        Ok(())
    }

    /// A `process_name`: assigns the slot and writes what waited for it.
    fn name(&mut self, tw: &mut dyn TraceSink, src: u64, name: &str, shift: i128) -> Result<u64> {
        if self.slots.contains_key(&src) {
            return Ok(0);
        }
        let slot = match name {
            "Ascend Hardware" => Some(SLOT_HARDWARE),
            "CANN" => Some(SLOT_CANN),
            // npuprof computes its own overlap lanes from the kernels.
            "Overlap Analysis" => None,
            _ if self.next < 16 => {
                self.next += 1;
                Some(self.next - 1)
            }
            _ => None,
        };
        self.slots.insert(src, slot);
        let Some(slot) = slot else {
            let dropped = self.pending.remove(&src).map_or(0, |v| v.len() as u64);
            self.pending_threads.remove(&src);
            return Ok(dropped);
        };
        let pid = self.pid(slot);
        let sort = match slot {
            SLOT_HARDWARE => 8,
            SLOT_CANN => 2,
            s => 10 + s,
        };
        let args = format!("{{\"name\":{}}}", json::string(name.as_bytes()));
        tw.device_event(&meta(pid, 0, "\"process_name\"", &args))?;
        tw.device_event(&meta(
            pid,
            0,
            "\"process_sort_index\"",
            &format!("{{\"sort_index\":{sort}}}"),
        ))?;
        if let Some(l) = self.labels.remove(&src) {
            self.write_label(tw, src, slot, &l)?;
        }
        if matches!(name, "Communication" | "HCCL") {
            self.comm.insert(src);
            let name_args = format!("{{\"name\":{GROUP_THREAD}}}");
            tw.device_event(&meta(pid, GROUP_TID, "\"thread_name\"", &name_args))?;
            tw.device_event(&meta(
                pid,
                GROUP_TID,
                "\"thread_sort_index\"",
                "{\"sort_index\":0}",
            ))?;
        }
        for (tid, n, a) in self.pending_threads.remove(&src).unwrap_or_default() {
            self.thread_meta(tw, src, slot, tid, &n, &a)?;
        }
        for e in self.pending.remove(&src).unwrap_or_default() {
            let tid = self.event_tid(src, e.ph, e.tid, &e.name);
            tw.device_event(&DeviceEvent {
                ph: e.ph,
                pid,
                tid,
                ts_ns: rebase(e.ts, shift),
                dur_ns: e.dur,
                name: &e.name,
                cat: &e.cat,
                args: &e.args,
                id: &e.id,
            })?;
        }
        Ok(0)
    }
}

impl Procs {
    /// A `thread_name` / `thread_sort_index` of the source process `src` (on `slot`): as msprof wrote it, but
    /// on a `Communication` / `HCCL` process every sort index moves up by one (after [`GROUP_TID`]'s) and the
    /// `...Communication...` threads are noted.
    fn thread_meta(
        &mut self,
        tw: &mut dyn TraceSink,
        src: u64,
        slot: u32,
        tid: u32,
        name: &str,
        args: &str,
    ) -> Result<()> {
        let pid = self.pid(slot);
        if !self.comm.contains(&src) {
            return tw.device_event(&meta(pid, tid, name, args));
        }
        let a = Parser::new(args.as_bytes()).value(0).ok();
        match name {
            "\"thread_name\"" => {
                let n = a
                    .as_ref()
                    .and_then(|a| a.get("name"))
                    .and_then(Value::as_str);
                if n.is_some_and(|n| n.contains("Communication")) {
                    self.comm_op_threads.insert((src, tid));
                }
                tw.device_event(&meta(pid, tid, name, args))
            }
            _ => {
                let sort = a
                    .as_ref()
                    .and_then(|a| a.get("sort_index"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .saturating_add(1);
                let args = format!("{{\"sort_index\":{sort}}}");
                tw.device_event(&meta(pid, tid, name, &args))
            }
        }
    }

    /// The thread an event of the source process `src` goes on: an `hcom_*` slice of a `Communication` /
    /// `HCCL` process found on no `...Communication...` thread goes on [`GROUP_TID`].
    fn event_tid(&self, src: u64, ph: u8, tid: u32, name: &str) -> u32 {
        if ph == b'X'
            && name.starts_with("\"hcom_")
            && self.comm.contains(&src)
            && !self.comm_op_threads.contains(&(src, tid))
        {
            GROUP_TID
        } else {
            tid
        }
    }
}

fn meta<'a>(pid: u32, tid: u32, name: &'a str, args: &'a str) -> DeviceEvent<'a> {
    DeviceEvent {
        ph: b'M',
        pid,
        tid,
        ts_ns: 0,
        dur_ns: 0,
        name,
        cat: "",
        args,
        id: "",
    }
}

/// Kernels from `Ascend Hardware` slices.
fn hw_kernel(e: &DeviceEvent<'_>, out: &mut Kernels) {
    let args = Parser::new(e.args.as_bytes()).value(0).ok();
    let arg = |k: &str| args.as_ref().and_then(|a| a.get(k));
    let arg_u32 = |k: &str| {
        arg(k)
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(u32::MAX as u64) as u32
    };
    let name = Parser::new(e.name.as_bytes())
        .value(0)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let k = Kernel {
        start_ns: e.ts_ns,
        dur_ns: e.dur_ns,
        stream_id: e.tid,
        task_id: arg_u32("Task Id"),
        model_id: arg_u32("Model Id"),
        // The slice's own connection id (the database's link to its API call), low 32 bits as CANN's.
        correlation: arg("connection_id").and_then(Value::as_u64).unwrap_or(0) as u32,
        ..Default::default()
    };
    let core = arg("Task Type").and_then(Value::as_str).unwrap_or("N/A");
    if core == "MEMCPY_ASYNC" {
        // A memory copy, not an op (op_summary has none either): the database's copies (host records).
        return;
    }
    out.push(name.as_bytes(), "N/A", core, k);
}

impl Lanes for MsprofLanes {
    fn write(self: Box<Self>, tw: &mut dyn TraceSink) -> (LaneStats, Option<String>) {
        let mut st = LaneStats::default();
        let mut procs = Procs::new(self.device);
        let until = Deadline::after(self.budget);
        for f in &self.files {
            if let Err(e) = self.read_file(f, tw, &mut procs, &mut st, &until) {
                return (st, Some(e));
            }
        }
        // Processes never named: their events are left out.
        st.skipped += procs.pending.values().map(|v| v.len() as u64).sum::<u64>();
        match self.write_default_labels(tw, &mut procs) {
            Ok(()) => (st, None),
            Err(e) => (st, Some(e.msg)),
        }
    }

    /// The launches in msprof's timeline (see [`LaunchCollector`]): one more streaming read of its files,
    /// within the lanes' time budget.
    fn launches(&mut self) -> Launches {
        let until = Deadline::after(self.budget);
        let mut c = LaunchCollector::new(self.launch_limit, self.shift);
        for f in &self.files {
            let Ok(r) = stream_events(&self.dir, f, &until, |ev| {
                c.event(ev.ph, ev.pid, ev.tid, ev.ts, ev.name, ev.args);
                Ok(())
            }) else {
                continue;
            };
            if let Err(e) = r {
                log::debug!("msprof timeline {f}: launches read up to: {e}");
                break;
            }
        }
        c.finish()
    }

    fn set_framework_ops(&mut self, ops: Launches) {
        self.ops = ops;
    }
}

impl Procs {
    fn new(device: u32) -> Procs {
        Procs {
            device,
            slots: HashMap::new(),
            labels: HashMap::new(),
            labelled: Default::default(),
            next: FIRST_OTHER_SLOT,
            pending: HashMap::new(),
            pending_threads: HashMap::new(),
            pending_bytes: 0,
            comm: Default::default(),
            comm_op_threads: Default::default(),
        }
    }
}

/// Streams the events of msprof's timeline file `f` (opened through `dir`) in 8 MiB blocks, none longer than
/// MAX_EVENT_BYTES, ending with [`CUT`] once `until` has passed (looked at every 1024 events). `Err`: the file
/// could not be opened; `Ok`: how the stream ended.
pub(super) fn stream_events(
    dir: &Dir,
    f: &str,
    until: &Deadline,
    mut each: impl FnMut(RawEvent<'_>) -> PResult<()>,
) -> std::result::Result<PResult<()>, String> {
    let file = open_output(dir, f)?;
    let mut seen = 0u64;
    Ok(stream_array_bounded(file, 8 << 20, MAX_EVENT_BYTES, |p| {
        seen += 1;
        if seen % 1024 == 0 && until.passed() {
            return Err(CUT.into());
        }
        each(RawEvent::parse(p)?)
    }))
}

/// One event of a timeline file as read: the name, cat, id and args kept as validated JSON literals (written
/// back as they are).
pub(super) struct RawEvent<'a> {
    pub(super) ph: u8,
    pub(super) pid: u64,
    pub(super) tid: u32,
    pub(super) ts: Option<u64>,
    pub(super) dur: Option<u64>,
    pub(super) name: &'a str,
    pub(super) cat: &'a str,
    pub(super) id: &'a str,
    pub(super) args: &'a str,
}

impl<'a> RawEvent<'a> {
    pub(super) fn parse(p: &mut Parser<'a>) -> PResult<RawEvent<'a>> {
        let (mut ph, mut pid, mut tid) = (b'?', 0u64, 0u64);
        let (mut ts, mut dur) = (None, None);
        let (mut name, mut cat, mut id, mut args) = ("", "", "", "");
        p.object(|k, p| {
            match k {
                "args" => args = p.skip(0)?,
                "id" => id = p.skip(0)?,
                "name" => name = p.skip(0)?,
                "cat" => cat = p.skip(0)?,
                _ => {
                    let v = p.scalar()?;
                    let v = v.as_ref();
                    match k {
                        "ph" => {
                            ph = v
                                .and_then(Value::as_str)
                                .and_then(|s| s.bytes().next())
                                .unwrap_or(b'?')
                        }
                        "pid" => pid = v.and_then(Value::as_u64).unwrap_or(0),
                        "tid" => tid = v.and_then(Value::as_u64).unwrap_or(0),
                        "ts" => ts = v.and_then(Value::num_text).and_then(us_to_ns),
                        "dur" => dur = v.and_then(Value::num_text).and_then(us_to_ns),
                        _ => {}
                    }
                }
            }
            Ok(())
        })?;
        Ok(RawEvent {
            ph,
            pid,
            tid: tid.min(u32::MAX as u64) as u32,
            ts,
            dur,
            name,
            cat,
            id,
            args,
        })
    }
}

impl MsprofLanes {
    /// Streams one timeline file into the lanes, in 8 MiB blocks: a timeline of millions of events is never
    /// in memory at once, nor one event longer than MAX_EVENT_BYTES (the rest of the timeline is then left
    /// out, and the lanes say why). Stops at the first write error, or when `until` passes.
    fn read_file(
        &self,
        f: &str,
        tw: &mut dyn TraceSink,
        procs: &mut Procs,
        st: &mut LaneStats,
        until: &Deadline,
    ) -> std::result::Result<(), String> {
        let mut write_err: Option<crate::error::Error> = None;
        let r = stream_events(&self.dir, f, until, |ev| {
            if write_err.is_some() {
                return Ok(());
            }
            if let Err(e) = self.write_event(tw, procs, st, ev) {
                write_err = Some(e);
            }
            Ok(())
        })?;
        if let Some(e) = write_err {
            return Err(e.msg);
        }
        r.map_err(|e| format!("{f}: {e}"))
    }

    fn write_event(
        &self,
        tw: &mut dyn TraceSink,
        procs: &mut Procs,
        st: &mut LaneStats,
        ev: RawEvent<'_>,
    ) -> Result<()> {
        if ev.ph == b'M' {
            write_metadata_event(tw, procs, st, &ev, self.shift)
        } else {
            self.write_timed_event(tw, procs, st, ev)
        }
    }

    /// A slice, counter, flow point or instant: on its process's pid once that is named, kept waiting until
    /// then (within MAX_PENDING_BYTES), left out (and counted) for a process npuprof leaves out.
    fn write_timed_event(
        &self,
        tw: &mut dyn TraceSink,
        procs: &mut Procs,
        st: &mut LaneStats,
        ev: RawEvent<'_>,
    ) -> Result<()> {
        let ph = if ev.ph == b'I' { b'i' } else { ev.ph };
        let (Some(t), true) = (
            ev.ts,
            matches!(ph, b'X' | b'C' | b's' | b'f' | b'i') && (ph != b'X' || ev.dur.is_some()),
        ) else {
            st.skipped += 1;
            return Ok(());
        };
        match procs.slots.get(&ev.pid).copied() {
            Some(Some(slot)) => {
                let e = DeviceEvent {
                    ph,
                    pid: procs.pid(slot),
                    tid: procs.event_tid(ev.pid, ph, ev.tid, ev.name),
                    ts_ns: rebase(t, self.shift),
                    dur_ns: ev.dur.unwrap_or(0),
                    name: ev.name,
                    cat: ev.cat,
                    args: ev.args,
                    id: ev.id,
                };
                tw.device_event(&e)?;
                st.events += 1;
                // A device task (not the CANN API call, which carries the same connection_id).
                if ph == b'X' && slot != SLOT_CANN && !self.ops.is_empty() {
                    framework_op_flow(tw, st, &self.ops, &e)?;
                }
                if self.want_kernels
                    && ph == b'X'
                    && e.pid == device_pid(self.device, SLOT_HARDWARE)
                {
                    hw_kernel(&e, &mut st.kernels);
                }
            }
            Some(None) => st.skipped += 1,
            None if !procs.may_wait(
                std::mem::size_of::<Pending>()
                    + ev.name.len()
                    + ev.cat.len()
                    + ev.args.len()
                    + ev.id.len(),
            ) =>
            {
                st.skipped += 1
            }
            None => procs.pending.entry(ev.pid).or_default().push(Pending {
                ph,
                tid: ev.tid,
                ts: t,
                dur: ev.dur.unwrap_or(0),
                name: ev.name.to_string(),
                cat: ev.cat.to_string(),
                args: ev.args.to_string(),
                id: ev.id.to_string(),
            }),
        }
        Ok(())
    }

    /// Named processes without a label get a default (`CPU` for CANN, `NPU n` for the others).
    fn write_default_labels(&self, tw: &mut dyn TraceSink, procs: &mut Procs) -> Result<()> {
        let named: Vec<(u64, u32)> = procs
            .slots
            .iter()
            .filter_map(|(s, slot)| slot.map(|x| (*s, x)))
            .collect();
        for (src, slot) in named {
            let label = if slot == SLOT_CANN {
                "CPU".to_string()
            } else {
                format!("NPU {}", self.device)
            };
            procs.write_label(tw, src, slot, &label)?;
        }
        Ok(())
    }
}

/// An `M` event: a process name (assigns its slot), a process label, or a thread name or sort index (kept
/// waiting for the process's name within MAX_PENDING_BYTES).
fn write_metadata_event(
    tw: &mut dyn TraceSink,
    procs: &mut Procs,
    st: &mut LaneStats,
    ev: &RawEvent<'_>,
    shift: i128,
) -> Result<()> {
    let (pid, name, args) = (ev.pid, ev.name, ev.args);
    let a = Parser::new(args.as_bytes()).value(0).ok();
    let arg = |k: &str| a.as_ref().and_then(|a| a.get(k)).and_then(Value::as_str);
    match name {
        "\"process_name\"" => {
            if let Some(n) = arg("name") {
                st.skipped += procs.name(tw, pid, n, shift)?;
            }
        }
        "\"process_labels\"" => {
            if let Some(l) = arg("labels") {
                match procs.slots.get(&pid) {
                    Some(Some(slot)) => procs.write_label(tw, pid, *slot, l)?,
                    Some(None) => {}
                    None => {
                        procs.labels.insert(pid, l.to_string());
                    }
                }
            }
        }
        "\"thread_name\"" | "\"thread_sort_index\"" if !args.is_empty() => {
            match procs.slots.get(&pid).copied() {
                Some(Some(slot)) => procs.thread_meta(tw, pid, slot, ev.tid, name, args)?,
                Some(None) => {}
                None if procs.may_wait(64 + name.len() + args.len()) => procs
                    .pending_threads
                    .entry(pid)
                    .or_default()
                    .push((ev.tid, name.to_string(), args.to_string())),
                None => st.skipped += 1,
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
