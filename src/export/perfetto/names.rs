//! The names, categories and args of the Perfetto trace's events as interned ids (see `intern`): each
//! entry new to the sequence goes out in a packet of `InternedData` of its own, before any packet that
//! uses it, whatever slices are held back.

use super::args::{self, Arg};
use super::intern::{Interned, Kind};
use super::pb::debug_annotation::{NameField as AnnName, Value as AnnValue};
use super::pb::{self, InternedData};
use super::{frame, Named, PerfettoWriter, MAX_INTERNED_VALUE};
use crate::error::Result;

impl PerfettoWriter {
    /// The iid of `key` (a new one is added to `self.new` with `value()`), or `None` to write it inline.
    pub(super) fn intern(
        &mut self,
        kind: Kind,
        key: &str,
        value: impl FnOnce() -> String,
    ) -> Option<u64> {
        match self.tables.get(&mut self.budget, kind, key) {
            Interned::Known(i) => Some(i),
            Interned::Inline => None,
            Interned::New(i) => {
                let name = Some(value());
                let iid = Some(i);
                match kind {
                    Kind::EventName => self.new.event_names.push(pb::EventName { iid, name }),
                    Kind::Category => self
                        .new
                        .event_categories
                        .push(pb::EventCategory { iid, name }),
                    Kind::AnnotationName => self
                        .new
                        .debug_annotation_names
                        .push(pb::DebugAnnotationName { iid, name }),
                    Kind::StringValue => {
                        self.new
                            .debug_annotation_string_values
                            .push(pb::InternedString {
                                iid,
                                str: name.map(String::into_bytes),
                            })
                    }
                }
                Some(i)
            }
        }
    }

    /// Writes the entries interned since the last call, in a packet of their own (before any packet that
    /// uses them, whatever is held in `pending`).
    pub(super) fn flush_interned(&mut self) -> Result<()> {
        if self.new == InternedData::default() {
            return Ok(());
        }
        let mut p = Self::packet(None, None);
        p.interned_data = Some(std::mem::take(&mut self.new));
        let mut b = Vec::new();
        frame(&p, &mut b);
        self.written += b.len() as u64;
        self.put(&b)
    }

    /// An event's name: `lit` is a JSON string literal.
    pub(super) fn name(&mut self, lit: &str) -> Named {
        match self.intern(Kind::EventName, lit, || args::unquote(lit)) {
            Some(i) => Named::Iid(i),
            None => Named::Inline(args::unquote(lit)),
        }
    }

    /// An event's category: a JSON literal, plain text, or empty (none).
    pub(super) fn category(&mut self, cat: &str) -> Option<Named> {
        if cat.is_empty() {
            return None;
        }
        if let Some((p, l, i)) = self.last_cat {
            if p == cat.as_ptr() as usize && l == cat.len() {
                return Some(Named::Iid(i));
            }
        }
        let text = || {
            if cat.starts_with('"') {
                args::unquote(cat)
            } else {
                cat.to_string()
            }
        };
        Some(match self.intern(Kind::Category, cat, text) {
            Some(i) => {
                self.last_cat = Some((cat.as_ptr() as usize, cat.len(), i));
                Named::Iid(i)
            }
            None => Named::Inline(text()),
        })
    }

    /// The members of the JSON object `obj` as debug annotations, into `self.anns`.
    pub(super) fn annotations(&mut self, obj: &str) {
        self.anns.clear();
        if obj.is_empty() || obj == "{}" {
            return;
        }
        let mut list: Vec<(String, Arg)> = Vec::new();
        args::members(obj, |k, a| list.push((k.to_string(), a)));
        for (k, a) in list {
            let name = match self.intern(Kind::AnnotationName, &k, || k.clone()) {
                Some(i) => AnnName::NameIid(i),
                None => AnnName::Name(k.clone()),
            };
            let value = match a {
                Arg::Str(s) if s.len() <= MAX_INTERNED_VALUE => {
                    match self.intern(Kind::StringValue, &s, || s.to_string()) {
                        Some(i) => AnnValue::StringValueIid(i),
                        None => AnnValue::StringValue(s),
                    }
                }
                Arg::Str(s) => AnnValue::StringValue(s),
                Arg::Value(v) => v,
            };
            self.anns.push(args::annotation(name, value));
        }
    }
}
