//! The export of MSPTI data: the spool becomes kernel rows (with their op type, [`super::op_type`]), memory
//! operations and the device lanes ([`super::lanes`]); the driver gives `info.json.<device>`
//! ([`super::device_info`]). Records whose times lie outside the profile are left out and counted
//! (`mspti_records_outside_profile`).

use super::collectives::Gather;
use super::corr::{CorrGather, CorrIds};
use super::device_info;
use super::host_records::MsptiHostRecords;
use super::lanes::MsptiLanes;
use super::names_file::NameSource;
use super::op_type::{self, UNKNOWN_U32};
use super::records::*;
use super::replay::{Pass, Spool};
use crate::device::{
    Collectives, DeviceData, DeviceResult, Kernel, Kernels, MemEvent, MemEvents, MemOp, Sym,
};
use crate::error::Result;
use crate::format::json;
use crate::profile::Profile;
use std::collections::HashMap;

pub use crate::layout::MSPTI_SPOOL_NAME as SPOOL;

pub struct MsptiData {
    pub device: u32,
    /// The profile continued without device data (`auto` after a failed MSPTI start).
    pub host_only: bool,
    pub meta: Vec<(String, String)>,
    /// CLOCK_REALTIME ns (MSPTI's time scale) at the profile's start and at its stop.
    pub window: (u64, u64),
    /// Where the records' names come from (this process's table, or `mspti.names` for `npuprof recover`).
    pub names: NameSource,
}

impl DeviceData for MsptiData {
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult> {
        let t0 = std::time::Instant::now();
        let limit = profile.config.max_device_records();
        let fw = &profile.dirs.framework;
        let spool = fw
            .dir
            .open_file(SPOOL)
            .ok()
            .map(|(f, _)| Spool::new(f, limit, self.window));
        // A second reader of the spool for the API calls and markers (the database's CANN_API, MSTX_EVENTS).
        let host_records =
            fw.dir
                .open_file(SPOOL)
                .ok()
                .map(|(f, _)| -> Box<dyn crate::device::HostRecords> {
                    Box::new(MsptiHostRecords {
                        spool: Spool::new(f, limit, self.window),
                        names: self.names.clone(),
                    })
                });
        let mut meta = self.meta;
        let (mut kernels, memory, collectives, corr, pass) =
            read_kernels(spool.as_ref(), &self.names, limit)?;
        let cut = pass.beyond_limit;
        note_left_out(&pass, limit, &mut meta);
        let t_decode = t0.elapsed();
        let t_kernels = t0.elapsed();
        sort_by_start(&mut kernels);
        log::debug!(
            "MSPTI spool: read + kernels {} ms ({} ms), sort {} ms",
            t_decode.as_millis(),
            (t_kernels - t_decode).as_millis(),
            (t0.elapsed() - t_kernels).as_millis()
        );
        set_wait_times(&mut kernels);
        // `mspti.names` stays beside the spool while the result is written (and with NPUPROF_KEEP_SPOOL).
        let names_bytes = fw
            .dir
            .stat_at(super::names_file::NAMES)
            .ok()
            .flatten()
            .map_or(0, |st| st.size);
        // Records beyond NPUPROF_MAX_DEVICE_RECORDS (or that no memory could be reserved for).
        meta.push((
            "device_records_cut".into(),
            (cut + kernels.cut + memory.cut).to_string(),
        ));
        let mut r = DeviceResult {
            kernels,
            memory,
            collectives,
            kernel_header: None,
            host_records,
            disk_bytes: spool.as_ref().map_or(0, |s| s.len) + names_bytes,
            timeline: Some(Box::new(MsptiLanes::new(
                spool,
                self.device,
                self.names,
                corr,
            ))),
            files: Vec::new(),
            meta,
        };
        if !self.host_only {
            add_device_info(&mut r, self.device);
        }
        r.set_status(
            if self.host_only {
                "host-only"
            } else {
                "parsed"
            },
            None,
        );
        Ok(r)
    }
}

