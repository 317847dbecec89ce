//! The CSV files of `ASCEND_PROFILER_OUTPUT/`, with the exact headers of `docs/output-format.md`.

use super::overlap::Overlap;
use crate::device::{Kernel, Kernels};
use crate::error::{Error, Result};
use crate::format::json::{csv_field, push_u64, push_us3, us3};
use crate::layout::{AtomicFile, Place};
use std::collections::HashMap;
use std::io::Write;

pub const STEP_TRACE_HEADER: &str =
    "Device_id,Step,Computing,Communication(Not Overlapped),Overlapped,\
Communication,Free,Stage,Bubble,Communication(Not Overlapped and Exclude Receive),Preparing";

/// MindSpore's Level1 kernel_details header (`Step ID` with a capital D; `Block Dim` spelling).
pub const KERNEL_HEADER: &str = "Step ID,Model ID,Task ID,Stream ID,Name,Type,Accelerator Core,\
Start Time(us),Duration(us),Wait Time(us),Block Dim,Mix Block Dim,HF32 Eligible,Input Shapes,\
Input Data Types,Input Formats,Output Shapes,Output Data Types,Output Formats,Context ID";

/// MindSpore's Level0 kernel_details header (no shape, format or context columns): used when the source has
/// none of those (MSPTI records).
pub const KERNEL_HEADER_SHORT: &str =
    "Step ID,Model ID,Task ID,Stream ID,Name,Type,Accelerator Core,\
Start Time(us),Duration(us),Wait Time(us),Block Dim";

pub const OP_STATISTIC_HEADER: &str =
    "Device_id,OP Type,Core Type,Count,Total Time(us),Min Time(us),\
Avg Time(us),Max Time(us),Ratio(%)";

/// One recorded step, in CLOCK_REALTIME ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepSpan {
    pub step: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Writes `header` and `lines`, at most `cap` bytes in all: the lines that do not fit are counted, not
/// written (returned).
fn write_lines(
    at: &Place,
    name: &str,
    header: &str,
    lines: impl Iterator<Item = String>,
    cap: u64,
) -> Result<u64> {
    let mut f = AtomicFile::create(at, name)?;
    let path = f.shown();
    let io = |e: std::io::Error| Error::io("cannot write", &path, &e);
    f.w.write_all(header.as_bytes()).map_err(io)?;
    f.w.write_all(b"\n").map_err(io)?;
    let mut written = header.len() as u64 + 1;
    let mut cut = 0;
    for l in lines {
        if cut > 0 || written + l.len() as u64 + 1 > cap {
            cut += 1;
            continue;
        }
        written += l.len() as u64 + 1;
        f.w.write_all(l.as_bytes()).map_err(io)?;
        f.w.write_all(b"\n").map_err(io)?;
    }
    f.commit()?;
    Ok(cut)
}

/// `step_trace_time.csv`. With device tasks, every column comes from the device (see [`Overlap::step_row`]);
/// host-only, Computing (and Stage) = the step's wall time and the device columns are 0. With no steps, one row
/// with an empty Step covering the whole profile.
pub fn step_trace_time(
    at: &Place,
    name: &str,
    device_id: u32,
    steps: &[StepSpan],
    profile: (u64, u64),
    device: Option<&Overlap>,
) -> Result<()> {
    let row = |step: String, lo: u64, hi: u64| match device {
        Some(o) => {
            let c: Vec<String> = o.step_row(lo, hi).iter().map(|&v| us3(v)).collect();
            format!("{device_id},{step},{}", c.join(","))
        }
        None => {
            let t = us3(hi.saturating_sub(lo));
            format!("{device_id},{step},{t},0,0,0,0,{t},0,0,0")
        }
    };
    if steps.is_empty() {
        let one = row(String::new(), profile.0, profile.1.max(profile.0));
        write_lines(at, name, STEP_TRACE_HEADER, std::iter::once(one), u64::MAX)?;
    } else {
        write_lines(
            at,
            name,
            STEP_TRACE_HEADER,
            steps
                .iter()
                .map(|s| row(s.step.to_string(), s.start_ns, s.end_ns.max(s.start_ns))),
            u64::MAX,
        )?;
    }
    Ok(())
}

/// The step whose host span contains `ns` (`steps` sorted by start, as the host pass returns them).
fn step_of(steps: &[StepSpan], ns: u64) -> Option<u64> {
    let i = steps.partition_point(|s| s.start_ns <= ns);
    steps[..i]
        .iter()
        .rev()
        .take(2)
        .find(|s| s.start_ns <= ns && ns <= s.end_ns)
        .map(|s| s.step)
}

