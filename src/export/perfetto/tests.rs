//! The Perfetto writer read back as Perfetto's trace processor reads a trace (see `decode`); the Python
//! check (tests/perfetto_check.py) does the same with Perfetto's own compiled protos on whole results.

use super::pb::{self, trace_packet::Data, track_event::Type};
use super::*;
use std::collections::{BTreeMap, HashMap};

/// A slice as read back: (track uuid, name, category, begin, duration, parent's name).
pub(crate) type Slice = (u64, String, String, u64, u64, Option<String>);

/// What a trace holds, read as Perfetto reads it: the interned strings of the sequence in file order (an iid
/// must be defined before use), events sorted by timestamp with ties in file order, SLICE_END closing the
/// innermost open slice of its track (every track must end balanced), flows bound to the innermost open
/// slice. Panics on any violation.
pub(crate) struct Decoded {
    pub(crate) slices: Vec<Slice>,
    pub(crate) instants: Vec<(u64, String, u64)>,
    pub(crate) counters: Vec<(String, u64, f64)>,
    /// (phase, id) → the name of the slice it binds to.
    pub(crate) flows: Vec<(char, u64, Option<String>)>,
    pub(crate) tracks: HashMap<u64, pb::TrackDescriptor>,
    pub(crate) args: Vec<(String, Vec<(String, String)>)>,
}

/// The packets of a trace, compressed ones inflated in place.
pub(crate) fn packets(bytes: &[u8]) -> Vec<pb::TracePacket> {
    let t = pb::Trace::decode(bytes).expect("a Trace");
    let mut out = Vec::new();
    for p in t.packet {
        if let Some(Data::CompressedPackets(z)) = &p.data {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(z.as_slice()), &mut raw)
                .unwrap();
            let inner = pb::Trace::decode(raw.as_slice()).expect("compressed packets hold a Trace");
            out.extend(inner.packet);
        } else {
            out.push(p);
        }
    }
    out
}

