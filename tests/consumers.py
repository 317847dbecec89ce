#!/usr/bin/env python3
"""What the real consumers make of a results directory: the one place the tests ask them (the Rust tests
through tests/common/check.rs, the Python tests through python/tests/resultcheck.py).

    python3 tests/consumers.py cluster ROOT [--msprof-analyze EXE]
    python3 tests/consumers.py communication ROOT [--msprof-analyze EXE]
    python3 tests/consumers.py compare-memory BASE COMPARISON [--msprof-analyze EXE]
    python3 tests/consumers.py advisor-frequency RESULT [--msprof-analyze EXE]
    python3 tests/consumers.py compare ROOT [--step N] [--msprof-analyze EXE]
    python3 tests/consumers.py advisor ROOT [--msprof-analyze EXE]
    python3 tests/consumers.py recipes ROOT [--msprof-analyze EXE]

`cluster`: msprof-analyze's `cluster -m all` on ROOT (one `*_ascend_ms` result per rank), judged by what it
must write, since it exits 0 on most failures: it recognises every result as a rank, logs no error, and its
cluster_step_trace_time.csv has one rank row per step row of the results, for exactly their ranks. Prints one
summary line; exits 1 with the reason (and msprof-analyze's log) on a failure, 2 on bad usage. With the
results' databases (`ascend_mindspore_profiler_{rank}.db`) msprof-analyze reads only those: the step trace is
then one ClusterStepTraceTime row per rank in cluster_analysis.db.

`communication`: `cluster`, and what it made of the results' communication.json / communication_matrix.json:
no rank "does not have valid communication data", every op of every rank in cluster_communication.json and
cluster_communication_matrix.json (with each rank's self link), each group in communication_group.json with the
ranks that name it, and profiler_metadata.json's parallel_group_info matched (pg_name, global ranks).

`compare-memory`: msprof-analyze's `compare --enable_memory_compare` of two `*_ascend_ms` results with
memory profiling: it finds their memory events (no "Can't find any memory event", no missing
operator_memory.csv) and its workbook's MemoryCompare sheet holds operator rows with a size on both sides.

`advisor-frequency`: msprof-analyze's `advisor all` on one `*_ascend_ms` result runs its AI Core frequency
analysis with a frequency: it finds an `info.json.<device>` with `ai_core_num` and `aic_frequency` (no "Can
not find ai core frequency", no "No ai_core_num").

`compare`: msprof-analyze's `compare` of ROOT's two results (the lower rank is the base), on the whole
profile or, with --step N, on step N of each: its log has no error, no "Invalid step id", no "Can't find any
flow event", no crash, and its workbook holds the base's kernels under framework ops (OperatorCompare), its
communication operations (CommunicationCompare) when it has any, and, with --step, only that step's kernels.

`advisor`: msprof-analyze's `advisor all` on ROOT: its log has no Traceback, no "No valid op info" and no
error but those of its cluster communication analyses (see ADVISOR_COMMUNICATION_ERRORS), and it writes its
html report and its xlsx.

`recipes`: msprof-analyze's DB-only cluster recipes on ROOT (every mode that applies to the data a result
has), each judged by its log (no skip, missing, failure, error or traceback, but for the few lines listed in
ALLOWED with their reason) and by the tables it writes into cluster_analysis.db (rows for every rank, holding
the results' kernels, API calls, collectives, markers and steps).

Each prints one summary line; exits 1 with the reason (and msprof-analyze's log) on a failure, 2 on bad usage.
"""
import sqlite3
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

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


