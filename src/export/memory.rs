//! `memory_record.csv` and `operator_memory.csv` from the device memory operations ([`MemEvents`]), with
//! torch_npu's headers (`torch_npu/profiler/analysis/prof_view/_memory_view_parser.py`, `HEADERS_RECORD` and
//! `HEADERS_OPERATOR`; MindSpore writes the same two files). msprof-analyze's compare reads them: the largest
//! `Total Reserved(MB)` is the memory used, and each `operator_memory.csv` row is placed at its
//! `Allocation Time(us)` under the framework op that encloses it.
//!
//! What the rows hold, from allocations and releases of device memory (`aclrtMalloc*` / `aclrtFree*`):
//! * `memory_record.csv`: one row per operation, component `APP` (torch_npu's name for the process's device
//!   memory as the runtime sees it), the device's running total of the blocks allocated during the profile
//!   as `Total Allocated(MB)` and `Total Reserved(MB)` (runtime allocations are reserved and allocated at
//!   once); `Total Active(MB)` and `Stream Ptr` are not known (`N/A`); `Device Type` `NPU:<id>`.
//! * `operator_memory.csv`: one row per block allocated during the profile, named by its address (the
//!   record names no operator), with its release when the profile saw it (else `N/A`).
//!
//! A release of a block allocated before the profile changes no total and writes no row.

use crate::device::{MemEvent, MemEvents, MemOp};
use crate::error::{Error, Result};
use crate::format::json::us3;
use crate::layout::{AtomicFile, Place};
use std::collections::HashMap;
use std::io::Write;

pub(super) const MEMORY_RECORD_HEADER: &str = "Component,Timestamp(us),Total Allocated(MB),\
Total Reserved(MB),Total Active(MB),Stream Ptr,Device Type";

pub(super) const OPERATOR_MEMORY_HEADER: &str =
    "Name,Size(KB),Allocation Time(us),Release Time(us),\
Active Release Time(us),Duration(us),Active Duration(us),Allocation Total Allocated(MB),\
Allocation Total Reserved(MB),Allocation Total Active(MB),Release Total Allocated(MB),\
Release Total Reserved(MB),Release Total Active(MB),Stream Ptr,Device Type";

/// The most bytes one operation takes in the two files (for the disk budget, before writing): a record row
/// and an operator row.
pub(super) const BYTES_PER_EVENT: u64 = 80 + 260;

/// One block allocated during the profile, and its release when seen.
struct Block {
    ev: MemEvent,
    /// The device's total after the allocation.
    total: u64,
    /// The release's time and the device's total after it.
    release: Option<(u64, u64)>,
}

/// What the two files hold, computed from the operations in time order.
struct Rows {
    /// (time, device, total after it), one per operation that changed a total.
    records: Vec<(u64, u32, u64)>,
    blocks: Vec<Block>,
}

/// The operations in time order (`None` if no memory could be reserved for the order).
fn in_time_order(mem: &MemEvents) -> Option<Vec<&MemEvent>> {
    let mut v: Vec<&MemEvent> = Vec::new();
    v.try_reserve_exact(mem.len()).ok()?;
    v.extend(mem.list.iter());
    v.sort_by_key(|e| e.ns);
    Some(v)
}

fn rows(mem: &MemEvents) -> Option<Rows> {
    let order = in_time_order(mem)?;
    let mut rows = Rows {
        records: Vec::new(),
        blocks: Vec::new(),
    };
    rows.records.try_reserve_exact(mem.len()).ok()?;
    rows.blocks.try_reserve_exact(mem.len()).ok()?;
    // The live blocks by (device, address), and each device's total.
    let mut live: HashMap<(u32, u64), usize> = HashMap::new();
    live.try_reserve(mem.len()).ok()?;
    let mut totals: HashMap<u32, u64> = HashMap::new();
    for e in order {
        let total = totals.entry(e.device).or_default();
        match e.op {
            MemOp::Allocate => {
                *total = total.saturating_add(e.bytes);
                // A second allocation at a live address replaces the first (MSPTI warns and does the same).
                live.insert((e.device, e.address), rows.blocks.len());
                rows.blocks.push(Block {
                    ev: *e,
                    total: *total,
                    release: None,
                });
            }
            MemOp::Release => {
                let Some(i) = live.remove(&(e.device, e.address)) else {
                    continue;
                };
                let b = &mut rows.blocks[i];
                *total = total.saturating_sub(b.ev.bytes);
                b.release = Some((e.ns, *total));
            }
        }
        rows.records.push((e.ns, e.device, *total));
    }
    Some(rows)
}

