//! The `npuprof` command line: trigger a running process, summarise, check or recover results.
//!
//! Exit codes, for scripts: 0 success; 1 the operation failed or the result has problems; 2 usage error;
//! 3 the target process did not answer (`trigger`).

use npuprof::export::jsonparse::{stream_array, us_to_ns, Parser, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
npuprof — the command line of the npuprof profiling shim

usage:
  npuprof trigger start|stop --pid PID [--dir DIR] [--timeout S]
  npuprof summary DIR [--top N]
  npuprof check DIR
  npuprof recover DIR...
  npuprof COMMAND --help

Exit codes: 0 success, 1 failed or problems found, 2 usage error, 3 no answer from the process.";

const TRIGGER_HELP: &str = "\
npuprof trigger start|stop --pid PID [--dir DIR] [--timeout S]

Starts or stops a profile in a running process, without restarting it, as its POST /start_profile and
/stop_profile would. The process must run with NPUPROF_CONTROL=1 (and VLLM_TORCH_PROFILER_DIR); an
unchanged runtime needs only LD_PRELOAD=libnpuprof.so. Only the same user can trigger it.

  --pid PID      the process (each tensor-parallel worker is one: trigger each)
  --dir DIR      its VLLM_TORCH_PROFILER_DIR (default: $VLLM_TORCH_PROFILER_DIR)
  --timeout S    how long to wait for its answer (default 10)

Prints the worker directory. Exit 0 done, 1 the process refused (e.g. already running), 2 usage or not
allowed, 3 no answer (not watching: NPUPROF_CONTROL unset, or it has not loaded npuprof).";

const SUMMARY_HELP: &str = "\
npuprof summary DIR [--top N]

A terminal summary of every *_ascend_ms result under DIR (or of DIR itself): duration, steps, records and
drops, the top N host ranges by total time, and the top N device ops (op_statistic.csv). Default N: 10.";

const CHECK_HELP: &str = "\
npuprof check DIR

Validates every *_ascend_ms result under DIR (or DIR itself) against the layout and headers of
shared/reference/output-format.md: file set, JSON validity, profiler_info rank, trace events (ph, pid,
tid, ts/dur as microsecond strings with 3 decimals, properly nested slices per thread), CSV headers and
row widths, no partial *.tmp files. Prints one line per problem (file: what is wrong) and a verdict.
Exit 0 valid, 1 problems found, 2 usage.";

const RECOVER_HELP: &str = "\
npuprof recover DIR...

Finishes worker directories whose process died without npuprof_stop (kill -9, a crash): the spool in
DIR/FRAMEWORK/npuprof.spool becomes the usual result, ending at the last recorded event and marked
'recovered'; a torn last frame is skipped and reported. A finished directory is left alone (exit 1).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    let code = match (args.first().map(String::as_str), help) {
        (Some("trigger"), true) => print(TRIGGER_HELP),
        (Some("summary"), true) => print(SUMMARY_HELP),
        (Some("check"), true) => print(CHECK_HELP),
        (Some("recover"), true) => print(RECOVER_HELP),
        (_, true) => print(USAGE),
        (None, false) => usage("a command is needed"),
        (Some("trigger"), false) => trigger(&args[1..]),
        (Some("summary"), false) => summary(&args[1..]),
        (Some("check"), false) => check(&args[1..]),
        (Some("recover"), false) => recover(&args[1..]),
        (Some(other), false) => usage(&format!("unknown command {other:?}")),
    };
    ExitCode::from(code)
}

fn print(s: &str) -> u8 {
    println!("{s}");
    0
}

fn usage(msg: &str) -> u8 {
    eprintln!("npuprof: {msg}\n\n{USAGE}");
    2
}

/// `--name value` from `args`.
fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn positional(args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i].starts_with("--") {
            i += 2;
        } else {
            out.push(args[i].as_str());
            i += 1;
        }
    }
    out
}