def cluster(root, exe, then=None):
    """`cluster -m all` on root, checked; `then(out_dir, log, ws, ranks)` adds checks on its output."""
    ws = results(root)
    if any(db_path(w) for w in ws):
        # With databases msprof-analyze reads only those: checks of the text files would check nothing.
        expect(then is None, "this check reads the text files: write the results with NPUPROF_EXPORT_TYPE=text")
        return cluster_from_db(root, exe, ws)
    expect(ws, f"no *_ascend_ms result under {root}")
    ranks = sorted(rank(w) for w in ws)
    expect(len(set(ranks)) == len(ranks), f"a cluster holds each rank once (msprof-analyze keeps the newest): {ranks}")
    step_rows = sum(len(csv_rows(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "step_trace_time.csv"))) - 1 for w in ws)
    extra = ""
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
        if then:
            extra = "; " + then(os.path.join(out, "cluster_analysis_output"), log, ws, ranks)
    return f"cluster: msprof-analyze recognised {len(ranks)} rank(s) {ranks}, {step_rows} rank row(s)" + extra


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def double_hash(s):
    """msprof-analyze's own (imported from it when installed beside this Python, else the same arithmetic)."""
    try:
        from msprof_analyze.cluster_analyse.common_func.utils import double_hash as dh
        return dh(s)
    except ImportError:
        a = b = 0
        for ch in s:
            a = (a * 29 + ord(ch)) & 0xFFFFFFFF
            b = (b * 131 + ord(ch)) & 0xFFFFFFFF
        return (a << 32) | b


def op_keys(comm):
    """The op keys (`<op>@<group>`) of a communication(_matrix).json, over every step and type."""
    return {op for step in comm.values() for ty in step.values() for op in ty if not op.startswith("Total")}


def check_communication(out, log, ws, ranks):
    """What cluster made of the results' communication files: no rank without communication data, every op
    of every rank in cluster_communication.json and (with both ranks' self links) in
    cluster_communication_matrix.json, each group in communication_group.json with exactly the ranks whose
    files name it, and parallel_group_info's groups matched by name (pg_name)."""
    bad = [line for line in log.splitlines() if "does not have valid communication data" in line
           or "cannot be mapped to the global rank" in line or "get the same local rank" in line]
    expect(not bad, "cluster logged:\n" + "\n".join(bad))
    ours, group_ranks, infos = set(), {}, {}
    for w in ws:
        out_dir = os.path.join(w, "ASCEND_PROFILER_OUTPUT")
        keys = op_keys(load_json(os.path.join(out_dir, "communication.json")))
        expect(keys, f"{w}: communication.json holds no op")
        expect(keys == op_keys(load_json(os.path.join(out_dir, "communication_matrix.json"))),
               f"{w}: communication.json and communication_matrix.json hold different ops")
        ours |= keys
        for k in keys:
            group_ranks.setdefault(k.split("@")[-1], set()).add(rank(w))
        infos.update(load_json(os.path.join(w, "profiler_metadata.json")).get("parallel_group_info", {}))
    cc = load_json(os.path.join(out, "cluster_communication.json"))
    got = {op for group in cc.values() for step in group.values() for op in step if not op.startswith("Total")}
    expect(ours <= got, f"cluster_communication.json lacks {sorted(ours - got)[:5]}")
    cm = load_json(os.path.join(out, "cluster_communication_matrix.json"))
    links = {}
    for group in cm.values():
        for step in group.values():
            for op, ls in step.items():
                if not op.startswith("Total"):
                    links.setdefault(op, set()).update(ls)
    expect(ours <= set(links), f"cluster_communication_matrix.json lacks {sorted(ours - set(links))[:5]}")
    for op in ours:
        g = group_ranks[op.split("@")[-1]]
        expect(len([l for l in links[op] if l.split("-")[0] == l.split("-")[1]]) == len(g),
               f"cluster_communication_matrix.json: {op} has self links {sorted(links[op])}, ranks {sorted(g)}")
    cg = load_json(os.path.join(out, "communication_group.json"))
    groups = {e["group_name"]: e for e in cg.get("comm_group_parallel_info", [])}
    for name, rs in group_ranks.items():
        expect(name in groups and set(groups[name]["rank_set"]) == rs,
               f"communication_group.json: group {name} with ranks {sorted(rs)} missing: {cg}")
    for key, info in infos.items():
        e = groups.get(str(double_hash(key)))
        expect(e and e["pg_name"] == info["group_name"] and sorted(e["rank_set"]) == sorted(info["global_ranks"]),
               f"communication_group.json: parallel_group_info {key} not matched: {cg}")
    return f"communication: {len(ours)} op(s) in {len(group_ranks)} group(s), {len(infos)} named"


