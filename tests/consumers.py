#!/usr/bin/env python3
"""What the real consumers make of a results directory: the one place the tests ask them (the Rust tests
through tests/common/check.rs, the Python tests through python/tests/resultcheck.py).

    python3 tests/consumers.py cluster ROOT [--msprof-analyze EXE]

`cluster`: msprof-analyze's `cluster -m all` on ROOT (one `*_ascend_ms` result per rank), judged by what it
must write, since it exits 0 on most failures: it recognises every result as a rank, logs no error, and its
cluster_step_trace_time.csv has one rank row per step row of the results, for exactly their ranks. Prints one
summary line; exits 1 with the reason (and msprof-analyze's log) on a failure, 2 on bad usage.
"""
import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600  # far more than an analysis needs; reached only by a real hang


class Failed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Failed(msg)


def results(root):
    return sorted(os.path.join(root, d) for d in os.listdir(root) if d.endswith("_ascend_ms"))


def rank(w):
    """The rank of a result, from its profiler_info_{rank}.json (npuprof check matches it with rank_id)."""
    names = [n for n in os.listdir(w) if re.fullmatch(r"profiler_info_\d+\.json", n)]
    expect(len(names) == 1, f"{w}: one profiler_info_{{rank}}.json, found {names}")
    return int(names[0][len("profiler_info_"):-len(".json")])


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def default_msprof_analyze():
    return os.environ.get("NPUPROF_MSPROF_ANALYZE") or os.path.join(REPO, ".venv", "bin", "msprof-analyze")


def run(exe, args):
    """msprof-analyze with args; returns its log, failing on a non-zero exit or a logged error."""
    p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT)
    log = p.stdout + p.stderr
    expect(p.returncode == 0, f"msprof-analyze {' '.join(args)} exited {p.returncode}:\n{log}")
    bad = [line for line in log.splitlines() if "[ERROR]" in line or "Traceback" in line]
    expect(not bad, f"msprof-analyze {' '.join(args)} logged errors:\n{log}")
    return log


def cluster(root, exe):
    ws = results(root)
    expect(ws, f"no *_ascend_ms result under {root}")
    ranks = sorted(rank(w) for w in ws)
    expect(len(set(ranks)) == len(ranks), f"a cluster holds each rank once (msprof-analyze keeps the newest): {ranks}")
    step_rows = sum(len(csv_rows(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "step_trace_time.csv"))) - 1 for w in ws)
    with tempfile.TemporaryDirectory() as out:
        log = run(exe, ["cluster", "-m", "all", "-d", os.path.abspath(root), "-o", out])
        m = re.search(r"Finish allocate profiling data: (\d+) ranks", log)
        expect(m and int(m.group(1)) == len(ranks), f"msprof-analyze did not recognise every result as a rank:\n{log}")
        path = os.path.join(out, "cluster_analysis_output", "cluster_step_trace_time.csv")
        expect(os.path.exists(path), f"no cluster_step_trace_time.csv:\n{log}")
        rows = csv_rows(path)
        expect(rows and rows[0][:3] == ["Step", "Type", "Index"], f"{path}: header {rows[:1]}")
        rank_rows = [r for r in rows[1:] if len(r) > 2 and r[1] == "rank"]
        got = (len(rank_rows), sorted({int(r[2]) for r in rank_rows}))
        expect(got == (step_rows, ranks),
               f"{path}: (rank rows, ranks) {got}, the results have {(step_rows, ranks)}:\n{log}")
    return f"cluster: msprof-analyze recognised {len(ranks)} rank(s) {ranks}, {step_rows} rank row(s)"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["cluster"])
    ap.add_argument("root")
    ap.add_argument("--msprof-analyze", default=default_msprof_analyze())
    a = ap.parse_args(argv)
    try:
        print(cluster(a.root, a.msprof_analyze))
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