/// `info.json.<device>` (the AI Core count and frequency the advisor reads) from the process's driver, or
/// why there is none, in the metadata (`aic_frequency`).
fn add_device_info(r: &mut DeviceResult, device: u32) {
    match device_info::query(device) {
        Ok(d) => {
            r.meta
                .push(("aic_frequency".into(), d.aic_frequency.to_string()));
            r.files.push((d.file_name(), d.json()));
        }
        Err(why) => {
            log::info!("MSPTI: no info.json.{device} for the advisor's AI Core checks: {why}");
            let msg = format!("unknown: {why}");
            r.meta
                .push(("aic_frequency".into(), json::string(msg.as_bytes())));
        }
    }
}

/// The kernel rows (kernels, and one communication row per collective operation), the memory operations,
/// the collectives and the flows' correlation ids, from one replay of the spool in blocks (the records
/// themselves are not kept: the lanes read the spool again); at most `limit` of each.
fn read_kernels(
    spool: Option<&Spool>,
    src: &NameSource,
    limit: usize,
) -> Result<(Kernels, MemEvents, Collectives, CorrIds, Pass)> {
    // Names repeat: each name id is interned once (a global id → symbol table; ids are small and dense).
    let n_ids = src.count() as usize + 1;
    let mut kernels = Kernels::with_limit(limit);
    let mut memory = MemEvents::with_limit(limit);
    let mut names = IdSyms::new(n_ids, |n| n);
    let mut intern = |ks: &mut Kernels, id: u64| names.sym(ks, src, id);
    // Each name's op type, found once (by name symbol); each kernel type's msprof name, once per id.
    let mut op_types: HashMap<Sym, Sym> = HashMap::new();
    let mut cores = IdSyms::new(n_ids, op_type::task_type);
    let mut gather = Gather::new(limit);
    let mut corr = CorrGather::default();
    let pass = spool.map_or(Ok(Pass::default()), |s| {
        s.replay(|r| {
            corr.take(r);
            if r.kind == KIND_MEMORY {
                memory.add(memory_event(r));
                return Ok(());
            }
            if gather.take(r, &mut |id| intern(&mut kernels, id)) || r.kind != KIND_KERNEL {
                return Ok(());
            }
            let name = intern(&mut kernels, r.c >> 32);
            let core = cores.sym(&mut kernels, src, r.c & 0xffff_ffff);
            let op_type = kernel_op_type(&mut kernels, &mut op_types, name);
            kernels.add(Kernel {
                core,
                op_type,
                correlation: r.corr as u32,
                ..row(name, r.start, r.end, r.a)
            });
            Ok(())
        })
    })?;
    let collectives = gather.merge(limit);
    // The communication rows (HCCL operations in kernel_details and the Communication columns of
    // step_trace_time.csv): one per operation, whichever kind reported it.
    let hccl = kernels.strings.intern(b"HCCL");
    for c in &collectives.list {
        kernels.add(Kernel {
            core: hccl,
            correlation: c.correlation as u32,
            ..row(c.name, c.start_ns, c.start_ns + c.dur_ns, c.stream_id)
        });
    }
    Ok((kernels, memory, collectives, corr.finish(), pass))
}

/// The kernels' symbols of name ids (ids are small and dense), each interned once, in the form `form` gives
/// the name. An id beyond the table (a damaged names file) is the source's unknown name, never another name.
struct IdSyms {
    syms: Vec<Option<Sym>>,
    form: fn(&[u8]) -> &[u8],
}

impl IdSyms {
    fn new(n_ids: usize, form: fn(&[u8]) -> &[u8]) -> IdSyms {
        IdSyms {
            syms: vec![None; n_ids],
            form,
        }
    }

    fn sym(&mut self, ks: &mut Kernels, src: &NameSource, id: u64) -> Sym {
        let form = self.form;
        let name = |id| form(src.get(u32::try_from(id).unwrap_or(u32::MAX)));
        match self.syms.get_mut(id as usize) {
            Some(s) => *s.get_or_insert_with(|| ks.strings.intern(name(id))),
            None => ks.strings.intern(name(id)),
        }
    }
}

