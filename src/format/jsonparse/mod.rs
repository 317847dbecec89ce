//! A small JSON reader for CANN's `msprof_*.json` timelines (the runtime dependency budget has no serde).
//!
//! It parses one value at a time from a byte slice and keeps the raw text of every value, so objects such as
//! `args` can be copied into `trace_view.json` verbatim. Depth is bounded; malformed input is an `Err` with
//! the byte offset, never a panic or a loop.

mod number;
mod stream;

use number::is_json_number;
pub use number::us_to_ns;
use std::borrow::Cow;
pub use stream::{stream_array, stream_array_bounded};

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
    /// `s` as text when all of it is valid UTF-8 (checked once): spans are then sliced without re-checking.
    text: Option<&'a str>,
    pub pos: usize,
}

pub type PResult<T> = std::result::Result<T, String>;

impl<'a> Parser<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        // The longest valid prefix (a streaming block may end inside a character).
        let text = match std::str::from_utf8(s) {
            Ok(t) => Some(t),
            Err(e) => std::str::from_utf8(&s[..e.valid_up_to()]).ok(),
        };
        Parser { s, text, pos: 0 }
    }

    /// The text of `from..to`; `None` if it is not valid UTF-8. Spans always start and end at ASCII bytes
    /// (quotes, brackets, digits), so slicing valid text there is on character boundaries.
    fn span(&self, from: usize, to: usize) -> Option<&'a str> {
        match self.text.and_then(|t| t.get(from..to)) {
            Some(t) => Some(t),
            None => std::str::from_utf8(&self.s[from..to]).ok(),
        }
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
        self.span(from, self.pos).unwrap_or("")
    }

    /// Calls `f` for each element of a top-level array, then checks nothing but whitespace follows.
    pub fn each_in_array(&mut self, mut f: impl FnMut(Value<'a>)) -> PResult<()> {
        self.each_raw(|p| {
            let v = p.value(0)?;
            f(v);
            Ok(())
        })
    }

    pub fn value(&mut self, depth: usize) -> PResult<Value<'a>> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                let mut m = Vec::new();
                self.container(b'{', true, |p, k| {
                    let from = p.pos;
                    let v = p.value(depth + 1)?;
                    m.push((k.unwrap_or_default(), v, p.text(from)));
                    Ok(())
                })?;
                Ok(Value::Obj(m))
            }
            Some(b'[') => {
                let mut a = Vec::new();
                self.container(b'[', false, |p, _| {
                    a.push(p.value(depth + 1)?);
                    Ok(())
                })?;
                Ok(Value::Arr(a))
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
                if !is_json_number(t.as_bytes()) {
                    return self.err("bad number");
                }
                Ok(Value::Num(t))
            }
            Some(_) => self.err("unexpected character"),
        }
    }

    /// The one walker of objects and arrays: checks `open`, then calls `f` for each member or element with
    /// the parser on its value (after the key and ':' of an object member; the key is decoded only with
    /// `keys`), and consumes the separators and the closing bracket. `f` must consume exactly the value.
    fn container(
        &mut self,
        open: u8,
        keys: bool,
        mut f: impl FnMut(&mut Self, Option<Cow<'a, str>>) -> PResult<()>,
    ) -> PResult<()> {
        let close = if open == b'{' { b'}' } else { b']' };
        if self.peek() != Some(open) {
            return self.err(if open == b'{' {
                "expected an object"
            } else {
                "expected a JSON array"
            });
        }
        self.pos += 1;
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let mut key = None;
            if open == b'{' {
                if self.peek() != Some(b'"') {
                    return self.err("expected a key");
                }
                if keys {
                    key = Some(self.string()?);
                } else {
                    self.skip_string()?;
                }
                if self.peek() != Some(b':') {
                    return self.err("expected ':'");
                }
                self.pos += 1;
                self.ws();
            }
            f(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or a closing bracket"),
            }
        }
    }

    /// Calls `f` for each element of a top-level array with the parser positioned on it; `f` must consume
    /// exactly one value (e.g. with [`Parser::object`]). Then checks nothing but whitespace follows.
    pub fn each_raw(&mut self, mut f: impl FnMut(&mut Self) -> PResult<()>) -> PResult<()> {
        self.container(b'[', false, |p, _| f(p))?;
        if self.peek().is_some() {
            return self.err("trailing data after the array");
        }
        Ok(())
    }

    /// Parses an object member by member: `f(key, parser)` must consume the member's value (with
    /// [`Parser::value`], [`Parser::skip`] or [`Parser::scalar`]).
    pub fn object(&mut self, mut f: impl FnMut(&str, &mut Self) -> PResult<()>) -> PResult<()> {
        self.container(b'{', true, |p, k| f(&k.unwrap_or_default(), p))
    }

    /// A scalar value (string, number, literal); `None` for an object or array, which is skipped.
    pub fn scalar(&mut self) -> PResult<Option<Value<'a>>> {
        match self.peek() {
            Some(b'{') | Some(b'[') => {
                self.skip(0)?;
                Ok(None)
            }
            _ => self.value(MAX_DEPTH).map(Some),
        }
    }

    /// Validates and skips one value without building it; returns its raw text.
    pub fn skip(&mut self, depth: usize) -> PResult<&'a str> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        let from = self.pos;
        match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                self.container(open, false, |p, _| p.skip(depth + 1).map(|_| ()))?
            }
            Some(b'"') => self.skip_string()?,
            _ => {
                self.value(depth)?;
            }
        }
        Ok(self.text(from))
    }

    /// Skips a string, checking its escapes and UTF-8 without building it.
    fn skip_string(&mut self) -> PResult<()> {
        self.pos += 1;
        let from = self.pos;
        loop {
            match self.s.get(self.pos) {
                None => return self.err("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => match self.s.get(self.pos + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                    Some(b'u')
                        if self
                            .s
                            .get(self.pos + 2..self.pos + 6)
                            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        self.pos += 6
                    }
                    _ if self.pos + 6 > self.s.len() => return self.truncated(),
                    _ => return self.err("bad escape"),
                },
                Some(c) if *c < 0x20 => return self.err("control character in a string"),
                Some(_) => self.pos += 1,
            }
        }
        if self.span(from, self.pos).is_none() {
            return Err(format!("invalid UTF-8 in a string at byte {from}"));
        }
        self.pos += 1;
        Ok(())
    }

    fn word(&mut self, w: &[u8], v: Value<'a>) -> PResult<Value<'a>> {
        let rest = &self.s[self.pos..];
        if rest.starts_with(w) {
            self.pos += w.len();
            Ok(v)
        } else if w.starts_with(rest) {
            self.truncated()
        } else {
            self.err("bad literal")
        }
    }

    /// The input ended inside a value: the error a streaming reader retries with more input.
    fn truncated<T>(&mut self) -> PResult<T> {
        self.pos = self.s.len();
        self.err("unexpected end")
    }

    /// True when nothing but whitespace follows the position.
    pub fn finished(&mut self) -> bool {
        self.peek().is_none()
    }

    /// True when the last error was the input ending (see [`stream_array`]).
    pub fn at_end(&self) -> bool {
        self.pos >= self.s.len()
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
                    let raw = self.span(from, self.pos);
                    self.pos += 1;
                    return match owned {
                        Some(o) => Ok(Cow::Owned(o)),
                        None => raw
                            .map(Cow::Borrowed)
                            .ok_or_else(|| format!("invalid UTF-8 in a string at byte {from}")),
                    };
                }
                b'\\' => {
                    let o = owned.get_or_insert_with(|| {
                        String::from_utf8_lossy(&self.s[from..self.pos]).into_owned()
                    });
                    let Some(&e) = self.s.get(self.pos + 1) else {
                        return self.truncated();
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
                                if self.pos + 4 > self.s.len() {
                                    return self.truncated();
                                }
                                return self.err("bad \\u escape");
                            };
                            self.pos += 4;
                            o.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ if self.pos > self.s.len() => return self.truncated(),
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
    fn skip_and_object_agree_with_value() {
        let s = br#"[{"a":"x\"y","args":{"k":[1,2,{"z":"\u00e9"}],"n":null},"ts":"1.5"},{}]"#;
        let mut seen = Vec::new();
        Parser::new(s)
            .each_raw(|p| {
                p.object(|k, p| {
                    match k {
                        "args" => seen.push(format!("args={}", p.skip(0)?)),
                        _ => seen.push(format!("{k}={:?}", p.scalar()?)),
                    }
                    Ok(())
                })
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                r#"a=Some(Str("x\"y"))"#,
                r#"args={"k":[1,2,{"z":"\u00e9"}],"n":null}"#,
                r#"ts=Some(Str("1.5"))"#
            ]
        );
        for bad in [
            &br#"[{"a":{"b":}}]"#[..],
            br#"[{"a":"\x"}]"#,
            br#"[{"a":[1 2]}]"#,
            b"[{\"a\":\"\xff\"}]",
        ] {
            let r = Parser::new(bad).each_raw(|p| p.object(|_, p| p.skip(0).map(|_| ())));
            assert!(r.is_err(), "{:?}", std::str::from_utf8(bad));
        }
    }
}
