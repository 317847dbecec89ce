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
mod intern;
#[allow(clippy::all, unreachable_pub, missing_docs, dead_code)]
#[rustfmt::skip]
pub(crate) mod pb;
mod read;
mod tracks;

pub use read::{check_pftrace, PftraceFacts};

use crate::device::{DeviceEvent, TraceSink};
use crate::error::{Error, Result};
use crate::layout::{AtomicFile, Place};
use args::Arg;
use intern::{Budget, Interned, Kind, Tables};
use pb::debug_annotation::{NameField as AnnName, Value as AnnValue};
use pb::trace_packet::{Data, OptionalTrustedPacketSequenceId, SequenceFlags};
use pb::track_event::{legacy_event, CounterValueField, LegacyEvent, NameField, Type};
use pb::{InternedData, TracePacket, TrackEvent};
use std::collections::HashMap;
use std::io::Write;
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
    /// (begin, duration, packets) of each held slice.
    held: Vec<(u64, u64, Vec<u8>, usize)>,
}

pub(crate) struct PerfettoWriter {
    f: AtomicFile,
    path: std::path::PathBuf,
    tracks: Tracks,
    tables: Tables,
    budget: Budget,
    pending: HashMap<u64, Pending>,
    /// Scratch: one event's packets, the interned entries it adds, its args object.
    begin: Vec<u8>,
    end: Vec<u8>,
    new: InternedData,
    obj: String,
    /// Bytes written or held in `groups`.
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
        let path = f.shown();
        let mut w = PerfettoWriter {
            f,
            path,
            tracks: Tracks::new(host_pid),
            tables: Tables::default(),
            budget: Budget::new(),
            pending: HashMap::new(),
            begin: Vec::with_capacity(256),
            end: Vec::with_capacity(64),
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
        self.f
            .w
            .write_all(b)
            .map_err(|e| Error::io("cannot write", &self.path, &e))
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

    /// The iid of `key` (a new one is added to `self.new` with `value()`), or `None` to write it inline.
    fn intern(&mut self, kind: Kind, key: &str, value: impl FnOnce() -> String) -> Option<u64> {
        match self.tables.get(&mut self.budget, kind, key) {
            Interned::Known(i) => Some(i),
            Interned::Inline => None,
            Interned::New(i) => {
                let name = Some(value());
                let iid = Some(i);
                match kind {
                    Kind::EventName => self.new.event_names.push(pb::EventName { iid, name }),
                    Kind::Category => self
                        .new
                        .event_categories
                        .push(pb::EventCategory { iid, name }),
                    Kind::AnnotationName => self
                        .new
                        .debug_annotation_names
                        .push(pb::DebugAnnotationName { iid, name }),
                    Kind::StringValue => {
                        self.new
                            .debug_annotation_string_values
                            .push(pb::InternedString {
                                iid,
                                str: name.map(String::into_bytes),
                            })
                    }
                }
                Some(i)
            }
        }
    }

    /// Writes the entries interned since the last call, in a packet of their own (before any packet that
    /// uses them, whatever is held in `groups`).
    fn flush_interned(&mut self) -> Result<()> {
        if self.new == InternedData::default() {
            return Ok(());
        }
        let mut p = Self::packet(None, None);
        p.interned_data = Some(std::mem::take(&mut self.new));
        let mut b = Vec::new();
        frame(&p, &mut b);
        self.written += b.len() as u64;
        self.put(&b)
    }

    /// A track event's name (`lit`: a JSON string literal) and category (a JSON literal, plain text, or empty).
    fn name_and_category(&mut self, te: &mut TrackEvent, lit: &str, cat: &str) {
        te.name_field = Some(
            match self.intern(Kind::EventName, lit, || args::unquote(lit)) {
                Some(i) => NameField::NameIid(i),
                None => NameField::Name(args::unquote(lit)),
            },
        );
        if !cat.is_empty() {
            let text = || {
                if cat.starts_with('"') {
                    args::unquote(cat)
                } else {
                    cat.to_string()
                }
            };
            match self.intern(Kind::Category, cat, text) {
                Some(i) => te.category_iids.push(i),
                None => te.categories.push(text()),
            }
        }
    }

    /// The members of the JSON object `obj` as debug annotations of `te`.
    fn annotations(&mut self, te: &mut TrackEvent, obj: &str) {
        if obj.is_empty() || obj == "{}" {
            return;
        }
        let mut list: Vec<(String, Arg)> = Vec::new();
        args::members(obj, |k, a| list.push((k.to_string(), a)));
        for (k, a) in list {
            let name = match self.intern(Kind::AnnotationName, &k, || k.clone()) {
                Some(i) => AnnName::NameIid(i),
                None => AnnName::Name(k.clone()),
            };
            let value = match a {
                Arg::Str(s) if s.len() <= MAX_INTERNED_VALUE => {
                    match self.intern(Kind::StringValue, &s, || s.to_string()) {
                        Some(i) => AnnValue::StringValueIid(i),
                        None => AnnValue::StringValue(s),
                    }
                }
                Arg::Str(s) => AnnValue::StringValue(s),
                Arg::Value(v) => v,
            };
            te.debug_annotations.push(args::annotation(name, value));
        }
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

    /// Writes the group of track `uuid`: longest first, then their ends (innermost first). With `all`, its
    /// held slices too (at the end of the trace).
    fn flush_pending(&mut self, uuid: u64, all: bool) -> Result<()> {
        let Some(mut p) = self.pending.remove(&uuid) else {
            return Ok(());
        };
        // Stable: slices of equal length keep the order they came in.
        p.group.sort_by_key(|a| std::cmp::Reverse(a.0));
        let mut r = Ok(());
        for (_, b, _) in &p.group {
            r = r.and_then(|_| self.put(&p.group_bytes[b.clone()]));
        }
        for (_, _, e) in p.group.iter().rev() {
            r = r.and_then(|_| self.put(&p.group_bytes[e.clone()]));
        }
        p.group.clear();
        p.group_bytes.clear();
        if all {
            p.held.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            for (_, _, bytes, split) in &p.held {
                r = r.and_then(|_| self.put(&bytes[..*split]));
            }
            for (_, _, bytes, split) in p.held.iter().rev() {
                r = r.and_then(|_| self.put(&bytes[*split..]));
            }
            p.held.clear();
        }
        // Keep a small allocation for the track's next group.
        if !p.held.is_empty() || p.group_bytes.capacity() <= 1 << 16 {
            self.pending.insert(uuid, p);
        }
        r
    }

    /// Adds a slice's packets to the track's group (writing the group first if it began elsewhere), or holds
    /// them (`hold`) until the enclosing slice that begins at `ts` comes; that slice takes the held ones into
    /// its group.
    fn add(
        &mut self,
        uuid: u64,
        ts: u64,
        dur: u64,
        begin: &[u8],
        end: &[u8],
        hold: bool,
    ) -> Result<()> {
        if self
            .pending
            .get(&uuid)
            .is_some_and(|p| !p.group.is_empty() && p.group_begin != ts)
        {
            self.flush_pending(uuid, false)?;
        }
        let p = self.pending.entry(uuid).or_default();
        if hold {
            let mut bytes = Vec::with_capacity(begin.len() + end.len());
            bytes.extend_from_slice(begin);
            bytes.extend_from_slice(end);
            p.held.push((ts, dur, bytes, begin.len()));
            return Ok(());
        }
        p.group_begin = ts;
        let mut push = |dur: u64, b: &[u8], e: &[u8]| {
            let b0 = p.group_bytes.len();
            p.group_bytes.extend_from_slice(b);
            let e0 = p.group_bytes.len();
            p.group_bytes.extend_from_slice(e);
            p.group.push((dur, b0..e0, e0..p.group_bytes.len()));
        };
        push(dur, begin, end);
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
        Ok(())
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
        let Some(uuid) = self.tracks.thread(pid, tid) else {
            self.truncated = true;
            self.cut_events += 1;
            return Ok(());
        };
        let mut te = TrackEvent {
            r#type: Some(Type::SliceBegin as i32),
            track_uuid: Some(uuid),
            ..Default::default()
        };
        self.name_and_category(&mut te, lit, cat);
        self.annotations(&mut te, obj);
        self.flush_interned()?;
        let mut begin = std::mem::take(&mut self.begin);
        let mut end = std::mem::take(&mut self.end);
        begin.clear();
        end.clear();
        frame(
            &Self::packet(Some(ts), Some(Data::TrackEvent(te))),
            &mut begin,
        );
        let te_end = TrackEvent {
            r#type: Some(Type::SliceEnd as i32),
            track_uuid: Some(uuid),
            ..Default::default()
        };
        frame(
            &Self::packet(Some(ts.saturating_add(dur)), Some(Data::TrackEvent(te_end))),
            &mut end,
        );
        let r = if self.fits(begin.len() + end.len()) {
            self.written += (begin.len() + end.len()) as u64;
            self.events += 1;
            self.slices += 1;
            self.add(uuid, ts, dur, &begin, &end, hold)
        } else {
            Ok(())
        };
        self.begin = begin;
        self.end = end;
        r
    }

    /// One packet on track `uuid` now (after the slices held for it).
    fn now(&mut self, uuid: u64, ts: u64, te: TrackEvent) -> Result<bool> {
        self.flush_interned()?;
        self.flush_pending(uuid, false)?;
        let mut b = std::mem::take(&mut self.begin);
        b.clear();
        frame(&Self::packet(Some(ts), Some(Data::TrackEvent(te))), &mut b);
        let ok = self.fits(b.len());
        let r = if ok {
            self.written += b.len() as u64;
            self.events += 1;
            self.put(&b)
        } else {
            Ok(())
        };
        self.begin = b;
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
        let Some(uuid) = self.tracks.thread(pid, tid) else {
            self.truncated = true;
            self.cut_events += 1;
            return Ok(());
        };
        let mut te = TrackEvent {
            r#type: Some(Type::Instant as i32),
            track_uuid: Some(uuid),
            ..Default::default()
        };
        self.name_and_category(&mut te, lit, cat);
        self.annotations(&mut te, obj);
        if self.now(uuid, ts, te)? {
            self.slices += 1;
        }
        Ok(())
    }

    /// A flow point (`s` or `f`), bound as the JSON's is.
    fn flow(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        let Some(uuid) = self.tracks.thread(e.pid, e.tid) else {
            self.truncated = true;
            self.cut_events += 1;
            return Ok(());
        };
        let mut te = TrackEvent {
            track_uuid: Some(uuid),
            legacy_event: Some(LegacyEvent {
                phase: Some(e.ph as i32),
                id: Some(legacy_event::Id::UnscopedId(args::flow_id(
                    if e.id.is_empty() { "0" } else { e.id },
                ))),
                bind_to_enclosing: (e.ph == b'f').then_some(true),
            }),
            ..Default::default()
        };
        self.name_and_category(
            &mut te,
            if e.name.is_empty() { "\"\"" } else { e.name },
            e.cat,
        );
        self.now(uuid, e.ts_ns, te).map(|_| ())
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
            any |= self.now(uuid, e.ts_ns, te)?;
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
        let mut held: Vec<u64> = self.pending.keys().copied().collect();
        held.sort_unstable();
        for uuid in held {
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
        let bytes = self.f.w.get_ref().position();
        let bytes = bytes + self.f.w.buffer().len() as u64;
        self.f.commit()?;
        Ok(bytes)
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
