//! Streaming a top-level JSON array block by block, one element at a time.

use super::{PResult, Parser};

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

/// Where the stream stands in the array.
#[derive(Clone, Copy, PartialEq)]
enum St {
    /// Before the `[`.
    Open,
    /// After the `[`: an element or `]`.
    First,
    /// An element (after a `,`, or one the block ended inside).
    Elem,
    /// After an element: `,` or `]`.
    Sep,
    /// After the `]`: only whitespace.
    Done,
}

/// [`stream_array`] that fails on an element longer than `max_elem` bytes (an unfinished element is parsed
/// again with each new block, so a giant one costs time quadratic in its size, and holds it all in memory).
pub fn stream_array_bounded(
    mut r: impl std::io::Read,
    block: usize,
    max_elem: usize,
    mut f: impl FnMut(&mut Parser<'_>) -> PResult<()>,
) -> PResult<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0usize; // bytes dropped from the front, for error offsets
    let mut start = 0usize;
    let mut eof = false;
    let mut st = St::Open;
    loop {
        start = parse_block(&buf, start, base, eof, &mut st, &mut f)?;
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
        eof = read_block(&mut r, &mut buf, block)?;
    }
}

/// Parses what `buf` holds from `start` (`base`: the stream offset of `buf[0]`, for errors), moving `st` on
/// and calling `f` on each whole element. Returns where parsing stopped: the end of the buffer, or the start
/// of an element the buffer ends inside (unless at `eof`).
fn parse_block(
    buf: &[u8],
    start: usize,
    base: usize,
    eof: bool,
    st: &mut St,
    f: &mut impl FnMut(&mut Parser<'_>) -> PResult<()>,
) -> PResult<usize> {
    let mut p = Parser::new(buf);
    p.pos = start;
    loop {
        p.ws();
        let at_end = p.pos >= buf.len();
        match *st {
            St::Open if at_end => break,
            St::Open if buf[p.pos] == b'[' => {
                p.pos += 1;
                *st = St::First;
            }
            St::Open => return Err(format!("expected a JSON array at byte {}", base + p.pos)),
            St::First | St::Elem if at_end => break,
            St::First if buf[p.pos] == b']' => {
                p.pos += 1;
                *st = St::Done;
            }
            St::First | St::Elem => {
                let save = p.pos;
                match f(&mut p) {
                    Ok(()) => *st = St::Sep,
                    Err(_) if p.at_end() && !eof => {
                        p.pos = save;
                        *st = St::Elem;
                        break;
                    }
                    Err(e) => return Err(format!("{e} (block at byte {base})")),
                }
            }
            St::Sep if at_end => break,
            St::Sep if buf[p.pos] == b',' => {
                p.pos += 1;
                *st = St::Elem;
            }
            St::Sep if buf[p.pos] == b']' => {
                p.pos += 1;
                *st = St::Done;
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
    Ok(p.pos)
}

/// Appends up to `block` bytes read from `r` to `buf` (retrying on EINTR). Returns whether `r` is at its end.
fn read_block(r: &mut impl std::io::Read, buf: &mut Vec<u8>, block: usize) -> PResult<bool> {
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
    Ok(n == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
