//! `trace_view.pftrace` (`NPUPROF_TRACE_FORMAT=perfetto|both`): the trace in Perfetto's protobuf format, the
//! same content as `trace_view.json`, streamed packet by packet (a `Trace` is a sequence of length-delimited
//! `TracePacket`s, so nothing is held but a few open slices).
//!
//! What it writes (docs/perfetto.md has the reasons):
//! - One packet sequence (id 1): its first packet clears the incremental state, every later one needs it.
//! - Names, categories, debug annotation names and short string values are interned: a packet of
//!   `InternedData` precedes the first event that uses an entry.
//! - A JSON `X` slice becomes `TYPE_SLICE_BEGIN` (name, category, args as debug annotations) and
//!   `TYPE_SLICE_END` (nothing else, so it closes the innermost open slice of its track). Absolute
//!   nanosecond timestamps with no clock id: taken as they are (the JSON's exact ns, no µs rounding).
//!   Slices of one track that begin at the same nanosecond are written longest first (Perfetto orders equal
//!   timestamps by file position; its JSON importer by duration): the host pass writes a range when it
//!   ends, a child before its parent.
//! - `i` → `TYPE_INSTANT`; `C` → a counter track per series and `TYPE_COUNTER` samples; `s`/`f` → flow
//!   events that bind exactly as the JSON's do (`legacy_event` phase `s`/`f`, `unscoped_id`, and
//!   `bind_to_enclosing` for `f`: Perfetto's importer runs the same flow code for both); `M` → the names,
//!   labels and sort indexes of the track descriptors, written at the end with their final values.
//!
//! Bounded like the JSON: past `cap` bytes events are left out and counted; tracks and interned strings
//! have their own bounds (see `tracks`, `intern`).

mod args;
mod encode;
mod intern;
mod names;
mod out;
#[allow(clippy::all, unreachable_pub, missing_docs, dead_code)]
#[rustfmt::skip]
pub(crate) mod pb;
mod read;
mod tracks;

pub use read::{check_pftrace, PftraceFacts};

use crate::device::{DeviceEvent, TraceSink};
use crate::error::Result;
use crate::layout::{AtomicFile, Place};
use args::Arg;
use encode::{Event, Text};
use intern::{Budget, Tables};
use pb::trace_packet::{Data, OptionalTrustedPacketSequenceId, SequenceFlags};
use pb::track_event::{CounterValueField, Type};
use pb::{InternedData, TracePacket, TrackEvent};
use prost::Message as _;
use tracks::Tracks;

/// The one packet sequence of the file.
const SEQUENCE: u32 = 1;
/// String values up to this length are interned (longer ones, such as call stacks, are written inline).
const MAX_INTERNED_VALUE: usize = 256;

/// The slices of one track not yet written (see the module doc): the latest slices that begin at one
/// nanosecond (`group`, written longest first when a slice that begins elsewhere comes), and the slices held
/// for an enclosing slice that begins at the same nanosecond and is still to come (`held`: the host pass
/// writes a range when it ends, after its children).
#[derive(Default)]
struct Pending {
    group_begin: u64,
    /// (duration, BEGIN packet range, END packet range) into `group_bytes`.
    group: Vec<(u64, std::ops::Range<usize>, std::ops::Range<usize>)>,
    group_bytes: Vec<u8>,
    /// (begin, duration, packets, where END starts) of each held slice.
    held: Vec<(u64, u64, Vec<u8>, usize)>,
}

/// A name or category as the event carries it: its interned id, or its text (past the interning bound).
enum Named<'a> {
    Iid(u64),
    Inline(std::borrow::Cow<'a, str>),
}

impl Named<'_> {
    fn text(&self) -> Text<'_> {
        match self {
            Named::Iid(i) => Text::Iid(*i),
            Named::Inline(s) => Text::Inline(s),
        }
    }
}

pub(crate) struct PerfettoWriter {
    out: out::Out,
    tracks: Tracks,
    tables: Tables,
    budget: Budget,
    /// Per track uuid (uuids are small: 1, 2, ...).
    pending: Vec<Pending>,
    /// The last lane looked up: (pid, tid, uuid).
    last_lane: Option<(u32, u32, u64)>,
    /// The categories used last, with their iids (compared by text: a few take turns).
    recent_cats: Vec<(String, u64)>,
    /// Scratch: one event's body, its args, the entries it interns.
    te: Vec<u8>,
    pkt: Vec<u8>,
    /// The event's encoded debug annotations, and scratch for one.
    ann_bytes: Vec<u8>,
    ann_one: Vec<u8>,
    flat: Vec<(&'static str, args::Flat<'static>)>,
    new: InternedData,
    obj: String,
    /// Bytes written or held in `pending`.
    written: u64,
    cap: u64,
    pub(crate) truncated: bool,
    pub(crate) events: u64,
    pub(crate) slices: u64,
    /// Events left out: past `cap`, or on a track past the track bound.
    pub(crate) cut_events: u64,
}

