//! Backends: where device data comes from.
//!
//! Host annotations (ranges, marks, steps) are always recorded by the core, whatever the backend. A backend
//! adds device-side collection around a profile: `start` runs on the caller's thread inside `npuprof_start`,
//! under the control lock; `stop` runs on an `npuprof-vendor` thread of its own, outside that lock, and may
//! block as long as the vendor library does ([`vendor`]: `npuprof_stop` returns at once, the export waits for
//! the stop with a bound and abandons it after, saying so in the metadata). The [`DeviceData`] that `stop`
//! returns is turned into rows on the export thread, after the host spool is complete.
//!
//! * [`host`]: collects nothing; works anywhere.
//! * [`acl`]: drives CANN's aclprof C API (`libascendcl.so` / `libmsprofiler.so`) and parses what CANN wrote
//!   with `msprof --export=on`.

pub mod acl;
pub mod host;
pub mod mspti;
pub mod safe_copy;
pub mod vendor;

use crate::config::{BackendKind, Config};
use crate::error::Result;
use crate::profile::{BackendId, Profile};

/// A string of device data, by its index in [`Strings`] (`Sym::default()` is the empty string).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

/// One distinct string of device data, with the forms the exporters write made once.
#[derive(Debug)]
pub struct Str {
    pub bytes: Box<[u8]>,
    /// Lossless text (invalid UTF-8 bytes as `\xNN`).
    pub text: Box<str>,
    /// The CSV cell (quoted when it must be).
    pub csv: Box<str>,
    /// The JSON string literal (quotes included).
    pub json: Box<str>,
    /// As an `Accelerator Core`: a communication core (`COMMUNICATION`, `HCCL`).
    pub communication_core: bool,
    /// As a task name: a communication task (`hcom_*`, `Hccl*`).
    pub communication_name: bool,
    /// As a task name: `hcom_receive*` (the `Bubble` column).
    pub receive: bool,
}

/// The strings of one profile's device tasks, each stored once. A million tasks share a few hundred names:
/// a task holds a 4-byte [`Sym`] (no refcount traffic, no allocation per task) and each name is escaped for
/// CSV and JSON once, not once per row.
#[derive(Debug)]
pub struct Strings {
    list: Vec<Str>,
    index: std::collections::HashMap<Box<[u8]>, Sym>,
}

impl Default for Strings {
    fn default() -> Self {
        let mut s = Strings {
            list: Vec::new(),
            index: std::collections::HashMap::new(),
        };
        s.intern(b"");
        s
    }
}

impl Strings {
    pub fn intern(&mut self, bytes: &[u8]) -> Sym {
        if let Some(&s) = self.index.get(bytes) {
            return s;
        }
        let sym = Sym(self.list.len() as u32);
        let text = crate::format::json::text(bytes);
        self.list.push(Str {
            bytes: bytes.into(),
            csv: crate::format::json::csv_field(&text).into(),
            json: crate::format::json::string(bytes).into(),
            communication_core: matches!(bytes, b"COMMUNICATION" | b"HCCL"),
            communication_name: bytes.starts_with(b"hcom_") || bytes.starts_with(b"Hccl"),
            receive: bytes.to_ascii_lowercase().starts_with(b"hcom_receive"),
            text: text.into(),
        });
        self.index.insert(bytes.into(), sym);
        sym
    }

    /// The string of `s` (the empty string for a symbol of another table).
    pub fn get(&self, s: Sym) -> &Str {
        self.list.get(s.0 as usize).unwrap_or(&self.list[0])
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.len() <= 1
    }
}

/// One device task, the unit of `kernel_details.csv`, `op_statistic.csv` and the `Ascend Hardware` lanes.
/// Its strings are in the [`Kernels`] it belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub name: Sym,
    pub op_type: Sym,
    /// `Accelerator Core` (`AI_CORE`, `AI_VECTOR_CORE`, `MIX_AIC`, `AI_CPU`, `COMMUNICATION`, ...).
    pub core: Sym,
    /// CLOCK_REALTIME ns, on the host time base.
    pub start_ns: u64,
    pub dur_ns: u64,
    pub wait_ns: u64,
    pub stream_id: u32,
    pub task_id: u32,
    pub model_id: u32,
    pub block_dim: u32,
    /// With [`DeviceResult::kernel_header`]: the row's cells for those columns, verbatim from the source,
    /// CSV-encoded and comma-separated (one allocation per task, no spare capacity).
    pub cells: Box<str>,
}

/// The device tasks of one profile and their strings, at most `limit` of them (`NPUPROF_MAX_DEVICE_RECORDS`):
/// the list grows only by fallible reservations, so neither a huge source nor a failed allocation can abort
/// the process; a task beyond the limit, or one no memory could be found for, is counted in `cut`.
#[derive(Debug)]
pub struct Kernels {
    pub list: Vec<Kernel>,
    pub strings: Strings,
    limit: usize,
    /// Tasks left out: beyond `limit`, or when memory for them could not be reserved.
    pub cut: u64,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::with_limit(crate::config::DEFAULT_MAX_DEVICE_RECORDS as usize)
    }
}

