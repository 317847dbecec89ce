//! Issue 21: `NPUPROF_TRACE_FORMAT=both` on the aclprof and MSPTI fakes. The Perfetto trace, decoded with
//! Perfetto's own protos (tests/perfetto_check.py), holds the JSON's slices (the device streams, the CANN API
//! threads, Communication, Overlap Analysis, the host threads and the Steps lane), its memory counters and
//! its host-to-device flows bound to the same slices, every track balanced; `npuprof check` reads both and
//! finds as many slices and flows in each.

use super::*;

fn assert_same_trace(r: &Run) -> String {
    r.out.assert_ok();
    let out = r.dir().join("ASCEND_PROFILER_OUTPUT");
    assert!(out.join("trace_view.json").is_file() && out.join("trace_view.pftrace").is_file());
    let m = r.meta();
    assert_eq!(m["npuprof"]["pftrace_cut_events"], 0, "{m}");
    let root = r.dir().parent().unwrap().to_path_buf();
    let report = check_profile_no_cluster(&root);
    assert!(
        report.contains("trace_view.json, trace_view.pftrace"),
        "{report}"
    );
    let s = perfetto_check("trace", &out).unwrap_or_default();
    eprintln!("{s}");
    s
}

/// The number before the word `what` in the check's summary line.
fn count(s: &str, what: &str) -> u64 {
    let w: Vec<&str> = s.split_whitespace().collect();
    w.windows(2)
        .find(|p| p[1].trim_end_matches(',') == what)
        .and_then(|p| p[0].parse().ok())
        .unwrap_or(0)
}

#[test]
fn mspti_perfetto_trace_is_the_json_trace() {
    let r = mspti_run(
        true,
        &[("NPUPROF_TRACE_FORMAT", "both")],
        &[
            "mspti",
            "group:group0:dp:0:0,1",
            "copies",
            "start",
            "steps:3",
            "stop",
            "flush",
            "dir",
        ],
    );
    let s = assert_same_trace(&r);
    if s.is_empty() {
        return; // the perfetto package is missing outside CI (noted by perfetto_check)
    }
    assert!(s.contains("same as trace_view.json"), "{s}");
    // Kernels with their launching API calls (flows), the memory counter, the Communication lane.
    assert!(
        count(&s, "flows") > 0 && s.contains("bound at both ends"),
        "{s}"
    );
    assert!(count(&s, "counter") > 0, "{s}");
}

#[test]
fn aclprof_perfetto_trace_is_the_json_trace() {
    let r = go_env(
        &[("NPUPROF_TRACE_FORMAT", "both")],
        &["cann", "copies", "start", "steps:4", "stop", "flush", "dir"],
    );
    let s = assert_same_trace(&r);
    if s.is_empty() {
        return;
    }
    assert!(s.contains("same as trace_view.json"), "{s}");
    assert!(count(&s, "flows") > 0, "{s}");
}
