//! The correlation ids the lanes' flows need, gathered during the kernel rows' replay of the spool
//! (MSPTI's `export.rs`) instead of by replays of their own: the kernels' ids (flow ends), the API calls' ids
//! (flow starts) and the API calls that launched a kernel (for the framework op → kernel flows).

use super::walk::DevRec;
use crate::device::{push_fallible, Launch};

/// What the replay saw so far. Grown by fallible reservations: without memory for more ids, the remaining
/// flows are left out (as the lanes' own passes did).
#[derive(Default)]
pub(super) struct CorrGather {
    kernels: Vec<u64>,
    /// Every API call with a correlation id, in spool order.
    api: Vec<Launch>,
}

/// The gathered ids, sorted for binary search.
#[derive(Default)]
pub(super) struct CorrIds {
    /// The kernels' correlation ids, sorted and deduplicated.
    pub kernels: Vec<u64>,
    /// The API calls' correlation ids, sorted and deduplicated.
    pub api: Vec<u64>,
    /// The API calls that launched a kernel (their correlation id is a kernel's), one per correlation id: the
    /// first reported (several API levels may report one launch).
    pub launches: Vec<Launch>,
}

impl CorrGather {
    /// Takes what the flows need from one record of the replay.
    pub(super) fn take(&mut self, r: &DevRec) {
        if r.corr == 0 {
            return;
        }
        if r.kind == super::records::KIND_KERNEL {
            push_fallible(&mut self.kernels, r.corr);
        } else if is_api(r.kind) {
            push_fallible(
                &mut self.api,
                Launch {
                    tid: r.a,
                    ts_ns: r.start,
                    key: r.corr,
                    op_ns: 0,
                },
            );
        }
    }

    pub(super) fn finish(self) -> CorrIds {
        let CorrGather {
            mut kernels,
            api: mut launches,
        } = self;
        kernels.sort_unstable();
        kernels.dedup();
        // Stable: of the calls of one correlation id, the first reported stays first.
        launches.sort_by_key(|l| l.key);
        launches.dedup_by_key(|l| l.key);
        let mut api: Vec<u64> = Vec::new();
        if api.try_reserve_exact(launches.len()).is_ok() {
            api.extend(launches.iter().map(|l| l.key));
        }
        launches.retain(|l| kernels.binary_search(&l.key).is_ok());
        CorrIds {
            kernels,
            api,
            launches,
        }
    }
}

/// An API call record (any level).
pub(super) fn is_api(kind: u32) -> bool {
    use super::records::*;
    matches!(
        kind,
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mspti::records::*;

    fn rec(kind: u32, corr: u64, tid: u32, start: u64) -> DevRec {
        DevRec {
            kind,
            a: tid,
            start,
            end: start + 1,
            corr,
            ..Default::default()
        }
    }

    #[test]
    fn launches_are_the_first_api_call_of_each_kernel_correlation_id() {
        let mut g = CorrGather::default();
        for r in [
            rec(KIND_NODE_API, 5, 7, 100),
            rec(KIND_RUNTIME_API, 5, 7, 110),
            rec(KIND_KERNEL, 5, 0, 200),
            rec(KIND_ACL_API, 9, 8, 120),
            rec(KIND_KERNEL, 3, 0, 300),
            rec(KIND_KERNEL, 3, 0, 301),
            rec(KIND_RUNTIME_API, 3, 8, 90),
            rec(KIND_KERNEL, 0, 0, 400),
            rec(KIND_API, 0, 7, 50),
        ] {
            g.take(&r);
        }
        let c = g.finish();
        assert_eq!(c.kernels, [3, 5]);
        assert_eq!(c.api, [3, 5, 9]);
        let l: Vec<(u64, u32, u64)> = c.launches.iter().map(|l| (l.key, l.tid, l.ts_ns)).collect();
        assert_eq!(l, [(3, 8, 90), (5, 7, 100)]);
    }
}
