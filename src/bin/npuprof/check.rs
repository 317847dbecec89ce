//! `npuprof check DIR...`: validates each result against the layout and headers of
//! docs/output-format.md, naming each problem. A result is read through directory handles
//! (see `walk` and `files`): a symlink, FIFO or directory that cannot be opened inside it is a problem of
//! that result, never followed, waited on or skipped.

use crate::files::{self, Cap};
use crate::text::say;
use crate::walk::{self, MAX_DEPTH};
use npuprof::dir::{Dir, Kind};
use npuprof::export::jsonparse::{us_to_ns, Parser, Value};
use npuprof::export::layout::OUTPUT_DIR;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const STEP_TRACE_HEADER: &str = npuprof::export::csv::STEP_TRACE_HEADER;
const OP_STAT_HEADER: &str = npuprof::export::csv::OP_STATISTIC_HEADER;
/// Problems listed per trace before "... N more".
const TRACE_PROBLEMS_SHOWN: usize = 10;

pub fn run(dirs: &[&str]) -> u8 {
    let mut problems = 0usize;
    let walk = walk::results(dirs, |w, d| {
        let mut errs: Vec<String> = Vec::new();
        check_worker(w, d, &mut errs);
        if errs.is_empty() {
            say(&format!("ok    {}", w.display()));
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
        say(&format!("ERROR {}: no *_ascend_ms result", dirs.join(" ")));
        return 1;
    }
    if problems == 0 {
        say(&format!("CHECK PASS: {} result(s)", walk.results));
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

fn check_worker(w: &Path, d: &Dir, errs: &mut Vec<String>) {
    let name = w
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() < 3
        || parts[parts.len() - 3].len() != 17
        || !parts[parts.len() - 3].bytes().all(|b| b.is_ascii_digit())
    {
        errs.push(format!(
            "{name}: not named <worker>_<17-digit UTC stamp>_ascend_ms"
        ));
    }
    scan(d, w, Path::new(""), 0, errs);
    // profiler_info_{rank}.json
    let mut listing = Vec::new();
    let infos: Vec<String> = walk::list(d, w, &mut listing)
        .into_iter()
        .filter(|n| n.starts_with("profiler_info_") && n.ends_with(".json"))
        .collect();
    errs.append(&mut listing);
    match infos.as_slice() {
        [] => errs.push(format!("{name}: no profiler_info_{{rank}}.json")),
        [n] => {
            let p = w.join(n);
            match files::read(d, &p, n, Cap::Json).and_then(|b| {
                let v = parse(&b, &p)?;
                Ok(v.get("ms_profiler_info")
                    .and_then(|m| m.get("rank_id"))
                    .and_then(Value::as_u64))
            }) {
                Err(e) => errs.push(e),
                Ok(rank) => {
                    let file_rank = n
                        .trim_start_matches("profiler_info_")
                        .trim_end_matches(".json")
                        .parse::<u64>()
                        .ok();
                    if file_rank.is_none() || rank != file_rank {
                        errs.push(format!(
                            "{}: rank_id {rank:?} does not match the file name",
                            p.display()
                        ));
                    }
                }
            }
        }
        _ => errs.push(format!("{name}: more than one profiler_info_*.json")),
    }
    let meta = w.join("profiler_metadata.json");
    if let Err(e) = files::read(d, &meta, "profiler_metadata.json", Cap::Json)
        .and_then(|b| parse(&b, &meta).map(|_| ()))
    {
        errs.push(e);
    }
    let out_path = w.join(OUTPUT_DIR);
    let out = match d.open_dir(OUTPUT_DIR) {
        Ok(o) => o,
        Err(e) => {
            errs.push(format!(
                "{}: cannot open directory ({e})",
                out_path.display()
            ));
            return;
        }
    };
    check_trace(&out, &out_path, errs);
    check_csv(
        &out,
        &out_path,
        "step_trace_time.csv",
        &|h| h == STEP_TRACE_HEADER,
        "the reference's step_trace_time header",
        errs,
    );
    check_csv(
        &out,
        &out_path,
        "kernel_details.csv",
        &|h| h.starts_with("Step ID,") && h.contains("Name") && h.contains("Start Time(us)"),
        "Step ID, ..., Name, ..., Start Time(us), ...",
        errs,
    );
    check_csv(
        &out,
        &out_path,
        "op_statistic.csv",
        &|h| h == OP_STAT_HEADER || h.contains("OP Type"),
        "the reference's op_statistic header",
        errs,
    );
}

/// The files `check_worker` opens itself (and reports when they are not regular files), by their path in
/// the result.
fn read_by_check(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    match s.split_once('/') {
        None => {
            s == "profiler_metadata.json"
                || (s.starts_with("profiler_info_") && s.ends_with(".json"))
        }
        Some((OUTPUT_DIR, f)) => matches!(
            f,
            "trace_view.json" | "step_trace_time.csv" | "kernel_details.csv" | "op_statistic.csv"
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

/// The header and row widths of one CSV.
fn check_csv(
    out: &Dir,
    out_path: &Path,
    file: &str,
    want: &dyn Fn(&str) -> bool,
    what: &str,
    errs: &mut Vec<String>,
) {
    let p = out_path.join(file);
    let mut head: Option<usize> = None;
    let mut row = 0usize;
    let r = files::csv_each(out, &p, file, |r| {
        row += 1;
        let Some(h) = head else {
            let hs = r.join(",");
            if !want(&hs) {
                errs.push(format!(
                    "{}: header is {hs:?}, expected {what}",
                    p.display()
                ));
            }
            head = Some(r.len());
            return true;
        };
        if r.len() != h {
            errs.push(format!(
                "{}: row {row} has {} cells, the header {h}",
                p.display(),
                r.len()
            ));
            return false;
        }
        true
    });
    match r {
        Err(e) => errs.push(e),
        Ok(()) if head.is_none() => errs.push(format!("{}: empty (no header)", p.display())),
        Ok(()) => {}
    }
}

/// (start ns, end ns, name) of one X event.
type Slice = (u64, u64, String);

fn check_trace(out: &Dir, out_path: &Path, errs: &mut Vec<String>) {
    let p: PathBuf = out_path.join("trace_view.json");
    let mut n = 0u64;
    let mut bad = 0usize;
    // Per (pid, tid): the X slices, checked for nesting afterwards.
    let mut tracks: HashMap<(u64, u64), Vec<Slice>> = HashMap::new();
    let mut report = |errs: &mut Vec<String>, m: String| {
        bad += 1;
        if bad <= TRACE_PROBLEMS_SHOWN {
            errs.push(m);
        }
    };
    let file = match files::open(out, &p, "trace_view.json", Cap::Trace) {
        Ok((f, _)) => f,
        Err(e) => {
            errs.push(e);
            return;
        }
    };
    let mut local = Vec::new();
    let r = files::events(file, &p, |e| {
        n += 1;
        let ph = e.get("ph").and_then(Value::as_str).unwrap_or("");
        let (Some(pid), Some(tid)) = (
            e.get("pid").and_then(Value::as_u64),
            e.get("tid").and_then(Value::as_u64),
        ) else {
            local.push(format!("{}: event {n} has no integer pid/tid", p.display()));
            return;
        };
        if ph == "M" {
            return;
        }
        let ts = e.get("ts").and_then(Value::as_str);
        let ts_ns = ts.and_then(us_to_ns);
        if bad_ts(ts) || ts_ns.is_none() {
            local.push(format!(
                "{}: event {n} ({ph}) has no ts string with 3 decimals",
                p.display()
            ));
            return;
        }
        if ph == "X" {
            let d = e.get("dur").and_then(Value::num_text).and_then(us_to_ns);
            let Some(d) = d else {
                local.push(format!("{}: slice {n} has no dur", p.display()));
                return;
            };
            let name = e
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let s = ts_ns.unwrap_or(0);
            tracks
                .entry((pid, tid))
                .or_default()
                .push((s, s.saturating_add(d), name));
        }
    });
    for m in local {
        report(errs, m);
    }
    if let Err(e) = r {
        errs.push(format!("{e} (not a JSON array of events)"));
        return;
    }
    for ((pid, tid), mut v) in tracks {
        v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut stack: Vec<Slice> = Vec::new();
        for s in v {
            while stack.last().is_some_and(|t| t.1 <= s.0) {
                stack.pop();
            }
            if let Some(t) = stack.last() {
                if s.1 > t.1 {
                    report(
                        errs,
                        format!(
                            "{}: on pid {pid} tid {tid}, {:?} overlaps {:?} without nesting (Perfetto would \
                             truncate it)",
                            p.display(),
                            s.2,
                            t.2
                        ),
                    );
                    continue;
                }
            }
            stack.push(s);
        }
    }
    if bad > TRACE_PROBLEMS_SHOWN {
        errs.push(format!(
            "{}: ... {} more problems",
            p.display(),
            bad - TRACE_PROBLEMS_SHOWN
        ));
    }
}

/// Not a microsecond string with exactly 3 decimals.
fn bad_ts(t: Option<&str>) -> bool {
    t.and_then(|t| t.split_once('.'))
        .map_or(true, |(_, frac)| frac.len() != 3)
}
