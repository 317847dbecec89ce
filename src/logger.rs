//! A tiny `log` backend: `[npuprof] LEVEL message` on stderr, one `write(2)` per line so lines from several
//! threads never interleave.
//!
//! In the cdylib, `log`'s global logger is this library's private copy, so installing ours cannot replace a
//! logger the host has. When npuprof is linked as an rlib into a Rust program that already installed a
//! logger, `set_logger` fails and we leave that logger (and its max level) alone.

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("[npuprof] {:<5} {}\n", r.level(), r.args());
        let b = line.as_bytes();
        let mut off = 0;
        while off < b.len() {
            // SAFETY: writing a valid byte range to fd 2.
            let n = unsafe { libc::write(2, b[off..].as_ptr().cast(), b.len() - off) };
            if n <= 0 {
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                break;
            }
            off += n as usize;
        }
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` unless another logger is already installed.
pub(crate) fn init(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
