//! Issue 18: collectives become communication data msprof-analyze understands (communication.json,
//! communication_matrix.json, the Communication columns of step_trace_time.csv), on two-rank results of the
//! MSPTI and aclprof fakes.

use super::*;

fn mspti_rank(rank: &str, preload_mspti: bool) -> Run {
    mspti_run(
        preload_mspti,
        &[("NPUPROF_RANK", rank)],
        &["mspti", "start", "steps:4", "stop", "flush", "dir"],
    )
}

/// With MSPTI, each step's collective is in the Communication columns of step_trace_time.csv, whether MSPTI
/// gave it as HCCL and COMMUNICATION records (counted once) or as COMMUNICATION records only (HCCL needs
/// libmspti.so in LD_PRELOAD).
#[test]
fn mspti_collectives_fill_the_communication_columns_once() {
    for preload in [true, false] {
        let r = mspti_rank("0", preload);
        r.out.assert_ok();
        let out = r.dir().join("ASCEND_PROFILER_OUTPUT");
        let s = rows(&out.join("step_trace_time.csv"));
        assert_eq!(s.len(), 5, "{s:?}");
        for row in &s[1..] {
            let comm: f64 = row[col(&s, "Communication")].parse().unwrap();
            assert!(
                (comm - 30.0).abs() < 0.01,
                "preload {preload}: one 30 us allreduce per step: {s:?}"
            );
        }
        let k = rows(&out.join("kernel_details.csv"));
        let n = k[1..]
            .iter()
            .filter(|r| r[col(&k, "Accelerator Core")] == "HCCL")
            .count();
        assert_eq!(
            n, 4,
            "preload {preload}: one communication row per operation: {k:?}"
        );
    }
}

/// Runs `one(rank)` for ranks 0 and 1 and gathers both results under one root (a two-rank cluster).
fn two_ranks(one: impl Fn(&str) -> Run) -> (tempfile::TempDir, Vec<Run>) {
    let root = tempfile::tempdir().unwrap();
    let runs: Vec<Run> = ["0", "1"].iter().map(|r| one(r)).collect();
    for r in &runs {
        r.out.assert_ok();
        let d = r.dir();
        std::fs::rename(&d, root.path().join(d.file_name().unwrap())).unwrap();
    }
    (root, runs)
}

/// Issue 18 item 1: two MSPTI ranks' collectives are communication data msprof-analyze's cluster analysis
/// understands: no rank "does not have valid communication data", every op in cluster_communication.json and
/// its matrix with both ranks, the group in communication_group.json.
#[test]
fn mspti_two_ranks_communication_is_understood_by_cluster() {
    let (root, _runs) = two_ranks(|r| mspti_rank(r, false));
    let check = check_communication(root.path());
    assert!(
        check.contains("communication: 4 op(s) in 1 group(s)"),
        "{check}"
    );
}