fn mb(bytes: u64) -> String {
    format!("{:.6}", bytes as f64 / (1024.0 * 1024.0))
}

fn record_line((ns, device, total): (u64, u32, u64)) -> String {
    let t = mb(total);
    format!("APP,\"{}\t\",{t},{t},N/A,N/A,NPU:{device}", us3(ns))
}

fn block_line(b: &Block) -> String {
    let e = &b.ev;
    let at = mb(b.total);
    let (release, duration, after) = match b.release {
        Some((ns, total)) => {
            let t = mb(total);
            (
                format!("\"{}\t\"", us3(ns)),
                us3(ns.saturating_sub(e.ns)),
                format!("{t},{t}"),
            )
        }
        None => ("N/A".into(), "N/A".into(), "N/A,N/A".into()),
    };
    format!(
        "0x{:x},{:.3},\"{}\t\",{release},N/A,{duration},N/A,{at},{at},N/A,{after},N/A,N/A,NPU:{}",
        e.address,
        e.bytes as f64 / 1024.0,
        us3(e.ns),
        e.device
    )
}

/// The most bytes the two files take for `mem` (their share of the disk budget).
pub(super) fn bound(mem: &MemEvents) -> u64 {
    if mem.is_empty() {
        return 0;
    }
    (MEMORY_RECORD_HEADER.len() + OPERATOR_MEMORY_HEADER.len() + 2) as u64
        + mem.len() as u64 * BYTES_PER_EVENT
}

/// Writes `header` and `lines` into `name`, at most `cap` bytes: (lines that did not fit, bytes written).
fn write_capped(
    at: &Place,
    name: &str,
    header: &str,
    lines: impl Iterator<Item = String>,
    cap: u64,
) -> Result<(u64, u64)> {
    let mut f = AtomicFile::create(at, name)?;
    let path = f.shown();
    let io = |e: std::io::Error| Error::io("cannot write", &path, &e);
    let mut written = header.len() as u64 + 1;
    writeln!(f.w, "{header}").map_err(io)?;
    let mut cut = 0u64;
    for l in lines {
        if cut > 0 || written + l.len() as u64 + 1 > cap {
            cut += 1;
            continue;
        }
        written += l.len() as u64 + 1;
        writeln!(f.w, "{l}").map_err(io)?;
    }
    f.commit()?;
    Ok((cut, written))
}

/// What the memory files left out (rows beyond their share of the disk budget) and the bytes they took.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct MemoryCut {
    pub(super) records: u64,
    pub(super) blocks: u64,
    pub(super) bytes: u64,
}

