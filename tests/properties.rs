//! Property tests (proptest) of the three places where outside bytes enter npuprof: environment values,
//! names (any bytes, from the runtime), and the spool read back after a crash. The spool reader's is the
//! fuzz target's stand-in (`cargo fuzz` needs a nightly libFuzzer toolchain that CI does not install):
//! truncated, bit-flipped and spliced spools never panic, never loop, and yield exactly the frames before
//! the first damaged one.
//!
//! Cases per property: 512 (`NPUPROF_LONG=1`: 8192).

mod common;
use npuprof::config::{parse_bool, Config, Trigger, VARIABLES};
use npuprof::format::json;
use npuprof::record::Record;
use npuprof::spool::{Frame, Reader, Writer};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

fn cases() -> u32 {
    if std::env::var_os("NPUPROF_LONG").is_some_and(|v| v != "0") {
        8192
    } else {
        512
    }
}

fn config_of(vars: &HashMap<String, Vec<u8>>) -> Config {
    Config::from_lookup(&|k| vars.get(k).map(|v| OsString::from_vec(v.clone())))
}

/// Values that look like what people type, and garbage: numbers with spaces and signs, booleans in any
/// case, huge numbers, non-UTF-8 and control bytes.
fn env_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        (0u64..100_000, "[ \t]{0,2}", "[ \t]{0,2}")
            .prop_map(|(n, a, b)| format!("{a}{n}{b}").into_bytes()),
        prop::sample::select(vec![
            "1",
            "0",
            "true",
            "FALSE",
            " Yes ",
            "no",
            "On",
            "off",
            "",
            " ",
            "-1",
            "+5",
            "1e3",
            "0x10",
            "18446744073709551616",
            "auto",
            "host",
            "acl",
            "MSPTI",
            "debug",
            "level1",
            "nan",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn any_env() -> impl Strategy<Value = HashMap<String, Vec<u8>>> {
    prop::collection::hash_map(prop::sample::select(VARIABLES.to_vec()), env_value(), 0..12)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any environment gives a Config (never a panic); every warning names the variable it is about and
    /// what was used instead; the values in range are taken as given.
    #[test]
    fn any_environment_parses_with_named_warnings(vars in any_env()) {
        let c = config_of(&vars);
        // The one rule for empty values: blank is unset, for every variable.
        let vars: std::collections::BTreeMap<_, _> = vars
            .into_iter()
            .filter(|(_, v)| !v.iter().all(u8::is_ascii_whitespace))
            .collect();
        for w in &c.warnings {
            prop_assert!(
                VARIABLES.iter().any(|v| w.starts_with(&format!("{v}="))),
                "warning without its variable: {w}"
            );
            prop_assert!(w.contains("using "), "{w}");
        }
        for b in [
            ("VLLM_TORCH_PROFILER_RECORD_SHAPES", c.record_shapes),
            ("VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY", c.with_profile_memory),
            ("VLLM_TORCH_PROFILER_WITH_STACK", c.with_stack),
            ("VLLM_TORCH_PROFILER_WITH_FLOPS", c.with_flops),
        ] {
            let want = vars
                .get(b.0)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(parse_bool)
                .unwrap_or(false);
            prop_assert_eq!(b.1, want, "{}", b.0);
            let warned = c.warnings.iter().any(|w| w.starts_with(&format!("{}=", b.0)));
            let valid = vars
                .get(b.0)
                .map_or(true, |v| std::str::from_utf8(v).ok().and_then(parse_bool).is_some());
            prop_assert_eq!(warned, !valid, "{}: {:?}", b.0, c.warnings);
        }
        if let Some(v) = vars.get("PROFILER_STOP_STEP") {
            let n = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok());
            if let (Some(n), Trigger::Auto { stop_step, .. }) = (n, c.trigger) {
                if (1..=u32::MAX as u64).contains(&n) {
                    prop_assert_eq!(stop_step, n);
                }
            }
        }
        prop_assert_eq!(
            matches!(c.trigger, Trigger::Auto { .. }),
            vars.contains_key("PROFILER_TOKEN_THRESHOLD")
        );
    }

    /// Any name bytes (non-UTF-8, quotes, backslashes, control characters, U+2028) come back exactly: the JSON
    /// literal npuprof writes, decoded by serde_json, and the CSV cell, read by a CSV reader, both give a text
    /// that the documented rule (`name_bytes`, written here from the rule, not from npuprof's code) turns back
    /// into the same bytes. So distinct names never share a string.
    #[test]
    fn any_name_round_trips_through_json_and_csv(name in prop::collection::vec(any::<u8>(), 0..300)) {
        round_trip(&name)?;
    }

    /// The same over names made of the pieces that could be confused with an escape (`\`, `x`, hex digits,
    /// invalid bytes, `\x`), which random bytes almost never spell: e.g. the byte 0xFF and the four characters
    /// `\xff` (the same text before the fix).
    #[test]
    fn names_that_look_like_escapes_round_trip(pieces in prop::collection::vec(0usize..10, 0..40)) {
        const PIECES: [&[u8]; 10] =
            [b"\\", b"x", b"f", b"5", b"c", b"\\x", b"\\xff", b"\xff", b"\xc3", "\u{e9}".as_bytes()];
        let name: Vec<u8> = pieces.iter().flat_map(|&i| PIECES[i].iter().copied()).collect();
        round_trip(&name)?;
    }
}

/// A name's bytes from npuprof's text of it, by the rule docs/api.md states: every `\xNN` (two hex digits) is
/// the byte NN, every other character is itself.
fn name_bytes(text: &str) -> Vec<u8> {
    let t = text.as_bytes();
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'\\' && t.get(i + 1) == Some(&b'x') {
            let hex = t
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(
                byte.unwrap_or_else(|| panic!("`\\x` without two hex digits at {i} in {text:?}")),
            );
            i += 4;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

fn round_trip(name: &[u8]) -> Result<(), TestCaseError> {
    let lit = json::string(name);
    let back: String =
        serde_json::from_str(&lit).map_err(|e| TestCaseError::fail(format!("{e}: {lit}")))?;
    prop_assert_eq!(name_bytes(&back), name, "JSON {}", lit);
    let cell = json::csv_field(&json::text(name));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.csv");
    std::fs::write(&p, format!("a,{cell},b\n")).unwrap();
    let rows = common::csv(&p);
    prop_assert_eq!(rows.len(), 1);
    prop_assert_eq!(rows[0].len(), 3, "{:?}", rows);
    prop_assert_eq!(&rows[0][0], "a");
    prop_assert_eq!(&rows[0][2], "b");
    prop_assert_eq!(name_bytes(&rows[0][1]), name, "CSV {}", cell);
    Ok(())
}

#[test]
fn a_byte_and_its_escape_text_are_different_names() {
    let pairs: [(&[u8], &[u8]); 3] = [
        (b"\xff", b"\\xff"),
        (b"\\\xff", b"\\\\xff"),
        (b"a\x5c", b"a\\x5c"),
    ];
    for (a, b) in pairs {
        assert_ne!(json::string(a), json::string(b), "{a:?} vs {b:?}");
        assert_ne!(json::text(a), json::text(b), "{a:?} vs {b:?}");
    }
}

#[test]
fn a_one_mib_name_with_every_byte_value_is_escaped_exactly() {
    let name: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let lit = json::string(&name);
    let back: String = serde_json::from_str(&lit).unwrap();
    assert_eq!(name_bytes(&back), name);
    assert!(name.contains(&0) && name.contains(&b'"') && name.contains(&0xff));
}

#[derive(Clone, Debug)]
enum F {
    Start(BTreeMap<String, String>),
    Name(u32, Vec<u8>),
    Thread(u32, u32, u32, Vec<u8>),
    Records(u32, u32, Vec<(u64, u64)>),
    Stop(BTreeMap<String, String>),
}

fn frame() -> impl Strategy<Value = F> {
    // Values with newlines, CRs, backslashes and `=` (paths may hold any of them).
    let kv = prop::collection::btree_map("[a-z_]{1,8}", "[ -~\\n\\r]{0,12}", 0..4);
    prop_oneof![
        kv.clone().prop_map(F::Start),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(i, n)| F::Name(i, n)),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(r, e, t, n)| F::Thread(r, e, t, n)),
        // (An empty batch writes no frame.)
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<(u64, u64)>(), 1..50)
        )
            .prop_map(|(r, e, v)| F::Records(r, e, v)),
        kv.prop_map(F::Stop),
    ]
}

