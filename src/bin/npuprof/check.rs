//! `npuprof check DIR...`: validates each result against the layout and headers of
//! docs/output-format.md, naming each problem. A result is read through directory handles
//! (see `walk` and `files`): a symlink, FIFO or directory that cannot be opened inside it is a problem of
//! that result, never followed, waited on or skipped.
//!
//! What it checks is what msprof-analyze and Perfetto's JSON importer need (the rules the tests once took
//! from an external checker): one `profiler_info_{rank}.json` per result; the CSV headers,
//! numeric cells and at least one step row; and every trace event (`ph`, integer pid/tid, `ts`, `dur`,
//! `args` an object, named `process_name`/`thread_name`, flows with an id, X slices that nest), the
//! `step_trace_time.csv` Stage rule, and the trace conventions msprof-analyze compare relies on
//! (`compare_rules`). Each result
//! and the final line give the rank, the slices (X and instant events, as Perfetto counts them) and the
//! complete flows (an `s` and an `f` with one id, category and name).

use crate::files::{self, Cap};
use crate::text::say;
use crate::walk::{self, MAX_DEPTH};
use npuprof::dir::{Dir, Kind};
use npuprof::format::jsonparse::{Parser, Value};
use npuprof::layout::{
    self, API_STATISTIC, INFO_PREFIX, INFO_SUFFIX, KERNEL_DETAILS, METADATA, OP_STATISTIC,
    OUTPUT_DIR, STEP_TRACE_TIME, TRACE_PFTRACE, TRACE_VIEW, TRACE_VIEW_GZ,
};
use std::path::Path;

const STEP_TRACE_HEADER: &str = npuprof::export::csv::STEP_TRACE_HEADER;
const OP_STAT_HEADER: &str = npuprof::export::csv::OP_STATISTIC_HEADER;
/// CANN's api_statistic.csv (copied by the aclprof backend when msprof wrote one).
const API_STAT_HEADER: &str =
    "Device_id,Level,API Name,Time(us),Count,Avg(us),Min(us),Max(us),Variance";
/// The kernel_details.csv columns msprof-analyze's advisor and compare read.
const KERNEL_REQUIRED: [&str; 6] = [
    "Name",
    "Type",
    "Accelerator Core",
    "Start Time(us)",
    "Duration(us)",
    "Wait Time(us)",
];
/// torch_npu's memory CSVs (`_memory_view_parser.py`), written with memory profiling (MSPTI).
const MEMORY_RECORD_HEADER: &str =
    "Component,Timestamp(us),Total Allocated(MB),Total Reserved(MB),\
Total Active(MB),Stream Ptr,Device Type";
const OPERATOR_MEMORY_HEADER: &str = "Name,Size(KB),Allocation Time(us),Release Time(us),\
Active Release Time(us),Duration(us),Active Duration(us),Allocation Total Allocated(MB),\
Allocation Total Reserved(MB),Allocation Total Active(MB),Release Total Allocated(MB),\
Release Total Reserved(MB),Release Total Active(MB),Stream Ptr,Device Type";

/// What a checked result holds: its rank and what Perfetto imports from its trace.
#[derive(Default)]
struct Facts {
    rank: Option<u64>,
    slices: u64,
    flows: u64,
    /// The trace files read.
    traces: Vec<&'static str>,
}

pub(crate) fn run(dirs: &[&str]) -> u8 {
    let mut problems = 0usize;
    let (mut slices, mut flows) = (0u64, 0u64);
    // The rank of each result, repeats kept: several profiles of one worker are one rank many times (fine
    // for a results directory; a cluster analysis wants each rank once, which the caller can see here).
    let mut ranks: Vec<u64> = Vec::new();
    let walk = walk::results(dirs, |w, d| {
        let mut errs: Vec<String> = Vec::new();
        let facts = check_worker(w, d, &mut errs);
        ranks.extend(facts.rank);
        slices += facts.slices;
        flows += facts.flows;
        if errs.is_empty() {
            let rank = facts.rank.map_or("?".to_string(), |r| r.to_string());
            say(&format!(
                "ok    {}: rank {rank}, {} slices, {} flows ({})",
                w.display(),
                facts.slices,
                facts.flows,
                facts.traces.join(", ")
            ));
        }
        for e in &errs {
            say(&format!("ERROR {e}"));
        }
        problems += errs.len();
    });
    for e in &walk.problems {
        say(&format!("ERROR {e}"));
    }
    problems += walk.problems.len();
    if walk.results == 0 {
        say(&format!(
            "ERROR {}: no *{} result",
            dirs.join(" "),
            layout::SUFFIX
        ));
        return 1;
    }
    if problems == 0 {
        ranks.sort_unstable();
        say(&format!(
            "CHECK PASS: {} result(s), ranks {ranks:?}, {slices} slices / {flows} flows",
            walk.results
        ));
        0
    } else {
        say(&format!(
            "CHECK FAIL: {problems} problem(s) in {} result(s)",
            walk.results
        ));
        1
    }
}