/// Writes `memory_record.csv` and `operator_memory.csv` (`names`) into `at` (nothing when `mem` is empty),
/// each within half of `cap` bytes.
pub(super) fn write(
    at: &Place,
    names: (&str, &str),
    mem: &MemEvents,
    cap: u64,
) -> Result<MemoryCut> {
    if mem.is_empty() {
        return Ok(MemoryCut::default());
    }
    let Some(rows) = rows(mem) else {
        log::warn!(
            "no memory for the order of {} memory operations: memory_record.csv and operator_memory.csv not written",
            mem.len()
        );
        return Ok(MemoryCut::default());
    };
    let half = cap / 2;
    let (records, a) = write_capped(
        at,
        names.0,
        MEMORY_RECORD_HEADER,
        rows.records.iter().map(|&r| record_line(r)),
        half,
    )?;
    let (blocks, b) = write_capped(
        at,
        names.1,
        OPERATOR_MEMORY_HEADER,
        rows.blocks.iter().map(block_line),
        half,
    )?;
    Ok(MemoryCut {
        records,
        blocks,
        bytes: a + b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: MemOp, ns: u64, device: u32, address: u64, bytes: u64) -> MemEvent {
        MemEvent {
            op,
            ns,
            device,
            address,
            bytes,
        }
    }

    fn read(d: &tempfile::TempDir, name: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(d.path().join(name))
            .unwrap()
            .lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    }

    #[test]
    fn totals_follow_allocations_and_releases_paired_by_address() {
        let d = tempfile::tempdir().unwrap();
        let mut m = MemEvents::default();
        const MIB: u64 = 1 << 20;
        // Out of time order on purpose; a release of a block from before the profile (0xdead) and one on
        // another device.
        for e in [
            ev(MemOp::Release, 3_000, 0, 0x1000, 2 * MIB),
            ev(MemOp::Allocate, 1_000, 0, 0x1000, 2 * MIB),
            ev(MemOp::Allocate, 2_000, 0, 0x2000, MIB),
            ev(MemOp::Release, 2_500, 0, 0xdead, 7 * MIB),
            ev(MemOp::Allocate, 2_200, 1, 0x1000, 4 * MIB),
        ] {
            m.add(e);
        }
        let at = Place::open(d.path()).unwrap();
        let cut = write(&at, ("r.csv", "o.csv"), &m, u64::MAX).unwrap();
        assert_eq!((cut.records, cut.blocks), (0, 0));
        assert!(cut.bytes <= bound(&m));
        let r = read(&d, "r.csv");
        assert_eq!(r[0].join(","), MEMORY_RECORD_HEADER);
        let totals: Vec<(&str, &str, &str)> = r[1..]
            .iter()
            .map(|x| (x[1].as_str(), x[3].as_str(), x[6].as_str()))
            .collect();
        assert_eq!(
            totals,
            [
                ("\"1.000\t\"", "2.000000", "NPU:0"),
                ("\"2.000\t\"", "3.000000", "NPU:0"),
                ("\"2.200\t\"", "4.000000", "NPU:1"),
                ("\"3.000\t\"", "1.000000", "NPU:0"),
            ]
        );
        assert!(r[1..].iter().all(|x| x[0] == "APP" && x[2] == x[3]));
        let o = read(&d, "o.csv");
        assert_eq!(o[0].join(","), OPERATOR_MEMORY_HEADER);
        assert_eq!(
            o.len(),
            4,
            "one row per block allocated in the profile: {o:?}"
        );
        // The first block: 2048 KB, allocated at 1 us with 2 MB in use, released at 3 us leaving 1 MB.
        assert_eq!(
            o[1][..4],
            ["0x1000", "2048.000", "\"1.000\t\"", "\"3.000\t\""]
        );
        assert_eq!(o[1][5], "2.000");
        assert_eq!(
            (o[1][7].as_str(), o[1][10].as_str()),
            ("2.000000", "1.000000")
        );
        assert_eq!(o[1][14], "NPU:0");
        // Never released: N/A.
        assert_eq!((o[2][0].as_str(), o[2][3].as_str()), ("0x2000", "N/A"));
        assert_eq!(o[3][14], "NPU:1");
        assert!(o.iter().all(|x| x.len() == 15));
    }

    #[test]
    fn nothing_is_written_without_operations_and_rows_beyond_the_cap_are_counted() {
        let d = tempfile::tempdir().unwrap();
        let at = Place::open(d.path()).unwrap();
        let m = MemEvents::default();
        assert_eq!(
            write(&at, ("r.csv", "o.csv"), &m, u64::MAX).unwrap(),
            MemoryCut::default()
        );
        assert!(!d.path().join("r.csv").exists());
        let mut m = MemEvents::default();
        for i in 0..100 {
            m.add(ev(MemOp::Allocate, i, 0, i, 1024));
        }
        let cut = write(&at, ("r.csv", "o.csv"), &m, 2 * 2000).unwrap();
        assert!(cut.records > 0 && cut.blocks > 0, "{cut:?}");
        let rows = read(&d, "r.csv").len() as u64 - 1;
        assert_eq!(rows + cut.records, 100);
        assert!(std::fs::metadata(d.path().join("r.csv")).unwrap().len() <= 2000);
    }
}
