//! Device time per step, as torch_npu's `Overlap Analysis` lanes and `step_trace_time.csv` define it:
//! computing = union of compute tasks, communication = union of communication tasks, "not overlapped" =
//! communication minus computing, free = gaps between device activity. Intervals are half-open `[a, b)` ns.

use crate::device::Kernels;

pub type Spans = Vec<(u64, u64)>;

/// Sorts and merges overlapping or touching intervals.
pub fn merge(mut v: Spans) -> Spans {
    v.retain(|s| s.1 > s.0);
    v.sort_unstable();
    let mut out: Spans = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `a` minus `b` (both merged).
pub fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Spans {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut s, e) in a {
        while j < b.len() && b[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > s {
                out.push((s, b[k].0));
            }
            s = s.max(b[k].1);
            k += 1;
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

/// The gaps between merged intervals.
pub fn gaps(all: &[(u64, u64)]) -> Spans {
    all.windows(2)
        .map(|w| (w[0].1, w[1].0))
        .filter(|g| g.1 > g.0)
        .collect()
}

/// Length of the merged intervals inside `[lo, hi)`.
pub fn clipped(v: &[(u64, u64)], lo: u64, hi: u64) -> u64 {
    let first = v.partition_point(|s| s.1 <= lo);
    v[first..]
        .iter()
        .take_while(|s| s.0 < hi)
        .map(|s| s.1.min(hi).saturating_sub(s.0.max(lo)))
        .sum()
}

/// The overlap lanes of one device.
#[derive(Debug, Default)]
pub struct Overlap {
    pub computing: Spans,
    pub communication: Spans,
    pub comm_not_overlapped: Spans,
    pub free: Spans,
    pub all: Spans,
    /// Start and duration of each `hcom_receive*` task (the `Bubble` column).
    pub receives: Vec<(u64, u64)>,
}

impl Overlap {
    pub fn new(kernels: &Kernels) -> Overlap {
        let mut comp = Vec::new();
        let mut comm = Vec::new();
        let mut receives = Vec::new();
        for k in &kernels.list {
            let s = (k.start_ns, k.start_ns.saturating_add(k.dur_ns));
            if kernels.is_communication(k) {
                comm.push(s);
                if kernels.is_receive(k) {
                    receives.push((k.start_ns, k.dur_ns));
                }
            } else {
                comp.push(s);
            }
        }
        receives.sort_unstable();
        let computing = merge(comp);
        let communication = merge(comm);
        let comm_not_overlapped = subtract(&communication, &computing);
        let all = merge(computing.iter().chain(&communication).copied().collect());
        let free = gaps(&all);
        Overlap {
            computing,
            communication,
            comm_not_overlapped,
            free,
            all,
            receives,
        }
    }

    /// The device columns of one `step_trace_time.csv` row for the step `[lo, hi)`, in ns:
    /// (computing, comm not overlapped, overlapped, communication, free, stage, bubble,
    ///  not overlapped excluding receive, preparing).
    pub fn step_row(&self, lo: u64, hi: u64) -> [u64; 9] {
        let computing = clipped(&self.computing, lo, hi);
        let communication = clipped(&self.communication, lo, hi);
        let not_overlapped = clipped(&self.comm_not_overlapped, lo, hi);
        let (first, last) = self.span_in(lo, hi);
        // Free is the idle time between the step's first and last device task only (the gaps before the first
        // and after the last are the host's, not the device's): then Computing, Communication(Not Overlapped)
        // and Free tile [first, last) and `Stage = Free + Computing + Communication(Not Overlapped) - Bubble`
        // holds exactly, the rule msprof-analyze computes Stage by.
        let free = if last > first {
            clipped(&self.free, first, last)
        } else {
            0
        };
        let bubble: u64 = self
            .receives
            .iter()
            .filter(|r| r.0 >= lo && r.0 < hi)
            .fold(0u64, |a, r| a.saturating_add(r.1));
        let (stage, preparing) = if last > first {
            ((last - first).saturating_sub(bubble), first - lo)
        } else {
            (0, 0)
        };
        [
            computing,
            not_overlapped,
            communication - not_overlapped.min(communication),
            communication,
            free,
            stage,
            bubble,
            not_overlapped.saturating_sub(bubble),
            preparing,
        ]
    }
}

impl Overlap {
    /// The `Free` slices of the `Overlap Analysis` lanes: with steps (`[lo, hi)` each, sorted, disjoint), the
    /// idle time between each step's first and last device task, so that Computing, Communication(Not
    /// Overlapped) and Free tile exactly that span of each step (the idle time between steps is no step's);
    /// without steps, every gap between device activity.
    pub fn free_slices(&self, steps: &[(u64, u64)]) -> Spans {
        if steps.is_empty() {
            return self.free.clone();
        }
        let mut out = Vec::new();
        for &(lo, hi) in steps {
            let (first, last) = self.span_in(lo, hi);
            let i = self.free.partition_point(|g| g.1 <= first);
            for g in self.free[i..].iter().take_while(|g| g.0 < last) {
                let (a, b) = (g.0.max(first), g.1.min(last));
                if b > a {
                    out.push((a, b));
                }
            }
        }
        out
    }

    /// [start of the first, end of the last] device activity inside the step `[lo, hi)`, clipped to it; an
    /// empty span (`first == last`) when the step has none.
    pub fn span_in(&self, lo: u64, hi: u64) -> (u64, u64) {
        let i = self.all.partition_point(|s| s.1 <= lo);
        let inside = &self.all[i..];
        let n = inside.partition_point(|s| s.0 < hi);
        match (inside[..n].first(), inside[..n].last()) {
            (Some(f), Some(l)) => (f.0.max(lo), l.1.min(hi)),
            _ => (lo, lo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(list: &[(&str, &str, u64, u64)]) -> Kernels {
        let mut ks = Kernels::default();
        for &(name, core, s, d) in list {
            let k = crate::device::Kernel {
                start_ns: s,
                dur_ns: d,
                ..Default::default()
            };
            ks.push(name.as_bytes(), "N/A", core, k);
        }
        ks
    }

    #[test]
    fn interval_algebra() {
        assert_eq!(
            merge(vec![(5, 7), (1, 3), (2, 4), (7, 8), (9, 9)]),
            [(1, 4), (5, 8)]
        );
        assert_eq!(
            subtract(&[(0, 10), (20, 30)], &[(2, 3), (5, 25)]),
            [(0, 2), (3, 5), (25, 30)]
        );
        assert_eq!(gaps(&[(0, 2), (5, 8), (9, 10)]), [(2, 5), (8, 9)]);
        assert_eq!(clipped(&[(0, 10), (20, 30)], 5, 25), 10);
    }

    #[test]
    fn step_columns() {
        // compute 100..200 and 300..400; allreduce 150..350 (overlaps 100 of it); a receive 500..600.
        let o = Overlap::new(&ks(&[
            ("MatMul", "AI_CORE", 100, 100),
            ("Add", "AI_VECTOR_CORE", 300, 100),
            ("hcom_allReduce_1", "COMMUNICATION", 150, 200),
            ("hcom_receive_2", "COMMUNICATION", 500, 100),
        ]));
        let r = o.step_row(0, 1000);
        // computing 200, comm 300, not overlapped (200..300 + 500..600) = 200, overlapped 100,
        // free 400..500 = 100, bubble 100, stage (600-100)-100 = 400, excl. receive 100, preparing 100.
        assert_eq!(r, [200, 200, 100, 300, 100, 400, 100, 100, 100]);
        // A step with no device work.
        assert_eq!(o.step_row(2000, 3000), [0; 9]);
        // Issue 18: a step much wider than its device work (the idle time before its first and after its last
        // task is the host's): Free is only the gaps between the step's tasks, so the rule
        // Stage = Free + Computing + Communication(Not Overlapped) - Bubble holds (Free was 1100 here, Stage 400).
        let r = o.step_row(0, 1500);
        assert_eq!(r[4], 100, "free {r:?}");
        assert_eq!(r[5], r[4] + r[0] + r[1] - r[6], "the Stage rule: {r:?}");
        // A step that begins inside a gap and ends inside a task.
        let r = o.step_row(250, 350);
        assert_eq!(r[5], r[4] + r[0] + r[1] - r[6], "the Stage rule: {r:?}");
        assert_eq!((r[0], r[4], r[5]), (50, 0, 100), "{r:?}");
        // A step that begins in the idle gap after the previous step's last task (400..500): that gap is not
        // this step's Free (it was counted: Free 50 with Stage 0).
        let r = o.step_row(450, 1000);
        assert_eq!((r[4], r[5]), (0, 0), "{r:?}");
        // The Free slices of the trace tile each step's span like its row: the gap 400..500 between a step
        // ending at 450 and the next is no step's.
        assert_eq!(o.free_slices(&[]), [(400, 500)]);
        assert_eq!(o.free_slices(&[(0, 450), (450, 1000)]), []);
        assert_eq!(o.free_slices(&[(0, 1000)]), [(400, 500)]);
        assert_eq!(r[5], r[4] + r[0] + r[1] - r[6], "the Stage rule: {r:?}");
    }
}
