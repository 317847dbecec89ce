//! The records a device backend keeps besides its kernels: the runtime API calls that launched them (the
//! database's `CANN_API`), the markers of the vendor's tracing API (`MSTX_EVENTS`) and the memory copies
//! those calls had the device run (`TASK` rows of their own). There may be millions, so they are streamed
//! from where the backend keeps them (MSPTI's spool), never all in memory.

use crate::error::Result;

/// The layer of an API call, as CANN's `ENUM_API_TYPE` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiLevel {
    Acl,
    Model,
    Node,
    Communication,
    Runtime,
}

/// One host API call (CLOCK_REALTIME ns, on the host time base).
#[derive(Clone, Copy, Debug)]
pub struct ApiCall<'a> {
    pub level: ApiLevel,
    pub name: &'a [u8],
    pub start_ns: u64,
    pub end_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The id that links the call to the device tasks it launched ([`super::Kernel::correlation`],
    /// [`super::Collective::correlation`]).
    pub correlation: u64,
}

/// One marker of the vendor's tracing API (mstx): an instant (`start_ns == end_ns`, `range == false`) or a
/// range.
#[derive(Clone, Copy, Debug)]
pub struct Marker<'a> {
    pub message: &'a [u8],
    pub domain: &'a [u8],
    pub start_ns: u64,
    pub end_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub range: bool,
}

/// A memory copy a host call had the device run (MSPTI's MEMCPY activity): a device task besides the
/// kernels, the database's `TASK` row of type `MEMCPY_ASYNC` (CLOCK_REALTIME ns, on the host time base).
#[derive(Clone, Copy, Debug)]
pub struct DeviceCopy {
    pub start_ns: u64,
    pub end_ns: u64,
    pub device: u32,
    pub stream: u32,
    /// The id linking the copy to the API call that asked for it.
    pub correlation: u64,
    pub bytes: u64,
}

/// One record of a [`HostRecords`] stream.
#[derive(Clone, Copy, Debug)]
pub enum HostRecord<'a> {
    Api(ApiCall<'a>),
    Marker(Marker<'a>),
    Copy(DeviceCopy),
}

/// A stream of host records, read as often as an exporter needs (each `replay` reads them again).
pub trait HostRecords: Send {
    /// Passes each record to `each`, in the backend's order; `each` may stop the replay with an error.
    fn replay(&self, each: &mut dyn FnMut(&HostRecord<'_>) -> Result<()>) -> Result<()>;
}
