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
        let Some(header) = read_header(&mut rd, &mut raw, f)? else {
            continue;
        };
        let mut cols = Columns::find(&header, f)?;
        let s = out.get_or_insert_with(|| Summary {
            header: cols
                .kept
                .iter()
                .map(|&i| rename(&header[i]).to_string())
                .collect(),
            kernels: Kernels::with_limit(limit),
            bad_rows: 0,
            cut: false,
        });
        cols.map_to(&header, &s.header);
        if read_rows(&mut rd, &mut raw, f, &cols, s, shift, &until, limit)? {
            s.cut = true;
            return Ok(out);
        }
    }
    Ok(out)
}

/// A file's header, its cells unquoted and trimmed (`None`: an empty file).
fn read_header(
    rd: &mut impl std::io::BufRead,
    raw: &mut Vec<u8>,
    f: &str,
) -> std::result::Result<Option<Vec<String>>, String> {
    match next_csv_record(rd, raw).map_err(|e| format!("{f}: {e}"))? {
        Rec::End => return Ok(None),
        Rec::Bad => return Err(format!("{f}: its header is not one CSV line")),
        Rec::Row => {}
    }
    let text = String::from_utf8_lossy(raw).into_owned();
    let mut spans = Vec::new();
    RawRecords::new(&text).next_into(&mut spans);
    Ok(Some(
        spans
            .iter()
            .map(|&(a, b)| unquote(&text[a..b]).trim().to_string())
            .collect(),
    ))
}

/// Where a file's columns are.
struct Columns {
    /// Cells in a row.
    len: usize,
    name: usize,
    start: usize,
    dur: usize,
    ty: Option<usize>,
    core: Option<usize>,
    wait: Option<usize>,
    stream: Option<usize>,
    task: Option<usize>,
    model: Option<usize>,
    block: Option<usize>,
    /// The columns copied into `kernel_details.csv` (all but `Device_id`).
    kept: Vec<usize>,
    /// This file's column for each of the first file's (renamed) columns (see [`Columns::map_to`]).
    ours: Vec<Option<usize>>,
    /// The start time's place among the first file's columns (it is re-based).
    start_out: Option<usize>,
}

impl Columns {
    /// The columns of `header`; an error when it is not an op_summary's.
    fn find(header: &[String], f: &str) -> std::result::Result<Columns, String> {
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
        Ok(Columns {
            len: header.len(),
            name,
            start,
            dur,
            ty: col("OP Type"),
            core: col("Task Type"),
            wait: col("Task Wait Time(us)"),
            stream: col("Stream ID"),
            task: col("Task ID"),
            model: col("Model ID"),
            block: col("Block Num").or(col("Block Dim")),
            kept: (0..header.len()).filter(|&i| Some(i) != dev).collect(),
            ours: Vec::new(),
            start_out: None,
        })
    }

    /// Maps the first file's (renamed) columns `first` to this file's `header`.
    fn map_to(&mut self, header: &[String], first: &[String]) {
        self.ours = first
            .iter()
            .map(|h| self.kept.iter().copied().find(|&i| rename(&header[i]) == h))
            .collect();
        self.start_out = first.iter().position(|h| h == "Start Time(us)");
    }
}

/// Reads a file's rows into `s`. Returns whether reading stopped at the deadline.
#[allow(clippy::too_many_arguments)]
fn read_rows(
    rd: &mut impl std::io::BufRead,
    raw: &mut Vec<u8>,
    f: &str,
    cols: &Columns,
    s: &mut Summary,
    shift: i128,
    until: &Deadline,
    limit: usize,
) -> std::result::Result<bool, String> {
    let mut spans = Vec::new();
    let mut n = 0u64;
    loop {
        match next_csv_record(rd, raw).map_err(|e| format!("{f}: {e}"))? {
            Rec::End => return Ok(false),
            Rec::Bad => {
                s.bad_rows += 1;
                continue;
            }
            Rec::Row => {}
        }
        n += 1;
        if n % 4096 == 0 && until.passed() {
            return Ok(true);
        }
        if s.kernels.len() >= limit {
            // Beyond the cap: counted, never parsed or held.
            s.kernels.cut += 1;
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        if text.trim().is_empty() || RawRecords::new(&text).next_into(&mut spans).is_none() {
            continue;
        }
        if spans.len() != cols.len || !push_row(&text, &spans, cols, shift, &mut s.kernels) {
            s.bad_rows += 1;
        }
    }
}

/// One row → a kernel in `kernels`; `false` when its start or duration is not a time.
fn push_row(
    text: &str,
    spans: &[(usize, usize)],
    cols: &Columns,
    shift: i128,
    kernels: &mut Kernels,
) -> bool {
    let field = |i: usize| unquote(&text[spans[i].0..spans[i].1]);
    let opt = |i: Option<usize>| i.map(|i| field(i).trim().to_string());
    let num = |i: Option<usize>| -> u32 {
        i.and_then(|i| field(i).trim().parse::<u64>().ok())
            .map_or(0, |v| v.min(u32::MAX as u64) as u32)
    };
    let (Some(st), Some(d)) = (us_to_ns(&field(cols.start)), us_to_ns(&field(cols.dur))) else {
        return false;
    };
    let st = rebase(st, shift);
    let k = Kernel {
        start_ns: st,
        dur_ns: d,
        wait_ns: opt(cols.wait).and_then(|v| us_to_ns(&v)).unwrap_or(0),
        stream_id: num(cols.stream),
        task_id: num(cols.task),
        model_id: num(cols.model),
        block_dim: num(cols.block),
        cells: row_cells(text, spans, cols, st).into_boxed_str(),
        ..Default::default()
    };
    kernels.push(
        field(cols.name).as_bytes(),
        opt(cols.ty).as_deref().unwrap_or("N/A"),
        opt(cols.core).as_deref().unwrap_or("N/A"),
        k,
    );
    true
}

/// The row's cells in the first file's column order, copied CSV-encoded as they are (one String per task),
/// with the start time re-based (`st`).
fn row_cells(text: &str, spans: &[(usize, usize)], cols: &Columns, st: u64) -> String {
    let mut cells = String::with_capacity(spans.last().map_or(0, |l| l.1 - spans[0].0) + 8);
    for (j, &i) in cols.ours.iter().enumerate() {
        if j > 0 {
            cells.push(',');
        }
        match i {
            _ if Some(j) == cols.start_out => {
                cells.push('"');
                json::push_us3(&mut cells, st);
                cells.push_str("\t\"");
            }
            Some(i) => cells.push_str(&text[spans[i].0..spans[i].1]),
            None => cells.push_str("N/A"),
        }
    }
    cells
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
