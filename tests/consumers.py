#!/usr/bin/env python3
"""What the real consumers make of a results directory: the one place the tests ask them (the Rust tests
through tests/common/check.rs, the Python tests through python/tests/resultcheck.py).

    python3 tests/consumers.py cluster ROOT [--msprof-analyze EXE]
    python3 tests/consumers.py recipes ROOT [--msprof-analyze EXE]

`cluster`: msprof-analyze's `cluster -m all` on ROOT (one `*_ascend_ms` result per rank), judged by what it
must write, since it exits 0 on most failures: it recognises every result as a rank, logs no error, and its
cluster_step_trace_time.csv has one rank row per step row of the results, for exactly their ranks. Prints one
summary line; exits 1 with the reason (and msprof-analyze's log) on a failure, 2 on bad usage. With the
results' databases (`ascend_mindspore_profiler_{rank}.db`) msprof-analyze reads only those: the step trace is
then one ClusterStepTraceTime row per rank in cluster_analysis.db.

`recipes`: msprof-analyze's DB-only cluster recipes on ROOT (every mode that applies to the data a result
has), each judged by its log (no skip, missing, failure, error or traceback, but for the few lines listed in
ALLOWED with their reason) and by the tables it writes into cluster_analysis.db (rows for every rank, holding
the results' kernels, API calls, collectives, markers and steps).
"""
import sqlite3
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


def db_path(w):
    """The result's database, or None."""
    out = os.path.join(w, "ASCEND_PROFILER_OUTPUT")
    names = [n for n in os.listdir(out) if re.fullmatch(r"ascend_mindspore_profiler_\d+\.db", n)] if os.path.isdir(out) else []
    return os.path.join(out, names[0]) if names else None


def cluster_db(out):
    return sqlite3.connect(os.path.join(out, "cluster_analysis_output", "cluster_analysis.db"))


def table(con, name):
    """The rows of a table of cluster_analysis.db as dicts ([] when the table is missing)."""
    if not con.execute("select 1 from sqlite_master where type='table' and name=?", (name,)).fetchone():
        return []
    cur = con.execute(f'select * from "{name}"')
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def cluster(root, exe):
    ws = results(root)
    if any(db_path(w) for w in ws):
        return cluster_from_db(root, exe, ws)
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


def cluster_from_db(root, exe, ws):
    """`cluster -m all` on results with databases: every result a rank, its step trace in cluster_analysis.db."""
    expect(all(db_path(w) for w in ws), f"either every result has its database or none: {ws}")
    ranks = sorted(rank(w) for w in ws)
    with tempfile.TemporaryDirectory() as out:
        log = run_unchecked(exe, ["cluster", "-m", "all", "-d", os.path.abspath(root), "-o", out])
        errors = [l for l in log.splitlines() if "[ERROR]" in l or "Traceback" in l]
        if not any(collectives(db_path(w)) for w in ws):
            # Without collectives msprof-analyze 26.2.0's communication recipes fail on their empty tables.
            errors = [l for l in errors if not any(a in l for a in NO_COMMUNICATION)]
        expect(not errors, "msprof-analyze cluster -m all logged errors:\n" + "\n".join(errors) + f"\n{log}")
        m = re.search(r"Finish allocate profiling data: (\d+) ranks, data type: db", log)
        expect(m and int(m.group(1)) == len(ranks), f"msprof-analyze did not read every database as a rank:\n{log}")
        rows = table(cluster_db(out), "ClusterStepTraceTime")
        got = sorted(int(r["index"]) for r in rows if r["type"] == "rank")
        expect(got == ranks, f"ClusterStepTraceTime ranks {got}, the results have {ranks}:\n{log}")
    return f"cluster: msprof-analyze read {len(ranks)} database(s) of ranks {ranks}"


# What `cluster -m all` logs for results without collectives.
NO_COMMUNICATION = ["Create CommunicationGroupMap table failed! Skip CommunicationTimeSum.",
                    "[ERROR][context.py:106] 'index'", "There is no CommunicationGroupMapping data in"]


def collectives(path):
    return sqlite3.connect(path).execute("select count(*) from COMMUNICATION_OP").fetchone()[0]


# Log lines that mean a recipe did not read data we recorded.
BAD = ["only supports DB", "missing", "will be skipped", "launched failed", "Traceback", "[ERROR]",
       "does not have valid", "not found", "no stats data", "no mstx data", "Skip", "skipped"]
# Lines that may appear, with why.
ALLOWED = [
    # Optional tables of data npuprof does not record (PMU counters, AI CPU communication scheduling).
    "Table TASK_PMU_INFO not found", "Table COMMUNICATION_SCHEDULE_TASK_INFO not found",
    # export_summary keeps the kernel_details.csv the text export wrote.
    "already exists for rank",
    # slow_rank finds no slow rank among equal fakes.
    "No slow rank found, skip data dump",
    # slow_link: with no outlier link msprof-analyze 26.2.0 hands its empty list to the writer.
    "Unknown dump data type: <class 'list'>",
    # profiler_metadata.json has no distributed_args (no framework parallel config is known).
    "ClusterBaseInfoAnalysis skipped, since no metadata or distributed args found",
    # The device id of a MindSpore DB result comes from a PROF_*/device_N directory only.
    "No RANK_DEVICE_MAP data for rank(s)", "No host info data be analyzed",
    "Security Warning",
]


