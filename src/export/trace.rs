//! The trace of a result in the forms `NPUPROF_TRACE_FORMAT` and `NPUPROF_TRACE_GZIP` ask for:
//! `trace_view.json` (or `trace_view.json.gz`), `trace_view.pftrace`, or both, written in one pass: every
//! event the host pass and the device lanes draw goes to each writer.
//!
//! The JSON decides what is left out when the disk budget runs short: an event it cuts is not offered to
//! the Perfetto trace either, so with `both` the two hold the same events unless the Perfetto trace's own
//! share runs out first (its cuts are counted apart, `pftrace_cut_events`).

use super::perfetto::PerfettoWriter;
pub use super::perfetto::{check_pftrace, PftraceFacts};
use super::trace_view::TraceWriter;
use crate::config::TraceFormat;
use crate::device::{DeviceEvent, TraceSink};
use crate::error::Result;
use crate::layout::{self, Place};

pub struct Trace {
    json: Option<TraceWriter>,
    pf: Option<PerfettoWriter>,
    gzip: bool,
}

/// The sizes of the files written (`None`: not written).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceBytes {
    pub json: Option<u64>,
    pub pftrace: Option<u64>,
}

impl TraceBytes {
    pub fn total(&self) -> u64 {
        self.json.unwrap_or(0) + self.pftrace.unwrap_or(0)
    }
}

/// The JSON trace's file name.
pub fn json_name(gzip: bool) -> &'static str {
    if gzip {
        layout::TRACE_VIEW_GZ
    } else {
        layout::TRACE_VIEW
    }
}

impl Trace {
    /// The trace files of `format` in `at`, within `cap` bytes together (with both, the JSON gets 3/4 of
    /// it: the Perfetto trace is a fraction of its size), for a profile of the process `host_pid`.
    pub fn create(
        at: &Place,
        format: TraceFormat,
        gzip: bool,
        cap: u64,
        host_pid: u32,
    ) -> Result<Trace> {
        let (json_cap, pf_cap) = match format {
            TraceFormat::Json => (cap, 0),
            TraceFormat::Perfetto => (0, cap),
            TraceFormat::Both => (cap / 4 * 3, cap - cap / 4 * 3),
        };
        let json = match format.json() {
            true => Some(TraceWriter::create_with(
                at,
                json_name(gzip),
                json_cap,
                gzip,
            )?),
            false => None,
        };
        let pf = match format.perfetto() {
            true => Some(PerfettoWriter::create(
                at,
                layout::TRACE_PFTRACE,
                pf_cap,
                host_pid,
            )?),
            false => None,
        };
        Ok(Trace { json, pf, gzip })
    }

    /// Whether the JSON trace is gzip-compressed.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Events left out (by the JSON when it is written, else by the Perfetto trace).
    pub fn cut_events(&self) -> u64 {
        match (&self.json, &self.pf) {
            (Some(j), _) => j.cut_events,
            (None, Some(p)) => p.cut_events,
            (None, None) => 0,
        }
    }

    /// Events the Perfetto trace left out beyond those the JSON did (its own share ran out).
    pub fn pftrace_cut_events(&self) -> u64 {
        match (&self.json, &self.pf) {
            (Some(_), Some(p)) => p.cut_events,
            _ => 0,
        }
    }

    pub fn truncated(&self) -> bool {
        self.json.as_ref().is_some_and(|j| j.truncated)
            || self.pf.as_ref().is_some_and(|p| p.truncated)
    }

    /// Slices and instants written (the JSON's count when it is written).
    pub fn slices(&self) -> u64 {
        match (&self.json, &self.pf) {
            (Some(j), _) => j.slices,
            (None, Some(p)) => p.slices,
            (None, None) => 0,
        }
    }

    /// Events written (the JSON's count when it is written).
    pub fn events(&self) -> u64 {
        match (&self.json, &self.pf) {
            (Some(j), _) => j.events,
            (None, Some(p)) => p.events,
            (None, None) => 0,
        }
    }

    /// Runs `json` on the JSON writer and, unless it cut the event, `pf` on the Perfetto writer.
    fn each(
        &mut self,
        json: impl FnOnce(&mut TraceWriter) -> Result<()>,
        pf: impl FnOnce(&mut PerfettoWriter) -> Result<()>,
    ) -> Result<()> {
        if let Some(j) = &mut self.json {
            let cut = j.cut_events;
            json(j)?;
            if j.cut_events > cut {
                return Ok(());
            }
        }
        match &mut self.pf {
            Some(p) => pf(p),
            None => Ok(()),
        }
    }

    pub fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) -> Result<()> {
        self.each(
            |j| j.process(pid, name, label, sort),
            |p| {
                p.process(pid, name, label, sort);
                Ok(())
            },
        )
    }

    pub fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) -> Result<()> {
        self.each(
            |j| j.thread(pid, tid, name, sort),
            |p| {
                p.thread(pid, tid, name, sort);
                Ok(())
            },
        )
    }

    /// A slice (see [`TraceWriter::complete`]). `encloser_follows`: a slice of the same lane that encloses
    /// this one and begins at the same nanosecond is written later (the host pass writes a range when it
    /// ends); the Perfetto trace then holds this one until it comes, since Perfetto orders slices that begin
    /// together by their place in the file.
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
        encloser_follows: bool,
    ) -> Result<()> {
        self.each(
            |j| j.complete(pid, tid, name_json, ts_ns, dur_ns, cat, args),
            |p| {
                p.complete(
                    pid,
                    tid,
                    name_json,
                    ts_ns,
                    dur_ns,
                    cat,
                    args,
                    encloser_follows,
                )
            },
        )
    }

    /// A thread-scoped instant.
    pub fn instant(
        &mut self,
        pid: u32,
        tid: u32,
        name_json: &str,
        ts_ns: u64,
        cat: &str,
    ) -> Result<()> {
        self.each(
            |j| j.instant(pid, tid, name_json, ts_ns, cat),
            |p| p.host_instant(pid, tid, name_json, ts_ns, cat),
        )
    }

    /// Closes every file and moves it into place.
    pub fn finish(self) -> Result<TraceBytes> {
        let json = self.json.map(TraceWriter::finish).transpose()?;
        let pftrace = self.pf.map(PerfettoWriter::finish).transpose()?;
        Ok(TraceBytes { json, pftrace })
    }
}

impl TraceSink for Trace {
    fn process(&mut self, pid: u32, name: &str, label: &str, sort: u32) -> Result<()> {
        Trace::process(self, pid, name, label, sort)
    }
    fn thread(&mut self, pid: u32, tid: u32, name: &[u8], sort: u32) -> Result<()> {
        Trace::thread(self, pid, tid, name, sort)
    }
    fn device_event(&mut self, e: &DeviceEvent<'_>) -> Result<()> {
        self.each(|j| j.device_event(e), |p| p.device_event(e))
    }
}