impl PerfettoWriter {
    /// A new trace `name` in `at` for a profile of the process `host_pid`; events past `cap` bytes are left
    /// out (counted in `cut_events`).
    pub(crate) fn create(
        at: &Place,
        name: &str,
        cap: u64,
        host_pid: u32,
    ) -> Result<PerfettoWriter> {
        let f = AtomicFile::create(at, name)?;
        let mut w = PerfettoWriter {
            out: out::Out::new(f)?,
            tracks: Tracks::new(host_pid),
            tables: Tables::default(),
            budget: Budget::new(),
            pending: Vec::new(),
            last_lane: None,
            recent_cats: Vec::new(),
            te: Vec::with_capacity(256),
            pkt: Vec::with_capacity(256),
            ann_bytes: Vec::new(),
            ann_one: Vec::new(),
            flat: Vec::new(),
            new: InternedData::default(),
            obj: String::new(),
            written: 0,
            cap,
            truncated: false,
            events: 0,
            slices: 0,
            cut_events: 0,
        };
        // The sequence's first packet: its incremental state (the interning tables) starts empty here.
        let first = TracePacket {
            optional_trusted_packet_sequence_id: Some(
                OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(SEQUENCE),
            ),
            sequence_flags: Some(SequenceFlags::SeqIncrementalStateCleared as u32),
            ..Default::default()
        };
        let mut b = Vec::new();
        frame(&first, &mut b);
        w.put(&b)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.out.put(b)
    }

    /// A packet of the sequence at `ts` (none for descriptors and interned data).
    fn packet(ts: Option<u64>, data: Option<Data>) -> TracePacket {
        TracePacket {
            timestamp: ts,
            optional_trusted_packet_sequence_id: Some(
                OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(SEQUENCE),
            ),
            sequence_flags: Some(SequenceFlags::SeqNeedsIncrementalState as u32),
            data,
            ..Default::default()
        }
    }

    /// The uuid of the lane (pid, tid); `None` (the event is cut and counted) past the track bound.
    fn lane(&mut self, pid: u32, tid: u32) -> Option<u64> {
        if let Some((p, t, u)) = self.last_lane {
            if (p, t) == (pid, tid) {
                return Some(u);
            }
        }
        match self.tracks.thread(pid, tid) {
            Some(u) => {
                self.last_lane = Some((pid, tid, u));
                Some(u)
            }
            None => {
                self.truncated = true;
                self.cut_events += 1;
                None
            }
        }
    }

