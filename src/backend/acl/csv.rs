//! The CSV readers for msprof's outputs: raw records with field spans (cells copied undecoded), a streaming
//! record reader, and unquoting.

/// CSV records as raw text with the byte spans of their fields (quotes kept), so cells can be copied into
/// another CSV without decoding and re-encoding them.
pub struct RawRecords<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> RawRecords<'a> {
    pub fn new(s: &'a str) -> Self {
        RawRecords { s, pos: 0 }
    }

    /// The next record's field spans (absolute byte ranges into the text) in `spans`; `None` at the end.
    pub fn next_into(&mut self, spans: &mut Vec<(usize, usize)>) -> Option<()> {
        let b = self.s.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        spans.clear();
        let mut field = self.pos;
        let mut quoted = false;
        let mut i = self.pos;
        while i < b.len() {
            let c = b[i];
            if quoted {
                if c == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    quoted = false;
                }
            } else if c == b'"' {
                quoted = true;
            } else if c == b',' {
                spans.push((field, i));
                field = i + 1;
            } else if c == b'\n' {
                let end = if i > field && b[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                spans.push((field, end));
                self.pos = i + 1;
                return Some(());
            }
            i += 1;
        }
        spans.push((field, b.len()));
        self.pos = b.len();
        Some(())
    }
}

/// Reads one CSV record (a line, or several while a quoted field is open) into `rec`; false at the end.
pub(super) fn next_csv_record(
    rd: &mut impl std::io::BufRead,
    rec: &mut Vec<u8>,
) -> std::io::Result<bool> {
    rec.clear();
    let mut quotes = 0usize;
    loop {
        let from = rec.len();
        if rd.read_until(b'\n', rec)? == 0 {
            return Ok(!rec.is_empty());
        }
        quotes += rec[from..].iter().filter(|&&b| b == b'"').count();
        if quotes % 2 == 0 {
            return Ok(true);
        }
    }
}

/// A raw CSV field's value: quotes removed and doubled quotes undone.
pub fn unquote(raw: &str) -> std::borrow::Cow<'_, str> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if inner.contains('"') => inner.replace("\"\"", "\"").into(),
        Some(inner) => inner.into(),
        None => raw.into(),
    }
}

/// All records of CSV text, decoded.
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut rows = RawRecords::new(text);
    let mut spans = Vec::new();
    let mut out = Vec::new();
    while rows.next_into(&mut spans).is_some() {
        out.push(
            spans
                .iter()
                .map(|&(a, b)| unquote(&text[a..b]).into_owned())
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let text = "a,\"\"\"8,1024;1024\"\"\",c\r\n1,2,3\nx,\"multi\nline\"";
        let r = csv_records(text);
        assert_eq!(r[0], ["a", "\"8,1024;1024\"", "c"]);
        assert_eq!(r[1], ["1", "2", "3"]);
        assert_eq!(r[2], ["x", "multi\nline"]);
        // The raw reader finds the same fields, undecoded.
        let mut rr = RawRecords::new(text);
        let mut spans = Vec::new();
        let mut raw = Vec::new();
        while rr.next_into(&mut spans).is_some() {
            raw.push(spans.iter().map(|&(a, b)| &text[a..b]).collect::<Vec<_>>());
        }
        assert_eq!(raw[0], ["a", "\"\"\"8,1024;1024\"\"\"", "c"]);
        assert_eq!(raw[2], ["x", "\"multi\nline\""]);
        assert_eq!(unquote(raw[0][1]), "\"8,1024;1024\"");
        let decoded: Vec<Vec<String>> = raw
            .iter()
            .map(|r| r.iter().map(|f| unquote(f).into_owned()).collect())
            .collect();
        assert_eq!(decoded, r);
    }
}
