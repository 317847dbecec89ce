//! The strings of device data, each stored once with the forms the exporters write.

/// A string of device data, by its index in [`Strings`] (`Sym::default()` is the empty string).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

/// One distinct string of device data, with the forms the exporters write made once.
#[derive(Debug)]
pub struct Str {
    pub bytes: Box<[u8]>,
    /// Lossless text (invalid UTF-8 bytes as `\xNN`).
    pub text: Box<str>,
    /// The CSV cell (quoted when it must be).
    pub csv: Box<str>,
    /// The JSON string literal (quotes included).
    pub json: Box<str>,
    /// As an `Accelerator Core`: a communication core (`COMMUNICATION`, `HCCL`).
    pub communication_core: bool,
    /// As a task name: a communication task (`hcom_*`, `Hccl*`).
    pub communication_name: bool,
    /// As a task name: `hcom_receive*` (the `Bubble` column).
    pub receive: bool,
}

/// The strings of one profile's device tasks, each stored once. A million tasks share a few hundred names:
/// a task holds a 4-byte [`Sym`] (no refcount traffic, no allocation per task) and each name is escaped for
/// CSV and JSON once, not once per row.
#[derive(Debug)]
pub struct Strings {
    list: Vec<Str>,
    index: std::collections::HashMap<Box<[u8]>, Sym>,
}

impl Default for Strings {
    fn default() -> Self {
        let mut s = Strings {
            list: Vec::new(),
            index: std::collections::HashMap::new(),
        };
        s.intern(b"");
        s
    }
}

impl Strings {
    pub fn intern(&mut self, bytes: &[u8]) -> Sym {
        if let Some(&s) = self.index.get(bytes) {
            return s;
        }
        let sym = Sym(self.list.len() as u32);
        let text = crate::format::json::text(bytes);
        self.list.push(Str {
            bytes: bytes.into(),
            csv: crate::format::json::csv_field(&text).into(),
            json: crate::format::json::string(bytes).into(),
            communication_core: matches!(bytes, b"COMMUNICATION" | b"HCCL"),
            communication_name: bytes.starts_with(b"hcom_") || bytes.starts_with(b"Hccl"),
            receive: bytes.to_ascii_lowercase().starts_with(b"hcom_receive"),
            text: text.into(),
        });
        self.index.insert(bytes.into(), sym);
        sym
    }

    /// The string of `s` (the empty string for a symbol of another table).
    pub fn get(&self, s: Sym) -> &Str {
        self.list.get(s.0 as usize).unwrap_or(&self.list[0])
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The position of `s` in the table (for a side table indexed like it); at least `len()` for a symbol
    /// of another table.
    pub fn index_of(&self, s: Sym) -> usize {
        s.0 as usize
    }

    pub fn is_empty(&self) -> bool {
        self.list.len() <= 1
    }

    /// The strings in table order (the empty string first).
    pub fn iter(&self) -> impl Iterator<Item = &Str> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_stored_once_with_their_escaped_forms() {
        let mut s = Strings::default();
        assert!(s.is_empty());
        let a = s.intern(b"hcom_receive_1");
        let b = s.intern(b"MatMul,\"x\"\xff");
        assert_eq!(s.intern(b"hcom_receive_1"), a);
        assert_ne!(a, b);
        assert_eq!(s.len(), 3);
        assert_eq!(s.intern(b""), Sym::default());
        let (ea, eb) = (s.get(a), s.get(b));
        assert!(ea.communication_name && ea.receive && !ea.communication_core);
        assert!(!eb.communication_name && !eb.receive);
        assert_eq!(&*eb.csv, "\"MatMul,\"\"x\"\"\\xff\"");
        assert_eq!(&*eb.json, r#""MatMul,\"x\"\\xff""#);
        let h = s.intern(b"HCCL");
        assert!(s.get(h).communication_core);
        // A symbol of a bigger table reads as the empty string, not a panic.
        assert_eq!(&*s.get(Sym(1000)).text, "");
    }
}
