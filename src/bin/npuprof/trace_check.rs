//! `npuprof check`'s trace_view.json checks: Perfetto's import rules (slices, flows, nesting, metadata) and
//! the conventions msprof-analyze compare relies on (pure move out of check.rs, one concept per file).

use crate::compare_rules::CompareRules;
use crate::files::{self, Cap};
use npuprof::dir::Dir;
use npuprof::format::jsonparse::{us_to_ns, Value};
use npuprof::layout::{TRACE_PFTRACE, TRACE_VIEW, TRACE_VIEW_GZ};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Problems listed per trace before "... N more".
const TRACE_PROBLEMS_SHOWN: usize = 10;

/// (start ns, end ns, name) of one X event.
type Slice = (u64, u64, String);

/// A flow's identity (id, category, name) -> which of its ends were seen (start, finish).
type Flows = HashMap<(String, String, String), (bool, bool)>;

/// What the trace files of a result hold, as Perfetto imports them.
#[derive(Default)]
pub(crate) struct TraceFacts {
    pub(crate) slices: u64,
    pub(crate) flows: u64,
    /// The trace files checked.
    pub(crate) files: Vec<&'static str>,
}

/// Checks the result's trace files (NPUPROF_TRACE_FORMAT / NPUPROF_TRACE_GZIP): `trace_view.json` or
/// `trace_view.json.gz` (the JSON checks below), and `trace_view.pftrace` (read as Perfetto's trace
/// processor reads it; with a JSON beside it, it must hold as many slices and flows). At least one is there.
pub(crate) fn check_trace(out: &Dir, out_path: &Path, errs: &mut Vec<String>) -> TraceFacts {
    let present = |n: &str| out.stat_at(n).ok().flatten().is_some();
    let mut facts = TraceFacts::default();
    let json = [TRACE_VIEW, TRACE_VIEW_GZ].into_iter().find(|n| present(n));
    if let Some(n) = json {
        (facts.slices, facts.flows) = check_json(out, out_path, n, errs);
        facts.files.push(n);
    }
    if present(TRACE_PFTRACE) {
        let (s, f) = check_pf(out, out_path, errs);
        if json.is_some() && (s, f) != (facts.slices, facts.flows) {
            errs.push(format!(
                "{}: {s} slices / {f} flows, but {} has {} / {}",
                out_path.join(TRACE_PFTRACE).display(),
                json.unwrap_or_default(),
                facts.slices,
                facts.flows
            ));
        }
        (facts.slices, facts.flows) = (s, f);
        facts.files.push(TRACE_PFTRACE);
    }
    if facts.files.is_empty() {
        errs.push(format!(
            "{}: no trace ({TRACE_VIEW}, {TRACE_VIEW_GZ} or {TRACE_PFTRACE})",
            out_path.display()
        ));
    }
    facts
}

/// `trace_view.pftrace`: (slices and instants, flows bound at both ends).
fn check_pf(out: &Dir, out_path: &Path, errs: &mut Vec<String>) -> (u64, u64) {
    let p = out_path.join(TRACE_PFTRACE);
    let file = match files::open(out, &p, TRACE_PFTRACE, Cap::Trace) {
        Ok((f, _)) => f,
        Err(e) => {
            errs.push(e);
            return (0, 0);
        }
    };
    match npuprof::export::trace::check_pftrace(
        file,
        files::TRACE_EVENTS_CHECKED,
        TRACE_PROBLEMS_SHOWN,
    ) {
        Ok(f) => (f.slices, f.complete_flows),
        Err(ms) => {
            errs.extend(ms.into_iter().map(|m| format!("{}: {m}", p.display())));
            (0, 0)
        }
    }
}

/// trace_view.json (or its gzip form `name`); returns (slices, complete flows) as Perfetto's JSON importer
/// counts them.
fn check_json(out: &Dir, out_path: &Path, name: &str, errs: &mut Vec<String>) -> (u64, u64) {
    let p: PathBuf = out_path.join(name);
    let file = match files::open(out, &p, name, Cap::Trace) {
        Ok((f, _)) => files::trace_reader(f, name.ends_with(".gz")),
        Err(e) => {
            errs.push(e);
            return (0, 0);
        }
    };
    let mut tally = TraceTally::default();
    let mut compare = CompareRules::default();
    let mut shown = Shown::default();
    let mut n = 0u64;
    let r = files::events(file, &p, |e| {
        n += 1;
        compare.event(e);
        if let Err(m) = tally.event(e, n) {
            shown.report(errs, format!("{}: {m}", p.display()));
        }
    });
    if let Err(e) = r {
        errs.push(format!("{e} (not a JSON array of events)"));
        return (0, 0);
    }
    for m in compare.problems() {
        shown.report(errs, format!("{}: {m}", p.display()));
    }
    let counts = (tally.slices(), tally.complete_flows());
    check_nesting(tally.tracks, &p, &mut shown, errs);
    shown.rest(&p, errs);
    counts
}

/// Counts one trace's problems and lists the first [`TRACE_PROBLEMS_SHOWN`] of them.
#[derive(Default)]
struct Shown {
    bad: usize,
}

impl Shown {
    /// Counts problem `m`, listing it while fewer than [`TRACE_PROBLEMS_SHOWN`] were listed.
    fn report(&mut self, errs: &mut Vec<String>, m: String) {
        self.bad += 1;
        if self.bad <= TRACE_PROBLEMS_SHOWN {
            errs.push(m);
        }
    }

    /// The "... N more problems" line, when some problems of trace `p` were not listed.
    fn rest(&self, p: &Path, errs: &mut Vec<String>) {
        if self.bad > TRACE_PROBLEMS_SHOWN {
            errs.push(format!(
                "{}: ... {} more problems",
                p.display(),
                self.bad - TRACE_PROBLEMS_SHOWN
            ));
        }
    }
}

