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

/// The memory operations of one profile, bounded as every device record list is.
pub type MemEvents = super::Bounded<MemEvent>;
