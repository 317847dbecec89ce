//! Validating the results a test wrote, with what the repository itself has: the project's own
//! `npuprof check` (layout, CSV schemas and cells, Perfetto's import rules for the trace) and the real
//! msprof-analyze's cluster analysis (from `.venv`, as `.ci/run` installs it: mandatory under CI). Where a
//! `../shared/tools/check_profile.py` exists next to the repository, it runs too, as an extra opinion; a
//! lone clone does without it.

use super::{msprof_analyze, repo, run_guarded, shared, workers};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Far more than a check needs; reached only by a real hang.
const HANG_DEADLINE: Duration = Duration::from_secs(600);

/// `npuprof check ROOT`, then msprof-analyze's cluster analysis of ROOT (one result per rank), then the
/// extra checker where it exists. Returns `npuprof check`'s report (its last line: `CHECK PASS: N
/// result(s), ranks [...], S slices / F flows`) followed by the cluster's summary.
pub(crate) fn check_profile(root: &Path) -> String {
    let report = npuprof_check(root);
    let cluster = match msprof_analyze() {
        Some(m) => cluster(root, &m),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install msprof-analyze (.ci/run creates .venv)"
            );
            eprintln!(
                "note: msprof-analyze not installed (run .ci/run once); cluster check skipped"
            );
            "cluster: skipped (no msprof-analyze)\n".to_string()
        }
    };
    extra_check(root);
    report + &cluster
}

/// `npuprof check ROOT` and the extra checker, without the cluster analysis: for roots holding many
/// profiles of one rank (not a cluster).
pub(crate) fn check_profile_no_cluster(root: &Path) -> String {
    let report = npuprof_check(root);
    extra_check(root);
    report
}

/// The project's own checker, the CLI built with these tests.
fn npuprof_check(root: &Path) -> String {
    let r = run_guarded(
        Command::new(env!("CARGO_BIN_EXE_npuprof"))
            .arg("check")
            .arg(root),
        HANG_DEADLINE,
    );
    let s = r.stdout.clone() + &r.stderr;
    assert!(
        r.out.status.success() && s.contains("CHECK PASS"),
        "npuprof check {} failed:\n{s}",
        root.display()
    );
    s
}

/// The rank of a result, from its `profiler_info_{rank}.json` (which `npuprof check` has matched against
/// the file's rank_id).
fn rank(w: &Path) -> u64 {
    let names: Vec<String> = std::fs::read_dir(w)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_prefix("profiler_info_")?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(names.len(), 1, "{}: {names:?}", w.display());
    names[0].parse().unwrap()
}

/// msprof-analyze's `cluster -m all` on `root`, checked by what it must produce (it exits 0 on most
/// failures, so its exit code is not enough): it recognises every result as a rank, logs no error, and its
/// cluster_step_trace_time.csv has one rank row per step row of the results, for exactly their ranks.
fn cluster(root: &Path, exe: &Path) -> String {
    let results = workers(root);
    assert!(!results.is_empty(), "no result under {}", root.display());
    let mut ranks: Vec<u64> = results.iter().map(|w| rank(w)).collect();
    ranks.sort_unstable();
    let mut unique = ranks.clone();
    unique.dedup();
    assert_eq!(
        unique, ranks,
        "a cluster holds each rank once (msprof-analyze keeps only the newest)"
    );
    let step_rows: usize = results
        .iter()
        .map(|w| {
            let p = w.join("ASCEND_PROFILER_OUTPUT/step_trace_time.csv");
            let text = std::fs::read_to_string(&p).unwrap();
            text.lines().skip(1).filter(|l| !l.is_empty()).count()
        })
        .sum();
    let out = tempfile::tempdir().unwrap();
    let r = run_guarded(
        Command::new(exe)
            .args(["cluster", "-m", "all", "-d"])
            .arg(std::fs::canonicalize(root).unwrap())
            .arg("-o")
            .arg(out.path()),
        HANG_DEADLINE,
    );
    let log = r.stdout.clone() + &r.stderr;
    assert!(r.out.status.success(), "msprof-analyze failed:\n{log}");
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[ERROR]") || l.contains("Traceback"))
        .collect();
    assert!(bad.is_empty(), "msprof-analyze logged errors:\n{log}");
    let seen = log
        .split("Finish allocate profiling data: ")
        .nth(1)
        .and_then(|t| t.split(" ranks").next())
        .and_then(|n| n.trim().parse::<usize>().ok());
    assert_eq!(
        seen,
        Some(ranks.len()),
        "msprof-analyze did not recognise every result as a rank:\n{log}"
    );
    let csv = out
        .path()
        .join("cluster_analysis_output/cluster_step_trace_time.csv");
    let table = super::csv(&csv);
    assert_eq!(
        table[0][..3],
        ["Step", "Type", "Index"],
        "{}",
        csv.display()
    );
    let rank_rows: Vec<&Vec<String>> = table[1..]
        .iter()
        .filter(|r| r.len() > 2 && r[1] == "rank")
        .collect();
    let mut indexes: Vec<u64> = rank_rows.iter().map(|r| r[2].parse().unwrap()).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(
        (rank_rows.len(), &indexes),
        (step_rows, &ranks),
        "cluster_step_trace_time.csv: (rank rows, ranks) against the results' step rows and ranks"
    );
    format!(
        "cluster: msprof-analyze recognised {} rank(s) {ranks:?}, {step_rows} rank row(s)\n",
        ranks.len()
    )
}

/// `../shared/tools/check_profile.py --no-cluster` (the cluster analysis is ours), only where it exists.
fn extra_check(root: &Path) {
    let script = shared().join("tools/check_profile.py");
    if !script.exists() {
        return;
    }
    let r = run_guarded(
        Command::new("python3")
            .arg(&script)
            .arg(root)
            .arg("--no-cluster")
            .current_dir(repo()),
        HANG_DEADLINE,
    );
    let s = r.stdout.clone() + &r.stderr;
    assert!(
        r.out.status.success() && s.contains("CHECK PASS"),
        "{} failed:\n{s}",
        script.display()
    );
}
