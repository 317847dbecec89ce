//! Reading a `trace_view.pftrace` back as Perfetto's trace processor reads it, for `npuprof check`: one
//! packet at a time (each bounded), the sequence's rules (state cleared first, interned ids defined before
//! use, counter descriptors before their samples, every event with an absolute timestamp), then the events
//! sorted by timestamp (ties in file order) and stacked per track: every SLICE_END closes an open slice and
//! every track ends balanced. A trace is untrusted input: sizes and counts are bounded first.

use super::pb::{self, trace_packet::Data, track_event::Type};
use prost::Message as _;
use std::collections::{HashMap, HashSet};
use std::io::Read;

/// One packet at most (npuprof writes a few hundred bytes each).
const MAX_PACKET: u64 = 16 << 20;

/// What a Perfetto trace holds, as the trace processor would count it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PftraceFacts {
    pub packets: u64,
    pub tracks: u64,
    /// Slices (BEGIN/END pairs) and instants.
    pub slices: u64,
    pub counter_samples: u64,
    /// Flows with both ends bound to a slice.
    pub complete_flows: u64,
}

/// An event kept for the stacking pass (24 bytes each).
#[derive(Clone, Copy)]
struct Ev {
    ts: u64,
    uuid: u64,
    /// 0 begin, 1 end, 2 instant, 3 flow start, 4 flow end, 5 counter.
    kind: u8,
    flow: u32,
}

/// Inflated bytes of one compressed packet at most (npuprof deflates 1 MiB at a time).
const MAX_INFLATED: u64 = 64 << 20;

/// What the check keeps while it reads.
#[derive(Default)]
struct State {
    facts: PftraceFacts,
    problems: Vec<String>,
    max_problems: usize,
    max_events: usize,
    defined: [HashSet<u64>; 4],
    tracks: HashSet<u64>,
    counters: HashSet<u64>,
    flows: HashMap<(u64, String, String), u32>,
    events: Vec<Ev>,
    /// More events than `max_events`: reading stops.
    full: bool,
}

impl State {
    fn report(&mut self, m: String) {
        if self.problems.len() < self.max_problems {
            self.problems.push(m);
        }
    }

