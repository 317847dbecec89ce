//! Walking a completed MSPTI buffer: each record is rewritten in place as a compact 48-byte [`DevRec`] (names
//! interned), by MSPTI's own cursor (`msptiActivityGetNextRecord`) where it exists, else by the record sizes.
//!
//! An unreadable record (unknown kind, or a record running past the valid bytes) does not end the walk: its
//! size is unknown, so each known record size is tried and the one after which the following records chain
//! validly furthest (to the valid end exactly, or [`CHAIN`] records; at least [`MIN_CHAIN`]) is taken. Only when no size fits are the
//! remaining bytes lost, counted as `bytes_lost_unparsable`. MSPTI's cursor cannot step over a record it does
//! not know, so after the first unreadable record the walk goes on by the record sizes.

use super::counts::{Count, Counts};
use super::records::{self, *};
use super::vendor_str::Names;
use super::{NextFn, REC};
#[cfg(test)]
use crate::record::names;

/// One compact record (little endian): kind u32, a u32, start u64, end u64, corr u64, b u64, c u64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevRec {
    pub kind: u32,
    pub a: u32,
    pub start: u64,
    pub end: u64,
    pub corr: u64,
    pub b: u64,
    pub c: u64,
}

impl DevRec {
    pub fn to_bytes(self) -> [u8; REC] {
        let mut o = [0u8; REC];
        o[0..4].copy_from_slice(&self.kind.to_le_bytes());
        o[4..8].copy_from_slice(&self.a.to_le_bytes());
        for (i, v) in [self.start, self.end, self.corr, self.b, self.c]
            .iter()
            .enumerate()
        {
            o[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        o
    }
    pub fn from_bytes(b: &[u8]) -> DevRec {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        DevRec {
            kind: u32_at(0),
            a: u32_at(4),
            start: u64_at(8),
            end: u64_at(16),
            corr: u64_at(24),
            b: u64_at(32),
            c: u64_at(40),
        }
    }
}

/// What a COMMUNICATION record keeps beside its stream, times and correlation, packed into the compact
/// record's `b` and `c` (48 bytes hold no more): `b` = count (40 bits, saturating: 2^40 elements is more than
/// any device holds) | data type (8 bits, 255 = unknown) | device (16 bits, 0xFFFF = MSPTI's invalid id);
/// `c` = three name ids of 21 bits (name, group, algorithm: ids stay below `names::MAX_NAMES` = 2^20).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommFields {
    pub name: u32,
    pub group: u32,
    pub alg: u32,
    pub count: u64,
    /// `msptiCommunicationDataType` (`DATA_TYPE_UNKNOWN` = 0xFFFF when unknown).
    pub data_type: u32,
    /// `u32::MAX` = MSPTI's invalid device id.
    pub device: u32,
}

const ID_BITS: u32 = 21;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const COUNT_MAX: u64 = (1 << 40) - 1;

impl CommFields {
    pub(crate) fn pack(self) -> (u64, u64) {
        // An id that does not fit (none does: see above) reads as the table's overflow name.
        let id = |i: u32| {
            if u64::from(i) > ID_MASK {
                u64::from(crate::record::names::OVERFLOW_ID)
            } else {
                u64::from(i)
            }
        };
        let dt = if self.data_type >= 0xFF {
            0xFF
        } else {
            self.data_type as u64
        };
        let dev = if self.device >= 0xFFFF {
            0xFFFF
        } else {
            self.device as u64
        };
        let b = (self.count.min(COUNT_MAX) << 24) | (dt << 16) | dev;
        let c = (id(self.name) << (2 * ID_BITS)) | (id(self.group) << ID_BITS) | id(self.alg);
        (b, c)
    }