/// A spool of `frames`, and the byte offset where each frame ends.
fn spool(frames: &[F]) -> (Vec<u8>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    let mut w = Writer::new(std::fs::File::create(&p).unwrap()).unwrap();
    let mut ends = Vec::new();
    for f in frames {
        match f {
            F::Start(kv) => w.start(kv),
            F::Name(i, n) => w.name(*i, n),
            F::Thread(r, e, t, n) => w.thread(*r, *e, *t, n),
            F::Records(r, e, v) => {
                let recs: Vec<Record> = v.iter().map(|&(ts, meta)| Record { ts, meta }).collect();
                w.records(*r, *e, &recs)
            }
            F::Stop(kv) => w.stop(kv),
        }
        .unwrap();
        ends.push(w.bytes());
    }
    w.finish().unwrap();
    (std::fs::read(&p).unwrap(), ends)
}

fn same(f: &F, g: &Frame) -> bool {
    match (f, g) {
        (F::Start(a), Frame::Start(b)) | (F::Stop(a), Frame::Stop(b)) => a == b,
        (F::Name(i, n), Frame::Name(j, m)) => {
            i == j && n.len().min(m.len()) == m.len() && n.starts_with(m)
        }
        (
            F::Thread(r, e, t, n),
            Frame::Thread {
                ring,
                epoch,
                tid,
                name,
            },
        ) => (r, e, t) == (ring, epoch, tid) && n.starts_with(name),
        (
            F::Records(r, e, v),
            Frame::Records {
                ring,
                epoch,
                records,
            },
        ) => {
            (r, e) == (ring, epoch)
                && v.len() == records.len()
                && v.iter()
                    .zip(records)
                    .all(|(&(ts, meta), x)| ts == x.ts && meta == x.meta)
        }
        _ => false,
    }
}

