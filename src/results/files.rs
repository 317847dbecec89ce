//! Reading result files from a tree that other users may write: each file is opened relative to a
//! directory handle, never through a symlink, never blocking on a FIFO or device (regular files only), and
//! read with a size cap per kind of file. A file over its cap is reported as too large, naming the file and
//! the cap, and is not read.

use crate::dir::{Dir, Kind};
use crate::format::csv::{unquote, RawRecords};
use crate::format::jsonparse::{stream_array_bounded, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// `profiler_metadata.json`, `profiler_info_{rank}.json`: a few KiB as npuprof writes them.
pub const JSON_CAP: u64 = 4 << 20;
/// A CSV (`kernel_details.csv` can hold millions of kernels); streamed record by record.
pub const CSV_CAP: u64 = 8 << 30;
/// One CSV record (a line, or several inside a quoted field).
pub const CSV_RECORD_CAP: usize = 1 << 20;
/// `trace_view.json`, streamed event by event: 4 times the default disk cap of a profile
/// (`NPUPROF_MAX_DISK_MB` 4096).
pub const TRACE_CAP: u64 = 16 << 30;
/// One trace event (npuprof writes a few hundred bytes each).
pub const TRACE_EVENT_CAP: usize = 16 << 20;
/// Events of a `trace_view.pftrace` stacked by `npuprof check` (24 bytes each in memory).
pub const TRACE_EVENTS_CHECKED: usize = 64 << 20;

/// The kind of file being read, which sets its cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    Json,
    Csv,
    Trace,
}

impl Cap {
    pub fn bytes(self) -> u64 {
        match self {
            Cap::Json => JSON_CAP,
            Cap::Csv => CSV_CAP,
            Cap::Trace => TRACE_CAP,
        }
    }
}

/// `4 MiB`, `16 GiB`.
fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n => format!("{n} bytes"),
    }
}

fn too_large(path: &Path, len: u64, cap: u64) -> String {
    format!(
        "{}: too large ({len} bytes; the cap for this file is {}): not read",
        path.display(),
        size(cap)
    )
}

/// Why `name` in `d` cannot be opened as a regular file: said plainly for a symlink, FIFO, socket or
/// device, else the error.
fn open_error(d: &Dir, path: &Path, name: &str, e: std::io::Error) -> String {
    match d.stat_at(name) {
        Ok(Some(st)) if st.kind == Kind::Symlink => {
            format!("{}: a symlink (never followed)", path.display())
        }
        Ok(Some(st)) if st.kind == Kind::Other => format!(
            "{}: not a regular file (a FIFO, socket or device)",
            path.display()
        ),
        Ok(Some(st)) if st.kind == Kind::Dir => {
            format!("{}: not a regular file (a directory)", path.display())
        }
        _ => format!("{}: {e}", path.display()),
    }
}

/// A reader that fails once more than `left` bytes come (a file that grew past its cap while read).
pub struct Capped<R> {
    r: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let mut one = [0u8; 1];
            return match self.r.read(&mut one)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!(
                    "too large (grew past the cap for this file, {}): not read",
                    size(self.cap)
                ))),
            };
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let got = self.r.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}

/// A trace's bytes: `f` itself, or, for a gzip file (`trace_view.json.gz`), its decompressed bytes, capped at
/// [`TRACE_CAP`] like a plain trace's.
pub fn trace_reader(f: Capped<std::fs::File>, gz: bool) -> Box<dyn Read> {
    if gz {
        Box::new(Capped {
            r: flate2::read::GzDecoder::new(f),
            left: TRACE_CAP,
            cap: TRACE_CAP,
        })
    } else {
        Box::new(f)
    }
}

/// Opens the regular file `name` of `d` (shown as `path`) for a capped read; the size it had when opened.
pub fn open(
    d: &Dir,
    path: &Path,
    name: &str,
    cap: Cap,
) -> Result<(Capped<std::fs::File>, u64), String> {
    let (f, st) = d
        .open_file(name)
        .map_err(|e| open_error(d, path, name, e))?;
    let cap = cap.bytes();
    if st.size > cap {
        return Err(too_large(path, st.size, cap));
    }
    Ok((
        Capped {
            r: f,
            left: cap,
            cap,
        },
        st.size,
    ))
}

/// The whole of a small file (JSON metadata).
pub fn read(d: &Dir, path: &Path, name: &str, cap: Cap) -> Result<Vec<u8>, String> {
    let (mut r, len) = open(d, path, name, cap)?;
    let mut b = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    r.read_to_end(&mut b)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(b)
}

/// Calls `f` with each record of a CSV, decoded, until it returns false; memory is one record.
pub fn csv_each(
    d: &Dir,
    path: &Path,
    name: &str,
    mut f: impl FnMut(Vec<String>) -> bool,
) -> Result<(), String> {
    let (r, _) = open(d, path, name, Cap::Csv)?;
    let mut rd = BufReader::with_capacity(64 << 10, r);
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut rec = Vec::new();
    let mut spans = Vec::new();
    for row in 1usize.. {
        rec.clear();
        let mut quotes = 0usize;
        loop {
            let from = rec.len();
            let room = (CSV_RECORD_CAP + 1 - from) as u64;
            let n = (&mut rd)
                .take(room)
                .read_until(b'\n', &mut rec)
                .map_err(err)?;
            if rec.len() > CSV_RECORD_CAP {
                return Err(format!(
                    "{}: row {row} is longer than {} (the cap for one record): not read",
                    path.display(),
                    size(CSV_RECORD_CAP as u64)
                ));
            }
            quotes += rec[from..].iter().filter(|&&b| b == b'"').count();
            if n == 0 || !rec.ends_with(b"\n") || quotes % 2 == 0 {
                break;
            }
        }
        if rec.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(&rec)
            .map_err(|_| format!("{}: row {row} is not UTF-8", path.display()))?;
        RawRecords::new(text).next_into(&mut spans);
        let cells = spans
            .iter()
            .map(|&(a, b)| unquote(&text[a..b]).into_owned())
            .collect();
        if !f(cells) {
            return Ok(());
        }
    }
    Ok(())
}

/// Calls `f` with every event of a trace_view.json opened by [`open`] (streamed: one block and one event in
/// memory).
pub fn events(r: impl Read, path: &Path, mut f: impl FnMut(&Value<'_>)) -> Result<(), String> {
    stream_array_bounded(r, 8 << 20, TRACE_EVENT_CAP, |ps| {
        let v = ps.value(0)?;
        f(&v);
        Ok(())
    })
    .map_err(|e| format!("{}: {e}", path.display()))
}
