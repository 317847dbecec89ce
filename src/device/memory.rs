//! Device memory operations: allocations and releases of device memory (MSPTI's MEMORY records, made by
//! `aclrtMalloc*` / `aclrtFree*`), the source of `memory_record.csv` and `operator_memory.csv`. Bounded by
//! `NPUPROF_MAX_DEVICE_RECORDS`, as the kernels are.

/// What a memory operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    Allocate,
    Release,
}

/// One allocation or release of device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemEvent {
    pub op: MemOp,
    /// When the operation was requested: CLOCK_REALTIME ns, on the host time base.
    pub ns: u64,
    pub device: u32,
    /// The block's device address (what pairs a release with its allocation).
    pub address: u64,
    /// The block's size (a release carries its allocation's size).
    pub bytes: u64,
}

/// The memory operations of one profile, at most `limit` of them: the list grows only by fallible
/// reservations (a huge source or a failed allocation cannot abort the process); an operation beyond the
/// limit, or one no memory could be found for, is counted in `cut`.
#[derive(Debug)]
pub struct MemEvents {
    pub list: Vec<MemEvent>,
    limit: usize,
    pub cut: u64,
}

impl Default for MemEvents {
    fn default() -> Self {
        MemEvents::with_limit(crate::config::DEFAULT_MAX_DEVICE_RECORDS as usize)
    }
}

impl MemEvents {
    pub fn with_limit(limit: usize) -> Self {
        MemEvents {
            list: Vec::new(),
            limit,
            cut: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds `e` if there is room (below the limit, memory reserved); else counts it in `cut`.
    pub fn add(&mut self, e: MemEvent) -> bool {
        let n = self.list.len();
        let ok = n < self.limit
            && (n < self.list.capacity()
                || self
                    .list
                    .try_reserve_exact(n.max(1024).min(self.limit - n))
                    .is_ok());
        if ok {
            self.list.push(e);
        } else {
            self.cut += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_beyond_the_limit_are_counted_not_kept() {
        let mut m = MemEvents::with_limit(2);
        for i in 0..5 {
            m.add(MemEvent {
                op: MemOp::Allocate,
                ns: i,
                device: 0,
                address: i,
                bytes: 1,
            });
        }
        assert_eq!((m.len(), m.cut), (2, 3));
        assert!(m.list.capacity() <= 2);
    }
}
