//! Device tasks: the rows of `kernel_details.csv` and `op_statistic.csv`, bounded by
//! `NPUPROF_MAX_DEVICE_RECORDS`.

use super::strings::{Str, Strings, Sym};

/// One device task, the unit of `kernel_details.csv`, `op_statistic.csv` and the `Ascend Hardware` lanes.
/// Its strings are in the [`Kernels`] it belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub name: Sym,
    pub op_type: Sym,
    /// `Accelerator Core` (`AI_CORE`, `AI_VECTOR_CORE`, `MIX_AIC`, `AI_CPU`, `COMMUNICATION`, ...).
    pub core: Sym,
    /// CLOCK_REALTIME ns, on the host time base.
    pub start_ns: u64,
    pub dur_ns: u64,
    pub wait_ns: u64,
    pub stream_id: u32,
    pub task_id: u32,
    pub model_id: u32,
    pub block_dim: u32,
    /// The host API call that launched it (the low 32 bits of MSPTI's correlation id, which numbers launches
    /// from 1; 0 when unknown): the database's `TASK.connectionId`.
    pub correlation: u32,
    /// With [`super::DeviceResult::kernel_header`]: the row's cells for those columns, verbatim from the source,
    /// CSV-encoded and comma-separated (one allocation per task, no spare capacity).
    pub cells: Box<str>,
}

/// The device tasks of one profile and their strings, at most `limit` of them (`NPUPROF_MAX_DEVICE_RECORDS`):
/// the list grows only by fallible reservations, so neither a huge source nor a failed allocation can abort
/// the process; a task beyond the limit, or one no memory could be found for, is counted in `cut`.
#[derive(Debug)]
pub struct Kernels {
    pub list: Vec<Kernel>,
    pub strings: Strings,
    limit: usize,
    /// Tasks left out: beyond `limit`, or when memory for them could not be reserved.
    pub cut: u64,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::with_limit(crate::config::DEFAULT_MAX_DEVICE_RECORDS as usize)
    }
}

impl Kernels {
    /// No tasks yet; at most `limit` will be kept.
    pub fn with_limit(limit: usize) -> Self {
        Kernels {
            list: Vec::new(),
            strings: Strings::default(),
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

    pub fn str(&self, s: Sym) -> &Str {
        self.strings.get(s)
    }

    /// Whether one more task can be kept (the rule of [`super::Bounded::room`]); `false` counts it in `cut`.
    pub fn room(&mut self) -> bool {
        super::bounded::room(&mut self.list, self.limit, &mut self.cut)
    }

    /// Adds `k` (its strings already in `strings`) if there is room; else counts it in `cut`.
    pub fn add(&mut self, k: Kernel) -> bool {
        let ok = self.room();
        if ok {
            self.list.push(k);
        }
        ok
    }

    /// Adds `k` with these strings (interned) if there is room; else counts it in `cut`.
    pub fn push(&mut self, name: &[u8], op_type: &str, core: &str, k: Kernel) -> bool {
        if !self.room() {
            return false;
        }
        let k = Kernel {
            name: self.strings.intern(name),
            op_type: self.strings.intern(op_type.as_bytes()),
            core: self.strings.intern(core.as_bytes()),
            ..k
        };
        self.list.push(k);
        true
    }

    /// A communication task (HCCL): counted as communication, not computing, in `step_trace_time.csv`.
    pub fn is_communication(&self, k: &Kernel) -> bool {
        self.str(k.core).communication_core || self.str(k.name).communication_name
    }

    /// A `hcom_receive*` task: the `Bubble` column.
    pub fn is_receive(&self, k: &Kernel) -> bool {
        self.str(k.name).receive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 8: a task's memory is what the export holds per device record (72 bytes; 80 before).
    #[test]
    fn a_kernel_is_compact() {
        assert!(std::mem::size_of::<Kernel>() <= 72);
    }

    #[test]
    fn kernels_beyond_the_limit_are_counted_not_kept() {
        let mut k = Kernels::with_limit(3);
        for i in 0..5 {
            k.push(
                b"n",
                "t",
                "c",
                Kernel {
                    start_ns: i,
                    ..Default::default()
                },
            );
        }
        assert_eq!((k.len(), k.cut), (3, 2));
        assert!(k.list.capacity() <= 3);
    }
}
