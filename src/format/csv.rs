//! The CSV readers (msprof's outputs, the results reader of the CLI): raw records with field spans (cells
//! copied undecoded), a streaming record reader, and unquoting.

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

/// What [`next_csv_record`] read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rec {
    /// A record, in the buffer.
    Row,
    /// A line that is no record: an unbalanced quote (the record ends at its newline, so one stray quote
    /// costs one row, not the rest of the file), or longer than [`MAX_RECORD`] (skipped, never held whole).
    Bad,
    End,
}

/// The longest record kept (msprof's op_summary rows are well under 64 KiB).
pub(crate) const MAX_RECORD: usize = 1 << 20;

/// Reads one CSV record, one line, into `rec`. msprof writes no newline inside a quoted field, so a line
/// whose quotes do not balance is a broken record, not the start of a multi-line one.
pub(crate) fn next_csv_record(
    rd: &mut impl std::io::BufRead,
    rec: &mut Vec<u8>,
) -> std::io::Result<Rec> {
    rec.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = rd.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long {
            if rec.len() + take > MAX_RECORD {
                too_long = true;
                rec.clear();
            } else {
                rec.extend_from_slice(&buf[..take]);
            }
        }
        rd.consume(take);
        if done {
            break;
        }
    }
    if !any {
        return Ok(Rec::End);
    }
    if too_long || rec.iter().filter(|&&b| b == b'"').count() % 2 != 0 {
        return Ok(Rec::Bad);
    }
    Ok(Rec::Row)
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
    fn a_stray_quote_or_an_endless_line_costs_one_record() {
        let mut text = b"h1,h2\n1,\"x\n2,y\n".to_vec();
        text.extend(std::iter::repeat_n(b'z', MAX_RECORD + 5));
        text.extend_from_slice(b"\n3,\"a,b\"\n4,w");
        let mut rd = std::io::BufReader::with_capacity(4096, &text[..]);
        let mut rec = Vec::new();
        let mut got = Vec::new();
        loop {
            let r = next_csv_record(&mut rd, &mut rec).unwrap();
            if r == Rec::End {
                break;
            }
            got.push((r, String::from_utf8_lossy(&rec).into_owned()));
        }
        let kinds: Vec<&Rec> = got.iter().map(|g| &g.0).collect();
        assert_eq!(
            kinds,
            [
                &Rec::Row,
                &Rec::Bad,
                &Rec::Row,
                &Rec::Bad,
                &Rec::Row,
                &Rec::Row
            ]
        );
        assert_eq!(got[2].1, "2,y\n");
        assert_eq!(got[4].1, "3,\"a,b\"\n");
        assert_eq!(got[5].1, "4,w");
    }

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