    /// What a slice or an instant starts with: its lane's uuid (`None`: cut, past the track bound), its name
    /// and category; its args go into `self.ann_bytes`.
    fn head<'a>(
        &mut self,
        pid: u32,
        tid: u32,
        lit: &'a str,
        cat: &'a str,
        obj: &str,
    ) -> Option<(u64, Named<'a>, Option<Named<'a>>)> {
        let uuid = self.lane(pid, tid)?;
        let name = self.name(lit);
        let category = self.category(cat);
        self.annotations(obj);
        Some((uuid, name, category))
    }

    /// Whether `n` more bytes fit; counts the event as cut if not.
    fn fits(&mut self, n: usize) -> bool {
        if self.written + n as u64 > self.cap {
            self.truncated = true;
            self.cut_events += 1;
            return false;
        }
        true
    }

    fn pending(&mut self, uuid: u64) -> &mut Pending {
        let i = uuid as usize;
        if self.pending.len() <= i {
            self.pending.resize_with(i + 1, Pending::default);
        }
        &mut self.pending[i]
    }

    /// Writes the group of track `uuid`: longest first, then their ends (innermost first). With `all`, its
    /// held slices too (at the end of the trace).
    fn flush_pending(&mut self, uuid: u64, all: bool) -> Result<()> {
        let Some(p) = self.pending.get_mut(uuid as usize) else {
            return Ok(());
        };
        if p.group.is_empty() && (!all || p.held.is_empty()) {
            return Ok(());
        }
        let w = &mut self.out;
        let mut r: Result<()> = Ok(());
        // Stable: slices of equal length keep the order they came in.
        if p.group.len() > 1 {
            p.group.sort_by_key(|a| std::cmp::Reverse(a.0));
        }
        for (_, b, _) in &p.group {
            r = r.and_then(|_| w.put(&p.group_bytes[b.clone()]));
        }
        for (_, _, e) in p.group.iter().rev() {
            r = r.and_then(|_| w.put(&p.group_bytes[e.clone()]));
        }
        p.group.clear();
        p.group_bytes.clear();
        if all {
            p.held.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            for (_, _, bytes, split) in &p.held {
                r = r.and_then(|_| w.put(&bytes[..*split]));
            }
            for (_, _, bytes, split) in p.held.iter().rev() {
                r = r.and_then(|_| w.put(&bytes[*split..]));
            }
            p.held.clear();
        }
        // Keep a small allocation for the track's next group.
        if p.group_bytes.capacity() > 1 << 16 {
            p.group_bytes = Vec::new();
        }
        r
    }

    /// One complete slice on the lane (pid, tid). `obj` is a JSON object (braces included) or empty; `hold`:
    /// an enclosing slice that begins at the same nanosecond comes later.
    #[allow(clippy::too_many_arguments)]
    fn slice(
        &mut self,
        pid: u32,
        tid: u32,
        lit: &str,
        ts: u64,
        dur: u64,
        cat: &str,
        obj: &str,
        hold: bool,
    ) -> Result<()> {
        let Some((uuid, name, category)) = self.head(pid, tid, lit, cat, obj) else {
            return Ok(());
        };
        self.flush_interned()?;
        let mut te = std::mem::take(&mut self.te);
        te.clear();
        Event {
            kind: Type::SliceBegin as i32,
            uuid,
            name: Some(name.text()),
            category: category.as_ref().map(Named::text),
            annotations: &self.ann_bytes,
            flow: None,
        }
        .encode(&mut te);
        let begin_len = te.len();
        Event {
            kind: Type::SliceEnd as i32,
            uuid,
            name: None,
            category: None,
            annotations: &[],
            flow: None,
        }
        .encode(&mut te);
        let r = self.add(uuid, ts, dur, &te, begin_len, hold);
        self.te = te;
        r
    }

    /// Adds a slice (`te`: its BEGIN body, then from `split` its END body) to the track's group, writing the
    /// group first if it began elsewhere, or holds it (`hold`) until the enclosing slice that begins at `ts`
    /// comes; that slice takes the held ones into its group.
    fn add(
        &mut self,
        uuid: u64,
        ts: u64,
        dur: u64,
        te: &[u8],
        split: usize,
        hold: bool,
    ) -> Result<()> {
        let end_ts = ts.saturating_add(dur);
        let flags = SequenceFlags::SeqNeedsIncrementalState as u32;
        if self.pending(uuid).group_begin != ts {
            self.flush_pending(uuid, false)?;
        }
        let cap = self.cap;
        let written = self.written;
        let p = self.pending(uuid);
        let b0 = p.group_bytes.len();
        encode::packet(&mut p.group_bytes, ts, SEQUENCE, flags, &te[..split]);
        let e0 = p.group_bytes.len();
        encode::packet(&mut p.group_bytes, end_ts, SEQUENCE, flags, &te[split..]);
        let n = p.group_bytes.len() - b0;
        if written + n as u64 > cap {
            p.group_bytes.truncate(b0);
            self.truncated = true;
            self.cut_events += 1;
            return Ok(());
        }
        if hold {
            let bytes = p.group_bytes[b0..].to_vec();
            p.group_bytes.truncate(b0);
            p.held.push((ts, dur, bytes, e0 - b0));
        } else {
            p.group_begin = ts;
            p.group.push((dur, b0..e0, e0..p.group_bytes.len()));
            let mut i = 0;
            while i < p.held.len() {
                if p.held[i].0 == ts {
                    let (_, d, bytes, split) = p.held.swap_remove(i);
                    let b0 = p.group_bytes.len();
                    p.group_bytes.extend_from_slice(&bytes);
                    p.group
                        .push((d, b0..b0 + split, b0 + split..p.group_bytes.len()));
                } else {
                    i += 1;
                }
            }
        }
        self.written += n as u64;
        self.events += 1;
        self.slices += 1;
        Ok(())
    }

    /// One event written now (after the slices held for its track); `false` when it was cut.
    fn now(&mut self, uuid: u64, ts: u64, e: Event<'_>) -> Result<bool> {
        let mut te = std::mem::take(&mut self.te);
        te.clear();
        e.encode(&mut te);
        let r = self.now_encoded(uuid, ts, &te);
        self.te = te;
        r
    }

    fn now_encoded(&mut self, uuid: u64, ts: u64, te: &[u8]) -> Result<bool> {
        self.flush_interned()?;
        self.flush_pending(uuid, false)?;
        let mut b = std::mem::take(&mut self.pkt);
        b.clear();
        encode::packet(
            &mut b,
            ts,
            SEQUENCE,
            SequenceFlags::SeqNeedsIncrementalState as u32,
            te,
        );
        let ok = self.fits(b.len());
        let r = if ok {
            self.written += b.len() as u64;
            self.events += 1;
            self.put(&b)
        } else {
            Ok(())
        };
        self.pkt = b;
        r.map(|_| ok)
    }

    fn instant(
        &mut self,
        pid: u32,
        tid: u32,
        lit: &str,
        ts: u64,
        cat: &str,
        obj: &str,
    ) -> Result<()> {
        let Some((uuid, name, category)) = self.head(pid, tid, lit, cat, obj) else {
            return Ok(());
        };
        let anns = std::mem::take(&mut self.ann_bytes);
        let r = self.now(
            uuid,
            ts,
            Event {
                kind: Type::Instant as i32,
                uuid,
                name: Some(name.text()),
                category: category.as_ref().map(Named::text),
                annotations: &anns,
                flow: None,
            },
        );
        self.ann_bytes = anns;
        if r? {
            self.slices += 1;
        }
        Ok(())
    }

    /// A flow point (`s` or `f`), bound as the JSON's is.
    fn flow(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        let Some(uuid) = self.lane(e.pid, e.tid) else {
            return Ok(());
        };
        // Inline, not interned: CANN names each flow after its id (`HostToDevice<id>`), so its name is
        // used by its two ends only.
        let name = Named::Inline(args::unquote_cow(if e.name.is_empty() {
            "\"\""
        } else {
            e.name
        }));
        let category = self.category(e.cat);
        let id = args::flow_id(if e.id.is_empty() { "0" } else { e.id });
        self.now(
            uuid,
            e.ts_ns,
            Event {
                kind: 0,
                uuid,
                name: Some(name.text()),
                category: category.as_ref().map(Named::text),
                annotations: &[],
                flow: Some((e.ph, id, e.ph == b'f')),
            },
        )
        .map(|_| ())
    }

    /// A counter event: one sample per numeric member of its args, each on the series `<name> <member>`.
    fn counter(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        let name = args::unquote(if e.name.is_empty() { "\"\"" } else { e.name });
        let mut samples = Vec::new();
        args::members(e.args, |k, a| {
            if let Some(v) = args::counter_value(&a) {
                samples.push((format!("{name} {k}"), v));
            }
        });
        let mut any = false;
        for (series, v) in samples {
            let Some((uuid, desc)) = self.tracks.counter(e.pid, &series) else {
                self.truncated = true;
                self.cut_events += 1;
                return Ok(());
            };
            if let Some(d) = desc {
                let mut b = Vec::new();
                frame(&Self::packet(None, Some(Data::TrackDescriptor(d))), &mut b);
                self.written += b.len() as u64;
                self.put(&b)?;
            }
            let te = TrackEvent {
                r#type: Some(Type::Counter as i32),
                track_uuid: Some(uuid),
                counter_value_field: Some(CounterValueField::DoubleCounterValue(v)),
                ..Default::default()
            };
            // One JSON event, one count (however many series it has).
            let before = self.events;
            any |= self.now_encoded(uuid, e.ts_ns, &te.encode_to_vec())?;
            self.events = before;
        }
        self.events += any as u64;
        Ok(())
    }

    /// A metadata event (`process_name`, `process_labels`, `process_sort_index`, `thread_name`,
    /// `thread_sort_index`): the track descriptors' values.
    fn metadata(&mut self, e: &DeviceEvent<'_>) {
        let what = args::unquote(e.name);
        let mut text = None;
        let mut sort = None;
        args::members(e.args, |k, a| match (k, a) {
            ("name" | "labels", Arg::Str(s)) => text = Some(s),
            ("sort_index", a) => sort = args::counter_value(&a).map(|v| v as i32),
            _ => {}
        });
        match what.as_str() {
            "process_name" => self.tracks.set_process(e.pid, text, None, None),
            "process_labels" => self.tracks.set_process(e.pid, None, text, None),
            "process_sort_index" => self.tracks.set_process(e.pid, None, None, sort),
            "thread_name" => self.tracks.set_thread(e.pid, e.tid, text, None),
            "thread_sort_index" => self.tracks.set_thread(e.pid, e.tid, None, sort),
            _ => {}
        }
    }

    /// Process metadata, as [`crate::export::trace_view::TraceWriter::process`].
    pub(crate) fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) {
        self.tracks.set_process(
            pid,
            Some(name.to_string()),
            Some(label.to_string()),
            Some(sort as i32),
        );
    }

    /// Lane metadata, as [`crate::export::trace_view::TraceWriter::thread`].
    pub(crate) fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) {
        self.tracks.set_thread(
            pid,
            tid,
            Some(crate::format::json::text(name)),
            Some(sort as i32),
        );
    }

    /// A host slice: `args` is a JSON object body without braces (may be empty); `hold`: a slice of the lane
    /// that encloses it and begins at the same nanosecond is still to come.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete(
        &mut self,
        pid: u32,
        tid: u32,
        name_json: &str,
        ts: u64,
        dur: u64,
        cat: &str,
        args: &str,
        hold: bool,
    ) -> Result<()> {
        let mut obj = std::mem::take(&mut self.obj);
        obj.clear();
        if !args.is_empty() {
            obj.push('{');
            obj.push_str(args);
            obj.push('}');
        }
        let r = self.slice(pid, tid, name_json, ts, dur, cat, &obj, hold);
        self.obj = obj;
        r
    }

    /// A host instant (a mark).
    pub(crate) fn host_instant(
        &mut self,
        pid: u32,
        tid: u32,
        name_json: &str,
        ts: u64,
        cat: &str,
    ) -> Result<()> {
        self.instant(pid, tid, name_json, ts, cat, "")
    }

    /// A device-side event, as [`crate::export::trace_view::TraceWriter::device_event`] takes it.
    pub(crate) fn device_event(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        let name = if e.name.is_empty() { "\"\"" } else { e.name };
        match e.ph {
            b'M' => {
                self.metadata(e);
                Ok(())
            }
            b'X' => self.slice(e.pid, e.tid, name, e.ts_ns, e.dur_ns, e.cat, e.args, false),
            b's' | b'f' => self.flow(e),
            b'C' => self.counter(e),
            _ => self.instant(e.pid, e.tid, name, e.ts_ns, e.cat, e.args),
        }
    }

    /// Writes what is held, the track descriptors, and moves the file into place. Returns its bytes.
    pub(crate) fn finish(mut self) -> Result<u64> {
        for uuid in 0..self.pending.len() as u64 {
            self.flush_pending(uuid, true)?;
        }
        let ds: Vec<_> = self.tracks.descriptors().collect();
        let mut b = Vec::new();
        for d in ds {
            b.clear();
            frame(&Self::packet(None, Some(Data::TrackDescriptor(d))), &mut b);
            self.written += b.len() as u64;
            self.put(&b)?;
        }
        self.out.finish()
    }
}

/// `p` as one element of `Trace.packet` (field 1, length-delimited), appended to `out`.
fn frame(p: &TracePacket, out: &mut Vec<u8>) {
    prost::encoding::message::encode(1, p, out);
}

/// Backends draw their lanes through this, as through the JSON writer.
impl TraceSink for PerfettoWriter {
    fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) -> Result<()> {
        PerfettoWriter::process(self, pid, name, label, sort);
        Ok(())
    }
    fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) -> Result<()> {
        PerfettoWriter::thread(self, pid, tid, name, sort);
        Ok(())
    }
    fn device_event(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        PerfettoWriter::device_event(self, e)
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(all(test, feature = "regenerate-protos"))]
mod pb_check {
    #[test]
    fn committed_protos_are_current() {
        let committed = include_str!("pb.rs");
        let fresh = include_str!(concat!(env!("OUT_DIR"), "/perfetto.protos.rs"));
        assert!(
            committed == fresh,
            "src/export/perfetto/pb.rs differs from what prost-build generates from \
             proto/perfetto_trace_subset.proto; run: cp {}/perfetto.protos.rs src/export/perfetto/pb.rs",
            env!("OUT_DIR")
        );
    }
}
