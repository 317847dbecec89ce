//! Issue 18: collectives become communication data msprof-analyze understands (communication.json,
//! communication_matrix.json, the Communication columns of step_trace_time.csv), on two-rank results of the
//! MSPTI and aclprof fakes. Text results (`NPUPROF_EXPORT_TYPE=text`): with a database beside them
//! msprof-analyze reads only the database (communication_analyzer.db; see the database tests).

use super::*;

fn mspti_rank(rank: &str, preload_mspti: bool) -> Run {
    mspti_run(
        preload_mspti,
        &[("NPUPROF_RANK", rank), ("NPUPROF_EXPORT_TYPE", "text")],
        &["mspti", "start", "steps:4", "stop", "flush", "dir"],
    )
}

/// The fakes' group (`group0`, MSPTI's commName) told to npuprof as torch_npu would: the data-parallel
/// group of ranks 0 and 1.
fn group_cmd(rank: &str) -> String {
    format!("group:group0:dp:{rank}:0,1")
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

/// Issue 18 item 1: two MSPTI ranks' collectives are communication data msprof-analyze's cluster analysis
/// understands: no rank "does not have valid communication data", every op in cluster_communication.json and
/// its matrix with both ranks, the group in communication_group.json.
#[test]
fn mspti_two_ranks_communication_is_understood_by_cluster() {
    let (root, _runs) = gather_two_ranks(|r| mspti_rank(r, false));
    let check = check_communication(root.path());
    assert!(
        check.contains("communication: 4 op(s) in 1 group(s), 0 named"),
        "{check}"
    );
}

/// Issue 18 item 1: with the group told (`npuprof_set_group`), profiler_metadata.json has torch_npu's
/// `parallel_group_info` and cluster matches it to the ops' group (communication_group.json: pg_name `dp`,
/// global ranks [0, 1]); each rank's matrix has its rank in the group and a link to the other.
#[test]
fn mspti_two_ranks_with_their_group_told_name_it_in_cluster() {
    let (root, runs) = gather_two_ranks(|r| {
        mspti_run(
            false,
            &[("NPUPROF_RANK", r), ("NPUPROF_EXPORT_TYPE", "text")],
            &[
                "mspti",
                &group_cmd(r),
                "start",
                "steps:2",
                "stop",
                "flush",
                "dir",
            ],
        )
    });
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(
            r.out.value("GROUP").as_deref(),
            Some("0"),
            "{}",
            r.out.stderr
        );
        let w = root.path().join(r.dir().file_name().unwrap());
        let m = json(&w.join("profiler_metadata.json"));
        assert_eq!(
            m["parallel_group_info"]["group0"],
            serde_json::json!({"group_name": "dp", "group_rank": i, "global_ranks": [0, 1]})
        );
        let mx = json(&w.join("ASCEND_PROFILER_OUTPUT/communication_matrix.json"));
        let links: Vec<&String> = mx["step1"]["collective"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|l| l.as_object().unwrap().keys())
            .collect();
        let (me, other) = (i, 1 - i);
        let want = [format!("{me}-{other}"), format!("{me}-{me}")];
        let mut links: Vec<String> = links.into_iter().cloned().collect();
        links.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(links, want);
    }
    let check = check_communication(root.path());
    assert!(
        check.contains("communication: 2 op(s) in 1 group(s), 1 named"),
        "{check}"
    );
}

/// Issue 18 item 1: two aclprof ranks (the fake msprof's op_summary gives each step's allreduce as a
/// COMMUNICATION row): their communication files are understood by cluster, with the process's one group
/// told (msprof names no group in op_summary) matched by name.
#[test]
fn aclprof_two_ranks_communication_is_understood_by_cluster() {
    let (root, runs) = gather_two_ranks(|r| {
        let group = group_cmd(r);
        go_env(
            &[("NPUPROF_RANK", r), ("NPUPROF_EXPORT_TYPE", "text")],
            &["cann", &group, "start", "steps:4", "stop", "flush", "dir"],
        )
    });
    // The names are made from the told group (last 3 digits of its double_hash), as the keys are.
    let gid = 9432122931104976425u64.to_string(); // double_hash("group0"), by msprof-analyze's function
    for r in &runs {
        assert_eq!(
            r.out.value("GROUP").as_deref(),
            Some("0"),
            "{}",
            r.out.stderr
        );
        let w = root.path().join(r.dir().file_name().unwrap());
        let c = json(&w.join("ASCEND_PROFILER_OUTPUT/communication.json"));
        let keys: Vec<&String> = c["step2"]["collective"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let want = format!("hcom_allReduce__{}_1_1@{gid}", &gid[gid.len() - 3..]);
        assert_eq!(keys, ["Total Op Info", &want]); // serde_json sorts keys
    }
    let check = check_communication(root.path());
    assert!(
        check.contains("communication: 4 op(s) in 1 group(s), 1 named"),
        "{check}"
    );
}
