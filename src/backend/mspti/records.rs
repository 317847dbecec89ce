//! MSPTI's activity records, written from the facts of docs/ascend-api.md §3.4 (the MSPTI headers
//! are on no package registry). Every record is `__attribute__((packed, aligned(8)))` in C: no padding between
//! fields, size rounded up to a multiple of 8. Here each is `#[repr(C, packed)]` with the tail padding spelled
//! out, so `size_of` is the C size; a test asserts every offset and size the reference lists. Records are read
//! with `read_unaligned` from MSPTI's buffers.

use std::ffi::c_char;

pub const KIND_MARKER: u32 = 1;
pub const KIND_KERNEL: u32 = 2;
pub const KIND_API: u32 = 3;
pub const KIND_HCCL: u32 = 4;
pub const KIND_MEMORY: u32 = 5;
pub const KIND_MEMSET: u32 = 6;
pub const KIND_MEMCPY: u32 = 7;
pub const KIND_EXTERNAL_CORRELATION: u32 = 8;
pub const KIND_COMMUNICATION: u32 = 9;
pub const KIND_ACL_API: u32 = 10;
pub const KIND_NODE_API: u32 = 11;
pub const KIND_RUNTIME_API: u32 = 12;

/// The record size of each kind (MSPTI's own stepping table, §3.5); `None` for an unknown kind.
pub fn record_size(kind: u32) -> Option<usize> {
    Some(match kind {
        KIND_MARKER | KIND_KERNEL | KIND_HCCL | KIND_MEMSET | KIND_MEMCPY => 56,
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API => 48,
        KIND_MEMORY => 64,
        KIND_EXTERNAL_CORRELATION => 24,
        KIND_COMMUNICATION => 72,
        _ => return None,
    })
}

/// The name of a kind (`msptiActivityKind` without its prefix), for messages and metadata.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        KIND_MARKER => "MARKER",
        KIND_KERNEL => "KERNEL",
        KIND_API => "API",
        KIND_HCCL => "HCCL",
        KIND_MEMORY => "MEMORY",
        KIND_MEMSET => "MEMSET",
        KIND_MEMCPY => "MEMCPY",
        KIND_EXTERNAL_CORRELATION => "EXTERNAL_CORRELATION",
        KIND_COMMUNICATION => "COMMUNICATION",
        KIND_ACL_API => "ACL_API",
        KIND_NODE_API => "NODE_API",
        KIND_RUNTIME_API => "RUNTIME_API",
        _ => "unknown kind",
    }
}

/// `msptiActivityMemoryOperationType`: a release (0 is an allocation).
pub const MEMORY_OPERATION_RELEASE: u32 = 1;

/// `msptiResult` values (§3.1).
pub const MSPTI_SUCCESS: u32 = 0;
pub const MSPTI_ERROR_INVALID_PARAMETER: u32 = 1;
pub const MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED: u32 = 2;
pub const MSPTI_ERROR_MAX_LIMIT_REACHED: u32 = 3;
pub const MSPTI_ERROR_DEVICE_OFFLINE: u32 = 4;
pub const MSPTI_ERROR_QUEUE_EMPTY: u32 = 5;
pub const MSPTI_ERROR_WITHOUT_LD_PRELOAD: u32 = 6;
pub const MSPTI_ERROR_INNER: u32 = 999;

pub fn result_name(r: u32) -> &'static str {
    match r {
        MSPTI_SUCCESS => "MSPTI_SUCCESS",
        MSPTI_ERROR_INVALID_PARAMETER => "MSPTI_ERROR_INVALID_PARAMETER",
        MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED => {
            "MSPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"
        }
        MSPTI_ERROR_MAX_LIMIT_REACHED => "MSPTI_ERROR_MAX_LIMIT_REACHED",
        MSPTI_ERROR_DEVICE_OFFLINE => "MSPTI_ERROR_DEVICE_OFFLINE",
        MSPTI_ERROR_QUEUE_EMPTY => "MSPTI_ERROR_QUEUE_EMPTY",
        MSPTI_ERROR_WITHOUT_LD_PRELOAD => "MSPTI_ERROR_WITHOUT_LD_PRELOAD",
        MSPTI_ERROR_INNER => "MSPTI_ERROR_INNER",
        _ => "unknown msptiResult",
    }
}

