//! The README demo end to end: two worker processes (manual logic and token-threshold logic) load the
//! library with dlopen; their results pass `npuprof check` (schemas, Perfetto's JSON import rules) and
//! msprof-analyze's cluster analysis (`common::check_profile`).

mod common;
use common::*;

#[test]
fn demo_results_pass_the_shared_checker_and_msprof_analyze() {
    let lib = lib();
    let root = tempfile::tempdir().unwrap();
    let o = run(
        &demo_exe(),
        &[],
        &[
            ("VLLM_TORCH_PROFILER_DIR", root.path().to_str().unwrap()),
            ("NPUPROF_LIBRARY", lib.to_str().unwrap()),
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stderr
            .matches("Parsing: [####################] 3/3 Done")
            .count(),
        2,
        "{stderr}"
    );

    let ws = workers(root.path());
    assert_eq!(ws.len(), 2);
    let mut steps = vec![];
    let mut recorded_slices = 0;
    for w in &ws {
        recorded_slices += json(&w.join("profiler_metadata.json"))["npuprof"]["slices"]
            .as_u64()
            .unwrap();
        let rank = std::fs::read_dir(w)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.strip_prefix("profiler_info_")?
                    .strip_suffix(".json")?
                    .parse::<u32>()
                    .ok()
            })
            .next()
            .expect("profiler_info_<rank>.json");
        let t = trace(w);
        assert_proper_nesting(&t);
        steps.push((rank, step_names(&t).len()));
        let threads = t.iter().filter(|e| e["name"] == "thread_name").count();
        assert_eq!(threads, 2, "scheduler + detokenizer threads");
    }
    steps.sort();
    // rank 0: start before step 3, stop before step 9 -> 6 steps; rank 1: threshold 256 hit at step 2,
    // PROFILER_STOP_STEP=4 -> 4 steps.
    assert_eq!(steps, vec![(0, 6), (1, 4)]);

    let report = check_profile(root.path());
    assert!(
        report.contains("CHECK PASS: 2 result(s), ranks [0, 1]"),
        "{report}"
    );
    // What Perfetto's import rules count is exactly what npuprof recorded (host-only: no flows).
    assert!(recorded_slices > 0);
    assert!(
        report.contains(&format!(", {recorded_slices} slices / 0 flows")),
        "{recorded_slices} slices recorded:\n{report}"
    );
}