def compare_memory(base, comparison, exe):
    for w in (base, comparison):
        expect(os.path.exists(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "operator_memory.csv")),
               f"{w}: no operator_memory.csv")
    with tempfile.TemporaryDirectory() as out:
        log = run(exe, ["compare", "-d", os.path.abspath(comparison), "-bp", os.path.abspath(base), "-o", out,
                        "--enable_memory_compare"])
        for bad in ("Can't find any memory event", "operator_memory.csv does not exist",
                    "memory_record.csv is not available"):
            expect(bad not in log, f"compare logged {bad!r}:\n{log}")
        books = [n for n in os.listdir(out) if n.endswith(".xlsx")]
        expect(len(books) == 1, f"compare wrote {books}, not one workbook:\n{log}")
        sheets = xlsx_sheets(os.path.join(out, books[0]))
        rows = sheets.get("MemoryCompare")
        expect(rows and len(rows) > 2, f"no MemoryCompare rows in {sorted(sheets)}:\n{log}")
        head = rows[1]
        expect(head.count("Size(KB)") == 2, f"MemoryCompare header {head}")
        sizes = [i for i, h in enumerate(head) if h == "Size(KB)"]
        data = [r for r in rows[2:] if len(r) > max(sizes)]
        expect(data and all(float(r[i] or 0) > 0 for r in data for i in sizes),
               f"MemoryCompare rows without a size on both sides: {rows[2:]}")
    return f"compare memory: {len(data)} operator memory row(s) compared"


def advisor_frequency(result, exe):
    with tempfile.TemporaryDirectory() as out:
        # The advisor writes its report into the current directory too: keep it out of the repository.
        p = subprocess.run([exe, "advisor", "all", "-d", os.path.abspath(result), "-o", out], capture_output=True,
                           text=True, timeout=TIMEOUT, cwd=out)
        log = p.stdout + p.stderr
        expect("Start analysis AICoreFreqAnalyzer" in log, f"the advisor did not run its frequency analysis:\n{log}")
        for bad in ("Can not find ai core frequency", "No ai_core_num in json info file", "No device info in json"):
            expect(bad not in log, f"advisor logged {bad!r}:\n{log}")
    return "advisor frequency: the AI Core frequency was found"


XLSX = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
        "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}


def xlsx_sheets(path):
    """{sheet name: rows of cell texts} of a workbook (the standard library only: .venv has no openpyxl)."""
    with zipfile.ZipFile(path) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", XLSX):
                shared.append("".join(t.text or "" for t in si.iter("{%s}t" % XLSX["m"])))
        rels = {r.get("Id"): r.get("Target") for r in ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))}
        out = {}
        for sh in ET.fromstring(z.read("xl/workbook.xml")).find("m:sheets", XLSX):
            target = rels[sh.get("{%s}id" % XLSX["r"])].lstrip("/")
            target = target if target.startswith("xl/") else "xl/" + target
            rows = []
            for row in ET.fromstring(z.read(target)).iter("{%s}row" % XLSX["m"]):
                cells = []
                for c in row.findall("m:c", XLSX):
                    v = c.find("m:v", XLSX)
                    if c.get("t") == "s" and v is not None:
                        cells.append(shared[int(v.text)])
                    elif c.get("t") == "inlineStr":
                        cells.append("".join(x.text or "" for x in c.iter("{%s}t" % XLSX["m"])))
                    else:
                        cells.append(v.text if v is not None else "")
                rows.append(cells)
            out[sh.get("name")] = rows
    return out


def by_rank(root):
    ws = results(root)
    expect(len(ws) == 2, f"compare takes two results, {root} has {len(ws)}")
    return sorted(ws, key=rank)


