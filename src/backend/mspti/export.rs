//! The export of MSPTI data: the spool becomes kernel rows and the device lanes ([`super::lanes`]). Records
//! whose times lie outside the profile are left out and counted (`mspti_records_outside_profile`).

use super::host_records::MsptiHostRecords;
use super::lanes::MsptiLanes;
use super::names_file::NameSource;
use super::records::*;
use super::replay::{Pass, Spool};
use crate::device::{DeviceData, DeviceResult, Kernel, Kernels, Sym};
use crate::error::Result;
use crate::profile::Profile;

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
        let (mut kernels, pass) = read_kernels(spool.as_ref(), &self.names, limit)?;
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
        meta.push(("device_records_cut".into(), (cut + kernels.cut).to_string()));
        let mut r = DeviceResult {
            kernels,
            collectives: Default::default(),
            kernel_header: None,
            host_records,
            disk_bytes: spool.as_ref().map_or(0, |s| s.len) + names_bytes,
            timeline: Some(Box::new(MsptiLanes {
                spool,
                device: self.device,
                names: self.names,
            })),
            files: Vec::new(),
            meta,
        };
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

/// The kernel rows (kernels and HCCL operations), from the spool read in blocks (the records themselves are
/// not kept: the lanes read the spool again); at most `limit`.
fn read_kernels(spool: Option<&Spool>, src: &NameSource, limit: usize) -> Result<(Kernels, Pass)> {
    // Names repeat: each name id is interned once (a global id → symbol table; ids are small and dense).
    let n_ids = src.count() as usize + 1;
    let mut kernels = Kernels::with_limit(limit);
    let mut sym: Vec<Option<Sym>> = vec![None; n_ids];
    let mut intern = |ks: &mut Kernels, id: u64| -> Sym {
        let i = (id as usize).min(n_ids - 1);
        *sym[i].get_or_insert_with(|| ks.strings.intern(src.get(i as u32)))
    };
    let hccl = kernels.strings.intern(b"HCCL");
    let pass = spool.map_or(Ok(Pass::default()), |s| {
        s.replay(|r| {
            if !matches!(r.kind, KIND_KERNEL | KIND_HCCL) {
                return Ok(());
            }
            let name = intern(&mut kernels, r.c >> 32);
            let core = if r.kind == KIND_HCCL {
                // HCCL operations are the communication rows; COMMUNICATION records (their tasks) are lanes
                // only.
                hccl
            } else {
                intern(&mut kernels, r.c & 0xffff_ffff)
            };
            kernels.add(Kernel {
                name,
                op_type: name,
                core,
                start_ns: r.start,
                dur_ns: r.end.saturating_sub(r.start),
                wait_ns: 0,
                stream_id: r.a,
                task_id: 0,
                model_id: u32::MAX,
                block_dim: 0,
                correlation: r.corr as u32,
                cells: Box::default(),
            });
            Ok(())
        })
    })?;
    Ok((kernels, pass))
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
