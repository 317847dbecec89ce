//! Output: every string that came from a result (names, paths, metadata values) is printed with its control
//! characters escaped, so a crafted result cannot drive the terminal of the admin who reads it.

use std::fmt::Write;

/// `s` with control characters as visible escapes (`\x1b`, `\r`, `\u{9b}`), and the bidirectional
/// overrides that reorder a line as it is displayed (`\u{202e}`).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let _ = match c {
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
            c if c.is_control() || bidi(c) => write!(out, "\\u{{{:x}}}", c as u32),
            c => {
                out.push(c);
                Ok(())
            }
        };
    }
    out
}

fn bidi(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Prints one line of output, escaped.
pub(crate) fn say(line: &str) {
    println!("{}", esc(line));
}

/// Prints one line to stderr, escaped.
pub(crate) fn warn(line: &str) {
    eprintln!("{}", esc(line));
}

pub(crate) fn us(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} us", ns as f64 / 1e3)
    }
}

/// A table: the first column left-aligned, the others right-aligned, cells cut at 60 characters (cells
/// are escaped first, so the widths are those printed).
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| esc(c).chars().take(60).collect())
                .collect()
        })
        .collect();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = w[i])
                } else {
                    format!("{c:>w$}", w = w[i])
                }
            })
            .collect();
        say(&format!("  {}", s.join("  ")));
    };
    line(&head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    line(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>());
    for r in &rows {
        line(r);
    }
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            esc("a\x1b[31mb\x07\r\n\t\x7f"),
            "a\\x1b[31mb\\x07\\r\\n\\t\\x7f"
        );
        assert_eq!(esc("c\u{9b}d\u{202e}e"), "c\\u{9b}d\\u{202e}e");
        assert_eq!(esc("plain é 𝄞 \\x"), "plain é 𝄞 \\x");
        // Idempotent on its own output: nothing it prints is escaped again.
        let once = esc("\x1b\u{85}");
        assert_eq!(esc(&once), once);
    }
}