/// `msptiActivityMarker`, 56 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Marker {
    pub kind: u32,
    pub flag: u32,
    pub source_kind: u32,
    pub timestamp: u64,
    pub id: u64,
    /// `msptiObjectId`: `{processId, threadId}` (host) or `{deviceId, streamId}` (device).
    pub object_id: [u32; 2],
    pub name: *const c_char,
    pub domain: *const c_char,
    pub _pad: [u8; 4],
}

/// `msptiActivityApi` (kinds 3, 10, 11, 12), 48 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Api {
    pub kind: u32,
    pub start: u64,
    pub end: u64,
    pub process_id: u32,
    pub thread_id: u32,
    pub correlation_id: u64,
    pub name: *const c_char,
    pub _pad: [u8; 4],
}

/// `msptiActivityKernel`, 56 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Kernel {
    pub kind: u32,
    pub start: u64,
    pub end: u64,
    pub device_id: u32,
    pub stream_id: u32,
    pub correlation_id: u64,
    pub type_: *const c_char,
    pub name: *const c_char,
    pub _pad: [u8; 4],
}

/// `msptiActivityHccl`, 56 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Hccl {
    pub kind: u32,
    pub start: u64,
    pub end: u64,
    pub device_id: u32,
    pub stream_id: u32,
    /// GB/s.
    pub band_width: f64,
    pub name: *const c_char,
    pub comm_name: *const c_char,
    pub _pad: [u8; 4],
}

/// `msptiActivityMemory`, 64 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Memory {
    pub kind: u32,
    /// 0 allocation, 1 release.
    pub memory_operation_type: u32,
    pub memory_kind: u32,
    pub correlation_id: u64,
    pub start: u64,
    pub end: u64,
    pub address: u64,
    pub bytes: u64,
    pub process_id: u32,
    pub device_id: u32,
    pub stream_id: u32,
}

/// `msptiActivityMemset` / `msptiActivityMemcpy` (same layout; `value` / `copyKind` at 4), 56 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct MemOp {
    pub kind: u32,
    pub value_or_copy_kind: u32,
    pub bytes: u64,
    pub start: u64,
    pub end: u64,
    pub device_id: u32,
    pub stream_id: u32,
    pub correlation_id: u64,
    pub is_async: u8,
    pub _pad: [u8; 7],
}

/// `msptiActivityExternalCorrelation`, 24 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct ExternalCorrelation {
    pub kind: u32,
    pub external_kind: u32,
    pub external_id: u64,
    pub correlation_id: u64,
}

/// `msptiActivityCommunication`, 72 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Communication {
    pub kind: u32,
    pub data_type: u32,
    pub count: u64,
    pub device_id: u32,
    pub stream_id: u32,
    pub start: u64,
    pub end: u64,
    pub alg_type: *const c_char,
    pub name: *const c_char,
    pub comm_name: *const c_char,
    pub correlation_id: u64,
}

