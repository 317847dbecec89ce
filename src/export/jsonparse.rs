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

/// Streams the elements of a top-level JSON array from `r`, holding one block (plus one element) in memory.
/// `f` gets a parser positioned on an element and must consume exactly that value; it must have no effect
/// until the value is fully parsed (when the block ends inside it, `f`'s error is dropped and it is called
/// again on the same element with more input).
pub fn stream_array(
    r: impl std::io::Read,
    block: usize,
    f: impl FnMut(&mut Parser<'_>) -> PResult<()>,
) -> PResult<()> {
    stream_array_bounded(r, block, usize::MAX, f)
}

/// [`stream_array`] that fails on an element longer than `max_elem` bytes (an unfinished element is parsed
/// again with each new block, so a giant one costs time quadratic in its size, and holds it all in memory).
pub fn stream_array_bounded(
    mut r: impl std::io::Read,
    block: usize,
    max_elem: usize,
    mut f: impl FnMut(&mut Parser<'_>) -> PResult<()>,
) -> PResult<()> {
    #[derive(PartialEq)]
    enum St {
        Open,
        First,
        Elem,
        Sep,
        Done,
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0usize; // bytes dropped from the front, for error offsets
    let mut start = 0usize;
    let mut eof = false;
    let mut st = St::Open;
    loop {
        {
            let mut p = Parser::new(&buf);
            p.pos = start;
            loop {
                p.ws();
                let at_end = p.pos >= buf.len();
                match st {
                    St::Open if at_end => break,
                    St::Open if buf[p.pos] == b'[' => {
                        p.pos += 1;
                        st = St::First;
                    }
                    St::Open => {
                        return Err(format!("expected a JSON array at byte {}", base + p.pos))
                    }
                    St::First | St::Elem if at_end => break,
                    St::First if buf[p.pos] == b']' => {
                        p.pos += 1;
                        st = St::Done;
                    }
                    St::First | St::Elem => {
                        let save = p.pos;
                        match f(&mut p) {
                            Ok(()) => st = St::Sep,
                            Err(_) if p.at_end() && !eof => {
                                p.pos = save;
                                st = St::Elem;
                                break;
                            }
                            Err(e) => return Err(format!("{e} (block at byte {base})")),
                        }
                    }
                    St::Sep if at_end => break,
                    St::Sep if buf[p.pos] == b',' => {
                        p.pos += 1;
                        st = St::Elem;
                    }
                    St::Sep if buf[p.pos] == b']' => {
                        p.pos += 1;
                        st = St::Done;
                    }
                    St::Sep => return Err(format!("expected ',' or ']' at byte {}", base + p.pos)),
                    St::Done if at_end => break,
                    St::Done => {
                        return Err(format!(
                            "trailing data after the array at byte {}",
                            base + p.pos
                        ))
                    }
                }
            }
            start = p.pos;
        }
        if eof {
            return if st == St::Done {
                Ok(())
            } else {
                Err(format!("unexpected end at byte {}", base + buf.len()))
            };
        }
        if st == St::Elem && buf.len() - start > max_elem {
            return Err(format!(
                "an element longer than {max_elem} bytes at byte {}",
                base + start
            ));
        }
        // Keep the unconsumed tail, read the next block after it.
        buf.drain(..start);
        base += start;
        start = 0;
        let old = buf.len();
        buf.resize(old + block, 0);
        let n = loop {
            match r.read(&mut buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read error: {e}")),
            }
        };
        buf.truncate(old + n);
        eof = n == 0;
    }
}

/// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let mut i = usize::from(t.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < t.len() && t[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    let int_start = i;
    if !digits(&mut i) || (t[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if i < t.len() && t[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < t.len() && (t[i] == b'e' || t[i] == b'E') {
        i += 1;
        if i < t.len() && (t[i] == b'+' || t[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
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

    /// Every block size, down to one byte, gives the same elements as parsing the whole text; malformed or
    /// truncated input is an error for every block size.
    #[test]
    fn streaming_matches_whole_parse_at_every_block_size() {
        let s = r#" [ {"a":"x\"y\u00e9z","n":-1.5e3,"t":true,"f":false,"z":null,"args":{"k":[1,{"q":"\u0041"}]}}, {"b":"é€𝄞"} ,{}] "#
            .as_bytes();
        let mut whole = Vec::new();
        Parser::new(s)
            .each_raw(|p| p.skip(0).map(|t| whole.push(t.to_string())))
            .unwrap();
        assert_eq!(whole.len(), 3);
        for block in 1..=s.len() + 1 {
            let mut got = Vec::new();
            stream_array(s, block, |p| p.skip(0).map(|t| got.push(t.to_string())))
                .unwrap_or_else(|e| panic!("block {block}: {e}"));
            assert_eq!(got, whole, "block {block}");
        }
        for bad in [
            &br#"[{"a":1}"#[..],
            br#"[{"a":tru}]"#,
            br#"[{"a":1},]"#,
            br#"[{"a":"\x"}]"#,
            b"[1] 2",
            b"",
        ] {
            for block in [1, 3, 64] {
                assert!(
                    stream_array(bad, block, |p| p.skip(0).map(|_| ())).is_err(),
                    "{bad:?} {block}"
                );
            }
        }
    }

    /// An element longer than the bound is an error (not re-parsed block after block), at any block size;
    /// elements within it stream as usual.
    #[test]
    fn an_element_over_the_bound_is_an_error() {
        let big = format!(r#"[{{"a":1}},"{}"]"#, "x".repeat(1000));
        for block in [1, 7, 64, 4096] {
            let mut n = 0;
            let r = stream_array_bounded(big.as_bytes(), block, 100, |p| p.skip(0).map(|_| n += 1));
            if block < 1000 {
                let e = r.unwrap_err();
                assert!(e.contains("longer than 100 bytes"), "{block}: {e}");
            }
            let small = br#"[{"a":1},"xyz"]"#;
            stream_array_bounded(&small[..], block, 100, |p| p.skip(0).map(|_| ())).unwrap();
        }
    }

    #[test]
    fn number_grammar() {
        for ok in ["0", "-1", "1.5", "1e3", "1.25E-2", "12345678901234567890"] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1-2", "--1", "1.2.3",
        ] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
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
