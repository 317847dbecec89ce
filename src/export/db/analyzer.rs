//! `ASCEND_PROFILER_OUTPUT/communication_analyzer.db`: the communication analysis msprof writes beside its
//! database and MindSpore copies into a result (msprof-analyze's `all`, `communication_time`,
//! `communication_matrix`, `communication_group_map` and `cluster_time_summary` read it for a MindSpore
//! database result; without it they skip the rank). msprof's units: times in ms, `start_timestamp` in µs,
//! sizes in MB, bandwidth in GB/s; `StepTraceTime` in µs, as `step_trace_time.csv` (cluster_time_summary
//! sets it against `STEP_TIME` in µs).
//!
//! What the collectives give: an operation's span (all of it counts as transit: without HCCL's task-level
//! records, no wait, synchronization or idle time can be told apart) and, when the element type and count are
//! known, its size. The link type is not known: the bandwidth rows say `SDMA`, the transport of collectives
//! between the devices of one host (HCCS). The matrix needs the peers of each transfer, which no source gives:
//! it holds each operation's local part (source = destination = this rank, `LOCAL`), which is also how
//! msprof-analyze maps a group's local ranks to global ones (an empty matrix stops its `CommMatrixSum` with a
//! `KeyError`). The rank in the group is taken to be the global rank (the world group) until the group's
//! members are known.

use super::comm_name::{double_hash, CommNames};
use super::device::operations;
use super::file::{sql_error, DbFile};
use crate::device::{data_type_bytes, DeviceResult};
use crate::error::Result;
use crate::export::csv::StepSpan;
use crate::export::overlap::Overlap;
use crate::layout::Place;
use rusqlite::params;

pub(crate) const NAME: &str = "communication_analyzer.db";

const TABLES: &str = "
CREATE TABLE CommAnalyzerTime (hccl_op_name TEXT, group_name TEXT, start_timestamp NUMERIC,
  elapse_time NUMERIC, transit_time NUMERIC, wait_time NUMERIC, synchronization_time NUMERIC,
  idle_time NUMERIC);
CREATE TABLE CommAnalyzerBandwidth (hccl_op_name TEXT, group_name TEXT, transport_type TEXT,
  transit_size NUMERIC, transit_time NUMERIC, bandwidth NUMERIC, large_packet_ratio NUMERIC,
  package_size NUMERIC, count NUMERIC, total_duration NUMERIC);
CREATE TABLE CommAnalyzerMatrix (hccl_op_name TEXT, group_name TEXT, src_rank TEXT, dst_rank TEXT,
  transport_type TEXT, transit_size NUMERIC, transit_time NUMERIC, bandwidth NUMERIC);
CREATE TABLE StepTraceTime (step TEXT, computing NUMERIC, communication_not_overlapped NUMERIC,
  overlapped NUMERIC, communication NUMERIC, free NUMERIC, stage NUMERIC, bubble NUMERIC,
  communication_not_overlapped_and_exclude_receive NUMERIC, preparing NUMERIC);
";

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// Writes `communication_analyzer.db` into `out`.
pub(crate) fn write(
    out: &Place,
    dev: &DeviceResult,
    (rank, device): (u32, u32),
    steps: &[StepSpan],
    span: (u64, u64),
    room: u64,
) -> Result<()> {
    let mut f = DbFile::create(out, NAME)?;
    let shown = f.shown.clone();
    f.limit(room)
        .map_err(|e| sql_error("cannot write", &shown, e))?;
    fill(&f, dev, (rank, device), steps, span).map_err(|e| sql_error("cannot write", &shown, e))?;
    f.commit()
}

fn fill(
    f: &DbFile,
    dev: &DeviceResult,
    (rank, device): (u32, u32),
    steps: &[StepSpan],
    span: (u64, u64),
) -> rusqlite::Result<()> {
    let conn = &f.conn;
    conn.execute_batch(TABLES)?;
    let k = &dev.kernels;
    let mut names = CommNames::default();
    let mut time =
        conn.prepare("INSERT INTO CommAnalyzerTime VALUES (?1, ?2, ?3, ?4, ?4, 0, 0, 0)")?;
    let mut band = conn.prepare(
        "INSERT INTO CommAnalyzerBandwidth VALUES (?1, ?2, 'SDMA', ?3, ?4, ?5, 0, ?3, 1, ?4)",
    )?;
    let mut matrix = conn
        .prepare("INSERT INTO CommAnalyzerMatrix VALUES (?1, ?2, ?3, ?3, 'LOCAL', ?4, ?5, ?6)")?;
    for x in operations(&dev.collectives, k, device).iter() {
        let group = &k.str(x.group).bytes;
        let (op_name, _) = names.name(&k.str(x.name).bytes, group);
        let g = double_hash(group).to_string();
        time.execute(params![op_name, g, us(x.start_ns), ms(x.dur_ns)])?;
        let bytes = data_type_bytes(x.data_type)
            .filter(|_| x.count > 0)
            .map(|b| b.saturating_mul(x.count));
        let mb = bytes.map_or(0.0, |b| b as f64 / (1u64 << 20) as f64);
        // GB/s = bytes per ns.
        let bw = match bytes {
            Some(b) if x.dur_ns > 0 => b as f64 / x.dur_ns as f64,
            _ => 0.0,
        };
        if bytes.is_some() {
            band.execute(params![op_name, g, mb, ms(x.dur_ns), bw])?;
        }
        matrix.execute(params![op_name, g, rank.to_string(), mb, ms(x.dur_ns), bw])?;
    }
    let mut st =
        conn.prepare("INSERT INTO StepTraceTime VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?;
    let ov = (!k.is_empty()).then(|| Overlap::new(k));
    let one_step = [StepSpan {
        step: 0,
        start_ns: span.0,
        end_ns: span.1.max(span.0),
    }];
    let (rows, named) = if steps.is_empty() {
        (&one_step[..], false)
    } else {
        (steps, true)
    };
    for s in rows {
        let c = match &ov {
            Some(o) => o.step_row(s.start_ns, s.end_ns.max(s.start_ns)),
            None => {
                let t = s.end_ns.saturating_sub(s.start_ns);
                [t, 0, 0, 0, 0, t, 0, 0, 0]
            }
        };
        let step = named.then(|| s.step.to_string());
        st.execute(params![
            step,
            us(c[0]),
            us(c[1]),
            us(c[2]),
            us(c[3]),
            us(c[4]),
            us(c[5]),
            us(c[6]),
            us(c[7]),
            us(c[8])
        ])?;
    }
    Ok(())
}
