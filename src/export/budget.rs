//! How `NPUPROF_MAX_DISK_MB` is shared among the files of one profile. The cap covers everything npuprof
//! writes into a profile's directory (CANN's raw `PROF_*` data, written by CANN itself, is not ours to cap):
//!
//! * the host spool (`FRAMEWORK/npuprof.spool`): an eighth (at least 1 MiB, at most half), enforced by the
//!   drain thread while recording;
//! * the MSPTI spool (`FRAMEWORK/mspti.spool`) with its names (`FRAMEWORK/mspti.names`, for `npuprof
//!   recover`): a quarter together (`backend::mspti::spool_cap`), enforced by the `npuprof-mspti` thread;
//! * at export, what the two spools actually hold is subtracted, and [`SMALL_FILES_RESERVE`] is kept for the
//!   small files (the metadata JSONs, `step_trace_time.csv`, `op_statistic.csv`); of the rest the device
//!   CSVs (`kernel_details.csv`, CANN's copied statistics) get what they need but at most half, and
//!   `trace_view.json` the remainder.
//!
//! * the database (`ascend_mindspore_profiler_{rank}.db`, `communication_analyzer.db`) is written after
//!   the text files: it gets what they left ([`db_room`]); a database that would not fit is not written
//!   (one warning, `database: over_disk_cap` in the metadata), since half a database would be read as the
//!   whole profile.
//!
//! What does not fit is left out and counted in `profiler_metadata.json` (`over_disk_cap`, `trace_cut`,
//! `device.mspti_records_over_cap`, `device.mspti_names_over_cap`, `device.kernel_details_rows_cut`,
//! `device.cann_outputs_cut`).
//! The small files can exceed their reserve only with very many steps or distinct operator types.

/// Room kept in NPUPROF_MAX_DISK_MB for the small files written besides the trace and the device CSVs.
pub(crate) const SMALL_FILES_RESERVE: u64 = 64 << 10;

/// Bytes the device backend's spools hold in `framework` now (`mspti.spool` and `mspti.names`; 0 for those
/// that are not there): they stay beside the result while it is written.
pub(crate) fn device_spool_bytes(framework: &crate::layout::Place) -> u64 {
    use crate::layout::{MSPTI_NAMES_NAME, MSPTI_SPOOL_NAME};
    [MSPTI_SPOOL_NAME, MSPTI_NAMES_NAME]
        .iter()
        .filter_map(|n| framework.dir.stat_at(n).ok().flatten())
        .map(|st| st.size)
        .sum()
}

/// Bytes the database may take: the cap less what the result's directories (`ASCEND_PROFILER_OUTPUT/`,
/// `FRAMEWORK/`) hold now and [`SMALL_FILES_RESERVE`] for the metadata still to come. An earlier database of
/// this result, about to be replaced, is not counted.
pub(crate) fn db_room(max: u64, dirs: &crate::layout::WorkerDirs, replaced: &[&str]) -> u64 {
    let held = |at: &crate::layout::Place, skip: &[&str]| -> u64 {
        at.dir
            .names(4096)
            .unwrap_or_default()
            .iter()
            .filter(|n| !skip.contains(&n.as_str()) && !n.ends_with(".tmp"))
            .filter_map(|n| at.dir.stat_at(n).ok().flatten())
            .map(|st| st.size)
            .sum()
    };
    max.saturating_sub(held(&dirs.output, replaced))
        .saturating_sub(held(&dirs.framework, &[]))
        .saturating_sub(SMALL_FILES_RESERVE)
}

/// The shares of one export: (trace_view.json, device CSVs) in bytes, given the cap, the bytes the spools
/// hold, and the bytes the device CSVs would need.
pub(crate) fn split(max: u64, spools: u64, csv_need: u64) -> (u64, u64) {
    let rest = max
        .saturating_sub(spools)
        .saturating_sub(SMALL_FILES_RESERVE);
    let csv = csv_need.min(rest / 2);
    (rest - csv, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_never_exceed_the_cap() {
        for (max, spools, need) in [
            (1 << 20, 600 << 10, u64::MAX),
            (100, 1000, 5),
            (10 << 20, 0, 1),
        ] {
            let (t, c) = split(max, spools, need);
            assert!(
                t + c
                    <= max
                        .saturating_sub(spools)
                        .saturating_sub(SMALL_FILES_RESERVE)
            );
            assert!(c <= need && c <= t + 1);
        }
        assert_eq!(
            split(10 << 20, 0, 1000),
            ((10 << 20) - SMALL_FILES_RESERVE - 1000, 1000)
        );
    }
}
