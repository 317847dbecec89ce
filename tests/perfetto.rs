//! `NPUPROF_TRACE_FORMAT` and `NPUPROF_TRACE_GZIP` on the README demo (host-only; the aclprof and MSPTI
//! results are in tests/acl/perfetto.rs): the Perfetto trace decoded with Perfetto's own protos (the
//! `perfetto` package) holds the JSON's slices, tracks and flows, balanced; the gzip JSON is the JSON; the
//! .proto subset is Perfetto's.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn demo(env: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let (root, ws, _) = demo_log(env);
    (root, ws)
}

/// [`demo`] and its standard error.
fn demo_log(env: &[(&str, &str)]) -> (tempfile::TempDir, Vec<PathBuf>, String) {
    let exe = demo_exe();
    let root = tempfile::tempdir().unwrap();
    let lib = lib();
    let mut all = vec![
        ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
        ("NPUPROF_LIBRARY", lib.to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    let o = run(&exe, &[], &all);
    assert!(
        o.status.success(),
        "demo failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ws = workers(root.path());
    assert_eq!(ws.len(), 2);
    (root, ws, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `npuprof check PATH`: whether it passed, and its output.
fn npuprof_check(path: &Path) -> (bool, String) {
    let r = run(
        Path::new(env!("CARGO_BIN_EXE_npuprof")),
        &["check", path.to_str().unwrap()],
        &[],
    );
    let s = String::from_utf8_lossy(&r.stdout).to_string() + &String::from_utf8_lossy(&r.stderr);
    (r.status.success() && s.contains("CHECK PASS"), s)
}

fn out(w: &Path) -> PathBuf {
    w.join("ASCEND_PROFILER_OUTPUT")
}

fn meta(w: &Path) -> serde_json::Value {
    json(&w.join("profiler_metadata.json"))
}

#[test]
fn both_formats_hold_the_same_trace_and_pass_the_consumers() {
    let (root, ws) = demo(&[("NPUPROF_TRACE_FORMAT", "both")]);
    for w in &ws {
        let o = out(w);
        assert!(o.join("trace_view.json").is_file() && o.join("trace_view.pftrace").is_file());
        let m = meta(w);
        assert_eq!(m["config"]["NPUPROF_TRACE_FORMAT"], "both");
        let files = &m["npuprof"]["trace_files"];
        for n in ["trace_view.json", "trace_view.pftrace"] {
            assert_eq!(
                files[n].as_u64(),
                Some(std::fs::metadata(o.join(n)).unwrap().len()),
                "{n}: {m}"
            );
        }
        assert_eq!(m["npuprof"]["pftrace_cut_events"], 0);
        if let Some(s) = perfetto_check("trace", &o) {
            assert!(s.contains("same as trace_view.json"), "{s}");
            // The demo's ranges nest; some begin at their parent's nanosecond (see the writer's hold).
            assert!(s.contains("all balanced"), "{s}");
        }
    }
    // The JSON is unchanged for its consumers: npuprof check and msprof-analyze's cluster analysis.
    let report = check_profile(root.path());
    assert!(report.contains("CHECK PASS: 2 result(s)"), "{report}");
}

#[test]
fn perfetto_alone_writes_no_json_and_its_trace_is_checked() {
    let (root, ws) = demo(&[("NPUPROF_TRACE_FORMAT", "perfetto")]);
    for w in &ws {
        let o = out(w);
        assert!(!o.join("trace_view.json").exists());
        assert!(o.join("trace_view.pftrace").is_file());
        let m = meta(w);
        assert_eq!(m["npuprof"]["trace_view_bytes"], 0);
        assert!(
            m["npuprof"]["trace_files"]["trace_view.pftrace"]
                .as_u64()
                .unwrap()
                > 100
        );
        assert!(m["npuprof"]["slices"].as_u64().unwrap() > 10, "{m}");
        if let Some(s) = perfetto_check("trace", &o) {
            assert!(s.contains("no JSON beside it"), "{s}");
        }
    }
    // npuprof check reads the Perfetto trace when there is no JSON.
    let (ok, s) = npuprof_check(root.path());
    assert!(ok && s.contains("trace_view.pftrace"), "{s}");
}

#[test]
fn gzip_writes_the_same_json_compressed() {
    let (root, ws) = demo(&[("NPUPROF_TRACE_GZIP", "1")]);
    for w in &ws {
        let o = out(w);
        assert!(!o.join("trace_view.json").exists());
        let gz = std::fs::read(o.join("trace_view.json.gz")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip file");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut text)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events = v.as_array().unwrap();
        let m = meta(w);
        assert_eq!(
            events.len() as u64,
            m["npuprof"]["trace_events"]
                .as_u64()
                .unwrap_or(events.len() as u64)
        );
        assert!(events.iter().any(|e| e["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("ProfilerStep#"))));
        assert_proper_nesting(events);
        assert!(
            (gz.len() as u64) * 4 < text.len() as u64,
            "compressed {} of {}",
            gz.len(),
            text.len()
        );
        assert_eq!(
            m["npuprof"]["trace_files"]["trace_view.json.gz"].as_u64(),
            Some(gz.len() as u64)
        );
    }
    let (ok, s) = npuprof_check(root.path());
    assert!(ok && s.contains("trace_view.json.gz"), "{s}");
}

#[test]
fn an_unknown_trace_format_warns_and_writes_the_json() {
    let (_root, ws, log) = demo_log(&[("NPUPROF_TRACE_FORMAT", "protobuf")]);
    for w in &ws {
        assert!(out(w).join("trace_view.json").is_file());
        assert!(!out(w).join("trace_view.pftrace").exists());
        assert_eq!(meta(w)["config"]["NPUPROF_TRACE_FORMAT"], "json");
    }
    assert!(
        log.contains("NPUPROF_TRACE_FORMAT=\"protobuf\" is not a trace format (json, perfetto, both); using json"),
        "{log}"
    );
}

/// The .proto subset the code is generated from has Perfetto's names, numbers, types and labels (checked
/// against the compiled protos of the perfetto package); a subset with one number changed fails the check.
#[test]
fn the_proto_subset_is_perfettos() {
    let proto = repo().join("proto/perfetto_trace_subset.proto");
    let Some(s) = perfetto_check("protos", &proto) else {
        return;
    };
    assert!(s.contains("PROTOS OK"), "{s}");
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.proto");
    let text = std::fs::read_to_string(&proto).unwrap();
    std::fs::write(
        &bad,
        text.replace("uint64 track_uuid = 11;", "uint64 track_uuid = 12;"),
    )
    .unwrap();
    let py = perfetto_python().unwrap();
    let o = Command::new(py)
        .arg(repo().join("tests/perfetto_check.py"))
        .args(["protos", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a wrong field number must fail");
    assert!(String::from_utf8_lossy(&o.stderr).contains("track_uuid"));
}

/// The Python check fails a trace that is not balanced (an END whose slice is missing), so its OK means
/// something.
#[test]
fn the_decoding_check_fails_an_unbalanced_trace() {
    let Some(py) = perfetto_python() else {
        return;
    };
    let (_root, ws) = demo(&[("NPUPROF_TRACE_FORMAT", "perfetto")]);
    let o = out(&ws[0]);
    // Drop the first SLICE_BEGIN packet with Perfetto's own protos (the compressed packets inflated and
    // written back plain, which the check reads too).
    let script = r#"
import sys, zlib
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
t = pb.Trace(); t.ParseFromString(open(sys.argv[1], "rb").read())
flat = pb.Trace()
for p in t.packet:
    if p.HasField("compressed_packets"):
        inner = pb.Trace(); inner.ParseFromString(zlib.decompress(p.compressed_packets))
        flat.packet.extend(inner.packet)
    else:
        flat.packet.append(p)
assert len(t.packet) < len(flat.packet), "the trace is compressed"
i = next(i for i, p in enumerate(flat.packet) if p.HasField("track_event") and p.track_event.type == 1)
del flat.packet[i]
open(sys.argv[1], "wb").write(flat.SerializeToString())
"#;
    let p = o.join("trace_view.pftrace");
    let r = Command::new(&py)
        .args(["-c", script, p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = Command::new(&py)
        .arg(repo().join("tests/perfetto_check.py"))
        .args(["trace", o.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("an end with no open slice"), "{err}");
    // npuprof check (export::trace::check_pftrace) finds it too.
    let r = run(
        Path::new(env!("CARGO_BIN_EXE_npuprof")),
        &["check", ws[0].to_str().unwrap()],
        &[],
    );
    let s = String::from_utf8_lossy(&r.stdout).to_string() + &String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && s.contains("an end with no open slice"),
        "{s}"
    );
}
