//! `npuprof summary DIR...`: a terminal summary of each result. Every sum saturates (a crafted file's
//! values near u64::MAX must not wrap or panic), and every string from a result is printed escaped.

use crate::files::{self, Cap};
use crate::text::{say, table, us, warn};
use npuprof::dir::Dir;
use npuprof::format::jsonparse::{us_to_ns, Parser, Value};
use npuprof::layout::{
    METADATA, OP_STATISTIC, OUTPUT_DIR, SUFFIX, TRACE_PFTRACE, TRACE_VIEW, TRACE_VIEW_GZ,
};
use std::collections::HashMap;
use std::path::Path;

const DROP_REASONS: [&str; 7] = [
    "ring_full",
    "after_thread_exit",
    "outside_profile_window",
    "over_disk_cap",
    "trace_cut",
    "unpaired",
    "unknown_kind",
];

pub(crate) fn run(dirs: &[&str], top: usize) -> u8 {
    let mut failed = false;
    let walk = crate::walk::results(dirs, |p, d| failed |= !one(p, d, top));
    for e in &walk.problems {
        say(&format!("ERROR {e}"));
    }
    if walk.results == 0 {
        warn(&format!(
            "npuprof summary: no *{SUFFIX} result under {}",
            dirs.join(" ")
        ));
        return 1;
    }
    u8::from(failed || !walk.problems.is_empty())
}

/// Summarises one result; false when part of it could not be read.
fn one(w: &Path, d: &Dir, top: usize) -> bool {
    say(&w.display().to_string());
    let meta_path = w.join(METADATA);
    let meta_b = match files::read(d, &meta_path, METADATA, Cap::Json) {
        Ok(b) => b,
        Err(e) => {
            say(&format!("  unreadable: {e}"));
            return false;
        }
    };
    let meta = match Parser::new(&meta_b).value(0) {
        Ok(m) => m,
        Err(e) => {
            say(&format!("  {}: not JSON ({e})", meta_path.display()));
            return false;
        }
    };
    say_headline(&meta);
    let out_path = w.join(OUTPUT_DIR);
    let out = match d.open_dir(OUTPUT_DIR) {
        Ok(o) => o,
        Err(e) => {
            say(&format!(
                "  {}: cannot open directory ({e})",
                out_path.display()
            ));
            return false;
        }
    };
    let present = |n: &str| out.stat_at(n).ok().flatten().is_some();
    match [TRACE_VIEW, TRACE_VIEW_GZ].into_iter().find(|n| present(n)) {
        Some(name) => match HostTimes::read(&out, &out_path.join(name), name) {
            Ok(host) => host.print(top),
            Err(e) => {
                say(&format!("  {e}"));
                return false;
            }
        },
        None if present(TRACE_PFTRACE) => say(&format!(
            "  host ranges: not summed (only {TRACE_PFTRACE}; the summary reads the JSON trace, \
             NPUPROF_TRACE_FORMAT=json or both)"
        )),
        None => {
            say(&format!("  {}: no trace", out_path.display()));
            return false;
        }
    }
    ops(&out, &out_path.join(OP_STATISTIC), top);
    true
}

/// The result's line from its metadata: backend, duration, stop reason, steps, slices, records, drops.
fn say_headline(meta: &Value<'_>) {
    let n = |k: &str| meta.get("npuprof").and_then(|m| m.get(k)).cloned();
    let num = |k: &str| n(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let text = |k: &str| n(k).and_then(|v| v.as_str().map(str::to_string));
    let drops = n("dropped_records").map_or(0, |d| {
        DROP_REASONS
            .iter()
            .map(|k| d.get(k).and_then(Value::as_u64).unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    });
    let dur = num("stop_time_ns").saturating_sub(num("start_time_ns"));
    say(&format!(
        "  backend {}, {} long, stopped by {}; {} steps, {} slices, {} records, {} dropped{}",
        text("backend").unwrap_or_else(|| "?".into()),
        us(dur),
        text("stop_reason").unwrap_or_default(),
        num("steps"),
        num("slices"),
        num("recorded_records"),
        drops,
        if n("truncated") == Some(Value::Bool(true)) {
            ", TRUNCATED"
        } else {
            ""
        }
    ));
}

/// The host slices of a trace: the steps, and the other ranges by name.
#[derive(Default)]
struct HostTimes {
    /// Host ranges by total time: (count, total ns, max ns).
    by: HashMap<String, (u64, u64, u64)>,
    steps: u64,
    steps_total: u64,
    steps_max: u64,
}

impl HostTimes {
    /// Adds up the host slices of the trace at `trace` in `out`.
    fn read(out: &Dir, trace: &Path, name: &str) -> Result<Self, String> {
        let mut host = Self::default();
        files::open(out, trace, name, Cap::Trace).and_then(|(f, _)| {
            files::events(files::trace_reader(f, name.ends_with(".gz")), trace, |e| {
                host.add(e)
            })
        })?;
        Ok(host)
    }

    /// Counts event `e` when it is an X slice on a host pid (device lanes' pids start at 1 << 30).
    fn add(&mut self, e: &Value<'_>) {
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
            self.steps += 1;
            self.steps_total = self.steps_total.saturating_add(d);
            self.steps_max = self.steps_max.max(d);
            return;
        }
        let g = self.by.entry(name.to_string()).or_insert((0, 0, 0));
        g.0 = g.0.saturating_add(1);
        g.1 = g.1.saturating_add(d);
        g.2 = g.2.max(d);
    }

    /// Prints the steps' line (when there are steps) and the `top` host ranges by total time.
    fn print(self, top: usize) {
        if let Some(mean) = self.steps_total.checked_div(self.steps) {
            say(&format!(
                "  steps: {} (mean {}, max {})",
                self.steps,
                us(mean),
                us(self.steps_max)
            ));
        }
        let mut rows: Vec<_> = self.by.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
        if !rows.is_empty() {
            say("  top host ranges by total time:");
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
    }
}

/// The top `top` rows of op_statistic.csv, when it is there and readable.
fn ops(out: &Dir, path: &Path, top: usize) {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let r = files::csv_each(out, path, OP_STATISTIC, |r| {
        rows.push(r);
        rows.len() <= top
    });
    if r.is_err() || rows.len() < 2 {
        return;
    }
    let col = |n: &str| rows[0].iter().position(|h| h == n);
    let (Some(t), Some(c), Some(n), Some(s)) = (
        col("OP Type"),
        col("Core Type"),
        col("Count"),
        col("Total Time(us)"),
    ) else {
        return;
    };
    say(&format!("  top device ops ({OP_STATISTIC}):"));
    table(
        &["op type", "core", "count", "total (us)"],
        &rows[1..]
            .iter()
            .filter(|r| r.len() > t.max(c).max(n).max(s))
            .map(|r| vec![r[t].clone(), r[c].clone(), r[n].clone(), r[s].clone()])
            .collect::<Vec<_>>(),
    );
}