/// Reads a `T` at `off` of `buf` if it fits.
pub fn read<T: Copy>(buf: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(std::mem::size_of::<T>())?;
    if end > buf.len() {
        return None;
    }
    // SAFETY: `off..end` is inside `buf`; `T` is a packed plain-data record (integers, floats and raw
    // pointers, valid for any bit pattern), read without alignment requirements.
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off) as *const T) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Every offset and size of ascend-api.md §3.4 (measured there with gcc 12 on the packed+aligned(8) C
    /// structs).
    #[test]
    fn layouts_match_the_reference() {
        assert_eq!(size_of::<Marker>(), 56);
        assert_eq!(
            [
                offset_of!(Marker, flag),
                offset_of!(Marker, source_kind),
                offset_of!(Marker, timestamp),
                offset_of!(Marker, id),
                offset_of!(Marker, object_id),
                offset_of!(Marker, name),
                offset_of!(Marker, domain)
            ],
            [4, 8, 12, 20, 28, 36, 44]
        );
        assert_eq!(size_of::<Api>(), 48);
        assert_eq!(
            [
                offset_of!(Api, start),
                offset_of!(Api, end),
                offset_of!(Api, process_id),
                offset_of!(Api, thread_id),
                offset_of!(Api, correlation_id),
                offset_of!(Api, name)
            ],
            [4, 12, 20, 24, 28, 36]
        );
        assert_eq!(size_of::<Kernel>(), 56);
        assert_eq!(
            [
                offset_of!(Kernel, start),
                offset_of!(Kernel, end),
                offset_of!(Kernel, device_id),
                offset_of!(Kernel, stream_id),
                offset_of!(Kernel, correlation_id),
                offset_of!(Kernel, type_),
                offset_of!(Kernel, name)
            ],
            [4, 12, 20, 24, 28, 36, 44]
        );
        assert_eq!(size_of::<Hccl>(), 56);
        assert_eq!(
            [
                offset_of!(Hccl, device_id),
                offset_of!(Hccl, stream_id),
                offset_of!(Hccl, band_width),
                offset_of!(Hccl, name),
                offset_of!(Hccl, comm_name)
            ],
            [20, 24, 28, 36, 44]
        );
        assert_eq!(size_of::<Memory>(), 64);
        assert_eq!(
            [
                offset_of!(Memory, memory_operation_type),
                offset_of!(Memory, memory_kind),
                offset_of!(Memory, correlation_id),
                offset_of!(Memory, start),
                offset_of!(Memory, end),
                offset_of!(Memory, address),
                offset_of!(Memory, bytes),
                offset_of!(Memory, process_id),
                offset_of!(Memory, device_id),
                offset_of!(Memory, stream_id)
            ],
            [4, 8, 12, 20, 28, 36, 44, 52, 56, 60]
        );
        assert_eq!(size_of::<MemOp>(), 56);
        assert_eq!(
            [
                offset_of!(MemOp, bytes),
                offset_of!(MemOp, start),
                offset_of!(MemOp, end),
                offset_of!(MemOp, device_id),
                offset_of!(MemOp, stream_id),
                offset_of!(MemOp, correlation_id),
                offset_of!(MemOp, is_async)
            ],
            [8, 16, 24, 32, 36, 40, 48]
        );
        assert_eq!(size_of::<ExternalCorrelation>(), 24);
        assert_eq!(
            [
                offset_of!(ExternalCorrelation, external_id),
                offset_of!(ExternalCorrelation, correlation_id)
            ],
            [8, 16]
        );
        assert_eq!(size_of::<Communication>(), 72);
        assert_eq!(
            [
                offset_of!(Communication, count),
                offset_of!(Communication, device_id),
                offset_of!(Communication, stream_id),
                offset_of!(Communication, start),
                offset_of!(Communication, end),
                offset_of!(Communication, alg_type),
                offset_of!(Communication, name),
                offset_of!(Communication, comm_name),
                offset_of!(Communication, correlation_id)
            ],
            [8, 16, 20, 24, 32, 40, 48, 56, 64]
        );
        // The stepping table agrees with the structs.
        for (k, n) in [
            (KIND_MARKER, size_of::<Marker>()),
            (KIND_KERNEL, size_of::<Kernel>()),
            (KIND_API, size_of::<Api>()),
            (KIND_HCCL, size_of::<Hccl>()),
            (KIND_MEMORY, size_of::<Memory>()),
            (KIND_MEMSET, size_of::<MemOp>()),
            (KIND_MEMCPY, size_of::<MemOp>()),
            (KIND_EXTERNAL_CORRELATION, size_of::<ExternalCorrelation>()),
            (KIND_COMMUNICATION, size_of::<Communication>()),
            (KIND_ACL_API, size_of::<Api>()),
        ] {
            assert_eq!(record_size(k), Some(n), "kind {k}");
        }
        assert_eq!(record_size(0), None);
        assert_eq!(record_size(13), None);
    }

    #[test]
    fn reads_are_bounded() {
        let buf = [0u8; 60];
        assert!(read::<Kernel>(&buf, 0).is_some());
        assert!(read::<Kernel>(&buf, 5).is_none());
        assert!(read::<Memory>(&buf, 0).is_none());
        assert!(read::<Api>(&buf, usize::MAX).is_none());
    }
}
