//! The CSV tables of a result (`step_trace_time.csv`, CANN's copied tables, the memory CSVs,
//! `kernel_details.csv`, `op_statistic.csv`) within the device CSVs' share of NPUPROF_MAX_DISK_MB.

use super::csv::{self, StepSpan};
use super::{memory, overlap};
use crate::device::{DeviceResult, Kernels, MemEvents};
use crate::error::Result;
use crate::format::json;
use crate::layout;
use crate::profile::BackendId;

/// What the CSV tables of one profile are written from, besides the kernels and their overlap (which may come
/// from the device lanes): the device CSVs go within `cap` bytes (their share of NPUPROF_MAX_DISK_MB, see
/// [`super::budget`]).
pub(super) struct Tables<'a> {
    pub out: &'a layout::Place,
    pub p: &'a crate::profile::Profile,
    pub steps: &'a [StepSpan],
    /// The profile's span (CLOCK_REALTIME ns).
    pub profile: (u64, u64),
    pub header: Option<&'a [String]>,
    /// CANN's tables to copy (name, content).
    pub files: &'a [(String, String)],
    /// Device memory operations (`memory_record.csv`, `operator_memory.csv`; none written when empty).
    pub memory: &'a MemEvents,
    pub cap: u64,
}

impl Tables<'_> {
    /// Writes the CSV tables; returns what did not fit.
    pub(super) fn write(&self, kernels: &Kernels, ov: &overlap::Overlap) -> Result<TablesCut> {
        let (out, p) = (self.out, self.p);
        let mut cut = TablesCut::default();
        if !p.config.export_type.text() {
            // NPUPROF_EXPORT_TYPE=db: the database holds what the CSVs would.
            return Ok(cut);
        }
        csv::step_trace_time(
            out,
            layout::STEP_TRACE_TIME,
            p.device_id,
            self.steps,
            self.profile,
            (!kernels.is_empty()).then_some(ov),
        )?;
        // CANN's copied tables first (small, whole or not at all), then kernel_details.csv in what is left.
        let mut left = self.cap;
        let mut cann_statistic = false;
        for (name, content) in self.files {
            let n = content.len() as u64;
            if n > left {
                cut.files_skipped.push(name.clone());
                continue;
            }
            left -= n;
            layout::write_atomic(out, name, content.as_bytes())?;
            cann_statistic |= name == layout::OP_STATISTIC;
        }
        // The memory CSVs within their own bound (counted in the share), kernel_details.csv in the rest.
        cut.memory = memory::write(
            out,
            (layout::MEMORY_RECORD, layout::OPERATOR_MEMORY),
            self.memory,
            left.min(memory::bound(self.memory)),
        )?;
        left = left.saturating_sub(cut.memory.bytes);
        // No device tasks (a host-only result): no kernel_details.csv, as MindSpore writes none at LevelNone
        // (a header-only one makes msprof-analyze's advisor report "No valid op info").
        if !kernels.is_empty() {
            cut.kernel_rows = self.kernel_details(kernels, left)?;
        }
        if !cann_statistic {
            csv::op_statistic(out, layout::OP_STATISTIC, p.device_id, kernels)?;
        }
        Ok(cut)
    }

    fn kernel_details(&self, kernels: &Kernels, left: u64) -> Result<u64> {
        csv::kernel_details(
            self.out,
            layout::KERNEL_DETAILS,
            kernels,
            self.header,
            matches!(self.p.backend, BackendId::Mspti),
            self.steps,
            left,
        )
    }
}

/// What the device CSVs' share of NPUPROF_MAX_DISK_MB left out.
#[derive(Default)]
pub(super) struct TablesCut {
    kernel_rows: u64,
    memory: memory::MemoryCut,
    /// CANN's tables not copied (npuprof's op_statistic.csv stands in for CANN's).
    files_skipped: Vec<String>,
}

/// Says in the device metadata (and the log) what the device CSVs' disk share left out.
pub(super) fn note_tables_cut(dev: &mut DeviceResult, cut: TablesCut, cap: u64) {
    dev.meta.push((
        "kernel_details_rows_cut".into(),
        cut.kernel_rows.to_string(),
    ));
    if cut.kernel_rows > 0 {
        log::warn!(
            "kernel_details.csv reached its share of NPUPROF_MAX_DISK_MB ({cap} bytes): {} rows left out",
            cut.kernel_rows
        );
    }
    let m = &cut.memory;
    if m.records + m.blocks > 0 {
        dev.meta
            .push(("memory_rows_cut".into(), (m.records + m.blocks).to_string()));
        log::warn!(
            "memory_record.csv / operator_memory.csv reached their share of NPUPROF_MAX_DISK_MB: {} / {} rows left out",
            m.records,
            m.blocks
        );
    }
    if !cut.files_skipped.is_empty() {
        let msg = format!(
            "CANN's {} not copied: over the device tables' share of NPUPROF_MAX_DISK_MB ({cap} bytes)",
            cut.files_skipped.join(", ")
        );
        log::warn!("{msg}");
        dev.meta
            .push(("cann_outputs_cut".into(), json::string(msg.as_bytes())));
    }
}
