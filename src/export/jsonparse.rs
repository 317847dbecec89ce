//! A small JSON reader for CANN's `msprof_*.json` timelines (the runtime dependency budget has no serde).
//!
//! It parses one value at a time from a byte slice and keeps the raw text of every value, so objects such as
//! `args` can be copied into `trace_view.json` verbatim. Depth is bounded; malformed input is an `Err` with
//! the byte offset, never a panic or a loop.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The number's text.
    Num(&'a str),
    Str(Cow<'a, str>),
    Arr(Vec<Value<'a>>),
    /// Members with each value's raw text.
    Obj(Vec<(Cow<'a, str>, Value<'a>, &'a str)>),
}

impl<'a> Value<'a> {
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.member(key).map(|m| m.0)
    }
    pub fn member(&self, key: &str) -> Option<(&Value<'a>, &'a str)> {
        match self {
            Value::Obj(m) => m.iter().find(|(k, _, _)| k == key).map(|(_, v, r)| (v, *r)),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// A number, or a string holding a number (msprof writes `ts` as a string).
    pub fn num_text(&self) -> Option<&str> {
        match self {
            Value::Num(n) => Some(n),
            Value::Str(s) => Some(s.trim()),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        self.num_text()?.parse().ok()
    }
}

const MAX_DEPTH: usize = 64;

pub struct Parser<'a> {
    s: &'a [u8],
    pub pos: usize,
}

pub type PResult<T> = std::result::Result<T, String>;

impl<'a> Parser<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Parser { s, pos: 0 }
    }

    fn err<T>(&self, what: &str) -> PResult<T> {
        Err(format!("{what} at byte {}", self.pos))
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn text(&self, from: usize) -> &'a str {
        // Only called on spans the parser validated; invalid UTF-8 inside strings is rejected earlier.
        std::str::from_utf8(&self.s[from..self.pos]).unwrap_or("")
    }

    /// Calls `f` for each element of a top-level array, then checks nothing but whitespace follows.
    pub fn each_in_array(&mut self, mut f: impl FnMut(Value<'a>)) -> PResult<()> {
        if self.peek() != Some(b'[') {
            return self.err("expected a JSON array");
        }
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                let v = self.value(0)?;
                f(v);
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.err("expected ',' or ']'"),
                }
            }
        }
        if self.peek().is_some() {
            return self.err("trailing data after the array");
        }
        Ok(())
    }

    pub fn value(&mut self, depth: usize) -> PResult<Value<'a>> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.pos += 1;
                let mut m = Vec::new();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Value::Obj(m));
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return self.err("expected a key");
                    }
                    let k = self.string()?;
                    if self.peek() != Some(b':') {
                        return self.err("expected ':'");
                    }
                    self.pos += 1;
                    self.ws();
                    let from = self.pos;
                    let v = self.value(depth + 1)?;
                    m.push((k, v, self.text(from)));
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Obj(m));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut a = Vec::new();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Value::Arr(a));
                }
                loop {
                    a.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Arr(a));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.word(b"true", Value::Bool(true)),
            Some(b'f') => self.word(b"false", Value::Bool(false)),
            Some(b'n') => self.word(b"null", Value::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let from = self.pos;
                while self.pos < self.s.len()
                    && matches!(
                        self.s[self.pos],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.pos += 1;
                }
                let t = self.text(from);
                if t.parse::<f64>().is_err() {
                    return self.err("bad number");
                }
                Ok(Value::Num(t))
            }
            Some(_) => self.err("unexpected character"),
        }
    }

    fn word(&mut self, w: &[u8], v: Value<'a>) -> PResult<Value<'a>> {
        if self.s[self.pos..].starts_with(w) {
            self.pos += w.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn string(&mut self) -> PResult<Cow<'a, str>> {
        self.pos += 1; // opening quote
        let from = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return self.err("unterminated string");
            };
            match c {
                b'"' => {
                    let raw = std::str::from_utf8(&self.s[from..self.pos]);
                    self.pos += 1;
                    return match owned {
                        Some(o) => Ok(Cow::Owned(o)),
                        None => raw
                            .map(Cow::Borrowed)
                            .map_err(|_| format!("invalid UTF-8 in a string at byte {from}")),
                    };
                }
                b'\\' => {
                    let o = owned.get_or_insert_with(|| {
                        String::from_utf8_lossy(&self.s[from..self.pos]).into_owned()
                    });
                    let Some(&e) = self.s.get(self.pos + 1) else {
                        return self.err("unterminated escape");
                    };
                    self.pos += 2;
                    match e {
                        b'"' => o.push('"'),
                        b'\\' => o.push('\\'),
                        b'/' => o.push('/'),
                        b'b' => o.push('\u{8}'),
                        b'f' => o.push('\u{c}'),
                        b'n' => o.push('\n'),
                        b'r' => o.push('\r'),
                        b't' => o.push('\t'),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.pos..self.pos + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                            let Some(cp) = hex else {
                                return self.err("bad \\u escape");
                            };
                            self.pos += 4;
                            o.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                c if c < 0x20 => return self.err("control character in a string"),
                _ => {
                    if let Some(o) = owned.as_mut() {
                        // Copy one UTF-8 sequence.
                        let len = match c {
                            0..=0x7f => 1,
                            0xc0..=0xdf => 2,
                            0xe0..=0xef => 3,
                            _ => 4,
                        };
                        let end = (self.pos + len).min(self.s.len());
                        o.push_str(&String::from_utf8_lossy(&self.s[self.pos..end]));
                        self.pos = end;
                    } else {
                        self.pos += 1;
                    }
                }
            }
        }
    }
}

/// A decimal microsecond text (`"1717575960208020.758"`, `151.0`, `"12.5\t"`, `3e2`) → integer ns, exact for up
/// to 3 decimals (more are rounded). `None` for anything else or a negative value.
pub fn us_to_ns(t: &str) -> Option<u64> {
    let t = t.trim();
    if t.is_empty() || t.starts_with('-') {
        return None;
    }
    if t.contains(['e', 'E']) {
        let v: f64 = t.parse().ok()?;
        return (v.is_finite() && v >= 0.0).then(|| (v * 1000.0).round() as u64);
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ns = int.checked_mul(1000)?;
    let f = frac.as_bytes();
    for (i, &d) in f.iter().take(3).enumerate() {
        ns = ns.checked_add((d - b'0') as u64 * [100, 10, 1][i])?;
    }
    if f.len() > 3 && f[3] >= b'5' {
        ns = ns.checked_add(1)?;
    }
    Some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_keeps_raw_args() {
        let s = br#"[{"name":"a\"b","pid":1,"ts":"1.500","args":{"x": [1, {"y":null}], "z":"\u00e9"}}, {"ph":"M"} ]"#;
        let mut out = Vec::new();
        Parser::new(s)
            .each_in_array(|v| out.push(format!("{v:?}")))
            .unwrap();
        assert_eq!(out.len(), 2);
        let mut p = Parser::new(s);
        let mut args = String::new();
        p.each_in_array(|v| {
            if let Some((_, raw)) = v.member("args") {
                args = raw.to_string();
            }
            if let Some(n) = v.get("name") {
                assert_eq!(n.as_str(), Some("a\"b"));
            }
        })
        .unwrap();
        assert_eq!(args, r#"{"x": [1, {"y":null}], "z":"\u00e9"}"#);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b"["[..],
            b"[{\"a\":}]",
            b"[1,]",
            b"{\"a\":1}",
            b"[\"\\u12\"]",
            b"[1] x",
            b"[\"\xff\"]",
            b"",
        ] {
            assert!(Parser::new(bad).each_in_array(|_| ()).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(200);
        assert!(Parser::new(deep.as_bytes()).each_in_array(|_| ()).is_err());
    }

    #[test]
    fn microseconds_to_integer_ns() {
        assert_eq!(
            us_to_ns("1717575960208020.758\t"),
            Some(1_717_575_960_208_020_758)
        );
        assert_eq!(us_to_ns("151.000"), Some(151_000));
        assert_eq!(us_to_ns("0.45077999999999996"), Some(451));
        assert_eq!(us_to_ns("990.0"), Some(990_000));
        assert_eq!(us_to_ns("7"), Some(7000));
        assert_eq!(us_to_ns("N/A"), None);
        assert_eq!(us_to_ns("-1"), None);
        assert_eq!(us_to_ns("18446744073709551.999"), None);
        assert_eq!(us_to_ns("99999999999999999999"), None);
        assert_eq!(us_to_ns(""), None);
    }
}