/// Reads at most `limit` frames (a loop would exceed it).
fn read_all(bytes: &[u8], limit: usize) -> (Vec<Frame>, bool) {
    let mut r = Reader::new(std::io::Cursor::new(bytes.to_vec()), bytes.len() as u64);
    let mut out = Vec::new();
    while let Some(f) = r.next_frame() {
        out.push(f);
        assert!(
            out.len() <= limit,
            "the reader looped: {} frames from {} bytes",
            out.len(),
            bytes.len()
        );
    }
    (out, r.damage.is_some())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// A whole spool reads back frame for frame.
    #[test]
    fn a_whole_spool_reads_back_exactly(frames in prop::collection::vec(frame(), 0..12)) {
        let (bytes, _) = spool(&frames);
        let (got, damaged) = read_all(&bytes, frames.len());
        prop_assert!(!damaged);
        prop_assert_eq!(got.len(), frames.len());
        for (f, g) in frames.iter().zip(&got) {
            prop_assert!(same(f, g), "{:?} vs {:?}", f, g);
        }
    }

    /// Cut anywhere (a crash mid-write): every frame that ends before the cut, nothing after, no panic.
    #[test]
    fn a_truncated_spool_yields_every_whole_frame_before_the_cut(
        frames in prop::collection::vec(frame(), 1..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let (bytes, ends) = spool(&frames);
        let at = cut.index(bytes.len() + 1);
        let (got, damaged) = read_all(&bytes[..at], frames.len());
        let at64 = at as u64;
        let whole = if at < 16 { 0 } else { ends.iter().filter(|&&e| e <= at64).count() };
        prop_assert_eq!(got.len(), whole);
        for (f, g) in frames.iter().zip(&got) {
            prop_assert!(same(f, g), "{:?} vs {:?}", f, g);
        }
        // Damage is reported exactly when the cut is not on a frame boundary.
        prop_assert_eq!(damaged, at < 16 || (at64 != 16 && !ends.contains(&at64)));
    }

    /// Any bytes flipped, inserted or removed: never a panic or a loop, and the frames returned are a
    /// prefix of the original ones (a damaged frame is caught by its check, not returned).
    #[test]
    fn a_corrupted_spool_never_panics_and_returns_only_intact_frames(
        frames in prop::collection::vec(frame(), 1..10),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let (mut bytes, _) = spool(&frames);
        for (i, b, op) in edits {
            let n = bytes.len();
            match op {
                0 if n > 0 => { let j = i.index(n); bytes[j] ^= b | 1; }
                1 => { let j = i.index(n + 1); bytes.insert(j, b); }
                _ if n > 0 => { let j = i.index(n); bytes.remove(j); }
                _ => {}
            }
        }
        let (got, _) = read_all(&bytes, bytes.len() / 12 + 1);
        // What is returned is the original stream up to the first damage (the check is a 32-bit hash: a
        // forged frame passing it is a 2^-32 event per frame).
        for (f, g) in frames.iter().zip(&got) {
            prop_assert!(same(f, g) || matches!(g, Frame::Unknown(_)), "{:?} vs {:?}", f, g);
        }
    }

    /// Random bytes after a valid header: no panic, no loop.
    #[test]
    fn random_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = b"NPUSPOOL".to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&tail);
        read_all(&bytes, bytes.len() / 12 + 1);
    }
}