pub(crate) fn decode(path: &std::path::Path) -> Decoded {
    let t = pb::Trace {
        packet: packets(&std::fs::read(path).unwrap()),
    };
    let first = &t.packet[0];
    assert_eq!(
        first.sequence_flags,
        Some(1),
        "the first packet clears the incremental state"
    );
    let mut names = HashMap::new();
    let mut cats = HashMap::new();
    let mut keys = HashMap::new();
    let mut strs = HashMap::new();
    let mut tracks = HashMap::new();
    let mut events = Vec::new();
    for (i, p) in t.packet.iter().enumerate() {
        assert_eq!(
            p.optional_trusted_packet_sequence_id,
            Some(pb::trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(1))
        );
        if i > 0 {
            assert_eq!(
                p.sequence_flags,
                Some(2),
                "packet {i} needs the incremental state"
            );
        }
        if let Some(d) = &p.interned_data {
            names.extend(
                d.event_names
                    .iter()
                    .map(|x| (x.iid(), x.name().to_string())),
            );
            cats.extend(
                d.event_categories
                    .iter()
                    .map(|x| (x.iid(), x.name().to_string())),
            );
            keys.extend(
                d.debug_annotation_names
                    .iter()
                    .map(|x| (x.iid(), x.name().to_string())),
            );
            strs.extend(
                d.debug_annotation_string_values
                    .iter()
                    .map(|x| (x.iid(), String::from_utf8(x.str().to_vec()).unwrap())),
            );
        }
        match &p.data {
            Some(Data::TrackDescriptor(d)) => {
                assert!(
                    tracks.insert(d.uuid(), d.clone()).is_none(),
                    "track {} described twice",
                    d.uuid()
                );
            }
            Some(Data::TrackEvent(e)) => {
                if e.r#type() == Type::Counter {
                    assert!(
                        tracks.contains_key(&e.track_uuid()),
                        "a sample before its counter's descriptor"
                    );
                }
                let name = match &e.name_field {
                    Some(pb::track_event::NameField::NameIid(i)) => names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| panic!("name iid {i} used before defined")),
                    Some(pb::track_event::NameField::Name(n)) => n.clone(),
                    None => String::new(),
                };
                let cat: Vec<String> = e
                    .category_iids
                    .iter()
                    .map(|i| {
                        cats.get(i)
                            .cloned()
                            .unwrap_or_else(|| panic!("category iid {i} used before defined"))
                    })
                    .chain(e.categories.iter().cloned())
                    .collect();
                let args: Vec<(String, String)> = e
                    .debug_annotations
                    .iter()
                    .map(|a| {
                        let k = match &a.name_field {
                            Some(pb::debug_annotation::NameField::NameIid(i)) => keys[i].clone(),
                            Some(pb::debug_annotation::NameField::Name(n)) => n.clone(),
                            None => String::new(),
                        };
                        let v = match &a.value {
                            Some(pb::debug_annotation::Value::StringValueIid(i)) => strs[i].clone(),
                            Some(v) => format!("{v:?}"),
                            None => String::new(),
                        };
                        (k, v)
                    })
                    .collect();
                events.push((
                    p.timestamp.expect("an absolute timestamp"),
                    i,
                    e.clone(),
                    name,
                    cat.join(","),
                    args,
                ));
            }
            _ => {}
        }
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut d = Decoded {
        slices: Vec::new(),
        instants: Vec::new(),
        counters: Vec::new(),
        flows: Vec::new(),
        tracks,
        args: Vec::new(),
    };
    let mut stacks: HashMap<u64, Vec<(String, String, u64)>> = HashMap::new();
    for (ts, _, e, name, cat, args) in events {
        let st = stacks.entry(e.track_uuid()).or_default();
        match e.r#type() {
            Type::SliceBegin => {
                if !args.is_empty() {
                    d.args.push((name.clone(), args));
                }
                st.push((name, cat, ts));
            }
            Type::SliceEnd => {
                assert!(
                    e.name_field.is_none() && e.category_iids.is_empty(),
                    "an END with a name"
                );
                let (n, c, b) = st
                    .pop()
                    .unwrap_or_else(|| panic!("an END with no open slice at {ts}"));
                let parent = st.last().map(|p| p.0.clone());
                d.slices.push((e.track_uuid(), n, c, b, ts - b, parent));
            }
            Type::Instant => d.instants.push((e.track_uuid(), name, ts)),
            Type::Counter => {
                let v = match e.counter_value_field {
                    Some(pb::track_event::CounterValueField::DoubleCounterValue(v)) => v,
                    _ => panic!("a counter without a double value"),
                };
                let t = &d.tracks[&e.track_uuid()];
                d.counters.push((
                    t.static_or_dynamic_name
                        .clone()
                        .map(|pb::track_descriptor::StaticOrDynamicName::Name(n)| n)
                        .unwrap_or_default(),
                    ts,
                    v,
                ));
            }
            Type::Unspecified => {
                let l = e.legacy_event.as_ref().expect("a flow event");
                let Some(pb::track_event::legacy_event::Id::UnscopedId(id)) = l.id else {
                    panic!("a flow without unscoped_id")
                };
                d.flows
                    .push((l.phase() as u8 as char, id, st.last().map(|s| s.0.clone())));
            }
        }
    }
    for (uuid, st) in stacks {
        assert!(
            st.is_empty(),
            "track {uuid} ends with {} open slices",
            st.len()
        );
    }
    d
}

