"""Validating the results a test wrote, with what the repository itself has (as tests/common/check.rs does
for the Rust tests): the project's own `npuprof check`, msprof-analyze's cluster analysis from .venv
(mandatory under CI: .ci/run installs it), and ../shared/tools/check_profile.py as an extra check only where
it exists (a lone clone has none)."""
import csv
import os
import re
import subprocess
import sys
import tempfile

from conftest import REPO

TIMEOUT = 600  # far more than a check needs; reached only by a real hang


def _cli(lib):
    return os.environ.get("NPUPROF_CLI") or os.path.join(os.path.dirname(lib), "npuprof")


def _results(root):
    return sorted(os.path.join(root, d) for d in os.listdir(root) if d.endswith("_ascend_ms"))


def _rank(w):
    names = [n for n in os.listdir(w) if re.fullmatch(r"profiler_info_\d+\.json", n)]
    assert len(names) == 1, (w, names)
    return int(names[0][len("profiler_info_"):-len(".json")])


def _cluster(root, exe):
    """msprof-analyze `cluster -m all`, checked by what it must produce (it exits 0 on most failures)."""
    results = _results(root)
    ranks = sorted(_rank(w) for w in results)
    assert results and len(set(ranks)) == len(ranks), ("one result per rank", ranks)
    step_rows = 0
    for w in results:
        with open(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "step_trace_time.csv"), newline="") as f:
            step_rows += len(list(csv.reader(f))) - 1
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([exe, "cluster", "-m", "all", "-d", os.path.abspath(root), "-o", out],
                           capture_output=True, text=True, timeout=TIMEOUT)
        log = p.stdout + p.stderr
        assert p.returncode == 0, log
        assert not [l for l in log.splitlines() if "[ERROR]" in l or "Traceback" in l], log
        m = re.search(r"Finish allocate profiling data: (\d+) ranks", log)
        assert m and int(m.group(1)) == len(ranks), log
        with open(os.path.join(out, "cluster_analysis_output", "cluster_step_trace_time.csv"), newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][:3] == ["Step", "Type", "Index"], rows[0]
        rank_rows = [r for r in rows[1:] if len(r) > 2 and r[1] == "rank"]
        assert (len(rank_rows), sorted({int(r[2]) for r in rank_rows})) == (step_rows, ranks), rank_rows
    return f"cluster: msprof-analyze recognised {len(ranks)} rank(s) {ranks}, {step_rows} rank row(s)\n"


def check(lib, root):
    """`npuprof check ROOT`, the cluster analysis, and the extra checker where it exists; returns npuprof
    check's report (last line `CHECK PASS: N result(s), ranks [...], S slices / F flows`) and the cluster's."""
    p = subprocess.run([_cli(lib), "check", str(root)], capture_output=True, text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "CHECK PASS" in out, out
    ma = os.environ.get("NPUPROF_MSPROF_ANALYZE") or os.path.join(REPO, ".venv", "bin", "msprof-analyze")
    if os.path.exists(ma):
        out += _cluster(str(root), ma)
    else:
        assert not os.environ.get("CI"), "CI must install msprof-analyze (.ci/run)"
    extra = os.path.join(REPO, "..", "shared", "tools", "check_profile.py")
    if os.path.exists(extra):
        p = subprocess.run([sys.executable, extra, str(root), "--no-cluster"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0 and "CHECK PASS" in p.stdout, p.stdout + p.stderr
    return out