fn parse<'a>(bytes: &'a [u8], p: &Path) -> Result<Value<'a>, String> {
    Parser::new(bytes)
        .value(0)
        .map_err(|e| format!("{}: not JSON ({e})", p.display()))
}

/// Checks one result, `w` (opened as `d`): its name, what it holds, its profiler_info and metadata, the
/// trace and the CSVs. Returns what it found; each problem goes into `errs`.
fn check_worker(w: &Path, d: &Dir, errs: &mut Vec<String>) -> Facts {
    let mut facts = Facts::default();
    let name = w
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    check_name(&name, errs);
    scan(d, w, Path::new(""), 0, errs);
    facts.rank = check_info(d, w, &name, errs);
    check_metadata(d, w, errs);
    let out_path = w.join(OUTPUT_DIR);
    let out = match d.open_dir(OUTPUT_DIR) {
        Ok(o) => o,
        Err(e) => {
            errs.push(format!(
                "{}: cannot open directory ({e})",
                out_path.display()
            ));
            return facts;
        }
    };
    let t = check_trace(&out, &out_path, errs);
    (facts.slices, facts.flows, facts.traces) = (t.slices, t.flows, t.files);
    check_csvs(&out, &out_path, errs);
    facts
}

/// The result's directory name: `<worker>_<17-digit UTC stamp>_ascend_ms`.
fn check_name(name: &str, errs: &mut Vec<String>) {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() < 3
        || parts[parts.len() - 3].len() != 17
        || !parts[parts.len() - 3].bytes().all(|b| b.is_ascii_digit())
    {
        errs.push(format!(
            "{name}: not named <worker>_<17-digit UTC stamp>{}",
            layout::SUFFIX
        ));
    }
}

/// The result's one profiler_info_{rank}.json; returns its rank when the file is valid.
fn check_info(d: &Dir, w: &Path, name: &str, errs: &mut Vec<String>) -> Option<u64> {
    let mut listing = Vec::new();
    let infos: Vec<String> = walk::list(d, w, &mut listing)
        .into_iter()
        .filter(|n| n.starts_with(INFO_PREFIX) && n.ends_with(INFO_SUFFIX))
        .collect();
    errs.append(&mut listing);
    match infos.as_slice() {
        [] => errs.push(format!("{name}: no {INFO_PREFIX}{{rank}}{INFO_SUFFIX}")),
        [n] => match info_rank(d, w, n) {
            Ok(rank) => return Some(rank),
            Err(e) => errs.push(e),
        },
        _ => errs.push(format!("{name}: more than one {INFO_PREFIX}*{INFO_SUFFIX}")),
    }
    None
}

/// The `ms_profiler_info.rank_id` of profiler_info file `n`, which must be the rank in its name.
fn info_rank(d: &Dir, w: &Path, n: &str) -> Result<u64, String> {
    let p = w.join(n);
    let rank = files::read(d, &p, n, Cap::Json).and_then(|b| {
        let v = parse(&b, &p)?;
        Ok(v.get("ms_profiler_info")
            .and_then(|m| m.get("rank_id"))
            .and_then(Value::as_u64))
    })?;
    let file_rank = n
        .trim_start_matches(INFO_PREFIX)
        .trim_end_matches(INFO_SUFFIX)
        .parse::<u64>()
        .ok();
    match (rank, file_rank) {
        (Some(r), Some(f)) if r == f => Ok(r),
        _ => Err(format!(
            "{}: rank_id {rank:?} does not match the file name",
            p.display()
        )),
    }
}

/// profiler_metadata.json: readable, and JSON.
fn check_metadata(d: &Dir, w: &Path, errs: &mut Vec<String>) {
    let meta = w.join(METADATA);
    if let Err(e) =
        files::read(d, &meta, METADATA, Cap::Json).and_then(|b| parse(&b, &meta).map(|_| ()))
    {
        errs.push(e);
    }
}