/// The JSON's `X` and `i` events (as Perfetto's JSON importer nests them: ties longest first) and the
/// Perfetto trace's slices and instants: the same names, exact ns, durations and parents.
pub(crate) fn same_as_json(path: &std::path::Path, events: &[serde_json::Value]) {
    let ns =
        |v: &serde_json::Value| crate::format::jsonparse::us_to_ns(v.as_str().unwrap()).unwrap();
    let mut ops = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let lane = (e["pid"].as_u64(), e["tid"].as_u64());
        let name = e["name"].as_str().unwrap_or_default().to_string();
        match e["ph"].as_str() {
            // A zero-length slice begins and ends at once (Perfetto's JSON importer takes `X` whole).
            Some("X") if ns(&e["dur"]) == 0 => ops.push((
                ns(&e["ts"]),
                1u8,
                u64::MAX,
                i,
                lane,
                Some(format!("zero {name}")),
                0,
            )),
            Some("X") => {
                let (b, d) = (ns(&e["ts"]), ns(&e["dur"]));
                ops.push((b, 1u8, u64::MAX - d, i, lane, Some(name), b));
                ops.push((b + d, 0, 0, i, lane, None, b));
            }
            Some("i") => ops.push((
                ns(&e["ts"]),
                2,
                0,
                i,
                lane,
                Some(format!("instant {name}")),
                0,
            )),
            _ => {}
        }
    }
    ops.sort_by_key(|o| (o.0, o.1, o.2, o.3));
    type Lane = (Option<u64>, Option<u64>);
    let mut stacks: BTreeMap<Lane, Vec<(String, u64)>> = BTreeMap::new();
    let mut want = Vec::new();
    for (ts, kind, _, _, lane, name, b) in ops {
        let st = stacks.entry(lane).or_default();
        match (kind, name) {
            (1, Some(n)) if n.starts_with("zero ") => want.push((
                n["zero ".len()..].to_string(),
                ts,
                0,
                st.last().map(|p| p.0.clone()),
            )),
            (1, Some(n)) => st.push((n, b)),
            (0, _) => {
                let (n, b) = st.pop().expect("the JSON nests");
                want.push((n, b, ts - b, st.last().map(|p| p.0.clone())));
            }
            (_, Some(n)) => want.push((n, ts, 0, st.last().map(|p| p.0.clone()))),
            _ => {}
        }
    }
    let d = decode(path);
    let mut got: Vec<_> = d
        .slices
        .iter()
        .map(|s| (s.1.clone(), s.3, s.4, s.5.clone()))
        .chain(
            d.instants
                .iter()
                .map(|i| (format!("instant {}", i.1), i.2, 0, None)),
        )
        .collect();
    // Instants' parents are not compared (the JSON importer and the trace processor agree; one stack is enough).
    for w in want.iter_mut().filter(|w| w.0.starts_with("instant ")) {
        w.3 = None;
    }
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "the Perfetto trace's slices differ from the JSON's"
    );
}

fn writer(d: &tempfile::TempDir, cap: u64) -> PerfettoWriter {
    PerfettoWriter::create(&Place::open(d.path()).unwrap(), "t.pftrace", cap, 42).unwrap()
}

fn ev<'a>(
    ph: u8,
    pid: u32,
    tid: u32,
    ts: u64,
    dur: u64,
    name: &'a str,
    args: &'a str,
) -> DeviceEvent<'a> {
    DeviceEvent {
        ph,
        pid,
        tid,
        ts_ns: ts,
        dur_ns: dur,
        name,
        cat: "\"kernel\"",
        args,
        id: "",
    }
}