def kernel_rows(w):
    """The rows of a result's kernel_details.csv as dicts (none without the file)."""
    path = os.path.join(w, "ASCEND_PROFILER_OUTPUT", "kernel_details.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def is_communication(row):
    return row["Name"].startswith("hcom_")


COMPARE_BAD = ("Invalid step id", "Can't find any flow event", "expected str instance", "Traceback", "[ERROR]",
               "There is no operator", "There is no kernel details")


# With a database in ASCEND_PROFILER_OUTPUT compare reads only the database, and msprof-analyze reads framework
# operators (OperatorCompare, memory and API compare) only from torch_npu's database name: for a MindSpore one
# the operator tree is empty, and with --base_step it stops ("There is no operator event data for step N").
# The comparisons it does make from a MindSpore database are chosen explicitly (docs/consumers.md).
DB_COMPARISONS = ["--enable_profiling_compare", "--enable_communication_compare", "--enable_kernel_compare"]


def run_compare(base, comparison, exe, step, extra):
    """compare's workbook sheets and log, failing on a logged error or no workbook."""
    with tempfile.TemporaryDirectory() as out:
        args = ["compare", "-d", comparison, "-bp", base, "-o", out, *extra]
        if step is not None:
            args += ["--base_step", str(step), "--comparison_step", str(step)]
        p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT)
        log = p.stdout + p.stderr
        bad = [line for line in log.splitlines() if any(b in line for b in COMPARE_BAD)]
        expect(not bad, f"msprof-analyze {' '.join(args)} logged:\n" + "\n".join(bad) + f"\n\n{log}")
        books = [n for n in os.listdir(out) if re.fullmatch(r"performance_comparison_result_\d+\.xlsx", n)]
        expect(len(books) == 1, f"compare wrote {os.listdir(out)}, not one workbook:\n{log}")
        return xlsx_sheets(os.path.join(out, books[0])), log


def compare(root, exe, step=None):
    base, comparison = by_rank(root)
    rows = kernel_rows(base)
    expect(rows, f"{base}: no kernel_details rows to compare")
    if step is not None:
        rows = [r for r in rows if r.get("Step ID", r.get("Step Id")) == str(step)]
        expect(rows, f"{base}: no kernel of step {step}")
    kernels = sorted({r["Name"] for r in rows if not is_communication(r)})
    collectives = [r for r in rows if is_communication(r)]
    n = sum(1 for r in rows if not is_communication(r))
    db = db_path(base) is not None
    if db:
        # The default comparisons of a whole profile run cleanly from the database too.
        if step is None:
            run_compare(base, comparison, exe, None, [])
        sheets, log = run_compare(base, comparison, exe, step, DB_COMPARISONS)
        # KernelCompare: one row per op type and shape, base side "Kernel" (1) and "Calls" (7).
        types = sorted({r["Type"] for r in rows if not is_communication(r)})
        ks = [r for r in sheets.get("KernelCompare", [])[2:] if len(r) > 7 and r[1]]
        listed = {r[1] for r in ks}
        missing = [t for t in types if t not in listed]
        expect(not missing, f"KernelCompare lacks the base's op types {missing} (it has {sorted(listed)}):\n{log}")
        got = sum(int(r[7]) for r in ks if r[1] in types and r[7])
        expect(got == n, f"KernelCompare counts {got} calls of the base's kernels, the base has {n}:\n{log}")
    else:
        sheets, log = run_compare(base, comparison, exe, step, [])
        ops = sheets.get("OperatorCompare", [])
        # Kernel Details (column 4 on the base side): "name, step, core, ..." per kernel, one per line.
        lines = [line.split(",")[0] for r in ops[2:] if len(r) > 4 for line in r[4].splitlines() if line]
        listed = set(lines)
        missing = [k for k in kernels if k not in listed]
        expect(not missing, f"OperatorCompare lacks the base's kernels {missing} (it has {sorted(listed)}):\n{log}")
        # Every one of the base's kernels (of the step) is under exactly one framework op.
        got = sum(1 for k in lines if k in kernels)
        expect(got == n, f"OperatorCompare lists {got} kernels under framework ops, the base has {n}:\n{log}")
    comm = [r for r in sheets.get("CommunicationCompare", [])[2:] if len(r) > 3 and r[1]]
    expect(not collectives or comm,
           f"CommunicationCompare has no operation, the base has {len(collectives)} collectives:\n{log}")
    what = f"step {step}" if step is not None else "whole profiles"
    how = "database: kernels compared" if db else "text: kernel names under framework ops"
    return f"compare ({what}, {how}): workbook with {len(kernels)} kernel name(s), {len(comm)} communication row(s)"


# advisor's cluster communication analyses (slow link, and the communication checks over
# cluster_communication.json, which cluster writes from communication.json): errors for results without
# communication data (host-only, or before communication.json is written: issue 18 item 1).
ADVISOR_COMMUNICATION_ERRORS = ("cluster_communication.json doesn't exist", "Slow link analysis failed")