// ---- trigger ----------------------------------------------------------------------------------------

fn trigger(args: &[String]) -> u8 {
    use npuprof::control;
    let pos = positional(args);
    let cmd = match pos.first() {
        Some(&c) if c == "start" || c == "stop" => c,
        _ => return usage("trigger needs start or stop"),
    };
    let Some(pid) = opt(args, "--pid").and_then(|p| p.parse::<u32>().ok()) else {
        return usage("trigger needs --pid PID");
    };
    let root = match opt(args, "--dir")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VLLM_TORCH_PROFILER_DIR").map(PathBuf::from))
    {
        Some(r) => r,
        None => return usage("trigger needs --dir DIR or $VLLM_TORCH_PROFILER_DIR"),
    };
    let timeout = opt(args, "--timeout")
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(10.0);
    // Same user only (the process also checks the command file's owner).
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(m) if m.uid() == uid || uid == 0 => {}
        Ok(_) => {
            eprintln!("npuprof trigger: process {pid} belongs to another user");
            return 2;
        }
        Err(_) => {
            eprintln!("npuprof trigger: no process {pid}");
            return 2;
        }
    }
    let dir = control::dir(&root);
    if !dir.is_dir() {
        eprintln!(
            "npuprof trigger: {} does not exist: process {pid} is not watching (run it with \
             NPUPROF_CONTROL=1 and VLLM_TORCH_PROFILER_DIR={})",
            dir.display(),
            root.display()
        );
        return 3;
    }
    let ack = control::ack_path(&root, pid);
    let _ = std::fs::remove_file(&ack);
    let cmd_file = control::cmd_path(&root, pid);
    if let Err(e) = control::write_new(&cmd_file, cmd.as_bytes()) {
        eprintln!("npuprof trigger: cannot write {}: {e}", cmd_file.display());
        return 1;
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs_f64(timeout) {
        if let Ok(a) = control::read_own(&ack, uid) {
            let _ = std::fs::remove_file(&ack);
            let (status, rest) = a.trim().split_once(' ').unwrap_or((a.trim(), ""));
            return if status == "0" {
                println!(
                    "{}: {rest}",
                    if cmd == "start" { "started" } else { "stopped" }
                );
                0
            } else {
                eprintln!(
                    "npuprof trigger {cmd}: process {pid} answered: {rest} (status {status})"
                );
                1
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&cmd_file);
    eprintln!(
        "npuprof trigger: no answer from process {pid} within {timeout} s (is it running with \
         NPUPROF_CONTROL=1, and has it loaded libnpuprof.so?)"
    );
    3
}

// ---- results ----------------------------------------------------------------------------------------

fn workers(root: &Path) -> Vec<PathBuf> {
    if root
        .to_string_lossy()
        .trim_end_matches('/')
        .ends_with("_ascend_ms")
    {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !e.file_type().is_ok_and(|t| t.is_symlink()) {
                if p.to_string_lossy().ends_with("_ascend_ms") {
                    out.push(p);
                } else if !p.ends_with(".control") {
                    stack.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn read_json(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn parse<'a>(bytes: &'a [u8], p: &Path) -> Result<Value<'a>, String> {
    let mut ps = Parser::new(bytes);
    let v = ps
        .value(0)
        .map_err(|e| format!("{}: not JSON ({e})", p.display()))?;
    Ok(v)
}

fn csv_rows(p: &Path) -> Result<Vec<Vec<String>>, String> {
    let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(npuprof::backend::acl::export::csv_records(&s))
}

/// Calls `f` with every event of a trace_view.json (streamed).
fn events(p: &Path, mut f: impl FnMut(&Value<'_>)) -> Result<(), String> {
    let file = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    stream_array(file, 8 << 20, |ps| {
        let v = ps.value(0)?;
        f(&v);
        Ok(())
    })
    .map_err(|e| format!("{}: {e}", p.display()))
}

fn us(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} us", ns as f64 / 1e3)
    }
}

fn table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                if i == 0 {
                    format!("{c:<w$}", w = w[i])
                } else {
                    format!("{c:>w$}", w = w[i])
                }
            })
            .collect();
        println!("  {}", s.join("  "));
    };
    line(head.iter().map(|h| h.to_string()).collect());
    line(w.iter().map(|n| "-".repeat(*n)).collect());
    for r in rows {
        line(r.clone());
    }
}