#[test]
fn slices_instants_counters_flows_and_metadata_read_back() {
    let d = tempfile::tempdir().unwrap();
    let mut w = writer(&d, u64::MAX);
    w.process(42, "MindSpore", "CPU", 1);
    w.thread(42, 7, b"Thread 7 (main)", 0);
    w.complete(
        42,
        7,
        "\"forward\"",
        1_000,
        500,
        "cpu_op",
        "\"Call stack\":\"a;b\"",
        false,
    )
    .unwrap();
    w.host_instant(42, 7, "\"mark \\\"x\\\"\"", 1_100, "mark")
        .unwrap();
    w.device_event(&ev(
        b'M',
        9,
        0,
        0,
        0,
        "\"process_name\"",
        r#"{"name":"Ascend Hardware"}"#,
    ))
    .unwrap();
    w.device_event(&ev(
        b'M',
        9,
        3,
        0,
        0,
        "\"thread_name\"",
        r#"{"name":"Stream 3"}"#,
    ))
    .unwrap();
    w.device_event(&ev(
        b'X',
        9,
        3,
        1_200,
        50,
        "\"MatMul\"",
        r#"{"Task Type":"AI_CORE","correlation_id":5}"#,
    ))
    .unwrap();
    w.device_event(&ev(
        b'X',
        9,
        3,
        1_300,
        50,
        "\"MatMul\"",
        r#"{"Task Type":"AI_CORE","correlation_id":6}"#,
    ))
    .unwrap();
    w.device_event(&DeviceEvent {
        id: "\"5\"",
        cat: "\"async_npu\"",
        ..ev(b's', 42, 7, 1_000, 0, "\"f\"", "")
    })
    .unwrap();
    w.device_event(&DeviceEvent {
        id: "\"5\"",
        cat: "\"async_npu\"",
        ..ev(b'f', 9, 3, 1_200, 0, "\"f\"", "")
    })
    .unwrap();
    w.device_event(&ev(
        b'C',
        10,
        0,
        1_250,
        0,
        "\"NPU MEM allocated\"",
        r#"{"KB":12}"#,
    ))
    .unwrap();
    w.device_event(&ev(
        b'C',
        10,
        0,
        1_350,
        0,
        "\"NPU MEM allocated\"",
        r#"{"KB":"3.5"}"#,
    ))
    .unwrap();
    assert_eq!((w.events, w.slices, w.cut_events), (8, 4, 0));
    w.finish().unwrap();
    let r = decode(&d.path().join("t.pftrace"));
    let mut s = r.slices.clone();
    s.sort_by_key(|s| s.3);
    assert_eq!(
        s.iter()
            .map(|s| (s.1.as_str(), s.2.as_str(), s.3, s.4))
            .collect::<Vec<_>>(),
        vec![
            ("forward", "cpu_op", 1_000, 500),
            ("MatMul", "kernel", 1_200, 50),
            ("MatMul", "kernel", 1_300, 50)
        ]
    );
    assert_eq!(r.instants.len(), 1);
    assert_eq!(r.instants[0].1, "mark \"x\"");
    assert_eq!(
        r.counters,
        vec![
            ("NPU MEM allocated KB".into(), 1_250, 12.0),
            ("NPU MEM allocated KB".into(), 1_350, 3.5)
        ]
    );
    // Both flow ends bind to their slices, with the id Perfetto reads from the JSON's "5" (hex).
    assert_eq!(
        r.flows,
        vec![
            ('s', 5, Some("forward".into())),
            ('f', 5, Some("MatMul".into()))
        ]
    );
    // Args: interned names and string values, typed numbers.
    let a = &r.args.iter().find(|a| a.0 == "MatMul").unwrap().1;
    assert_eq!(a[0], ("Task Type".into(), "AI_CORE".into()));
    assert_eq!(a[1], ("correlation_id".into(), "IntValue(5)".into()));
    // Tracks: the host thread as a thread, the stream as a named child of its process.
    let host = r.tracks.values().find(|t| t.thread.is_some()).unwrap();
    assert_eq!(
        host.thread.as_ref().unwrap().thread_name.as_deref(),
        Some("Thread 7 (main)")
    );
    let stream = r
        .tracks
        .values()
        .find(|t| matches!(&t.static_or_dynamic_name, Some(pb::track_descriptor::StaticOrDynamicName::Name(n)) if n == "Stream 3"))
        .unwrap();
    let parent = &r.tracks[&stream.parent_uuid()];
    assert_eq!(
        parent.process.as_ref().unwrap().process_name.as_deref(),
        Some("Ascend Hardware")
    );
    let cpu = r
        .tracks
        .values()
        .find(|t| t.process.as_ref().is_some_and(|p| p.pid == Some(42)))
        .unwrap();
    assert_eq!(
        cpu.process.as_ref().unwrap().process_labels,
        vec!["CPU".to_string()]
    );
}