def advisor(root, exe):
    ws = results(root)
    expect(ws, f"no *_ascend_ms result under {root}")
    with tempfile.TemporaryDirectory() as out:
        args = ["advisor", "all", "-d", os.path.abspath(root), "-o", out, "-l", "en"]
        p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT)
        log = p.stdout + p.stderr
        bad = [line for line in log.splitlines()
               if "Traceback" in line or "No valid op info" in line
               or ("[ERROR]" in line and not any(c in line for c in ADVISOR_COMMUNICATION_ERRORS))]
        expect(not bad, f"msprof-analyze {' '.join(args)} logged:\n" + "\n".join(bad) + f"\n\n{log}")
        html = [n for n in os.listdir(out) if re.fullmatch(r"mstt_advisor_\d+\.html", n)]
        logdir = os.path.join(out, "log")
        xlsx = [n for n in os.listdir(logdir) if n.endswith(".xlsx")] if os.path.isdir(logdir) else []
        expect(html and xlsx, f"advisor wrote no html report and xlsx: {os.listdir(out)}:\n{log}")
        size = os.path.getsize(os.path.join(out, html[0]))
    return f"advisor: {html[0]} ({size} bytes) and {xlsx[0]} for {len(ws)} result(s)"


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
    # cluster_time_summary joins each collective to the API call that issued it, and msprof-analyze 26.2.0
    # raises KeyError 'rank' when no rank has a memory copy (MEMCPY_ASYNC task): it applies where both are
    # recorded (MSPTI's communication and memcpy records; msprof's timeline slices with connection ids and its
    # MEMCPY_ASYNC slices).
    if all(linked_collectives(db_path(w)) and has_copies(db_path(w)) for w in ws):
        con, _ = mode("cluster_time_summary")
        check_time_summary(table(con, "ClusterTimeSummary"), ws, ranks)

    # computational_op_masking matches each collective's group to parallel_group_info in META_DATA.
    if all(group_info(db_path(w)) for w in ws) and has_all(ws, "select count(*) from COMMUNICATION_OP"):
        con, _ = mode("computational_op_masking")
        check_masking(table(con, "ComputationalOperatorMaskingLinearity"), ws)

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
        # With the framework ops tied to the tasks they launched (PYTORCH_API, CONNECTION_IDS), each idle
        # period gets its reason instead of "Skip free analysis due to no pytorch dispatch time".
        # (aclprof's kernels come from op_summary, which gives no connection id: no task joins CONNECTION_IDS.)
        if has("select count(*) from TASK join CONNECTION_IDS using (connectionId)"):
            skipped = [r for r in free if "no pytorch dispatch time" in (r.get("reason") or "")]
            expect(not skipped, f"free_analysis: idle periods without a dispatch time {skipped} of {free}")
            reasons = sorted({(r.get("reason") or "").split(":")[0] for r in free})
            done.append(f"free_analysis reasons {reasons}")

    if not has("select count(*) from TASK"):
        return f"recipes: {', '.join(done)} read {len(ranks)} database(s) of ranks {ranks}"
    before = {w: os.path.exists(os.path.join(w, "ASCEND_PROFILER_OUTPUT", "api_statistic.csv")) for w in ws}
    mode("export_summary")
    for w in ws:
        api = os.path.join(w, "ASCEND_PROFILER_OUTPUT", "api_statistic.csv")
        # api_statistic.csv takes each API call's time from the tasks it launched (CANN_API ⋈ TASK).
        launched = "select count(*) from CANN_API join TASK on TASK.connectionId = CANN_API.connectionId"
        expect(before[w] or not has(launched) or (os.path.exists(api) and len(csv_rows(api)) > 1),
               f"export_summary: no api_statistic.csv rows in {w}")
    return f"recipes: {', '.join(done)} read {len(ranks)} database(s) of ranks {ranks}"


def has_all(ws, sql):
    return all(sqlite3.connect(db_path(w)).execute(sql).fetchone()[0] for w in ws)


def group_info(path):
    """The database's parallel_group_info (META_DATA), parsed; None without it."""
    row = sqlite3.connect(path).execute("select value from META_DATA where name = 'parallel_group_info'").fetchone()
    return json.loads(row[0]) if row else None


MEMCPY_TASKS = ("select count(*) from TASK join STRING_IDS s on s.id = TASK.taskType "
                "where s.value = 'MEMCPY_ASYNC'")