const T0: u64 = 1_000_000_000;

/// A record near the profile's start tick: the real kinds with small depths and name ids (so ranges,
/// marks, steps and stacks meet each other, balanced or not), or anything at all.
fn record() -> impl Strategy<Value = (u64, u64)> {
    (0u64..5_000_000, 0u64..7, 0u64..5, 0u64..8, any::<u64>()).prop_map(
        |(dt, kind, depth, name, raw)| {
            let payload = match kind {
                1 => depth << 32 | name,
                2 => depth << 32,
                3 => name,
                4 => depth << 32 | (raw & 0xffff),
                _ => raw,
            } & ((1 << 56) - 1);
            (T0 + dt, kind << 56 | payload)
        },
    )
}

fn host_frame() -> impl Strategy<Value = F> {
    prop_oneof![
        (1u32..8, prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(i, n)| F::Name(i, n)),
        (
            0u32..3,
            0u32..2,
            1u32..5,
            prop::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(r, e, t, n)| F::Thread(r, e, t, n)),
        (0u32..3, 0u32..2, prop::collection::vec(record(), 1..40))
            .prop_map(|(r, e, v)| F::Records(r, e, v)),
    ]
}

proptest! {
    // Each case writes and exports a whole result directory: fewer cases.
    #![proptest_config(ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any sequence of well-formed frames with arbitrary records (unbalanced ranges, unknown kinds, names
    /// never interned, threads never announced, out-of-order ticks), recovered and exported: never a panic,
    /// and the result is valid JSON with every thread's slices properly nested.
    #[test]
    fn any_records_export_to_a_valid_properly_nested_trace(
        frames in prop::collection::vec(host_frame(), 0..16),
        ticks_per in 1u64..10_000,
        ns_per in 1u64..10_000,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("w_20250101000000000_ascend_ms");
        std::fs::create_dir_all(dir.join("FRAMEWORK")).unwrap();
        let mut kv = BTreeMap::new();
        for (k, v) in [
            ("gen", "1".to_string()), ("pid", "4242".into()), ("rank", "0".into()), ("device_id", "0".into()),
            ("worker", "w".into()), ("start_tick", T0.to_string()), ("anchor_ns", "1700000000000000000".into()),
            ("ticks_per", ticks_per.to_string()), ("ns_per", ns_per.to_string()), ("backend", "host".into()),
        ] {
            kv.insert(k.to_string(), v);
        }
        let mut all = vec![F::Start(kv)];
        all.extend(frames);
        let (bytes, _) = spool(&all);
        std::fs::write(dir.join("FRAMEWORK/npuprof.spool"), bytes).unwrap();
        let r = npuprof::recover::recover(&dir);
        prop_assert!(r.is_ok(), "{:?}", r.err().map(|e| e.msg));
        let t = common::trace(&dir);
        common::assert_proper_nesting(&t);
        for f in ["profiler_metadata.json", "profiler_info_0.json"] {
            common::json(&dir.join(f));
        }
    }
}