/// The CSVs of the output directory `out` (at `out_path`): step_trace_time, kernel_details, op_statistic,
/// and api_statistic when there is one.
fn check_csvs(out: &Dir, out_path: &Path, errs: &mut Vec<String>) {
    check_step_trace(out, out_path, errs);
    check_kernel_details(out, out_path, errs);
    check_csv(
        out,
        out_path,
        OP_STATISTIC,
        &|h| h.join(",") == OP_STAT_HEADER,
        "the reference's op_statistic header",
        &|_, _| None,
        errs,
    );
    // Optional: CANN's, copied when msprof wrote it.
    if matches!(out.stat_at(API_STATISTIC), Ok(Some(_))) {
        check_csv(
            out,
            out_path,
            API_STATISTIC,
            &|h| h.join(",") == API_STAT_HEADER,
            "CANN's api_statistic header",
            &|_, _| None,
            errs,
        );
    }
    // Optional: with memory profiling.
    for (name, header) in [
        (layout::MEMORY_RECORD, MEMORY_RECORD_HEADER),
        (layout::OPERATOR_MEMORY, OPERATOR_MEMORY_HEADER),
    ] {
        if matches!(out.stat_at(name), Ok(Some(_))) {
            check_csv(
                out,
                out_path,
                name,
                &|h| h.join(",") == header,
                "torch_npu's header",
                &|_, _| None,
                errs,
            );
        }
    }
}

/// kernel_details.csv, when there is one (a host-only result has none, as MindSpore writes none at
/// LevelNone): the columns the consumers read, valid rows, and at least one row (msprof-analyze's advisor
/// reports "No valid op info" for a header-only one).
fn check_kernel_details(out: &Dir, out_path: &Path, errs: &mut Vec<String>) {
    if matches!(out.stat_at(KERNEL_DETAILS), Ok(None)) {
        return;
    }
    let rows = check_csv(
        out,
        out_path,
        KERNEL_DETAILS,
        &|h| {
            h.first().is_some_and(|c| c == "Step ID")
                && KERNEL_REQUIRED.iter().all(|c| h.iter().any(|x| x == c))
                && h.iter().collect::<std::collections::HashSet<_>>().len() == h.len()
        },
        "Step ID first, each of Name, Type, Accelerator Core, Start Time(us), Duration(us), Wait Time(us), \
         no column twice",
        &kernel_row,
        errs,
    );
    if rows == Some(0) {
        errs.push(format!(
            "{}: a header and no rows (write none without device tasks: msprof-analyze's advisor reports \
             \"No valid op info\" for it)",
            out_path.join(KERNEL_DETAILS).display()
        ));
    }
}

/// step_trace_time.csv: the reference's header, valid rows, and at least one of them.
fn check_step_trace(out: &Dir, out_path: &Path, errs: &mut Vec<String>) {
    let rows = check_csv(
        out,
        out_path,
        STEP_TRACE_TIME,
        &|h| h.join(",") == STEP_TRACE_HEADER,
        "the reference's step_trace_time header",
        &step_row,
        errs,
    );
    if rows == Some(0) {
        errs.push(format!(
            "{}: no step rows (msprof-analyze's cluster_step_trace_time.csv would be empty)",
            out_path.join(STEP_TRACE_TIME).display()
        ));
    }
}

/// A problem in one data row (given the header and the row, of equal widths), if any.
type RowCheck = dyn Fn(&[String], &[String]) -> Option<String>;

/// A step_trace_time.csv row: Device_id an integer, Step an integer or empty, every time a number.
fn step_row(_: &[String], r: &[String]) -> Option<String> {
    let int = |c: &str| {
        let c = c.strip_prefix('-').unwrap_or(c);
        !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())
    };
    if !int(&r[0]) {
        return Some(format!("Device_id {:?} is not an integer", r[0]));
    }
    if !r[1].is_empty() && !r[1].bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("Step {:?} is neither an integer nor empty", r[1]));
    }
    if let Some(c) = r[2..]
        .iter()
        .find(|c| c.parse::<f64>().map_or(true, |v| !v.is_finite()))
    {
        return Some(format!("{c:?} is not a number (us)"));
    }
    stage_rule(r)
}

/// msprof-analyze's rule for a step_trace_time.csv row, `Stage = Free + Computing + Communication(Not
/// Overlapped) - Bubble` (it computes Stage so from msprof and database input, and its cluster and advisor
/// analyses read the columns as such), to the 3 decimals written.
fn stage_rule(r: &[String]) -> Option<String> {
    // Device_id,Step,Computing,Communication(Not Overlapped),Overlapped,Communication,Free,Stage,Bubble,...
    let v = |i: usize| r.get(i).and_then(|c| c.parse::<f64>().ok()).unwrap_or(0.0);
    let (computing, not_overlapped, free, stage, bubble) = (v(2), v(3), v(6), v(7), v(8));
    let want = free + computing + not_overlapped - bubble;
    ((stage - want).abs() > 0.0015 * (1.0 + stage.abs() / 1e6)).then(|| {
        format!(
            "Stage {stage:.3} is not Free {free:.3} + Computing {computing:.3} + Communication(Not Overlapped) \
             {not_overlapped:.3} - Bubble {bubble:.3} = {want:.3} (msprof-analyze's rule)"
        )
    })
}

