//! Reading raw values: the one rule for blanks, and a warning for each invalid value that names the variable, the
//! value and the value used instead.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// Parses the boolean spellings the seeds' users write. `None` for anything else.
///
/// ```
/// use npuprof::config::parse_bool;
/// assert_eq!(parse_bool(" True "), Some(true));
/// assert_eq!(parse_bool("off"), Some(false));
/// assert_eq!(parse_bool("enabled"), None);
/// ```
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Shows a raw value in a warning: lossy UTF-8, control characters escaped, long values cut.
pub(super) fn show(v: &OsString) -> String {
    let s = String::from_utf8_lossy(v.as_bytes());
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    format!("\"{out}\"")
}

pub(super) struct Reader<'a> {
    pub(super) get: &'a dyn Fn(&str) -> Option<OsString>,
    pub(super) warnings: Vec<String>,
    /// Variables already warned about (a variable read twice, like `LOCAL_RANK`, warns once).
    pub(super) warned: Vec<&'static str>,
}

/// The one rule for empty values: a variable set to nothing or to blanks only is treated as unset (its
/// default, no warning), whatever the variable. `VLLM_TORCH_PROFILER_DIR=` is therefore "disabled" and
/// `PROFILER_TOKEN_THRESHOLD=` selects the new logic, as a Python `os.getenv(...)` truthiness check would.
pub(super) fn is_blank(v: &OsString) -> bool {
    v.as_bytes().iter().all(u8::is_ascii_whitespace)
}

impl Reader<'_> {
    pub(super) fn raw(&self, name: &str) -> Option<OsString> {
        (self.get)(name).filter(|v| !is_blank(v))
    }

    pub(super) fn warn(
        &mut self,
        name: &'static str,
        v: &OsString,
        why: &str,
        used: impl std::fmt::Display,
    ) {
        if self.warned.contains(&name) {
            return;
        }
        self.warned.push(name);
        self.warnings
            .push(format!("{name}={} is {why}; using {used}", show(v)));
    }

    pub(super) fn boolean(&mut self, name: &'static str) -> bool {
        let Some(v) = self.raw(name) else {
            return false;
        };
        match v.to_str().and_then(parse_bool) {
            Some(b) => b,
            None => {
                self.warn(
                    name,
                    &v,
                    "not a boolean (1/0, true/false, yes/no, on/off)",
                    "false",
                );
                false
            }
        }
    }

    /// An unsigned integer in `[min, max]`.
    pub(super) fn uint(&mut self, name: &'static str, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = self.raw(name) else {
            return default;
        };
        let t = v.to_str().map(str::trim);
        match t {
            Some(t) => match t.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                Ok(n) => {
                    let used = n.clamp(min, max);
                    self.warn(name, &v, &format!("outside {min}..={max}"), used);
                    used
                }
                Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
                    self.warn(
                        name,
                        &v,
                        &format!("out of range (outside {min}..={max})"),
                        max,
                    );
                    max
                }
                Err(_) => {
                    self.warn(name, &v, "not an unsigned integer", default);
                    default
                }
            },
            None => {
                self.warn(name, &v, "not valid UTF-8", default);
                default
            }
        }
    }

    /// The first of `names` that is set and valid (and which one it was), else 0.
    pub(super) fn first_u32(&mut self, names: &[&'static str]) -> (u32, Option<&'static str>) {
        for name in names {
            let Some(v) = self.raw(name) else { continue };
            match v.to_str().map(str::trim).map(str::parse::<u32>) {
                Some(Ok(n)) => return (n, Some(name)),
                _ => {
                    let next = names
                        .iter()
                        .skip_while(|n| *n != name)
                        .nth(1)
                        .map_or("0".to_string(), |n| format!("{n}, else 0"));
                    self.warn(name, &v, "not a rank/device number", next)
                }
            }
        }
        (0, None)
    }
}
