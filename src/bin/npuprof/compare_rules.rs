//! The trace conventions msprof-analyze's `compare` relies on, checked while `npuprof check` streams a trace
//! (comm-spec §2.2-§2.5; msprof-analyze 26.2.0 `compare_tools/compare_backend/`):
//! - a `Communication` / `HCCL` process files its named threads, in `thread_sort_index` order, under the
//!   last `...Communication...` thread before them: a named thread sorted before all of them crashes
//!   compare (`sequence item 1: expected str instance, NoneType found`);
//! - `ProfilerStep#N` is a framework op (cat `cpu_op`), and each step ends strictly before the next begins
//!   (compare's tree builder nests a step that begins where the previous one ends).

use npuprof::format::jsonparse::{us_to_ns, Value};
use std::collections::{HashMap, HashSet};

/// What one trace says about the conventions, gathered event by event (metadata and steps only).
#[derive(Default)]
pub(crate) struct CompareRules {
    /// pids named `Communication` or `HCCL`.
    comm: HashSet<u64>,
    /// (pid, tid) → thread name, for every named thread (filtered by `comm` at the end).
    names: HashMap<(u64, u64), String>,
    /// (pid, tid) → sort index.
    sorts: HashMap<(u64, u64), u64>,
    /// (step number, start ns, end ns) of each `ProfilerStep#N` slice.
    steps: Vec<(u64, u64, u64)>,
    /// `ProfilerStep#N` slices whose cat is not `cpu_op`.
    not_cpu_op: u64,
}

impl CompareRules {
    pub(crate) fn event(&mut self, e: &Value<'_>) {
        let s = |k: &str| e.get(k).and_then(Value::as_str);
        let (Some(pid), tid) = (
            e.get("pid").and_then(Value::as_u64),
            e.get("tid").and_then(Value::as_u64).unwrap_or(0),
        ) else {
            return;
        };
        let arg = |k: &str| e.get("args").and_then(|a| a.get(k));
        match (s("ph"), s("name")) {
            (Some("M"), Some("process_name")) => {
                if matches!(
                    arg("name").and_then(Value::as_str),
                    Some("Communication" | "HCCL")
                ) {
                    self.comm.insert(pid);
                }
            }
            (Some("M"), Some("thread_name")) => {
                if let Some(n) = arg("name").and_then(Value::as_str) {
                    if self.names.len() < 1 << 20 {
                        self.names.insert((pid, tid), n.to_string());
                    }
                }
            }
            (Some("M"), Some("thread_sort_index")) => {
                if let Some(i) = arg("sort_index").and_then(Value::as_u64) {
                    if self.sorts.len() < 1 << 20 {
                        self.sorts.insert((pid, tid), i);
                    }
                }
            }
            (Some("X"), Some(n)) if n.starts_with("ProfilerStep#") => {
                if s("cat") != Some("cpu_op") {
                    self.not_cpu_op += 1;
                }
                let k = n["ProfilerStep#".len()..].parse::<u64>().unwrap_or(0);
                let ns = |k: &str| s(k).and_then(us_to_ns);
                if let (Some(ts), Some(dur)) = (ns("ts"), ns("dur")) {
                    if self.steps.len() < 1 << 20 {
                        self.steps.push((k, ts, ts.saturating_add(dur)));
                    }
                }
            }
            _ => {}
        }
    }

    /// The conventions the trace breaks, one line each.
    pub(crate) fn problems(mut self) -> Vec<String> {
        let mut out = Vec::new();
        for &pid in &self.comm {
            // compare walks the named threads that have a sort index, in sort order.
            let mut threads: Vec<(u64, &str)> = self
                .names
                .iter()
                .filter(|((p, _), _)| *p == pid)
                .filter_map(|(k, n)| self.sorts.get(k).map(|&i| (i, n.as_str())))
                .collect();
            threads.sort_unstable();
            if let Some((_, first)) = threads.first() {
                if !first.contains("Communication") {
                    out.push(format!(
                        "process {pid} (Communication/HCCL): thread {first:?} sorts before every \
                         \"...Communication...\" thread (msprof-analyze compare fails: sequence item 1: \
                         expected str instance, NoneType found)"
                    ));
                }
            }
        }
        if self.not_cpu_op > 0 {
            out.push(format!(
                "{} ProfilerStep#N slice(s) not of cat cpu_op (msprof-analyze compare finds no step)",
                self.not_cpu_op
            ));
        }
        self.steps.sort_unstable_by_key(|s| s.1);
        if let Some(w) = self.steps.windows(2).find(|w| w[1].1 <= w[0].2) {
            out.push(format!(
                "ProfilerStep#{} begins at or before ProfilerStep#{} ends (msprof-analyze compare nests it)",
                w[1].0, w[0].0
            ));
        }
        out
    }
}
