//! msprof's `op_summary_*.csv` → kernels, and the columns of `kernel_details.csv`.

use super::outputs::{open_output, Deadline};
use super::time_base::rebase;
use crate::device::{Kernel, Kernels};
use crate::dir::Dir;
use crate::format::csv::{next_csv_record, unquote, RawRecords, Rec};
use crate::format::json;
use crate::format::jsonparse::us_to_ns;

/// op_summary → kernel_details renames (torch_npu `_kernel_view_parser.py`, MindSpore viewer).
fn rename(col: &str) -> &str {
    match col {
        "Op Name" => "Name",
        "OP Type" => "Type",
        "Task Type" => "Accelerator Core",
        "Task Start Time(us)" => "Start Time(us)",
        "Task Duration(us)" => "Duration(us)",
        "Task Wait Time(us)" => "Wait Time(us)",
        c => c,
    }
}

pub(super) struct Summary {
    pub header: Vec<String>,
    pub kernels: Kernels,
    pub bad_rows: u64,
    /// Reading stopped at the deadline: the rows after it are not in `kernels`.
    pub cut: bool,
}

/// Parses op_summary files (one header per file; rows whose header differs from the first are re-mapped by
/// column name). At most `limit` rows become kernels (`NPUPROF_MAX_DEVICE_RECORDS`); the rest are counted in
/// `kernels.cut` without being held.
pub(super) fn op_summary(
    dir: &Dir,
    files: &[String],
    shift: i128,
    until: Deadline,
    limit: usize,
) -> std::result::Result<Option<Summary>, String> {
    let mut out: Option<Summary> = None;
    for f in files {
        // Read record by record: a million-row op_summary is never in memory at once.
        let file = open_output(dir, f)?;
        let mut rd = std::io::BufReader::with_capacity(1 << 20, file);
        let mut raw = Vec::new();
        let mut spans = Vec::new();
        let io = |e: std::io::Error| format!("{f}: {e}");
        match next_csv_record(&mut rd, &mut raw).map_err(io)? {
            Rec::End => continue,
            Rec::Bad => return Err(format!("{f}: its header is not one CSV line")),
            Rec::Row => {}
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        RawRecords::new(&text).next_into(&mut spans);
        let header: Vec<String> = spans
            .iter()
            .map(|&(a, b)| unquote(&text[a..b]).trim().to_string())
            .collect();
        let col = |n: &str| header.iter().position(|h| h == n);
        let (Some(name), Some(start), Some(dur)) = (
            col("Op Name"),
            col("Task Start Time(us)"),
            col("Task Duration(us)"),
        ) else {
            return Err(format!(
                "{f}: not an op_summary (no Op Name / Task Start Time(us) / Task Duration(us) column)"
            ));
        };
        let dev = col("Device_id");
        let kept: Vec<usize> = (0..header.len()).filter(|&i| Some(i) != dev).collect();
        let s = out.get_or_insert_with(|| Summary {
            header: kept
                .iter()
                .map(|&i| rename(&header[i]).to_string())
                .collect(),
            kernels: Kernels::with_limit(limit),
            bad_rows: 0,
            cut: false,
        });
        // This file's column for each of the first file's (renamed) columns.
        let ours: Vec<Option<usize>> = s
            .header
            .iter()
            .map(|h| kept.iter().copied().find(|&i| rename(&header[i]) == h))
            .collect();
        let start_out = s.header.iter().position(|h| h == "Start Time(us)");
        let (c_type, c_core, c_wait) =
            (col("OP Type"), col("Task Type"), col("Task Wait Time(us)"));
        let (c_stream, c_task, c_model) = (col("Stream ID"), col("Task ID"), col("Model ID"));
        let c_block = col("Block Num").or(col("Block Dim"));
        let mut n = 0u64;
        loop {
            match next_csv_record(&mut rd, &mut raw).map_err(io)? {
                Rec::End => break,
                Rec::Bad => {
                    s.bad_rows += 1;
                    continue;
                }
                Rec::Row => {}
            }
            n += 1;
            if n % 4096 == 0 && until.passed() {
                s.cut = true;
                return Ok(out);
            }
            if s.kernels.len() >= limit {
                // Beyond the cap: counted, never parsed or held.
                s.kernels.cut += 1;
                continue;
            }
            let text = String::from_utf8_lossy(&raw);
            if text.trim().is_empty() || RawRecords::new(&text).next_into(&mut spans).is_none() {
                continue;
            }
            if spans.len() != header.len() {
                s.bad_rows += 1;
                continue;
            }
            let field = |i: usize| unquote(&text[spans[i].0..spans[i].1]);
            let opt = |i: Option<usize>| i.map(|i| field(i).trim().to_string());
            let num = |i: Option<usize>| -> u32 {
                i.and_then(|i| field(i).trim().parse::<u64>().ok())
                    .map_or(0, |v| v.min(u32::MAX as u64) as u32)
            };
            let (Some(st), Some(d)) = (us_to_ns(&field(start)), us_to_ns(&field(dur))) else {
                s.bad_rows += 1;
                continue;
            };
            let st = rebase(st, shift);
            // The row's cells in the header's order, copied CSV-encoded as they are (one String per task),
            // with the start time re-based.
            let mut cells = String::with_capacity(spans.last().map_or(0, |l| l.1 - spans[0].0) + 8);
            for (j, &i) in ours.iter().enumerate() {
                if j > 0 {
                    cells.push(',');
                }
                match i {
                    _ if Some(j) == start_out => {
                        cells.push('"');
                        json::push_us3(&mut cells, st);
                        cells.push_str("\t\"");
                    }
                    Some(i) => cells.push_str(&text[spans[i].0..spans[i].1]),
                    None => cells.push_str("N/A"),
                }
            }
            let k = Kernel {
                start_ns: st,
                dur_ns: d,
                wait_ns: opt(c_wait).and_then(|v| us_to_ns(&v)).unwrap_or(0),
                stream_id: num(c_stream),
                task_id: num(c_task),
                model_id: num(c_model),
                block_dim: num(c_block),
                cells: cells.into_boxed_str(),
                ..Default::default()
            };
            s.kernels.push(
                field(name).as_bytes(),
                opt(c_type).as_deref().unwrap_or("N/A"),
                opt(c_core).as_deref().unwrap_or("N/A"),
                k,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::csv::csv_records;

    #[test]
    fn op_summary_rows_become_kernels_with_renamed_columns() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("op_summary_1.csv");
        std::fs::write(
            &f,
            "Device_id,Model ID,Task ID,Stream ID,Op Name,OP Type,OP State,Task Type,Task Start Time(us),\
Task Duration(us),Task Wait Time(us),Block Num,Input Shapes\n\
0,4294967295,10,1,MatMulV3,MatMul,dynamic,AI_CORE,1717575960208020.758\t,151.000,0,8,\"\"\"8,1024\"\"\"\n\
0,4294967295,11,1,short\n",
        )
        .unwrap();
        let dir = Dir::open(d.path()).unwrap();
        let until = Deadline::after(std::time::Duration::from_secs(3600));
        let s = op_summary(&dir, &["op_summary_1.csv".into()], -1000, until, 1000)
            .unwrap()
            .unwrap();
        assert_eq!(s.bad_rows, 1);
        assert_eq!(
            s.header,
            [
                "Model ID",
                "Task ID",
                "Stream ID",
                "Name",
                "Type",
                "OP State",
                "Accelerator Core",
                "Start Time(us)",
                "Duration(us)",
                "Wait Time(us)",
                "Block Num",
                "Input Shapes"
            ]
        );
        let k = &s.kernels.list[0];
        assert_eq!(
            (k.start_ns, k.dur_ns, k.stream_id, k.task_id, k.block_dim),
            (1_717_575_960_208_019_758, 151_000, 1, 10, 8)
        );
        let cells = &csv_records(&k.cells)[0];
        assert_eq!(cells.len(), s.header.len());
        assert_eq!(cells[7], "1717575960208019.758\t");
        assert_eq!(cells[11], "\"8,1024\"");
        assert_eq!(
            (
                &*s.kernels.str(k.op_type).text,
                &*s.kernels.str(k.core).text
            ),
            ("MatMul", "AI_CORE")
        );
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    /// Issue 15 item 4: a 30 M-row op_summary aborted the server in `Kernels::push` at a 4 GB address-space
    /// limit. Rows beyond NPUPROF_MAX_DEVICE_RECORDS are counted, not held.
    #[test]
    fn rows_beyond_the_device_record_cap_are_counted_not_kept() {
        let d = tempfile::tempdir().unwrap();
        let mut text =
            String::from("Op Name,OP Type,Task Type,Task Start Time(us),Task Duration(us)\n");
        for i in 0..250 {
            text.push_str(&format!("Op{i},T,AI_CORE,{}.000,1.000\n", 1000 + i));
        }
        std::fs::write(d.path().join("op_summary_1.csv"), text).unwrap();
        let dir = Dir::open(d.path()).unwrap();
        let until = Deadline::after(std::time::Duration::from_secs(3600));
        let s = op_summary(&dir, &["op_summary_1.csv".into()], 0, until, 100)
            .unwrap()
            .unwrap();
        assert_eq!((s.kernels.len(), s.kernels.cut, s.bad_rows), (100, 150, 0));
        assert!(s.kernels.list.capacity() <= 100);
    }
}