    pub(crate) fn unpack(b: u64, c: u64) -> CommFields {
        let dt = ((b >> 16) & 0xFF) as u32;
        let dev = (b & 0xFFFF) as u32;
        CommFields {
            name: ((c >> (2 * ID_BITS)) & ID_MASK) as u32,
            group: ((c >> ID_BITS) & ID_MASK) as u32,
            alg: (c & ID_MASK) as u32,
            count: b >> 24,
            data_type: if dt == 0xFF {
                crate::device::DATA_TYPE_UNKNOWN
            } else {
                dt
            },
            device: if dev == 0xFFFF { u32::MAX } else { dev },
        }
    }
}

impl DevRec {
    /// The name and group ids of an HCCL or COMMUNICATION record.
    pub fn name_and_group(&self) -> (u32, u32) {
        if self.kind == KIND_COMMUNICATION {
            let f = CommFields::unpack(self.b, self.c);
            (f.name, f.group)
        } else {
            ((self.c >> 32) as u32, self.c as u32)
        }
    }
}

/// One MSPTI record at `off` of `buf` → its compact form (names read safely and interned); `None` for kinds npuprof does not
/// keep or records that do not fit.
pub fn compact(buf: &[u8], off: usize, names: &mut Names) -> Option<DevRec> {
    let kind: u32 = read(buf, off)?;
    let pair = |hi: u32, lo: u32| ((hi as u64) << 32) | lo as u64;
    Some(match kind {
        KIND_KERNEL => {
            let k: records::Kernel = read(buf, off)?;
            DevRec {
                kind,
                a: k.stream_id,
                start: k.start,
                end: k.end,
                corr: k.correlation_id,
                b: k.device_id as u64,
                c: pair(names.id(k.name), names.id(k.type_)),
            }
        }
        KIND_API | KIND_ACL_API | KIND_NODE_API | KIND_RUNTIME_API => {
            let a: records::Api = read(buf, off)?;
            DevRec {
                kind,
                a: a.thread_id,
                start: a.start,
                end: a.end,
                corr: a.correlation_id,
                b: a.process_id as u64,
                c: names.id(a.name) as u64,
            }
        }
        KIND_HCCL => {
            let h: Hccl = read(buf, off)?;
            DevRec {
                kind,
                a: h.stream_id,
                start: h.start,
                end: h.end,
                corr: h.band_width.to_bits(),
                b: h.device_id as u64,
                c: pair(names.id(h.name), names.id(h.comm_name)),
            }
        }
        KIND_COMMUNICATION => {
            let h: Communication = read(buf, off)?;
            let (b, c) = CommFields {
                name: names.id(h.name),
                group: names.id(h.comm_name),
                alg: names.id(h.alg_type),
                count: h.count,
                data_type: h.data_type,
                device: h.device_id,
            }
            .pack();
            DevRec {
                kind,
                a: h.stream_id,
                start: h.start,
                end: h.end,
                corr: h.correlation_id,
                b,
                c,
            }
        }
        KIND_MEMORY => {
            let m: Memory = read(buf, off)?;
            DevRec {
                kind,
                a: m.memory_operation_type,
                start: m.start,
                end: m.end,
                // The block's address, not the correlation id: it pairs a release with its allocation
                // (memory_record.csv, operator_memory.csv); nothing follows a memory record's correlation.
                corr: m.address,
                b: m.bytes,
                c: pair(m.device_id, m.stream_id),
            }
        }
        KIND_MEMSET | KIND_MEMCPY => {
            let m: MemOp = read(buf, off)?;
            DevRec {
                kind,
                a: m.value_or_copy_kind,
                start: m.start,
                end: m.end,
                corr: m.correlation_id,
                b: m.bytes,
                c: pair(m.device_id, m.stream_id),
            }
        }
        KIND_MARKER => {
            let m: Marker = read(buf, off)?;
            DevRec {
                kind,
                a: m.flag,
                start: m.timestamp,
                end: m.timestamp,
                corr: m.id,
                b: pair(m.object_id[0], m.object_id[1]),
                c: pair(names.id(m.name), names.id(m.domain)),
            }
        }
        _ => return None,
    })
}

/// Readable records looked at after a candidate offset; the longest chain wins.
pub(crate) const CHAIN: usize = 8;
/// Readable records that must follow a candidate offset for it to be taken, unless the chain ends exactly at
/// the valid end (one record can be a coincidence: a stream id 5 reads as a MEMORY kind).
pub(crate) const MIN_CHAIN: usize = 2;

/// The record sizes of the known kinds, each once.
const SIZES: [usize; 5] = [24, 48, 56, 64, 72];

/// The size of a readable record at `off` (known kind, inside `valid`).
fn readable(buf: &[u8], off: usize, valid: usize) -> Option<usize> {
    let s = read::<u32>(&buf[..valid.min(buf.len())], off).and_then(record_size)?;
    (off + s <= valid).then_some(s)
}

/// Where the walk goes on after an unreadable record at `at`: the known size whose following records chain
/// best; `None` when none does.
fn resync(buf: &[u8], at: usize, valid: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for s in SIZES {
        let start = at + s;
        if start > valid {
            break;
        }
        let (mut off, mut n) = (start, 0);
        let score = loop {
            if off == valid {
                break usize::MAX;
            }
            if n == CHAIN {
                break n;
            }
            match readable(buf, off, valid) {
                Some(s) => {
                    off += s;
                    n += 1;
                }
                None => break n,
            }
        };
        if score >= MIN_CHAIN && best.map_or(true, |(b, _)| score > b) {
            best = Some((score, start));
        }
    }
    best.map(|(_, start)| start)
}

/// Walks a completed buffer to its end and compacts the records in place (each kept record is at least 48
/// bytes, so the write position never passes the read position). Returns the number of compact records.
pub(crate) fn walk(
    next: Option<NextFn>,
    counts: &Counts,
    buf: &mut [u8],
    valid: usize,
    names: &mut Names,
) -> u32 {
    let valid = valid.min(buf.len());
    let mut w = 0usize;
    let mut keep = |buf: &mut [u8], off: usize, names: &mut Names| match compact(buf, off, names) {
        Some(r) => {
            buf[w..w + REC].copy_from_slice(&r.to_bytes());
            w += REC;
            counts.add(Count::Records, 1);
        }
        None => counts.add(Count::UnknownRecords, 1),
    };
    let mut off = 0usize;
    let mut stuck = false;
    if let Some(next) = next {
        // MSPTI's cursor is thread-local and only resets when it reaches the end: always run to the end, or
        // reset it where it stands.
        // After a record MSPTI steps over but npuprof does not know (a newer kind): the next record MSPTI
        // returns tells where that one ended.
        let mut after_unknown = false;
        for _ in 0..=valid / 8 {
            let mut rec: *mut u32 = std::ptr::null_mut();
            // SAFETY: a valid buffer of at least `valid` bytes and a valid out-pointer.
            let r = unsafe { next(buf.as_mut_ptr(), valid, &mut rec) };
            if r == MSPTI_ERROR_MAX_LIMIT_REACHED {
                break;
            }
            let at = (rec as usize).wrapping_sub(buf.as_ptr() as usize);
            let in_step = at == off || (after_unknown && at > off && at < valid);
            if r != MSPTI_SUCCESS || rec.is_null() || !in_step {
                // Unreadable at `off` (or a cursor not where the sizes say): reset this thread's cursor by
                // asking for the next record of a buffer that ends exactly where it stands, and go on by the
                // record sizes.
                let mut dummy: *mut u32 = std::ptr::null_mut();
                // SAFETY: as above; `off <= valid`.
                unsafe { next(buf.as_mut_ptr(), off, &mut dummy) };
                stuck = true;
                break;
            }
            off = at;
            match readable(buf, at, valid) {
                Some(s) => {
                    after_unknown = false;
                    // External correlations (24 bytes) are not kept (they would not fit in place).
                    if s >= REC {
                        keep(buf, at, names);
                    }
                    off = at + s;
                }
                None => {
                    counts.add(Count::UnknownRecords, 1);
                    after_unknown = true;
                }
            }
        }
        if after_unknown && !stuck {
            // The unknown record was the last one: its bytes end at the valid end.
            off = valid;
        }
        if !stuck {
            return (w / REC) as u32;
        }
    }
    while off < valid {
        match readable(buf, off, valid) {
            Some(s) => {
                if s >= REC {
                    keep(buf, off, names);
                }
                off += s;
            }
            None => {
                counts.add(Count::UnknownRecords, 1);
                match resync(buf, off, valid) {
                    Some(o) => off = o,
                    None => {
                        counts.add(Count::BytesLost, (valid - off) as u64);
                        break;
                    }
                }
            }
        }
    }
    (w / REC) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<T: Copy>(buf: &mut Vec<u8>, rec: T) {
        let n = std::mem::size_of::<T>();
        let at = buf.len();
        buf.resize(at + n, 0);
        // SAFETY: `rec` is a packed plain-data record of `n` bytes, written into the `n` bytes just added.
        unsafe { std::ptr::write_unaligned(buf[at..].as_mut_ptr() as *mut T, rec) };
    }

    /// The walker (the path without msptiActivityGetNextRecord) compacts kept records in place, skips external
    /// correlations, and counts an unknown kind or a record that runs past the valid bytes.
    #[test]
    fn walk_compacts_in_place_and_counts_what_it_cannot_read() {
        let name = c"MatMul_1";
        let kernel = |corr: u64| records::Kernel {
            kind: KIND_KERNEL,
            start: 100 * corr,
            end: 100 * corr + 40,
            device_id: 1,
            stream_id: 7,
            correlation_id: corr,
            type_: c"AI_CORE".as_ptr(),
            name: name.as_ptr(),
            _pad: [0; 4],
        };
        let mut buf = Vec::new();
        put(&mut buf, kernel(1));
        put(
            &mut buf,
            ExternalCorrelation {
                kind: KIND_EXTERNAL_CORRELATION,
                external_kind: 2,
                external_id: 9,
                correlation_id: 1,
            },
        );
        put(
            &mut buf,
            records::Api {
                kind: KIND_ACL_API,
                start: 90,
                end: 95,
                process_id: 1,
                thread_id: 2,
                correlation_id: 2,
                name: c"aclnnMatmul".as_ptr(),
                _pad: [0; 4],
            },
        );
        put(&mut buf, kernel(3));
        let valid = buf.len();
        put(&mut buf, 77u32); // unknown kind after the valid bytes: never read
        let counts = Counts::default();
        let n = walk(None, &counts, &mut buf, valid, &mut Names::new(&counts));
        assert_eq!(n, 3);
        let recs: Vec<DevRec> = buf[..3 * REC]
            .chunks_exact(REC)
            .map(DevRec::from_bytes)
            .collect();
        assert_eq!(recs[0].kind, KIND_KERNEL);
        assert_eq!(
            (recs[0].a, recs[0].b, recs[0].corr, recs[0].start),
            (7, 1, 1, 100)
        );
        assert_eq!(names::get((recs[0].c >> 32) as u32), Some(&b"MatMul_1"[..]));
        assert_eq!(names::get(recs[0].c as u32), Some(&b"AI_CORE"[..]));
        assert_eq!(
            (recs[1].kind, recs[1].a, recs[1].corr),
            (KIND_ACL_API, 2, 2)
        );
        assert_eq!((recs[2].kind, recs[2].corr), (KIND_KERNEL, 3));
        assert_eq!(counts.get(Count::UnknownRecords), 0);

        // An unknown kind stops the walk (its size is unknown) and is counted; a record cut by the valid end
        // too.
        let mut bad = Vec::new();
        put(&mut bad, kernel(1));
        put(&mut bad, 77u32);
        put(&mut bad, [0u8; 60]);
        let counts = Counts::default();
        assert_eq!(
            walk(None, &counts, &mut bad, 56 + 64, &mut Names::new(&counts)),
            1
        );
        assert_eq!(counts.get(Count::UnknownRecords), 1);
        assert_eq!(
            counts.get(Count::BytesLost),
            0,
            "64 is a known size ending at the valid end"
        );
        let mut cut = Vec::new();
        put(&mut cut, kernel(1));
        let counts = Counts::default();
        assert_eq!(
            walk(None, &counts, &mut cut, 50, &mut Names::new(&counts)),
            0
        );
        assert_eq!(counts.get(Count::UnknownRecords), 1);
        assert_eq!(counts.get(Count::BytesLost), 50);
    }

    thread_local!(static CURSOR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

    /// msptiActivityGetNextRecord as MSPTI implements it (and knowing a kind 13 of 40 bytes, as a newer
    /// MSPTI might): a thread-local cursor; an unknown kind → INNER,
    /// the cursor neither moved nor reset; at the end → MAX_LIMIT_REACHED and the cursor back at 0.
    unsafe extern "C" fn cursor_next(buf: *mut u8, valid: usize, rec: *mut *mut u32) -> u32 {
        CURSOR.with(|c| {
            let pos = c.get();
            if pos >= valid {
                c.set(0);
                return MSPTI_ERROR_MAX_LIMIT_REACHED;
            }
            // SAFETY: the tests pass a buffer of at least `valid` bytes.
            let b = unsafe { std::slice::from_raw_parts(buf, valid) };
            // A newer MSPTI: kind 13, 40 bytes, unknown to npuprof.
            let size = |k: u32| if k == 13 { Some(40) } else { record_size(k) };
            match read::<u32>(b, pos).and_then(size) {
                Some(s) if s <= valid - pos => {
                    // SAFETY: a valid out-pointer.
                    unsafe { *rec = buf.add(pos).cast() };
                    c.set(pos + s);
                    MSPTI_SUCCESS
                }
                _ => MSPTI_ERROR_INNER,
            }
        })
    }

    /// Issue 15 item 14: unknown kinds in the middle of a buffer lose only themselves, by either walker; a
    /// stream id that looks like a kind (5, MEMORY) does not mislead the step over them.
    #[test]
    fn an_unknown_kind_mid_buffer_loses_only_that_record() {
        let kernel = |corr: u64| records::Kernel {
            kind: KIND_KERNEL,
            start: 100 * corr,
            end: 100 * corr + 40,
            device_id: 0,
            stream_id: 5,
            correlation_id: corr,
            type_: c"AI_CORE".as_ptr(),
            name: c"Add".as_ptr(),
            _pad: [0; 4],
        };
        let mut buf = Vec::new();
        for i in 0..20u64 {
            let at = buf.len();
            put(&mut buf, kernel(i + 1));
            if i == 5 || i == 12 || i == 19 {
                let bad: u32 = if i == 12 { 0 } else { 77 };
                buf[at..at + 4].copy_from_slice(&bad.to_le_bytes());
            }
        }
        let valid = buf.len();
        for next in [None, Some(cursor_next as NextFn)] {
            let mut b = buf.clone();
            let counts = Counts::default();
            let n = walk(next, &counts, &mut b, valid, &mut Names::new(&counts));
            assert_eq!(n, 17, "{}", next.is_some());
            let corrs: Vec<u64> = b[..17 * REC]
                .chunks_exact(REC)
                .map(|r| DevRec::from_bytes(r).corr)
                .collect();
            let want: Vec<u64> = (1..=19).filter(|c| *c != 6 && *c != 13).collect();
            assert_eq!(corrs, want);
            assert_eq!(counts.get(Count::UnknownRecords), 3);
            assert_eq!(counts.get(Count::BytesLost), 0);
            assert_eq!(CURSOR.with(|c| c.get()), 0, "MSPTI's cursor is left reset");
        }
        // Garbage after the bad record: nothing chains, the rest is lost and counted in bytes.
        let mut junk = Vec::new();
        put(&mut junk, kernel(1));
        put(&mut junk, [0xffu8; 100]);
        let counts = Counts::default();
        let n = walk(None, &counts, &mut junk, 156, &mut Names::new(&counts));
        assert_eq!(n, 1);
        assert_eq!(counts.get(Count::BytesLost), 100);

        // A kind MSPTI steps over but npuprof does not know (13, 40 bytes): MSPTI's cursor says where the
        // next record starts; without the cursor no known size fits, and the rest is counted lost.
        let mut newer = Vec::new();
        put(&mut newer, kernel(1));
        put(&mut newer, 13u32);
        put(&mut newer, [0u8; 36]);
        put(&mut newer, kernel(2));
        put(&mut newer, 13u32);
        put(&mut newer, [0u8; 36]);
        let valid = newer.len();
        let counts = Counts::default();
        let mut b = newer.clone();
        let n = walk(
            Some(cursor_next),
            &counts,
            &mut b,
            valid,
            &mut Names::new(&counts),
        );
        assert_eq!(n, 2);
        assert_eq!(counts.get(Count::UnknownRecords), 2);
        assert_eq!(counts.get(Count::BytesLost), 0);
        assert_eq!(CURSOR.with(|c| c.get()), 0);
        let counts = Counts::default();
        let n = walk(None, &counts, &mut newer, valid, &mut Names::new(&counts));
        assert_eq!(n, 1);
        assert_eq!(counts.get(Count::BytesLost), (valid - 56) as u64);
    }

    /// A memory record keeps what pairs a release with its allocation: the block's address (in `corr`), with
    /// the operation, the bytes and the device.
    #[test]
    fn a_memory_record_keeps_the_block_address() {
        let mut buf = Vec::new();
        put(
            &mut buf,
            records::Memory {
                kind: KIND_MEMORY,
                memory_operation_type: 1,
                memory_kind: 1,
                correlation_id: 5,
                start: 100,
                end: 110,
                address: 0x1240_0000_0000,
                bytes: 4096,
                process_id: 9,
                device_id: 3,
                stream_id: u32::MAX,
            },
        );
        let valid = buf.len();
        buf.resize(REC.max(valid), 0);
        let counts = Counts::default();
        assert_eq!(
            walk(None, &counts, &mut buf, valid, &mut Names::new(&counts)),
            1
        );
        let r = DevRec::from_bytes(&buf[..REC]);
        assert_eq!(
            (r.kind, r.a, r.corr, r.b, r.c >> 32, r.start),
            (KIND_MEMORY, 1, 0x1240_0000_0000, 4096, 3, 100)
        );
    }

    #[test]
    fn compact_records_round_trip() {
        let r = DevRec {
            kind: 2,
            a: 7,
            start: 1,
            end: u64::MAX,
            corr: 42,
            b: 3,
            c: 0xdead_beef_0000_0001,
        };
        assert_eq!(DevRec::from_bytes(&r.to_bytes()), r);
    }

    /// Issue 18: a COMMUNICATION record keeps its count, data type, algorithm, group and device in the
    /// 48-byte compact form (the count and algorithm were dropped before).
    #[test]
    fn communication_records_keep_count_type_algorithm_and_group() {
        let mut buf = Vec::new();
        put(
            &mut buf,
            Communication {
                kind: KIND_COMMUNICATION,
                data_type: 3,
                count: 1024,
                device_id: 1,
                stream_id: 9,
                start: 1000,
                end: 3000,
                alg_type: c"RING".as_ptr(),
                name: c"hcom_allReduce_".as_ptr(),
                comm_name: c"group0".as_ptr(),
                correlation_id: 77,
            },
        );
        let counts = Counts::default();
        let valid = buf.len();
        assert_eq!(
            walk(None, &counts, &mut buf, valid, &mut Names::new(&counts)),
            1
        );
        let r = DevRec::from_bytes(&buf[..REC]);
        assert_eq!((r.a, r.start, r.end, r.corr), (9, 1000, 3000, 77));
        let f = CommFields::unpack(r.b, r.c);
        assert_eq!((f.count, f.data_type, f.device), (1024, 3, 1));
        assert_eq!(names::get(f.name), Some(&b"hcom_allReduce_"[..]));
        assert_eq!(names::get(f.group), Some(&b"group0"[..]));
        assert_eq!(names::get(f.alg), Some(&b"RING"[..]));
        assert_eq!(r.name_and_group(), (f.name, f.group));
        // Unknown type and device survive as unknown; a count beyond 40 bits saturates.
        let (b, c) = CommFields {
            count: u64::MAX,
            data_type: crate::device::DATA_TYPE_UNKNOWN,
            device: u32::MAX,
            ..f
        }
        .pack();
        let g = CommFields::unpack(b, c);
        assert_eq!(
            (g.count, g.data_type, g.device, g.name),
            (
                (1 << 40) - 1,
                crate::device::DATA_TYPE_UNKNOWN,
                u32::MAX,
                f.name
            )
        );
    }
}