/// A kernel_details.csv row: a numeric start (torch_npu's trailing TAB allowed) and a duration >= 0.
fn kernel_row(h: &[String], r: &[String]) -> Option<String> {
    let cell = |name: &str| {
        h.iter()
            .position(|c| c == name)
            .map_or("", |i| r[i].as_str())
    };
    let start = cell("Start Time(us)");
    if start.trim().parse::<f64>().map_or(true, |v| !v.is_finite()) {
        return Some(format!("Start Time(us) {start:?} is not a number"));
    }
    let dur = cell("Duration(us)");
    match dur.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => None,
        _ => Some(format!("Duration(us) {dur:?} is not a number >= 0")),
    }
}

/// The files `check_worker` opens itself (and reports when they are not regular files), by their path in
/// the result.
fn read_by_check(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    match s.split_once('/') {
        None => s == METADATA || (s.starts_with(INFO_PREFIX) && s.ends_with(INFO_SUFFIX)),
        Some((OUTPUT_DIR, f)) => matches!(
            f,
            TRACE_VIEW
                | TRACE_VIEW_GZ
                | TRACE_PFTRACE
                | STEP_TRACE_TIME
                | KERNEL_DETAILS
                | OP_STATISTIC
                | API_STATISTIC
        ),
        Some(_) => false,
    }
}

/// Everything inside a result: partial `*.tmp` files, symlinks (a result holds none: never followed),
/// FIFOs, sockets and devices, and directories that cannot be opened, are each a problem. `rel` is `path`
/// inside the result.
fn scan(d: &Dir, path: &Path, rel: &Path, depth: usize, errs: &mut Vec<String>) {
    for name in walk::list(d, path, errs) {
        let p = path.join(&name);
        let rel = rel.join(&name);
        let kind = walk::kind(d, path, &name, errs);
        if kind != Some(Kind::Dir) && read_by_check(&rel) {
            continue;
        }
        match kind {
            Some(Kind::Dir) if depth >= MAX_DEPTH => errs.push(format!(
                "{}: more than {MAX_DEPTH} levels down: not read",
                p.display()
            )),
            Some(Kind::Dir) => match d.open_dir(&name) {
                Ok(sub) => scan(&sub, &p, &rel, depth + 1, errs),
                Err(e) => errs.push(format!("{}: cannot open directory ({e})", p.display())),
            },
            Some(Kind::Symlink) => errs.push(format!(
                "{}: a symlink (a result holds none; never followed)",
                p.display()
            )),
            Some(Kind::Other) => errs.push(format!(
                "{}: not a regular file (a FIFO, socket or device)",
                p.display()
            )),
            Some(Kind::File) if name.ends_with(".tmp") => errs.push(format!(
                "{}: a partial file (interrupted write)",
                p.display()
            )),
            Some(Kind::File) | None => {}
        }
    }
}

/// The header, the row widths and (with a header as wanted) the cells of one CSV, stopping at the first bad
/// row. Returns the number of data rows when the file was read to its end.
fn check_csv(
    out: &Dir,
    out_path: &Path,
    file: &str,
    want: &dyn Fn(&[String]) -> bool,
    what: &str,
    cells: &RowCheck,
    errs: &mut Vec<String>,
) -> Option<usize> {
    let p = out_path.join(file);
    let mut head: Option<(Vec<String>, bool)> = None;
    let mut row = 0usize;
    let mut complete = true;
    let r = files::csv_each(out, &p, file, |r| {
        row += 1;
        let Some((h, good)) = &head else {
            let good = want(&r);
            if !good {
                errs.push(format!(
                    "{}: header is {:?}, expected {what}",
                    p.display(),
                    r.join(",")
                ));
            }
            head = Some((r, good));
            return true;
        };
        if r.len() != h.len() {
            errs.push(format!(
                "{}: row {row} has {} cells, the header {}",
                p.display(),
                r.len(),
                h.len()
            ));
            complete = false;
            return false;
        }
        if let Some(m) = cells(h, &r).filter(|_| *good) {
            errs.push(format!("{}: row {row}: {m}", p.display()));
            complete = false;
            return false;
        }
        true
    });
    match r {
        Err(e) => errs.push(e),
        Ok(()) if head.is_none() => errs.push(format!("{}: empty (no header)", p.display())),
        Ok(()) if complete => return Some(row - 1),
        Ok(()) => {}
    }
    None
}

use crate::trace_check::check_trace;