    /// Reads the packets of `rd` (the file, or an inflated chunk: `nested`).
    fn read(&mut self, rd: &mut impl Read, nested: bool) {
        let mut buf = Vec::new();
        while !self.full {
            let len = match packet_len(rd) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(m) => {
                    self.report(format!("packet {}: {m}", self.facts.packets));
                    break;
                }
            };
            if len > MAX_PACKET {
                self.report(format!(
                    "packet {}: {len} bytes, more than one packet may hold",
                    self.facts.packets
                ));
                break;
            }
            buf.resize(len as usize, 0);
            if let Err(e) = rd.read_exact(&mut buf) {
                self.report(format!("packet {}: truncated ({e})", self.facts.packets));
                break;
            }
            let p = match pb::TracePacket::decode(buf.as_slice()) {
                Ok(p) => p,
                Err(e) => {
                    self.report(format!(
                        "packet {}: not a TracePacket ({e})",
                        self.facts.packets
                    ));
                    self.facts.packets += 1;
                    continue;
                }
            };
            if let Some(Data::CompressedPackets(z)) = &p.data {
                if nested {
                    self.report(format!(
                        "packet {}: compressed packets inside compressed packets",
                        self.facts.packets
                    ));
                    break;
                }
                let mut inflated = Vec::new();
                let r = flate2::read::ZlibDecoder::new(z.as_slice())
                    .take(MAX_INFLATED + 1)
                    .read_to_end(&mut inflated);
                match r {
                    Err(e) => self.report(format!("compressed packets: {e}")),
                    Ok(_) if inflated.len() as u64 > MAX_INFLATED => self.report(format!(
                        "compressed packets: more than {MAX_INFLATED} bytes inflated"
                    )),
                    Ok(_) => self.read(&mut inflated.as_slice(), true),
                }
                continue;
            }
            self.packet(&p);
        }
    }

    fn packet(&mut self, p: &pb::TracePacket) {
        let i = self.facts.packets;
        self.facts.packets += 1;
        let flags = p.sequence_flags.unwrap_or(0);
        if i == 0 && flags & 1 == 0 {
            self.report("the first packet does not clear the sequence's incremental state".into());
        }
        if p.optional_trusted_packet_sequence_id.is_none() {
            self.report(format!("packet {i}: no trusted_packet_sequence_id"));
        }
        if let Some(d) = &p.interned_data {
            self.defined[0].extend(d.event_names.iter().map(|x| x.iid()));
            self.defined[1].extend(d.event_categories.iter().map(|x| x.iid()));
            self.defined[2].extend(d.debug_annotation_names.iter().map(|x| x.iid()));
            self.defined[3].extend(d.debug_annotation_string_values.iter().map(|x| x.iid()));
        }
        match &p.data {
            Some(Data::TrackDescriptor(d)) => {
                if !self.tracks.insert(d.uuid()) {
                    self.report(format!("packet {i}: track {} described twice", d.uuid()));
                }
                if d.counter.is_some() {
                    self.counters.insert(d.uuid());
                }
            }
            Some(Data::TrackEvent(e)) => self.event(i, p, flags, e),
            _ => {}
        }
    }

    fn event(&mut self, i: u64, p: &pb::TracePacket, flags: u32, e: &pb::TrackEvent) {
        if flags & 2 == 0 {
            self.report(format!(
                "packet {i}: a track event that does not need the incremental state"
            ));
        }
        let Some(ts) = p.timestamp.filter(|_| p.timestamp_clock_id.is_none()) else {
            self.report(format!("packet {i}: no absolute timestamp"));
            return;
        };
        if let Some(m) = undefined(e, &self.defined) {
            self.report(format!("packet {i}: {m} used before it is interned"));
        }
        let kind = match e.r#type() {
            Type::SliceBegin => 0,
            Type::SliceEnd => 1,
            Type::Instant => 2,
            Type::Counter => {
                if !self.counters.contains(&e.track_uuid()) {
                    self.report(format!(
                        "packet {i}: a counter sample before its track's descriptor"
                    ));
                }
                5
            }
            Type::Unspecified => match e.legacy_event.as_ref().map(|l| l.phase()) {
                Some(0x73) => 3,
                Some(0x66) => 4,
                _ => {
                    self.report(format!("packet {i}: an event with no type"));
                    return;
                }
            },
        };
        let flow = if kind == 3 || kind == 4 {
            let id = match e.legacy_event.as_ref().and_then(|l| l.id) {
                Some(pb::track_event::legacy_event::Id::UnscopedId(id)) => id,
                None => 0,
            };
            let key = (
                id,
                format!("{:?}", e.category_iids),
                format!("{:?}", e.name_field),
            );
            let n = self.flows.len() as u32;
            *self.flows.entry(key).or_insert(n)
        } else {
            0
        };
        if self.events.len() >= self.max_events {
            let m = format!("more than {} events: not all checked", self.max_events);
            self.report(m);
            self.full = true;
            return;
        }
        self.events.push(Ev {
            ts,
            uuid: e.track_uuid(),
            kind,
            flow,
        });
    }
}

/// Reads the trace from `r` (compressed packets inflated, each bounded); at most `max_events` events are
/// stacked (more is an error). Problems are listed (the first `max_problems`); `Err` when the trace
/// cannot be read at all or has any problem.
pub fn check_pftrace(
    r: impl Read,
    max_events: usize,
    max_problems: usize,
) -> Result<PftraceFacts, Vec<String>> {
    let mut rd = std::io::BufReader::with_capacity(256 << 10, r);
    let mut st = State {
        max_events,
        max_problems,
        ..Default::default()
    };
    st.read(&mut rd, false);
    if st.facts.packets == 0 && st.problems.is_empty() {
        st.report("no packets".into());
    }
    if st.full {
        return Err(st.problems);
    }
    // Stable: ties keep their file order, as the trace processor's sorter does.
    let mut events = std::mem::take(&mut st.events);
    events.sort_by_key(|e| e.ts);
    let mut depth: HashMap<u64, u64> = HashMap::new();
    let mut ends: HashMap<u32, (bool, bool)> = HashMap::new();
    for e in &events {
        let d = depth.entry(e.uuid).or_default();
        match e.kind {
            0 => *d += 1,
            1 if *d == 0 => st.report(format!(
                "track {}: an end with no open slice at {}",
                e.uuid, e.ts
            )),
            1 => {
                *d -= 1;
                st.facts.slices += 1;
            }
            2 => st.facts.slices += 1,
            3 | 4 => {
                let x = ends.entry(e.flow).or_default();
                if *d > 0 {
                    if e.kind == 3 {
                        x.0 = true;
                    } else {
                        x.1 = true;
                    }
                }
            }
            _ => st.facts.counter_samples += 1,
        }
        if !st.tracks.contains(&e.uuid) {
            st.report(format!("track {}: events but no descriptor", e.uuid));
            st.tracks.insert(e.uuid);
        }
    }
    for (uuid, d) in depth {
        if d > 0 {
            st.report(format!("track {uuid}: {d} slices never end"));
        }
    }
    st.facts.tracks = st.tracks.len() as u64;
    st.facts.complete_flows = ends.values().filter(|(s, f)| *s && *f).count() as u64;
    if st.problems.is_empty() {
        Ok(st.facts)
    } else {
        Err(st.problems)
    }
}