def check_time_summary(summary, ws, ranks):
    """ClusterTimeSummary: every rank's steps, with the collectives' time (transmit + wait) and the memory
    copies' time where the rank recorded copies."""
    expect(ranks_of(summary, "rank") == ranks, f"cluster_time_summary: ranks of {summary}")
    for w in ws:
        con = sqlite3.connect(db_path(w))
        steps = {int(r[0]) for r in con.execute("select id from STEP_TIME")}
        rows = [r for r in summary if int(r["rank"]) == rank(w)]
        expect({int(r["step"]) for r in rows} == steps, f"cluster_time_summary: rank {rank(w)} steps {steps}: {rows}")
        if con.execute("select count(*) from COMMUNICATION_OP").fetchone()[0]:
            expect(all(float(r["communicationTransmitStageTime"]) + float(r["communicationWaitStageTime"]) > 0
                       for r in rows), f"cluster_time_summary: rank {rank(w)} has no communication time: {rows}")
        if con.execute(MEMCPY_TASKS).fetchone()[0]:
            expect(any(float(r["memory"]) > 0 for r in rows),
                   f"cluster_time_summary: rank {rank(w)} has no memory copy time: {rows}")


def check_masking(rows, ws):
    """ComputationalOperatorMaskingLinearity: each rank's steps for each parallel type of its groups, with the
    collectives' time (the table has no rank column: steps are told apart by their start)."""
    starts = set()
    pg = set()
    for w in ws:
        con = sqlite3.connect(db_path(w))
        starts |= {int(r[0]) for r in con.execute("select startNs from STEP_TIME")}
        pg |= {g["group_name"] for g in group_info(db_path(w)).values()}
    for t in pg:
        got = [r for r in rows if r["parallelType"] == t]
        expect({int(r["stepStartTime"]) for r in got} == starts,
               f"computational_op_masking: {t} steps {sorted(starts)}: {got}")
        expect(all(float(r["totalCommunicationOperatorTime"]) > 0 for r in got),
               f"computational_op_masking: {t} without communication time: {got}")


def linked_collectives(path):
    """Whether the database's collectives name the API calls that issued them (COMMUNICATION_OP ⋈ CANN_API)."""
    con = sqlite3.connect(path)
    return con.execute("select count(*) from COMMUNICATION_OP join CANN_API "
                       "on CANN_API.connectionId = COMMUNICATION_OP.connectionId").fetchone()[0] > 0


def has_copies(path):
    """Whether the database has memory copies (TASK rows of type MEMCPY_ASYNC)."""
    con = sqlite3.connect(path)
    return con.execute("select count(*) from TASK join STRING_IDS s on s.id = TASK.taskType "
                       "where s.value = 'MEMCPY_ASYNC'").fetchone()[0] > 0


def run_unchecked(exe, args):
    """msprof-analyze with args; its log (judged by the caller), failing only on a non-zero exit."""
    p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT)
    log = p.stdout + p.stderr
    expect(p.returncode == 0, f"msprof-analyze {' '.join(args)} exited {p.returncode}:\n{log}")
    return log


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["cluster", "communication", "compare", "advisor", "compare-memory",
                                     "advisor-frequency", "recipes"])
    ap.add_argument("paths", nargs="+", help="compare-memory: BASE COMPARISON; the others: ROOT (or RESULT)")
    ap.add_argument("--step", type=int, help="compare: step N of each result")
    ap.add_argument("--msprof-analyze", default=default_msprof_analyze())
    a = ap.parse_args(argv)
    want = 2 if a.what == "compare-memory" else 1
    if len(a.paths) != want:
        ap.error(f"{a.what} takes {want} path(s)")
    try:
        if a.what in ("cluster", "communication"):
            then = check_communication if a.what == "communication" else None
            print(cluster(a.paths[0], a.msprof_analyze, then))
        elif a.what == "compare":
            print(compare(a.paths[0], a.msprof_analyze, a.step))
        elif a.what == "advisor":
            print(advisor(a.paths[0], a.msprof_analyze))
        elif a.what == "compare-memory":
            print(compare_memory(*a.paths, a.msprof_analyze))
        elif a.what == "recipes":
            print(recipes(a.paths[0], a.msprof_analyze))
        else:
            print(advisor_frequency(a.paths[0], a.msprof_analyze))
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
