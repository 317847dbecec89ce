//! `trace_view.json`: Chrome trace events as a top-level array (as torch_npu/MindSpore write it), streamed
//! to disk event by event, `ts` as a microsecond string with exactly 3 decimals made from integer ns.
//! With `NPUPROF_TRACE_GZIP=1` the same bytes go through gzip (fast level) into `trace_view.json.gz`.

use crate::device::{DeviceEvent, TraceSink};
use crate::error::{Error, Result};
use crate::format::json;
use crate::layout::{AtomicFile, Place};
use std::fmt::Write as _;
use std::io::Write;

pub struct TraceWriter {
    f: AtomicFile,
    /// The gzip stream when compressing: its output is moved to `f` every `GZ_CHUNK` bytes.
    gz: Option<flate2::write::GzEncoder<Vec<u8>>>,
    path: std::path::PathBuf,
    buf: String,
    first: bool,
    written: u64,
    cap: u64,
    pub truncated: bool,
    pub events: u64,
    pub slices: u64,
    /// Events left out because they did not fit `cap` (host and device).
    pub cut_events: u64,
}

/// Compressed bytes held before they are written to the file.
const GZ_CHUNK: usize = 1 << 20;

impl TraceWriter {
    /// A new trace `name` in `at`; events past `cap` bytes are left out (the array is still closed properly).
    pub fn create(at: &Place, name: &str, cap: u64) -> Result<TraceWriter> {
        Self::create_with(at, name, cap, false)
    }

    /// As [`TraceWriter::create`], gzip-compressed when `gzip` (`cap` then bounds the uncompressed bytes,
    /// so the file is never larger than without compression).
    pub fn create_with(at: &Place, name: &str, cap: u64, gzip: bool) -> Result<TraceWriter> {
        let f = AtomicFile::create(at, name)?;
        let path = f.shown();
        let gz = gzip.then(|| {
            flate2::write::GzEncoder::new(Vec::with_capacity(GZ_CHUNK), flate2::Compression::fast())
        });
        let mut t = TraceWriter {
            f,
            gz,
            path,
            buf: String::with_capacity(512),
            first: true,
            written: 2,
            cap,
            truncated: false,
            events: 0,
            slices: 0,
            cut_events: 0,
        };
        t.put(b"[\n")?;
        Ok(t)
    }

    /// Writes `b` to the file, or into the gzip stream.
    fn put(&mut self, b: &[u8]) -> Result<()> {
        let r = match &mut self.gz {
            None => self.f.w.write_all(b),
            Some(gz) => gz.write_all(b).and_then(|_| {
                if gz.get_ref().len() >= GZ_CHUNK {
                    let out = gz.get_mut();
                    let r = self.f.w.write_all(out);
                    out.clear();
                    r
                } else {
                    Ok(())
                }
            }),
        };
        r.map_err(|e| Error::io("cannot write", &self.path, &e))
    }

    fn emit(&mut self) -> Result<()> {
        self.emit_event(false)
    }

    fn emit_slice(&mut self) -> Result<()> {
        self.emit_event(true)
    }

    fn emit_event(&mut self, slice: bool) -> Result<()> {
        let sep: &[u8] = if self.first { b"" } else { b",\n" };
        let n = (self.buf.len() + sep.len()) as u64;
        if self.written + n + 3 > self.cap {
            self.truncated = true;
            self.cut_events += 1;
            self.buf.clear();
            return Ok(());
        }
        self.slices += slice as u64;
        self.first = false;
        self.put(sep)?;
        let buf = std::mem::take(&mut self.buf);
        let r = self.put(buf.as_bytes());
        self.buf = buf;
        r?;
        self.written += n;
        self.events += 1;
        self.buf.clear();
        Ok(())
    }

    /// One metadata (`M`) event: `{"name": name, "args": {key: value_json}}`.
    fn meta(&mut self, name: &str, pid: u32, tid: u32, key: &str, value_json: &str) -> Result<()> {
        let _ = write!(
            self.buf,
            r#"{{"ph":"M","name":"{name}","pid":{pid},"tid":{tid},"args":{{"{key}":{value_json}}}}}"#
        );
        self.emit()
    }