impl Kernels {
    /// No tasks yet; at most `limit` will be kept.
    pub fn with_limit(limit: usize) -> Self {
        Kernels {
            list: Vec::new(),
            strings: Strings::default(),
            limit,
            cut: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn str(&self, s: Sym) -> &Str {
        self.strings.get(s)
    }

    /// Whether one more task can be kept: below the limit, with memory reserved for it (the list doubles,
    /// fallibly). `false` counts the task in `cut`.
    pub fn room(&mut self) -> bool {
        let n = self.list.len();
        let ok = n < self.limit
            && (n < self.list.capacity()
                || self
                    .list
                    .try_reserve_exact(n.max(1024).min(self.limit - n))
                    .is_ok());
        if !ok {
            self.cut += 1;
        }
        ok
    }

    /// Adds `k` (its strings already in `strings`) if there is room; else counts it in `cut`.
    pub fn add(&mut self, k: Kernel) -> bool {
        let ok = self.room();
        if ok {
            self.list.push(k);
        }
        ok
    }

    /// Adds `k` with these strings (interned) if there is room; else counts it in `cut`.
    pub fn push(&mut self, name: &[u8], op_type: &str, core: &str, k: Kernel) -> bool {
        if !self.room() {
            return false;
        }
        let k = Kernel {
            name: self.strings.intern(name),
            op_type: self.strings.intern(op_type.as_bytes()),
            core: self.strings.intern(core.as_bytes()),
            ..k
        };
        self.list.push(k);
        true
    }

    /// A communication task (HCCL): counted as communication, not computing, in `step_trace_time.csv`.
    pub fn is_communication(&self, k: &Kernel) -> bool {
        self.str(k.core).communication_core || self.str(k.name).communication_name
    }

    /// A `hcom_receive*` task: the `Bubble` column.
    pub fn is_receive(&self, k: &Kernel) -> bool {
        self.str(k.name).receive
    }
}

/// One trace event of a device-side timeline, already on the host time base and on npuprof's pids.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceEvent<'a> {
    /// `X`, `C`, `s`, `f`, `i`, or `M` (process/thread metadata: `name` is `"process_name"` & co.).
    pub ph: u8,
    pub pid: u32,
    pub tid: u32,
    pub ts_ns: u64,
    pub dur_ns: u64,
    /// A JSON string literal (quotes included).
    pub name: &'a str,
    /// A JSON string literal, or empty.
    pub cat: &'a str,
    /// A JSON object (braces included), or empty.
    pub args: &'a str,
    /// Flow id, a JSON literal (string or number).
    pub id: &'a str,
}

/// What a device timeline wrote.
#[derive(Debug, Default)]
pub struct LaneStats {
    pub events: u64,
    pub skipped: u64,
    /// Kernels taken from the lanes, when the backend asked for them (no better source).
    pub kernels: Kernels,
}

/// Device lanes written into `trace_view.json` by the exporter, streamed (never all in memory).
pub trait Lanes: Send {
    /// Writes the lanes: what was written and, when it stopped early, why.
    fn write(
        self: Box<Self>,
        tw: &mut crate::export::trace_view::TraceWriter,
    ) -> (LaneStats, Option<String>);
}

/// What a backend collected for one profile, parsed.
#[derive(Default)]
pub struct DeviceResult {
    pub kernels: Kernels,
    /// `kernel_details.csv` columns (after `Step ID`) when the source has its own column set (CANN's
    /// op_summary, renamed as the frameworks do); `None` = npuprof's default header.
    pub kernel_header: Option<Vec<String>>,
    /// Device and CANN lanes for `trace_view.json`; `None` = lanes are drawn from `kernels`.
    pub timeline: Option<Box<dyn Lanes>>,
    /// Files copied into `ASCEND_PROFILER_OUTPUT/` as they are (name, content), e.g. CANN's
    /// `op_statistic.csv` and `api_statistic.csv`.
    pub files: Vec<(String, String)>,
    /// Members of the `"device"` object of `profiler_metadata.json`: (key, JSON value).
    pub meta: Vec<(String, String)>,
    /// Bytes the device data keeps in the profile's directory while the result is written (the MSPTI
    /// spool): they count against NPUPROF_MAX_DISK_MB (see `export::budget`).
    pub disk_bytes: u64,
}

impl DeviceResult {
    /// Sets `device.status` (replacing an earlier one) and, when given, `device.message`.
    pub fn set_status(&mut self, status: &str, message: Option<&str>) {
        self.meta.retain(|(k, _)| k != "status");
        self.meta.push((
            "status".into(),
            crate::format::json::string(status.as_bytes()),
        ));
        if let Some(m) = message {
            self.meta
                .push(("message".into(), crate::format::json::string(m.as_bytes())));
        }
    }
}

pub trait Backend: Send {
    fn id(&self) -> BackendId;
    /// The device the calling thread drives (asked before the profile's directory is made).
    fn device_id(&mut self, cfg: &Config) -> u32 {
        cfg.device_id
    }
    /// Begins device collection for `profile` (its directories exist).
    fn start(&mut self, profile: &Profile) -> Result<()>;
    /// Ends device collection; what was collected is parsed later on the export thread. Runs on the
    /// `npuprof-vendor` thread (see [`vendor`]); report each vendor call with [`vendor::calling`] first.
    fn stop(&mut self, profile: &Profile) -> Result<Box<dyn DeviceData>>;
    /// `stop` calls a vendor library (it may block): run it on the `npuprof-vendor` thread. `false` (the
    /// host backend): it is run inline.
    fn calls_vendor(&self) -> bool {
        true
    }
}

pub trait DeviceData: Send {
    /// Parses what the backend collected. Runs on the export thread; may take long (never on the caller's).
    fn collect(self: Box<Self>, profile: &Profile) -> Result<DeviceResult>;
    /// Whether `collect` has a device step to do (a vendor stop to wait for, msprof to run, a device spool to
    /// read): then the export writes the host result first, marked `device_data: pending`, and adds the
    /// device data after (see `export::run`). `false`: no device data, the result is written once.
    fn pending(&self) -> bool {
        true
    }
}

/// No device data.
pub struct NoDeviceData;

impl DeviceData for NoDeviceData {
    fn collect(self: Box<Self>, _: &Profile) -> Result<DeviceResult> {
        Ok(DeviceResult::default())
    }
    fn pending(&self) -> bool {
        false
    }
}

/// The backend for a configuration. `acl` / `mspti` fail with `NPUPROF_ERR_BACKEND` when CANN cannot be opened.
/// `auto` prefers MSPTI (records arrive in-process and are parsed seconds after stop, no external tool), then
/// aclprof (needs CANN's msprof to parse), then host-only with one warning.
pub fn select(kind: BackendKind, cfg: &Config) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Host => Ok(Box::new(host::HostBackend)),
        BackendKind::Acl => acl::AclBackend::open(true).map(|b| Box::new(b) as Box<dyn Backend>),
        BackendKind::Mspti => {
            mspti::MsptiBackend::open(true, cfg).map(|b| Box::new(b) as Box<dyn Backend>)
        }
        BackendKind::Auto => {
            let m = match mspti::MsptiBackend::open(false, cfg) {
                Ok(b) => return Ok(Box::new(b)),
                Err(e) => e.msg,
            };
            match acl::AclBackend::open(false) {
                Ok(b) => {
                    log::info!("NPUPROF_BACKEND=auto: using aclprof ({m})");
                    Ok(Box::new(b))
                }
                Err(e) => {
                    log::warn!(
                        "NPUPROF_BACKEND=auto: CANN profiling is unavailable, recording host data only ({m}; {})",
                        e.msg
                    );
                    Ok(Box::new(host::HostBackend))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 8: a task's memory is what the export holds per device record (72 bytes; 80 before).
    #[test]
    fn a_kernel_is_compact() {
        assert!(std::mem::size_of::<Kernel>() <= 72);
    }

    #[test]
    fn kernels_beyond_the_limit_are_counted_not_kept() {
        let mut k = Kernels::with_limit(3);
        for i in 0..5 {
            k.push(
                b"n",
                "t",
                "c",
                Kernel {
                    start_ns: i,
                    ..Default::default()
                },
            );
        }
        assert_eq!((k.len(), k.cut), (3, 2));
        assert!(k.list.capacity() <= 3);
    }

    #[test]
    fn strings_are_stored_once_with_their_escaped_forms() {
        let mut s = Strings::default();
        assert!(s.is_empty());
        let a = s.intern(b"hcom_receive_1");
        let b = s.intern(b"MatMul,\"x\"\xff");
        assert_eq!(s.intern(b"hcom_receive_1"), a);
        assert_ne!(a, b);
        assert_eq!(s.len(), 3);
        assert_eq!(s.intern(b""), Sym::default());
        let (ea, eb) = (s.get(a), s.get(b));
        assert!(ea.communication_name && ea.receive && !ea.communication_core);
        assert!(!eb.communication_name && !eb.receive);
        assert_eq!(&*eb.csv, "\"MatMul,\"\"x\"\"\\xff\"");
        assert_eq!(&*eb.json, r#""MatMul,\"x\"\\xff""#);
        let h = s.intern(b"HCCL");
        assert!(s.get(h).communication_core);
        // A symbol of a bigger table reads as the empty string, not a panic.
        assert_eq!(&*s.get(Sym(1000)).text, "");
    }
}