/// The length of the next `Trace.packet` (field 1, length-delimited), or `None` at the end.
fn packet_len(r: &mut impl Read) -> Result<Option<u64>, String> {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    if b[0] != 0x0a {
        return Err(format!(
            "tag {:#04x} where a TracePacket (0x0a) belongs",
            b[0]
        ));
    }
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        r.read_exact(&mut b)
            .map_err(|e| format!("truncated length ({e})"))?;
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err("a length longer than 10 bytes".into())
}

/// The first interned id `e` uses that no earlier packet defined.
fn undefined(e: &pb::TrackEvent, defined: &[HashSet<u64>; 4]) -> Option<String> {
    if let Some(pb::track_event::NameField::NameIid(i)) = e.name_field {
        if !defined[0].contains(&i) {
            return Some(format!("event name {i}"));
        }
    }
    if let Some(i) = e.category_iids.iter().find(|i| !defined[1].contains(i)) {
        return Some(format!("category {i}"));
    }
    for a in &e.debug_annotations {
        if let Some(pb::debug_annotation::NameField::NameIid(i)) = a.name_field {
            if !defined[2].contains(&i) {
                return Some(format!("annotation name {i}"));
            }
        }
        if let Some(pb::debug_annotation::Value::StringValueIid(i)) = a.value {
            if !defined[3].contains(&i) {
                return Some(format!("annotation value {i}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_trace_reads_back_and_damage_is_named() {
        let d = tempfile::tempdir().unwrap();
        let at = crate::layout::Place::open(d.path()).unwrap();
        let mut w = super::super::PerfettoWriter::create(&at, "t.pftrace", u64::MAX, 42).unwrap();
        w.complete(42, 7, "\"a\"", 10, 50, "cpu_op", "\"k\":1", true)
            .unwrap();
        w.complete(42, 7, "\"b\"", 10, 100, "cpu_op", "", false)
            .unwrap();
        w.host_instant(42, 7, "\"m\"", 20, "mark").unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(d.path().join("t.pftrace")).unwrap();
        let f = check_pftrace(bytes.as_slice(), 1000, 10).unwrap();
        assert_eq!((f.slices, f.counter_samples, f.complete_flows), (3, 0, 0));
        assert_eq!(f.tracks, 2, "the process and its thread");
        // Cut in the middle of a packet: named, not a panic.
        let e = check_pftrace(&bytes[..bytes.len() - 3], 1000, 10).unwrap_err();
        assert!(e[0].contains("truncated"), "{e:?}");
        // Not a trace at all.
        let e = check_pftrace(&b"[{\"ph\":\"X\"}]"[..], 1000, 10).unwrap_err();
        assert!(e[0].contains("where a TracePacket"), "{e:?}");
        // A huge length is refused before anything is allocated for it.
        let e = check_pftrace(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x7f][..], 1000, 10).unwrap_err();
        assert!(e[0].contains("more than one packet may hold"), "{e:?}");
        // Too many events for the bound: said, not read on.
        let e = check_pftrace(bytes.as_slice(), 2, 10).unwrap_err();
        assert!(e.iter().any(|m| m.contains("more than 2 events")), "{e:?}");
    }
}