fn summary(args: &[String]) -> u8 {
    let pos = positional(args);
    let Some(root) = pos.first() else {
        return usage("summary needs DIR");
    };
    let top = opt(args, "--top")
        .and_then(|n| n.parse().ok())
        .unwrap_or(10usize);
    let ws = workers(Path::new(root));
    if ws.is_empty() {
        eprintln!("npuprof summary: no *_ascend_ms result under {root}");
        return 1;
    }
    let mut failed = false;
    for w in &ws {
        println!("{}", w.display());
        let meta_b = match read_json(&w.join("profiler_metadata.json")) {
            Ok(b) => b,
            Err(e) => {
                println!("  unreadable: {e}");
                failed = true;
                continue;
            }
        };
        let meta = match parse(&meta_b, &w.join("profiler_metadata.json")) {
            Ok(m) => m,
            Err(e) => {
                println!("  {e}");
                failed = true;
                continue;
            }
        };
        let n = |k: &str| meta.get("npuprof").and_then(|m| m.get(k)).cloned();
        let num = |k: &str| n(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let drops = n("dropped_records")
            .map(|d| {
                [
                    "ring_full",
                    "after_thread_exit",
                    "outside_profile_window",
                    "over_disk_cap",
                    "trace_cut",
                    "unpaired",
                    "unknown_kind",
                ]
                .iter()
                .map(|k| d.get(k).and_then(Value::as_u64).unwrap_or(0))
                .sum::<u64>()
            })
            .unwrap_or(0);
        let dur = num("stop_time_ns").saturating_sub(num("start_time_ns"));
        println!(
            "  backend {}, {} long, stopped by {}; {} steps, {} slices, {} records, {} dropped{}",
            meta.get("npuprof")
                .and_then(|m| m.get("backend"))
                .and_then(Value::as_str)
                .unwrap_or("?"),
            us(dur),
            n("stop_reason")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            num("steps"),
            num("slices"),
            num("recorded_records"),
            drops,
            if n("truncated") == Some(Value::Bool(true)) {
                ", TRUNCATED"
            } else {
                ""
            }
        );
        // Host ranges by total time.
        let mut by: HashMap<String, (u64, u64, u64)> = HashMap::new();
        let mut steps: Vec<u64> = Vec::new();
        let r = events(&w.join("ASCEND_PROFILER_OUTPUT/trace_view.json"), |e| {
            if e.get("ph").and_then(Value::as_str) != Some("X")
                || e.get("pid").and_then(Value::as_u64).unwrap_or(0) >= 1 << 30
            {
                return;
            }
            let name = e.get("name").and_then(Value::as_str).unwrap_or("");
            let d = e
                .get("dur")
                .and_then(Value::num_text)
                .and_then(us_to_ns)
                .unwrap_or(0);
            if name.starts_with("ProfilerStep#") {
                steps.push(d);
                return;
            }
            let g = by.entry(name.to_string()).or_insert((0, 0, 0));
            g.0 += 1;
            g.1 += d;
            g.2 = g.2.max(d);
        });
        if let Err(e) = r {
            println!("  trace_view.json: {e}");
            failed = true;
            continue;
        }
        if !steps.is_empty() {
            let total: u64 = steps.iter().sum();
            println!(
                "  steps: {} (mean {}, max {})",
                steps.len(),
                us(total / steps.len() as u64),
                us(*steps.iter().max().unwrap_or(&0))
            );
        }
        let mut rows: Vec<_> = by.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
        if !rows.is_empty() {
            println!("  top host ranges by total time:");
            table(
                &["name", "count", "total", "mean", "max"],
                &rows
                    .iter()
                    .take(top)
                    .map(|(k, (c, t, m))| {
                        vec![k.clone(), c.to_string(), us(*t), us(t / c.max(&1)), us(*m)]
                    })
                    .collect::<Vec<_>>(),
            );
        }
        if let Ok(ops) = csv_rows(&w.join("ASCEND_PROFILER_OUTPUT/op_statistic.csv")) {
            if ops.len() > 1 {
                println!("  top device ops (op_statistic.csv):");
                let col = |n: &str| ops[0].iter().position(|h| h == n);
                let (Some(t), Some(c), Some(n), Some(s)) = (
                    col("OP Type"),
                    col("Core Type"),
                    col("Count"),
                    col("Total Time(us)"),
                ) else {
                    continue;
                };
                table(
                    &["op type", "core", "count", "total (us)"],
                    &ops[1..]
                        .iter()
                        .take(top)
                        .filter(|r| r.len() > t.max(c).max(n).max(s))
                        .map(|r| vec![r[t].clone(), r[c].clone(), r[n].clone(), r[s].clone()])
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    u8::from(failed)
}

// ---- check ------------------------------------------------------------------------------------------

const STEP_TRACE_HEADER: &str = npuprof::export::csv::STEP_TRACE_HEADER;
const OP_STAT_HEADER: &str = npuprof::export::csv::OP_STATISTIC_HEADER;

fn check(args: &[String]) -> u8 {
    let pos = positional(args);
    let Some(root) = pos.first() else {
        return usage("check needs DIR");
    };
    let ws = workers(Path::new(root));
    if ws.is_empty() {
        println!("ERROR {root}: no *_ascend_ms result");
        return 1;
    }
    let mut problems = 0usize;
    for w in &ws {
        let mut errs: Vec<String> = Vec::new();
        check_worker(w, &mut errs);
        if errs.is_empty() {
            println!("ok    {}", w.display());
        }
        for e in &errs {
            println!("ERROR {e}");
        }
        problems += errs.len();
    }
    if problems == 0 {
        println!("CHECK PASS: {} result(s)", ws.len());
        0
    } else {
        println!(
            "CHECK FAIL: {problems} problem(s) in {} result(s)",
            ws.len()
        );
        1
    }
}

fn check_worker(w: &Path, errs: &mut Vec<String>) {
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
    // Partial files.
    let mut stack = vec![w.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".tmp") {
                errs.push(format!(
                    "{}: a partial file (interrupted write)",
                    p.display()
                ));
            }
        }
    }
    // profiler_info_{rank}.json
    let infos: Vec<PathBuf> = std::fs::read_dir(w)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            n.starts_with("profiler_info_") && n.ends_with(".json")
        })
        .collect();
    match infos.as_slice() {
        [] => errs.push(format!("{name}: no profiler_info_{{rank}}.json")),
        [p] => match read_json(p) {
            Err(e) => errs.push(e),
            Ok(b) => match parse(&b, p) {
                Err(e) => errs.push(e),
                Ok(v) => {
                    let file_rank = p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .trim_start_matches("profiler_info_")
                        .trim_end_matches(".json")
                        .parse::<u64>()
                        .ok();
                    let rank = v
                        .get("ms_profiler_info")
                        .and_then(|m| m.get("rank_id"))
                        .and_then(Value::as_u64);
                    if file_rank.is_none() || rank != file_rank {
                        errs.push(format!(
                            "{}: rank_id {rank:?} does not match the file name",
                            p.display()
                        ));
                    }
                }
            },
        },
        _ => errs.push(format!("{name}: more than one profiler_info_*.json")),
    }
    let meta = w.join("profiler_metadata.json");
    if let Err(e) = read_json(&meta).and_then(|b| parse(&b, &meta).map(|_| ())) {
        errs.push(e);
    }
    let out = w.join("ASCEND_PROFILER_OUTPUT");
    check_trace(&out.join("trace_view.json"), errs);
    let header_is =
        |file: &str, want: &dyn Fn(&str) -> bool, what: &str, errs: &mut Vec<String>| {
            let p = out.join(file);
            match csv_rows(&p) {
                Err(e) => errs.push(e),
                Ok(rows) => {
                    let Some(h) = rows.first() else {
                        errs.push(format!("{}: empty (no header)", p.display()));
                        return;
                    };
                    let hs = h.join(",");
                    if !want(&hs) {
                        errs.push(format!(
                            "{}: header is {hs:?}, expected {what}",
                            p.display()
                        ));
                    }
                    for (i, r) in rows.iter().enumerate().skip(1) {
                        if r.len() != h.len() {
                            errs.push(format!(
                                "{}: row {} has {} cells, the header {}",
                                p.display(),
                                i + 1,
                                r.len(),
                                h.len()
                            ));
                            break;
                        }
                    }
                }
            }
        };
    header_is(
        "step_trace_time.csv",
        &|h| h == STEP_TRACE_HEADER,
        "the reference's step_trace_time header",
        errs,
    );
    header_is(
        "kernel_details.csv",
        &|h| h.starts_with("Step ID,") && h.contains("Name") && h.contains("Start Time(us)"),
        "Step ID, ..., Name, ..., Start Time(us), ...",
        errs,
    );
    header_is(
        "op_statistic.csv",
        &|h| h == OP_STAT_HEADER || h.contains("OP Type"),
        "the reference's op_statistic header",
        errs,
    );
}

/// (start ns, end ns, name) of one X event.
type Slice = (u64, u64, String);

fn check_trace(p: &Path, errs: &mut Vec<String>) {
    let mut n = 0u64;
    let mut bad = 0usize;
    // Per (pid, tid): the X slices, checked for nesting afterwards.
    let mut tracks: HashMap<(u64, u64), Vec<Slice>> = HashMap::new();
    let mut report = |errs: &mut Vec<String>, m: String| {
        bad += 1;
        if bad <= 10 {
            errs.push(m);
        }
    };
    let mut local = Vec::new();
    let r = events(p, |e| {
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
            tracks.entry((pid, tid)).or_default().push((s, s + d, name));
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
    if bad > 10 {
        errs.push(format!("{}: ... {} more problems", p.display(), bad - 10));
    }
}

/// Not a microsecond string with exactly 3 decimals.
fn bad_ts(t: Option<&str>) -> bool {
    t.and_then(|t| t.split_once('.'))
        .map_or(true, |(_, frac)| frac.len() != 3)
}

// ---- recover ----------------------------------------------------------------------------------------

fn recover(args: &[String]) -> u8 {
    if args.is_empty() {
        return usage("recover needs DIR...");
    }
    // The export's progress lines ("Parsing: [####  ] 1/3 ...") go to stderr: a progress bar for long
    // recoveries.
    if std::env::var_os("NPUPROF_LOG").is_none() {
        std::env::set_var("NPUPROF_LOG", "info");
    }
    npuprof::session::init_logging();
    let mut failed = false;
    for d in args {
        let dir = Path::new(d);
        match npuprof::recover::recover(dir) {
            Ok(r) => println!(
                "recovered {}: {} records, {} slices{}",
                dir.display(),
                r.records,
                r.slices,
                r.torn_frame_at.map_or(String::new(), |o| format!(
                    ", torn last frame at byte {o} skipped"
                ))
            ),
            Err(e) => {
                eprintln!("npuprof recover: {}: {}", dir.display(), e.msg);
                failed = true;
            }
        }
    }
    u8::from(failed)
}