/// The host pass writes a range when it ends: children first. Slices that begin at one nanosecond must still
/// nest longest-outside: consecutive ones are written longest first, and a child held for its parent (the
/// `hold` hint) waits for it, across siblings written in between.
#[test]
fn slices_that_begin_together_nest_longest_outside() {
    let d = tempfile::tempdir().unwrap();
    let mut w = writer(&d, u64::MAX);
    // parent [100, 400): child a [100, 150) (held: its parent begins at 100), child b [200, 300).
    w.complete(42, 7, "\"a\"", 100, 50, "cpu_op", "", true)
        .unwrap();
    w.complete(42, 7, "\"b\"", 200, 100, "cpu_op", "", false)
        .unwrap();
    w.complete(42, 7, "\"parent\"", 100, 300, "cpu_op", "", false)
        .unwrap();
    // Device lanes (no hint): x [500, 510) then its encloser y [500, 600), one after the other.
    w.complete(42, 8, "\"x\"", 500, 10, "cpu_op", "", false)
        .unwrap();
    w.complete(42, 8, "\"y\"", 500, 100, "cpu_op", "", false)
        .unwrap();
    // A held slice whose encloser is drawn on another lane is written at the end.
    w.complete(42, 9, "\"alone\"", 700, 5, "cpu_op", "", true)
        .unwrap();
    w.finish().unwrap();
    let r = decode(&d.path().join("t.pftrace"));
    let parent_of = |n: &str| r.slices.iter().find(|s| s.1 == n).unwrap().5.clone();
    assert_eq!(parent_of("a").as_deref(), Some("parent"));
    assert_eq!(parent_of("b").as_deref(), Some("parent"));
    assert_eq!(parent_of("parent"), None);
    assert_eq!(parent_of("x").as_deref(), Some("y"));
    assert_eq!(parent_of("alone"), None);
    assert_eq!(r.slices.len(), 6);
}

/// Past the cap, events are left out and counted; what was written still reads back balanced.
#[test]
fn the_cap_cuts_whole_slices_and_counts_them() {
    let d = tempfile::tempdir().unwrap();
    let mut w = writer(&d, 2_000);
    for i in 0..200u64 {
        w.complete(42, 7, "\"s\"", i * 10, 5, "cpu_op", "", false)
            .unwrap();
    }
    let (written, cut) = (w.slices, w.cut_events);
    assert!(
        w.truncated && written > 0 && cut > 0 && written + cut == 200,
        "{written} {cut}"
    );
    let bytes = w.finish().unwrap();
    assert!(bytes <= 2_000 + 200, "{bytes}");
    let r = decode(&d.path().join("t.pftrace"));
    assert_eq!(r.slices.len() as u64, written);
}

/// Names past the interning budget are written inline and still read back.
#[test]
fn names_past_the_interning_budget_are_inline() {
    let d = tempfile::tempdir().unwrap();
    let mut w = writer(&d, u64::MAX);
    w.complete(42, 7, "\"early\"", 10, 5, "cpu_op", "", false)
        .unwrap();
    w.budget = Budget::spent();
    w.complete(42, 7, "\"late\"", 20, 5, "cpu_op", "\"k\":\"v\"", false)
        .unwrap();
    w.complete(42, 7, "\"early\"", 30, 5, "cpu_op", "", false)
        .unwrap();
    w.finish().unwrap();
    let r = decode(&d.path().join("t.pftrace"));
    let mut n: Vec<_> = r.slices.iter().map(|s| (s.3, s.1.as_str())).collect();
    n.sort();
    assert_eq!(n, vec![(10, "early"), (20, "late"), (30, "early")]);
    assert_eq!(
        r.args,
        vec![(
            "late".into(),
            vec![("k".into(), "StringValue(\"v\")".into())]
        )]
    );
}