/// What the events of a trace add up to: the slices and flows Perfetto's JSON importer would make.
#[derive(Default)]
struct TraceTally {
    /// Per (pid, tid): the X slices, checked for nesting afterwards.
    tracks: HashMap<(u64, u64), Vec<Slice>>,
    flows: Flows,
    /// Instant events, and B/E pairs (an unterminated B is an open slice); X slices are in `tracks`.
    other_slices: u64,
    open_b: HashMap<(u64, u64), u64>,
}

impl TraceTally {
    /// Checks the `n`th event and counts what it adds; the error names its problem (without the path).
    fn event(&mut self, e: &Value<'_>, n: u64) -> Result<(), String> {
        let ph = e.get("ph").and_then(Value::as_str).unwrap_or("");
        if ph.is_empty() {
            return Err(format!("event {n} has no \"ph\""));
        }
        if e.get("args").is_some_and(|a| !matches!(a, Value::Obj(_))) {
            return Err(format!("event {n} ({ph}): args is not an object"));
        }
        let (Some(pid), Some(tid)) = (
            e.get("pid").and_then(Value::as_u64),
            e.get("tid").and_then(Value::as_u64),
        ) else {
            return Err(format!("event {n} has no integer pid/tid"));
        };
        if ph == "M" {
            return metadata_problem(e).map_or(Ok(()), |m| Err(format!("event {n}: {m}")));
        }
        let ts = e.get("ts").and_then(Value::as_str);
        let Some(ts_ns) = ts.and_then(us_to_ns).filter(|_| !bad_ts(ts)) else {
            return Err(format!("event {n} ({ph}) has no ts string with 3 decimals"));
        };
        match ph {
            "X" => self.slice(e, n, (pid, tid), ts_ns)?,
            "i" | "I" | "R" => self.other_slices += 1,
            "B" => *self.open_b.entry((pid, tid)).or_default() += 1,
            "E" => self.end(pid, tid),
            "s" | "f" => self.flow_end(e, n, ph == "s")?,
            _ => {}
        }
        Ok(())
    }

    /// An X event starting at `start` ns: kept on its track for the nesting check.
    fn slice(
        &mut self,
        e: &Value<'_>,
        n: u64,
        track: (u64, u64),
        start: u64,
    ) -> Result<(), String> {
        let d = e.get("dur").and_then(Value::num_text).and_then(us_to_ns);
        let Some(d) = d else {
            return Err(format!("slice {n} has no dur"));
        };
        let name = e
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.tracks
            .entry(track)
            .or_default()
            .push((start, start.saturating_add(d), name));
        Ok(())
    }

    /// An E event: closes the last open B of its thread, making one slice (an E without a B makes none).
    fn end(&mut self, pid: u64, tid: u64) {
        match self.open_b.get_mut(&(pid, tid)) {
            Some(k) if *k > 0 => {
                *k -= 1;
                self.other_slices += 1;
            }
            _ => {}
        }
    }

    /// An `s` (`start`) or `f` event: marks that end of its flow as seen.
    fn flow_end(&mut self, e: &Value<'_>, n: u64, start: bool) -> Result<(), String> {
        let id = match e.get("id") {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Num(t)) if t.parse::<i64>().is_ok() || t.parse::<u64>().is_ok() => {
                t.to_string()
            }
            _ => return Err(format!("flow event {n} has no integer or string id")),
        };
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let ends = self
            .flows
            .entry((id, text("cat"), text("name")))
            .or_default();
        if start {
            ends.0 = true;
        } else {
            ends.1 = true;
        }
        Ok(())
    }

    /// The slices Perfetto imports: X slices, instant events, B/E pairs and open Bs.
    fn slices(&self) -> u64 {
        self.other_slices
            + self.open_b.values().sum::<u64>()
            + self.tracks.values().map(|v| v.len() as u64).sum::<u64>()
    }

    /// The flows with both ends seen.
    fn complete_flows(&self) -> u64 {
        self.flows.values().filter(|(s, f)| *s && *f).count() as u64
    }
}

/// Reports each X slice that overlaps an earlier one on its thread without nesting inside it.
fn check_nesting(
    tracks: HashMap<(u64, u64), Vec<Slice>>,
    p: &Path,
    shown: &mut Shown,
    errs: &mut Vec<String>,
) {
    for ((pid, tid), mut v) in tracks {
        v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut stack: Vec<Slice> = Vec::new();
        for s in v {
            while stack.last().is_some_and(|t| t.1 <= s.0) {
                stack.pop();
            }
            if let Some(t) = stack.last() {
                if s.1 > t.1 {
                    shown.report(
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
}

/// What Perfetto's importer rejects in a metadata (`M`) event: a process or thread name that is not a
/// non-empty string, a sort index that is not a number.
fn metadata_problem(e: &Value<'_>) -> Option<String> {
    let name = e.get("name").and_then(Value::as_str).unwrap_or("");
    let args = e.get("args");
    match name {
        "process_name" | "thread_name" => {
            let ok = args
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            (!ok).then(|| format!("{name} needs a non-empty string args.name"))
        }
        "process_sort_index" | "thread_sort_index" => {
            let ok = args
                .and_then(|a| a.get("sort_index"))
                .is_some_and(|v| matches!(v, Value::Num(_)));
            (!ok).then(|| format!("{name} needs a numeric args.sort_index"))
        }
        _ => None,
    }
}

/// Not a microsecond string with exactly 3 decimals.
fn bad_ts(t: Option<&str>) -> bool {
    t.and_then(|t| t.split_once('.'))
        .map_or(true, |(_, frac)| frac.len() != 3)
}