/// A kernel row of `name` on `stream` from `start` to `end` (MSPTI gives no task id, block dim or model: they
/// are msprof's unknown, [`UNKNOWN_U32`]).
fn row(name: Sym, start: u64, end: u64, stream: u32) -> Kernel {
    Kernel {
        name,
        op_type: name,
        core: Sym::default(),
        start_ns: start,
        dur_ns: end.saturating_sub(start),
        wait_ns: 0,
        stream_id: stream,
        task_id: UNKNOWN_U32,
        model_id: UNKNOWN_U32,
        block_dim: UNKNOWN_U32,
        correlation: 0,
        cells: Box::default(),
    }
}

/// A MEMORY record ([`super::walk`]: `a` the operation, `corr` the address, `b` the bytes, `c` device and
/// stream) as a memory operation.
fn memory_event(r: &super::DevRec) -> MemEvent {
    MemEvent {
        op: if r.a == MEMORY_OPERATION_RELEASE {
            MemOp::Release
        } else {
            MemOp::Allocate
        },
        ns: r.start,
        device: (r.c >> 32) as u32,
        address: r.corr,
        bytes: r.b,
    }
}

/// The op type of the kernel named `name` ([`super::op_type`]), interned once per name.
fn kernel_op_type(kernels: &mut Kernels, cache: &mut HashMap<Sym, Sym>, name: Sym) -> Sym {
    if let Some(&t) = cache.get(&name) {
        return t;
    }
    let text = kernels.str(name).bytes.clone();
    let op = op_type::op_type(&text);
    let t = if op.len() == text.len() {
        name
    } else {
        kernels.strings.intern(op)
    };
    cache.insert(name, t);
    t
}

/// Logs the records left out (beyond the limit, outside the profile) and notes the latter in the metadata.
fn note_left_out(pass: &Pass, limit: usize, meta: &mut Vec<(String, String)>) {
    let (cut, outside) = (pass.beyond_limit, pass.outside);
    if cut > 0 {
        log::warn!(
            "MSPTI: {cut} device records beyond NPUPROF_MAX_DEVICE_RECORDS={limit} left out of the export"
        );
    }
    meta.push(("mspti_records_outside_profile".into(), outside.to_string()));
    if outside > 0 {
        log::warn!(
            "MSPTI: {outside} records with times outside the profile (start..stop ± 1 s) left out"
        );
    }
}

/// Sorts the kernels by start (only when they are not in order already).
fn sort_by_start(kernels: &mut Kernels) {
    if kernels
        .list
        .windows(2)
        .any(|w| w[1].start_ns < w[0].start_ns)
    {
        kernels.list.sort_unstable_by_key(|k| k.start_ns);
    }
}

/// Each kernel's wait: the gap since the previous task ended on the device (0 for the first), as CANN
/// computes it.
fn set_wait_times(kernels: &mut Kernels) {
    let mut prev_end = 0u64;
    for k in &mut kernels.list {
        if prev_end != 0 {
            k.wait_ns = k.start_ns.saturating_sub(prev_end);
        }
        prev_end = prev_end.max(k.start_ns + k.dur_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mspti::DevRec;

    #[test]
    fn memory_records_become_allocations_and_releases() {
        let rec = |a: u32| DevRec {
            kind: KIND_MEMORY,
            a,
            start: 7,
            end: 9,
            corr: 0xabc000,
            b: 2048,
            c: (2u64 << 32) | 5,
        };
        let want = |op| MemEvent {
            op,
            ns: 7,
            device: 2,
            address: 0xabc000,
            bytes: 2048,
        };
        assert_eq!(memory_event(&rec(0)), want(MemOp::Allocate));
        assert_eq!(memory_event(&rec(1)), want(MemOp::Release));
    }
}
