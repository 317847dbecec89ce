//! Validating the results a test wrote, with what the repository itself has: the project's own
//! `npuprof check` (layout, CSV schemas and cells, Perfetto's import rules for the trace) and the real
//! msprof-analyze's cluster analysis (from `.venv`, as `.ci/run` installs it: mandatory under CI). Where a
//! `../shared/tools/check_profile.py` exists next to the repository, it runs too, as an extra opinion; a
//! lone clone does without it.

use super::{msprof_analyze, repo, run_guarded, shared};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Far more than a check needs; reached only by a real hang.
const HANG_DEADLINE: Duration = Duration::from_secs(600);

/// `npuprof check ROOT`, then msprof-analyze's cluster analysis of ROOT (one result per rank), then the
/// extra checker where it exists. Returns `npuprof check`'s report (its last line: `CHECK PASS: N
/// result(s), ranks [...], S slices / F flows`) followed by the cluster's summary.
pub(crate) fn check_profile(root: &Path) -> String {
    check_with(root, "cluster")
}

/// [`check_profile`] with tests/consumers.py's `communication` check after the cluster analysis: the
/// results' communication files understood by cluster (every op, both ranks' self links, the groups).
#[allow(dead_code)]
pub(crate) fn check_communication(root: &Path) -> String {
    check_with(root, "communication")
}

fn check_with(root: &Path, what: &str) -> String {
    let report = npuprof_check(root);
    let cluster = match msprof_analyze() {
        Some(m) => cluster(root, &m, what),
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

/// msprof-analyze's `cluster -m all` on `root`, judged by tests/consumers.py (the one place the Rust and
/// Python tests ask the real consumers; msprof-analyze exits 0 on most failures, so it checks the files
/// and the log): every result recognised as a rank, no error logged, one cluster row per step row.
fn cluster(root: &Path, exe: &Path, what: &str) -> String {
    let r = run_guarded(
        Command::new("python3")
            .arg(repo().join("tests/consumers.py"))
            .arg(what)
            .arg(root)
            .arg("--msprof-analyze")
            .arg(exe),
        HANG_DEADLINE,
    );
    assert!(
        r.out.status.success(),
        "msprof-analyze's cluster analysis of {} failed:\n{}{}",
        root.display(),
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// msprof-analyze's `compare --enable_memory_compare` of two results with memory profiling, judged by
/// tests/consumers.py (`compare-memory`): it finds their memory events and compares operator rows with a size
/// on both sides. Returns its summary line, or says it was skipped without msprof-analyze (not under CI).
pub(crate) fn compare_memory(base: &Path, comparison: &Path) -> String {
    run_consumer("compare-memory", &[base, comparison], &[])
        .unwrap_or_else(|| "compare-memory: skipped (no msprof-analyze)".into())
}

/// msprof-analyze's `advisor all` on one result, judged by tests/consumers.py (`advisor-frequency`): its AI
/// Core frequency analysis finds the frequency in an `info.json.<device>`.
pub(crate) fn advisor_frequency(result: &Path) -> String {
    run_consumer("advisor-frequency", &[result], &[])
        .unwrap_or_else(|| "advisor-frequency: skipped (no msprof-analyze)".into())
}

/// What msprof-analyze's `compare` (`what` = "compare", with `--step N` when `step`) or `advisor all` (`what`
/// = "advisor") make of the results under `root`, judged by tests/consumers.py from the files they write and
/// their log (they exit 0 on most failures). Returns its summary line; `None` without msprof-analyze (outside
/// CI: CI must install it).
pub(crate) fn consumer(what: &str, root: &Path, step: Option<u32>) -> Option<String> {
    let step = step.map(|n| n.to_string());
    let extra: Vec<&str> = step.as_deref().map_or(Vec::new(), |n| vec!["--step", n]);
    run_consumer(what, &[root], &extra)
}

/// `tests/consumers.py WHAT PATHS... EXTRA...` with the real msprof-analyze: its summary line (a failure fails
/// the test); `None` without msprof-analyze (outside CI: CI must install it).
fn run_consumer(what: &str, paths: &[&Path], extra: &[&str]) -> Option<String> {
    let Some(exe) = msprof_analyze() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install msprof-analyze (.ci/run creates .venv)"
        );
        eprintln!("note: msprof-analyze not installed (run .ci/run once); {what} check skipped");
        return None;
    };
    let r = run_guarded(
        Command::new("python3")
            .arg(repo().join("tests/consumers.py"))
            .arg(what)
            .args(paths)
            .args(extra)
            .arg("--msprof-analyze")
            .arg(exe),
        HANG_DEADLINE,
    );
    assert!(
        r.out.status.success(),
        "tests/consumers.py {what} {paths:?} {extra:?} failed:\n{}{}",
        r.stdout,
        r.stderr
    );
    Some(r.stdout)
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

/// msprof-analyze's DB-only cluster recipes on `root` (each rank's `ascend_mindspore_profiler_{rank}.db`),
/// judged by tests/consumers.py `recipes` from the tables they write and their logs.
pub(crate) fn recipes(root: &Path) -> String {
    let Some(exe) = msprof_analyze() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install msprof-analyze (.ci/run creates .venv)"
        );
        return "recipes: skipped (no msprof-analyze)\n".to_string();
    };
    let r = run_guarded(
        Command::new("python3")
            .arg(repo().join("tests/consumers.py"))
            .arg("recipes")
            .arg(root)
            .arg("--msprof-analyze")
            .arg(&exe),
        HANG_DEADLINE,
    );
    assert!(
        r.out.status.success(),
        "msprof-analyze's recipes on {} failed:\n{}{}",
        root.display(),
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// The Python with Perfetto's compiled protos (`perfetto` from PyPI, in `.venv` as `.ci/run` installs it;
/// mandatory under CI), or `None` with a note.
#[allow(dead_code)]
pub(crate) fn perfetto_python() -> Option<std::path::PathBuf> {
    let py = repo().join(".venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args([
                "-c",
                "import perfetto.protos.perfetto.trace.perfetto_trace_pb2",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install the perfetto package (.ci/run: requirements-test.txt)"
    );
    eprintln!(
        "note: the perfetto package is not installed (run .ci/run once); Perfetto decode skipped"
    );
    None
}

/// tests/perfetto_check.py `WHAT PATH`: `trace` decodes `ASCEND_PROFILER_OUTPUT/trace_view.pftrace` with
/// Perfetto's own protos and compares it with the JSON next to it; `protos` checks a .proto subset. Returns
/// its summary line (a failure fails the test with its output); `None` when the package is missing.
#[allow(dead_code)]
pub(crate) fn perfetto_check(what: &str, path: &Path) -> Option<String> {
    let py = perfetto_python()?;
    let r = run_guarded(
        Command::new(py)
            .arg(repo().join("tests/perfetto_check.py"))
            .arg(what)
            .arg(path),
        HANG_DEADLINE,
    );
    let s = r.stdout.clone() + &r.stderr;
    assert!(
        r.out.status.success(),
        "perfetto_check.py {what} {} failed:\n{s}",
        path.display()
    );
    Some(s)
}