    pub fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) -> Result<()> {
        self.meta(
            "process_name",
            pid,
            0,
            "name",
            &json::string(name.as_bytes()),
        )?;
        self.meta(
            "process_labels",
            pid,
            0,
            "labels",
            &json::string(label.as_bytes()),
        )?;
        self.meta(
            "process_sort_index",
            pid,
            0,
            "sort_index",
            &sort.to_string(),
        )
    }

    pub fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) -> Result<()> {
        self.meta("thread_name", pid, tid, "name", &json::string(name))?;
        self.meta(
            "thread_sort_index",
            pid,
            tid,
            "sort_index",
            &sort.to_string(),
        )
    }

    /// An `X` slice. `name_json` is an already-escaped JSON string literal; `args` a JSON object body
    /// (without braces, may be empty).
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &mut self,
        pid: u32,
        tid: u32,
        name_json: &str,
        ts_ns: u64,
        dur_ns: u64,
        cat: &str,
        args: &str,
    ) -> Result<()> {
        let _ = write!(
            self.buf,
            r#"{{"ph":"X","name":{name_json},"pid":{pid},"tid":{tid},"ts":""#
        );
        json::push_us3(&mut self.buf, ts_ns);
        // `dur` as a string too (as MindSpore writes it): Perfetto converts a numeric string to ns exactly
        // by moving the decimal point, but truncates `double * 1000` for a JSON number, which is 1 ns
        // short for ~1% of values and can break the nesting of slices that end together.
        self.buf.push_str("\",\"dur\":\"");
        json::push_us3(&mut self.buf, dur_ns);
        let _ = write!(self.buf, r#"","cat":"{cat}","args":{{{args}}}}}"#);
        self.emit_slice()
    }

    /// A thread-scoped instant (`i`).
    pub fn instant(
        &mut self,
        pid: u32,
        tid: u32,
        name_json: &str,
        ts_ns: u64,
        cat: &str,
    ) -> Result<()> {
        let _ = write!(
            self.buf,
            r#"{{"ph":"i","s":"t","name":{name_json},"pid":{pid},"tid":{tid},"ts":""#
        );
        json::push_us3(&mut self.buf, ts_ns);
        let _ = write!(self.buf, r#"","cat":"{cat}","args":{{}}}}"#);
        self.emit_slice()
    }

    /// A device-side event (already on our pids and time base). Flow ends (`f`) bind to the enclosing slice
    /// (`"bp":"e"`), as CANN and torch_npu write them.
    pub fn device_event(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        let name = if e.name.is_empty() { "\"\"" } else { e.name };
        let args: &str = if e.args.is_empty() { "{}" } else { e.args };
        let ph = match e.ph {
            b'M' | b'X' | b's' | b'f' | b'C' => e.ph,
            _ => b'i',
        };
        let b = &mut self.buf;
        b.push_str("{\"ph\":\"");
        b.push(ph as char);
        b.push_str("\",");
        if ph == b'i' {
            b.push_str("\"s\":\"t\",");
        }
        b.push_str("\"name\":");
        b.push_str(name);
        b.push_str(",\"pid\":");
        json::push_u64(b, e.pid as u64);
        b.push_str(",\"tid\":");
        json::push_u64(b, e.tid as u64);
        if ph == b'M' {
            b.push_str(",\"args\":");
            b.push_str(args);
            b.push('}');
            return self.emit();
        }
        if ph == b's' || ph == b'f' {
            b.push_str(",\"id\":");
            b.push_str(if e.id.is_empty() { "0" } else { e.id });
        }
        b.push_str(",\"ts\":\"");
        json::push_us3(b, e.ts_ns);
        b.push('"');
        if ph == b'X' {
            b.push_str(",\"dur\":\"");
            json::push_us3(b, e.dur_ns);
            b.push('"');
        }
        if ph == b'f' {
            b.push_str(",\"bp\":\"e\"");
        }
        if !e.cat.is_empty() {
            b.push_str(",\"cat\":");
            b.push_str(e.cat);
        }
        if ph != b's' && ph != b'f' {
            b.push_str(",\"args\":");
            b.push_str(args);
        }
        b.push('}');
        if matches!(ph, b'X' | b'i') {
            self.emit_slice()
        } else {
            self.emit()
        }
    }

    /// Closes the array and moves the file into place. Returns the bytes of the file.
    pub fn finish(mut self) -> Result<u64> {
        self.put(b"\n]\n")?;
        if let Some(gz) = self.gz.take() {
            let rest = gz
                .finish()
                .map_err(|e| Error::io("cannot write", &self.path, &e))?;
            self.f
                .w
                .write_all(&rest)
                .map_err(|e| Error::io("cannot write", &self.path, &e))?;
        }
        let bytes = self.f.w.get_ref().position() + self.f.w.buffer().len() as u64;
        self.f.commit()?;
        Ok(bytes)
    }
}

/// Backends draw their lanes through this (they do not import the writer).
impl TraceSink for TraceWriter {
    fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) -> Result<()> {
        TraceWriter::process(self, pid, name, label, sort)
    }
    fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) -> Result<()> {
        TraceWriter::thread(self, pid, tid, name, sort)
    }
    fn device_event(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        TraceWriter::device_event(self, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_a_json_array_with_string_ts_and_dur() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.json");
        let mut t =
            TraceWriter::create(&Place::open(d.path()).unwrap(), "t.json", u64::MAX).unwrap();
        t.process(42, "MindSpore", "CPU", 1).unwrap();
        t.thread(42, 7, b"Thread 7", 0).unwrap();
        t.complete(
            42,
            7,
            "\"a\\\"b\"",
            1_700_000_000_000_000_123,
            4_567,
            "cpu_op",
            "",
        )
        .unwrap();
        t.instant(42, 7, "\"m\"", 1_700_000_000_000_001_000, "mark")
            .unwrap();
        t.finish().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 7);
        assert_eq!(a[5]["ts"], "1700000000000000.123");
        assert_eq!(a[5]["dur"], "4.567");
        assert_eq!(a[5]["name"], "a\"b");
        assert_eq!(a[6]["ph"], "i");
    }

    #[test]
    fn cap_truncates_but_keeps_valid_json() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.json");
        let mut t = TraceWriter::create(&Place::open(d.path()).unwrap(), "t.json", 400).unwrap();
        for i in 0..100 {
            t.complete(1, 1, "\"x\"", i * 1000, 10, "cpu_op", "")
                .unwrap();
        }
        assert!(t.truncated);
        let n = t.events;
        assert_eq!(
            n + t.cut_events,
            100,
            "every event written or counted as cut"
        );
        let bytes = t.finish().unwrap();
        assert!(bytes <= 400, "{bytes}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len() as u64, n);
        assert!(n > 0 && n < 100);
    }
}
