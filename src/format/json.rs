//! Minimal JSON/CSV text helpers (the runtime dependency budget has no serde).

use std::fmt::Write as _;

/// One unit of a name's reversible text (see [`text`]).
enum Unit {
    /// A character written as itself.
    Char(char),
    /// A byte written as the four characters `\xNN` (lowercase hex).
    Hex(u8),
}

/// Splits `bytes` into the units of its reversible text: valid UTF-8 characters as themselves, each invalid
/// byte as `\xNN`, and a backslash followed by `x` as `\x5c`, so that every `\xNN` in the text stands for
/// exactly one byte and no character written as itself starts one.
fn units(bytes: &[u8], mut f: impl FnMut(Unit)) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        for (i, c) in valid.char_indices() {
            // A backslash ending a valid chunk is followed by an invalid byte (written `\xNN`), never by `x`.
            if c == '\\' && valid.as_bytes().get(i + 1) == Some(&b'x') {
                f(Unit::Hex(b'\\'));
            } else {
                f(Unit::Char(c));
            }
        }
        for &b in chunk.invalid() {
            f(Unit::Hex(b));
        }
    }
}

/// Appends `bytes` as the inside of a JSON string whose decoded value is [`text`]`(bytes)`: valid UTF-8 is
/// kept (with JSON escapes for quotes, backslashes, control characters, U+2028/U+2029), invalid bytes and a
/// backslash before `x` become the text `\xNN`, so non-UTF-8 names stay visible and every name maps to its
/// own string (the mapping is reversible, see [`text`]).
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    units(bytes, |u| match u {
        Unit::Char(c) => match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        },
        Unit::Hex(b) => {
            let _ = write!(out, "\\\\x{b:02x}");
        }
    });
}

/// `bytes` as a JSON string literal, quotes included.
pub fn string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    escape_into(&mut s, bytes);
    s.push('"');
    s
}

/// Reversible text for a possibly non-UTF-8 name outside JSON (CSV cells, logs), and the decoded value of
/// [`string`]: valid UTF-8 as itself, each invalid byte as `\xNN` (lowercase hex) and a backslash followed by
/// `x` as `\x5c`. Replacing every `\xNN` of the text by the byte NN, left to right, gives back the exact
/// bytes, so distinct names have distinct texts.
pub fn text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    units(bytes, |u| match u {
        Unit::Char(c) => s.push(c),
        Unit::Hex(b) => {
            let _ = write!(s, "\\x{b:02x}");
        }
    });
    s
}

/// Integer ns → microseconds with exactly 3 decimals, no float rounding.
///
/// ```
/// assert_eq!(npuprof::format::json::us3(1_704_161_511_420_306_491), "1704161511420306.491");
/// ```
pub fn us3(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// Appends `us3(ns)` without allocating.
pub fn push_us3(out: &mut String, ns: u64) {
    let mut buf = [0u8; 24];
    let f = ns % 1000;
    buf[23] = b'0' + (f % 10) as u8;
    buf[22] = b'0' + (f / 10 % 10) as u8;
    buf[21] = b'0' + (f / 100) as u8;
    buf[20] = b'.';
    let i = digits(&mut buf[..20], ns / 1000);
    // SAFETY: `buf[i..]` holds only ASCII digits and one '.', written above (valid UTF-8); this runs for
    // every number of a million-row export, where a checked conversion was a quarter of the CSV time.
    out.push_str(unsafe { std::str::from_utf8_unchecked(&buf[i..]) });
}

/// Writes the decimal digits of `v` at the end of `buf`; returns where they start.
fn digits(buf: &mut [u8], mut v: u64) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return i;
        }
    }
}

/// One CSV field: quoted when it holds a comma, quote, CR, LF or TAB (quotes doubled). The TAB case is CANN's
/// `"<start time>\t"` convention, which frameworks write quoted.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r', '\t']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Appends the decimal digits of `v` (no formatting machinery, no allocation).
pub fn push_u64(out: &mut String, v: u64) {
    let mut buf = [0u8; 20];
    let i = digits(&mut buf, v);
    // SAFETY: `buf[i..]` holds only ASCII digits written by `digits` (valid UTF-8).
    out.push_str(unsafe { std::str::from_utf8_unchecked(&buf[i..]) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_formatting_matches_display() {
        for v in [0u64, 7, 10, 999, 1000, 123_456_789, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, v.to_string());
            let mut t = String::new();
            push_us3(&mut t, v);
            assert_eq!(t, format!("{}.{:03}", v / 1000, v % 1000));
        }
    }

    #[test]
    fn json_escapes_are_valid_json() {
        let cases: &[&[u8]] = &[
            b"plain",
            b"quote\" back\\slash",
            b"ctl\x01\x1f\n\t",
            b"bad\xff\xfeutf8",
            br"C:\x\y\xff\",
            "中文 \u{2028}".as_bytes(),
            b"",
        ];
        for c in cases {
            let s = string(c);
            let v: serde_json::Value =
                serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let back = v.as_str().unwrap();
            if c.starts_with(b"C:") {
                assert_eq!(back, r"C:\x5cx\y\x5cxff\");
            } else if let Ok(u) = std::str::from_utf8(c) {
                assert_eq!(back, u);
            } else {
                assert_eq!(back, "bad\\xff\\xfeutf8");
            }
            assert_eq!(back, text(c));
        }
    }

    #[test]
    fn microseconds_keep_every_nanosecond() {
        assert_eq!(us3(1_704_161_511_420_306_491), "1704161511420306.491");
        assert_eq!(us3(5), "0.005");
        assert_eq!(us3(0), "0.000");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("l1\nl2"), "\"l1\nl2\"");
    }
}
