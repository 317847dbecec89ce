//! The collective operations of an MSPTI profile: one [`Collective`] per operation, from its COMMUNICATION
//! record (name, group, algorithm, data type, count, correlation) or, where MSPTI gave none for it, its HCCL
//! record (name and group only). MSPTI reports one operation as both kinds when both are enabled (same
//! device, stream, start and end): it is kept once, so the communication rows and the `Communication`
//! columns of `step_trace_time.csv` do not count it twice.

use super::records::{KIND_COMMUNICATION, KIND_HCCL};
use super::walk::{CommFields, DevRec};
use crate::device::{Collective, Collectives, Sym, DATA_TYPE_UNKNOWN};

/// Gathers the HCCL and COMMUNICATION records of a replay (bounded as the kernels: at most `limit` of each
/// kind, the rest counted), then [`merge`](Gather::merge)s them.
pub(super) struct Gather {
    comm: Collectives,
    hccl: Collectives,
}

impl Gather {
    pub(super) fn new(limit: usize) -> Gather {
        Gather {
            comm: Collectives::with_limit(limit),
            hccl: Collectives::with_limit(limit),
        }
    }

    /// Takes `r` if it is an HCCL or COMMUNICATION record (`sym` turns a name id into the profile's string);
    /// `false` for other kinds.
    pub(super) fn take(&mut self, r: &DevRec, sym: &mut impl FnMut(u64) -> Sym) -> bool {
        let base = Collective {
            start_ns: r.start,
            dur_ns: r.end.saturating_sub(r.start),
            stream_id: r.a,
            data_type: DATA_TYPE_UNKNOWN,
            ..Default::default()
        };
        match r.kind {
            KIND_COMMUNICATION => {
                let f = CommFields::unpack(r.b, r.c);
                self.comm.add(Collective {
                    name: sym(f.name.into()),
                    group: sym(f.group.into()),
                    alg: sym(f.alg.into()),
                    data_type: f.data_type,
                    count: f.count,
                    device: f.device,
                    correlation: r.corr,
                    ..base
                });
            }
            KIND_HCCL => {
                let (name, group) = r.name_and_group();
                self.hccl.add(Collective {
                    name: sym(name.into()),
                    group: sym(group.into()),
                    device: r.b as u32,
                    ..base
                });
            }
            _ => return false,
        }
        true
    }

    /// One collective per operation, sorted by start: the COMMUNICATION records, plus each HCCL record no
    /// COMMUNICATION record describes (same device, stream, start and end); a COMMUNICATION record without a
    /// group takes its HCCL record's. Records cut beyond the limit are counted in `cut`.
    pub(super) fn merge(self, limit: usize) -> Collectives {
        let key = |c: &Collective| (c.device, c.stream_id, c.start_ns, c.dur_ns);
        let mut comm = self.comm.list;
        comm.sort_unstable_by_key(key);
        let mut out = Collectives::with_limit(limit);
        out.cut = self.comm.cut + self.hccl.cut;
        let mut extra = Vec::new();
        for h in self.hccl.list {
            match comm.binary_search_by_key(&key(&h), key) {
                Ok(i) => {
                    if comm[i].group == Sym::default() {
                        comm[i].group = h.group;
                    }
                }
                Err(_) => extra.push(h),
            }
        }
        let mut all = comm;
        all.extend(extra);
        all.sort_by_key(|c| (c.start_ns, c.device, c.stream_id));
        for c in all {
            out.add(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Strings;

    fn rec(kind: u32, start: u64, end: u64, b: u64, c: u64) -> DevRec {
        DevRec {
            kind,
            a: 3,
            start,
            end,
            corr: 5,
            b,
            c,
        }
    }

    /// Issue 18: one operation reported as both an HCCL and a COMMUNICATION record is one collective (with
    /// the COMMUNICATION record's count and type); an HCCL record alone is one too.
    #[test]
    fn an_operation_reported_by_both_kinds_is_kept_once() {
        let mut strings = Strings::default();
        let names = ["", "hcom_allReduce_", "group0", "RING"];
        let syms: Vec<Sym> = names.iter().map(|n| strings.intern(n.as_bytes())).collect();
        let mut sym = |id: u64| syms[id as usize];
        let (b, c) = CommFields {
            name: 1,
            group: 2,
            alg: 3,
            count: 1024,
            data_type: 3,
            device: 0,
        }
        .pack();
        let hccl_c = (1u64 << 32) | 2;
        let mut g = Gather::new(100);
        assert!(g.take(&rec(KIND_HCCL, 100, 200, 0, hccl_c), &mut sym));
        assert!(g.take(&rec(KIND_COMMUNICATION, 100, 200, b, c), &mut sym));
        assert!(g.take(&rec(KIND_HCCL, 500, 700, 0, hccl_c), &mut sym));
        assert!(!g.take(&rec(2, 1, 2, 0, 0), &mut sym));
        let all = g.merge(100);
        assert_eq!(all.len(), 2);
        let (a, h) = (&all.list[0], &all.list[1]);
        assert_eq!(
            (a.start_ns, a.dur_ns, a.count, a.data_type),
            (100, 100, 1024, 3)
        );
        assert_eq!((a.alg, a.group, a.correlation), (syms[3], syms[2], 5));
        assert_eq!(
            (h.start_ns, h.count, h.data_type),
            (500, 0, DATA_TYPE_UNKNOWN)
        );
        assert_eq!(h.group, syms[2]);
    }
}
