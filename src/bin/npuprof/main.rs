//! The `npuprof` command line: trigger a running process, summarise, check or recover results.
//!
//! Exit codes, for scripts: 0 success; 1 the operation failed or the result has problems; 2 usage error;
//! 3 the target process did not answer (`trigger`).
//!
//! Admins run it on result trees other users can write: it never follows a symlink below the directories
//! it is given, never blocks on a FIFO, reads each file up to a cap for its kind, and prints every string
//! from a result with its control characters escaped.

mod check;
mod compare_rules;
mod recover;
mod summary;
mod text;
mod trace_check;
mod trigger;
mod trigger_all;

// Finding and reading results: the library's reader, shared with `recover`.
use npuprof::results::{files, walk};

use std::process::ExitCode;

const USAGE: &str = "\
npuprof — the command line of the npuprof profiling shim

usage:
  npuprof trigger start|stop --pid PID|--all [--dir DIR] [--steps M] [--at-step N] [--timeout S]
  npuprof summary DIR... [--top N]
  npuprof check DIR...
  npuprof recover DIR...
  npuprof COMMAND --help

Exit codes: 0 success, 1 failed or problems found, 2 usage error, 3 no answer from the process.";

const TRIGGER_HELP: &str = "\
npuprof trigger start|stop --pid PID|--all [--dir DIR] [--steps M] [--at-step N] [--max-seconds S]
                           [--lead S] [--timeout S]

Starts or stops a profile in running processes, without restarting them, as their POST /start_profile and
/stop_profile would. The processes must run with NPUPROF_CONTROL=1 (and VLLM_TORCH_PROFILER_DIR); an
unchanged runtime needs only LD_PRELOAD=libnpuprof.so. Only the same user can trigger them.

  --pid PID        one process
  --all            every process that watches DIR: all workers of a job, on every node when DIR is on a
                   shared filesystem. Each answers for itself; the ones that did not are named
  --dir DIR        their VLLM_TORCH_PROFILER_DIR (default: $VLLM_TORCH_PROFILER_DIR)
  --steps M        the profile stops itself after M recorded steps
  --at-step N      each process starts when its own count of npuprof_step calls reaches N. With --all and
                   no --at-step, a common step a little ahead is picked (see --lead): the ranks of a job
                   that step together then record the same steps
  --max-seconds S  the profile stops itself after S seconds, steps or not
  --lead S         --all: how far ahead the common step is aimed, in seconds (default 2)
  --timeout S      how long to wait for answers, in seconds: more than 0, at most 3600 (default 10)

Prints each process's worker directory (with --all: pid, rank and host too). A start that waits for its
step answers `armed` until it fires. Exit 0 done (or armed), 1 a process refused (e.g. already running),
2 usage or not allowed, 3 no answer (not watching: NPUPROF_CONTROL unset, or it has not loaded npuprof).";

const SUMMARY_HELP: &str = "\
npuprof summary DIR... [--top N]

A terminal summary of every *_ascend_ms result under each DIR (or of DIR itself): duration, steps, records
and drops, the top N host ranges by total time, and the top N device ops (op_statistic.csv). Default N: 10.
Symlinks below DIR are not followed; control characters in names print as escapes (\\x1b). Files over
their cap are not read: JSON metadata 4 MiB, CSVs 8 GiB, trace_view.json 16 GiB.";

const CHECK_HELP: &str = "\
npuprof check DIR...

Validates every *_ascend_ms result under each DIR (or DIR itself) against the layout and headers of
docs/output-format.md: file set, JSON validity, profiler_info rank, trace events (ph, pid,
tid, ts/dur as microsecond strings with 3 decimals, properly nested slices per thread), CSV headers and
row widths, no partial *.tmp files, no symlink, FIFO or device inside a result. Prints one line per problem
(file: what is wrong) and a verdict. A directory that cannot be opened or listed is a problem. Symlinks
are never followed; files over their cap are not read (JSON metadata 4 MiB, CSVs 8 GiB, trace_view.json
16 GiB). Exit 0 valid, 1 problems found, 2 usage.";

const RECOVER_HELP: &str = "\
npuprof recover DIR...

Finishes worker directories whose result files are missing: the process died without npuprof_stop
(kill -9, a crash) or while its export ran. The spool in DIR/FRAMEWORK/npuprof.spool becomes the usual
result, marked 'recovered': with the process's stop reason if it stopped, else ending at the last recorded
event with the drop counters as of the last time the process wrote them; the configuration is the one the
process ran with. A torn last frame is skipped and reported. A finished directory (profiler_metadata.json
present), a live profile (its process holds the spool's lock; the pid is named) and a symlinked
ASCEND_PROFILER_OUTPUT are refused (exit 1).";

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
        (Some("trigger"), false) => trigger::run(&args[1..]),
        (Some("summary"), false) => summary(&args[1..]),
        (Some("check"), false) => check(&args[1..]),
        (Some("recover"), false) => recover::run(&args[1..]),
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

/// The longest tables `summary --top` prints (the op table holds that many CSV records in memory).
const MAX_TOP: usize = 1000;

fn summary(args: &[String]) -> u8 {
    let dirs = positional(args);
    if dirs.is_empty() {
        return usage("summary needs DIR");
    }
    let top = match opt(args, "--top").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if n <= MAX_TOP => n,
        _ => return usage(&format!("summary --top N: N is a count, at most {MAX_TOP}")),
    };
    summary::run(&dirs, top)
}

fn check(args: &[String]) -> u8 {
    let dirs = positional(args);
    if dirs.is_empty() {
        return usage("check needs DIR");
    }
    check::run(&dirs)
}