def judge(mode, log):
    bad = [l for l in log.splitlines() if any(b in l for b in BAD) and not any(a in l for a in ALLOWED)]
    expect(not bad, f"cluster -m {mode} logged:\n" + "\n".join(bad) + f"\n--- full log:\n{log}")


def ranks_of(rows, key):
    return sorted({int(r[key]) for r in rows})


def recipes(root, exe):
    ws = results(root)
    expect(ws and all(db_path(w) for w in ws), f"every result under {root} has its database")
    ranks = sorted(rank(w) for w in ws)
    root = os.path.abspath(root)
    kernels = set()
    for w in ws:
        rows = csv_rows(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "kernel_details.csv"))
        name = rows[0].index("Name")
        kernels |= {r[name] for r in rows[1:] if not r[name].startswith(("hcom_", "Hccl"))}
    done = []

    def mode(m, *extra):
        out = tempfile.mkdtemp(prefix=f"recipe_{m}_")
        log = run_unchecked(exe, ["cluster", "-m", m, "-d", root, "-o", out, *extra])
        judge(m, log)
        done.append(m)
        return cluster_db(out), log

    con, _ = mode("all")
    steps = table(con, "ClusterStepTraceTime")
    expect(sorted(int(r["index"]) for r in steps if r["type"] == "rank") == ranks,
           f"all: ClusterStepTraceTime {steps}")
    groups = table(con, "CommunicationGroupMapping")
    comm = table(con, "ClusterCommunicationTime")
    if groups:
        expect(comm, "all: no ClusterCommunicationTime rows though collectives were recorded")

    for m in ["communication_time", "communication_matrix", "communication_group_map"]:
        mode(m)
    # cluster_time_summary joins each collective to the API call that issued it: only collectives whose
    # source names that call (MSPTI's communication records) can be counted.
    if all(linked_collectives(db_path(w)) for w in ws):
        con, _ = mode("cluster_time_summary")
        summary = table(con, "ClusterTimeSummary")
        expect(ranks_of(summary, "rank") == ranks, f"cluster_time_summary: {summary}")

    # Each mode that applies to the data every result has (a mode on data none has only says so).
    has = lambda sql: all(sqlite3.connect(db_path(w)).execute(sql).fetchone()[0] for w in ws)
    if has("select count(*) from CANN_API"):
        con, _ = mode("cann_api_sum")
        per_rank = table(con, "CannApiSumRank")
        expect(ranks_of(per_rank, "rank") == ranks, f"cann_api_sum: CannApiSumRank ranks {per_rank}")

    if has("select count(*) from COMPUTE_TASK_INFO"):
        con, _ = mode("compute_op_sum")
        by_name = table(con, "ComputeOpPerRankStatsByOpName")
        expect(ranks_of(by_name, "Rank") == ranks, f"compute_op_sum: ranks of {by_name}")
        got = {r["OpName"] for r in by_name}
        expect(kernels <= got,
               f"compute_op_sum: kernels {sorted(kernels - got)} of kernel_details.csv missing from {sorted(got)}")

    if has("select count(*) from COMMUNICATION_OP"):
        con, _ = mode("hccl_sum")
        hccl = table(con, "HcclPerRankStats")
        expect(ranks_of(hccl, "Rank") == ranks, f"hccl_sum: HcclPerRankStats {hccl}")
        mode("slow_rank")
        mode("slow_link")

    if has("select count(*) from MSTX_EVENTS where eventType = 3"):
        con, _ = mode("mstx_sum")
        marks = table(con, "MSTXMarkStats")
        expect(ranks_of(marks, "Rank") == ranks, f"mstx_sum: MSTXMarkStats {marks}")

    if has("select count(*) from TASK"):
        con, _ = mode("free_analysis")
        free = table(con, "FreeAnalysis")
        expect(free, "free_analysis: no FreeAnalysis rows")

    if not has("select count(*) from TASK"):
        return f"recipes: {', '.join(done)} read {len(ranks)} database(s) of ranks {ranks}"
    before = {w: os.path.exists(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "api_statistic.csv")) for w in ws}
    mode("export_summary")
    for w in ws:
        api = os.path.join(w, "ASCEND_PROFILER_OUTPUT", "api_statistic.csv")
        expect(before[w] or not has("select count(*) from CANN_API") or (os.path.exists(api) and len(csv_rows(api)) > 1),
               f"export_summary: no api_statistic.csv rows in {w}")
    return f"recipes: {', '.join(done)} read {len(ranks)} database(s) of ranks {ranks}"


def linked_collectives(path):
    """Whether the database's collectives name the API calls that issued them (COMMUNICATION_OP ⋈ CANN_API)."""
    con = sqlite3.connect(path)
    return con.execute("select count(*) from COMMUNICATION_OP join CANN_API "
                       "on CANN_API.connectionId = COMMUNICATION_OP.connectionId").fetchone()[0] > 0


def run_unchecked(exe, args):
    """msprof-analyze with args; its log (judged by the caller), failing only on a non-zero exit."""
    p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT)
    log = p.stdout + p.stderr
    expect(p.returncode == 0, f"msprof-analyze {' '.join(args)} exited {p.returncode}:\n{log}")
    return log


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["cluster", "recipes"])
    ap.add_argument("root")
    ap.add_argument("--msprof-analyze", default=default_msprof_analyze())
    a = ap.parse_args(argv)
    try:
        print({"cluster": cluster, "recipes": recipes}[a.what](a.root, a.msprof_analyze))
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