/// The most bytes the header line of [`kernel_details`] takes.
pub fn kernel_header_bound(columns: Option<&[String]>) -> u64 {
    match columns {
        // `Step ID` and each column, quoted with every quote doubled at worst.
        Some(cols) => 16 + cols.iter().map(|c| 2 * c.len() as u64 + 3).sum::<u64>(),
        None => KERNEL_HEADER.len() as u64 + 1,
    }
}

/// The most bytes one row of [`kernel_details`] takes for `k` (for the disk budget, before writing).
pub fn kernel_row_bound(kernels: &Kernels, k: &Kernel, columns: bool) -> u64 {
    // Step ID, the three ids, three times with 3 decimals, the block dim, separators, quotes and the N/A tail.
    const FIXED: u64 = 20 + 3 * 10 + 3 * 24 + 10 + 20 + 60;
    if columns {
        return 20 + k.cells.len() as u64 + 2;
    }
    FIXED
        + [k.name, k.op_type, k.core]
            .iter()
            .map(|&s| kernels.str(s).csv.len() as u64)
            .sum::<u64>()
}

/// `kernel_details.csv`: one row per device task (header only with the host backend). With `columns` (CANN's
/// op_summary columns, renamed), rows are `Step ID` + the source's values; otherwise npuprof's header. At most
/// `cap` bytes are written (the file's share of NPUPROF_MAX_DISK_MB): the rows after are counted, not written;
/// returns how many.
pub fn kernel_details(
    at: &Place,
    name: &str,
    kernels: &Kernels,
    columns: Option<&[String]>,
    short: bool,
    steps: &[StepSpan],
    cap: u64,
) -> Result<u64> {
    if let Some(cols) = columns {
        let header = format!(
            "Step ID,{}",
            cols.iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut sorted: Vec<&Kernel> = kernels.list.iter().collect();
        sorted.sort_by_key(|k| k.start_ns);
        return write_lines(
            at,
            name,
            &header,
            sorted.into_iter().map(|k| {
                let step = step_of(steps, k.start_ns).map_or("N/A".to_string(), |s| s.to_string());
                format!("{step},{}", k.cells)
            }),
            cap,
        );
    }
    // Rows are built into one reused line (a million kernels must not mean millions of small allocations),
    // from each name's CSV cell made once.
    let mut f = AtomicFile::create(at, name)?;
    let path = f.shown();
    let io = |e: std::io::Error| Error::io("cannot write", &path, &e);
    let mut line = String::with_capacity(256);
    line.push_str(if short {
        KERNEL_HEADER_SHORT
    } else {
        KERNEL_HEADER
    });
    line.push('\n');
    let mut written = 0u64;
    let mut cut = 0u64;
    for (i, k) in kernels.list.iter().enumerate() {
        let mark = line.len();
        match step_of(steps, k.start_ns) {
            Some(s) => push_u64(&mut line, s),
            None => line.push_str("N/A"),
        }
        for v in [k.model_id, k.task_id, k.stream_id] {
            line.push(',');
            push_u64(&mut line, v as u64);
        }
        for s in [k.name, k.op_type, k.core] {
            line.push(',');
            line.push_str(&kernels.str(s).csv);
        }
        line.push_str(",\"");
        push_us3(&mut line, k.start_ns);
        line.push_str("\t\",");
        push_us3(&mut line, k.dur_ns);
        line.push(',');
        push_us3(&mut line, k.wait_ns);
        line.push(',');
        push_u64(&mut line, k.block_dim as u64);
        line.push_str(if short {
            "\n"
        } else {
            ",N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
        });
        if written + line.len() as u64 > cap {
            // This row does not fit: it and every later one are counted instead.
            line.truncate(mark);
            cut = (kernels.list.len() - i) as u64;
            break;
        }
        if line.len() > 1 << 16 {
            written += line.len() as u64;
            f.w.write_all(line.as_bytes()).map_err(io)?;
            line.clear();
        }
    }
    f.w.write_all(line.as_bytes()).map_err(io)?;
    f.commit()?;
    Ok(cut)
}

/// `op_statistic.csv`: per (op type, core type) count and times, as CANN computes it (tasks without an op
/// type, `N/A` at level0, are left out as CANN does).
pub fn op_statistic(at: &Place, name: &str, device_id: u32, kernels: &Kernels) -> Result<()> {
    // Grouped by symbol first (a hash of two u32 per task), then by text.
    let mut by_sym: HashMap<(crate::device::Sym, crate::device::Sym), (u64, u64, u64, u64)> =
        HashMap::new();
    let mut total = 0u64;
    for k in &kernels.list {
        let g = by_sym
            .entry((k.op_type, k.core))
            .or_insert((0, 0, u64::MAX, 0));
        g.0 += 1;
        g.1 += k.dur_ns;
        g.2 = g.2.min(k.dur_ns);
        g.3 = g.3.max(k.dur_ns);
    }
    let mut groups: std::collections::BTreeMap<(&str, &str), (u64, u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for ((op, core), v) in by_sym {
        let (op, core) = (&*kernels.str(op).text, &*kernels.str(core).text);
        if matches!(op, "N/A" | "") {
            continue;
        }
        total += v.1;
        let g = groups.entry((op, core)).or_insert((0, 0, u64::MAX, 0));
        g.0 += v.0;
        g.1 += v.1;
        g.2 = g.2.min(v.2);
        g.3 = g.3.max(v.3);
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
    write_lines(
        at,
        name,
        OP_STATISTIC_HEADER,
        rows.into_iter().map(|((op, core), (n, sum, min, max))| {
            format!(
                "{device_id},{},{},{n},{},{},{},{},{:.3}",
                csv_field(op),
                csv_field(core),
                us3(sum),
                us3(min),
                us3(sum / n.max(1)),
                us3(max),
                if total > 0 {
                    sum as f64 * 100.0 / total as f64
                } else {
                    0.0
                }
            )
        }),
        u64::MAX,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(d: &tempfile::TempDir) -> Place {
        Place::open(d.path()).unwrap()
    }

    fn read(p: &Path) -> Vec<Vec<String>> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    }

    #[test]
    fn step_trace_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.csv");
        let steps = [
            StepSpan {
                step: 1,
                start_ns: 1000,
                end_ns: 3500,
            },
            StepSpan {
                step: 2,
                start_ns: 3500,
                end_ns: 4000,
            },
        ];
        step_trace_time(&at(&d), "s.csv", 3, &steps, (0, 5000), None).unwrap();
        let r = read(&p);
        assert_eq!(r[0].join(","), STEP_TRACE_HEADER);
        assert_eq!(
            r[1],
            ["3", "1", "2.500", "0", "0", "0", "0", "2.500", "0", "0", "0"]
        );
        assert_eq!(r[2][2], "0.500");
        step_trace_time(&at(&d), "e.csv", 0, &[], (1000, 6000), None).unwrap();
        let r = read(&d.path().join("e.csv"));
        assert_eq!(r.len(), 2);
        assert_eq!((r[1][1].as_str(), r[1][2].as_str()), ("", "5.000"));
    }

    #[test]
    fn op_statistic_groups_and_ratios() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.csv");
        let mut ks = Kernels::default();
        for (t, dur) in [
            ("MatMul", 3000),
            ("Add", 1000),
            ("MatMul", 1000),
            ("N/A", 500),
        ] {
            let k = Kernel {
                dur_ns: dur,
                ..Default::default()
            };
            ks.push(b"k", t, "AI_CORE", k);
        }
        op_statistic(&at(&d), "o.csv", 0, &ks).unwrap();
        let r = read(&p);
        assert_eq!(r[0].join(","), OP_STATISTIC_HEADER);
        assert_eq!(
            r[1],
            ["0", "MatMul", "AI_CORE", "2", "4.000", "1.000", "2.000", "3.000", "80.000"]
        );
        assert_eq!(r[2][1], "Add");
    }

    #[test]
    fn kernel_rows_have_tab_terminated_start_and_step() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.csv");
        let mut ks = Kernels::default();
        let k = Kernel {
            start_ns: 1_500,
            dur_ns: 2_000,
            ..Default::default()
        };
        ks.push(b"MatMul_1", "MatMul", "AI_CORE", k.clone());
        ks.push(b"a,\"b\"\xff", "T", "AI_CORE", k);
        let steps = [StepSpan {
            step: 4,
            start_ns: 1000,
            end_ns: 9000,
        }];
        kernel_details(&at(&d), "k.csv", &ks, None, false, &steps, u64::MAX).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        let line = s.lines().nth(1).unwrap();
        assert!(
            line.starts_with("4,0,0,0,MatMul_1,MatMul,AI_CORE,\"1.500\t\",2.000,"),
            "{line}"
        );
        assert_eq!(
            line.split(',').count(),
            KERNEL_HEADER.split(',').count(),
            "{line}"
        );
        // A name with a comma, quotes and a non-UTF-8 byte: one quoted cell, quotes doubled, byte as \xNN.
        let line = s.lines().nth(2).unwrap();
        assert!(
            line.starts_with("4,0,0,0,\"a,\"\"b\"\"\\xff\",T,AI_CORE,"),
            "{line}"
        );
    }
}
