//! npuprof — an in-process profiling shim for Ascend NPU inference runtimes.
//!
//! The pipeline, end to end:
//!
//! 1. [`ffi`]: the exported `npuprof_*` C functions (`include/npuprof.h`): pointer checks, a panic boundary,
//!    status codes. Nothing else.
//! 2. [`config`]: the environment, read once on the first call, into one immutable `Config`.
//! 3. [`session`]: the state machine (disabled / armed / idle / running / stopping) and both trigger logics
//!    (manual start/stop; `PROFILER_TOKEN_THRESHOLD` auto start + `PROFILER_STOP_STEP`).
//! 4. [`record`]: the hot path. Each calling thread writes 16-byte records into its own lock-free ring.
//! 5. `drain`: the `npuprof-drain` thread moves ring contents into a binary [`spool`] on disk; the
//!    `npuprof-export` thread turns a finished spool into files.
//! 6. [`export`]: `trace_view.json`, the CSVs and the metadata of one `*_ascend_ms` worker directory.
//! 7. [`backend`]: device collection: host-only; CANN's aclprof driven around each profile, with its msprof
//!    export parsed into the same files; or MSPTI's activity records, taken in-process.
//! 8. [`control`]: `npuprof trigger` from outside (opt-in, `NPUPROF_CONTROL=1`), polled by the drain thread.
//! 9. [`recover`]: `npuprof recover`, a killed process's spool turned into a result.
//! 10. `results`: the one reader of result directories that `npuprof check`, `summary` and `recover` use.
//!
//! What the stages share sits below them, so the module graph has no cycle (imports point down only):
//! [`profile`] (a profile's facts, why it stopped, its counters, the export job, the backend's kind) and
//! [`device`] (the neutral device model backends fill and exporters read, with the [`device::TraceSink`]
//! the trace writer implements and the device lanes' pid scheme); below them the leaves: [`config`],
//! [`spool`], [`record`], [`dir`], [`format`](mod@format), `process` (fork and exit state), [`error`]. Backends and
//! exporters never import each other; the drain calls the session back through `drain::Hooks`; the session
//! drives `control` through [`session::Watcher`], wired here.
//!
//! Nothing runs at load time: no thread, no environment read with a side effect, until the first call. The
//! one exception is opt-in and explained in [`control`]: with `NPUPROF_CONTROL=1`, a library named in
//! `LD_PRELOAD` starts its watcher from a constructor. A `dlopen`ed library never does.
//!
//! # What is public
//!
//! Modules are private unless something outside the library needs them:
//!
//! - the API: [`ffi`] (the C functions, callable from Rust too), [`config`] (`Config`, the variable list
//!   `VARIABLES`, `parse_bool`), [`error`] (`Status` and its codes), [`recover`] (what `npuprof recover` runs),
//!   and the shared models a new backend or exporter is written against: [`profile`], [`device`], [`format`](mod@format),
//!   [`layout`] (the result directory's names);
//! - `#[doc(hidden)] pub`, not an API: what the CLI (`src/bin/npuprof/`), `tests/`, `benches/` and `fuzz/` use
//!   from inside: `backend` (the msprof export parser, MSPTI record layouts and CANN feature reading for
//!   tests and the fuzzers), `control` (the trigger protocol for `npuprof trigger`), `dir` (directory handles
//!   for the CLI), `export` (the CSV headers for the CLI, the trace and overlap writers
//!   for tests and benches), `record` (ring and name-table limits for tests and
//!   benches), `results` (finding and reading result directories, for `check`, `summary` and `recover`),
//!   `session` (logging and the lock-order test hook), `spool` (the spool format for `recover`, the fuzzers
//!   and tests);
//! - private: `drain`, `fault`, `logger`, `process`.

#[doc(hidden)]
pub mod backend;
pub mod config;
#[doc(hidden)]
pub mod control;
pub mod device;
#[doc(hidden)]
pub mod dir;
mod drain;
pub mod error;
#[doc(hidden)]
pub mod export;
mod fault;
pub mod ffi;
pub mod format;
pub mod layout;
mod logger;
mod process;
pub mod profile;
#[doc(hidden)]
pub mod record;
pub mod recover;
#[doc(hidden)]
pub mod results;
#[doc(hidden)]
pub mod session;
#[doc(hidden)]
pub mod spool;

pub use error::{Error, Result, Status};

/// Where the layers are wired together: the session drives the `NPUPROF_CONTROL` watcher through these
/// without importing `control` (which calls the session).
const WATCHER: session::Watcher = session::Watcher {
    prepare: control::prepare,
    poll: control::poll,
};
