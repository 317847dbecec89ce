//! The names, categories and args of the Perfetto trace's events as interned ids (see `intern`): each
//! entry new to the sequence goes out in a packet of `InternedData` of its own, before any packet that
//! uses it, whatever slices are held back.

use super::args::{self, Arg, Flat};
use super::encode::{self, Text, Value};
use super::intern::{Interned, Kind};
use super::pb::debug_annotation::Value as AnnValue;
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
    pub(super) fn name<'a>(&mut self, lit: &'a str) -> Named<'a> {
        match self.intern(Kind::EventName, lit, || args::unquote(lit)) {
            Some(i) => Named::Iid(i),
            None => Named::Inline(args::unquote_cow(lit)),
        }
    }

    /// An event's category: a JSON literal, plain text, or empty (none).
    pub(super) fn category<'a>(&mut self, cat: &'a str) -> Option<Named<'a>> {
        if cat.is_empty() {
            return None;
        }
        // A few categories take turns (kernel, api, flows): compared by text, no hashing.
        if let Some((_, i)) = self.recent_cats.iter().find(|c| c.0 == cat) {
            return Some(Named::Iid(*i));
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
                if self.recent_cats.len() >= 4 {
                    self.recent_cats.remove(0);
                }
                self.recent_cats.push((cat.to_string(), i));
                Named::Iid(i)
            }
            None => Named::Inline(text().into()),
        })
    }

    /// The members of the JSON object `obj` as encoded debug annotations, into `self.ann_bytes`: a flat
    /// object (the device lanes' args) borrowed as it is, anything else through the full JSON reader.
    pub(super) fn annotations(&mut self, obj: &str) {
        self.ann_bytes.clear();
        if obj.is_empty() || obj == "{}" {
            return;
        }
        let mut flat: Vec<(&str, Flat<'_>)> = std::mem::take(&mut self.flat);
        if args::flat_members(obj, &mut flat) {
            for (k, v) in flat.iter() {
                let value = match *v {
                    Flat::Str(s) => self.string_value(s),
                    Flat::Int(i) => Value::Int(i),
                    Flat::Uint(u) => Value::Uint(u),
                    Flat::Double(d) => Value::Double(d),
                    Flat::Bool(b) => Value::Bool(b),
                };
                self.push_annotation(k, value);
            }
        } else {
            let mut list: Vec<(String, Arg)> = Vec::new();
            args::members(obj, |k, a| list.push((k.to_string(), a)));
            for (k, a) in &list {
                let value = match a {
                    Arg::Str(s) => self.string_value(s),
                    Arg::Value(AnnValue::BoolValue(b)) => Value::Bool(*b),
                    Arg::Value(AnnValue::UintValue(u)) => Value::Uint(*u),
                    Arg::Value(AnnValue::IntValue(i)) => Value::Int(*i),
                    Arg::Value(AnnValue::DoubleValue(d)) => Value::Double(*d),
                    Arg::Value(AnnValue::LegacyJsonValue(j)) => Value::Json(j),
                    Arg::Value(AnnValue::StringValue(s)) => Value::Str(s),
                    Arg::Value(AnnValue::StringValueIid(i)) => Value::StrIid(*i),
                };
                self.push_annotation(k, value);
            }
        }
        self.flat = recycle(flat);
    }

    /// A string value: interned when short (unless past the interning bound).
    fn string_value<'s>(&mut self, s: &'s str) -> Value<'s> {
        if s.len() > MAX_INTERNED_VALUE {
            return Value::Str(s);
        }
        match self.intern(Kind::StringValue, s, || s.to_string()) {
            Some(i) => Value::StrIid(i),
            None => Value::Str(s),
        }
    }

    /// One annotation named `k` (interned) into `self.ann_bytes`.
    fn push_annotation(&mut self, k: &str, value: Value<'_>) {
        let iid = self.intern(Kind::AnnotationName, k, || k.to_string());
        let name = match iid {
            Some(i) => Text::Iid(i),
            None => Text::Inline(k),
        };
        encode::annotation(&mut self.ann_bytes, &mut self.ann_one, name, value);
    }
}

/// `v` emptied, with its allocation kept (an in-place collect of no elements) and the borrow of its
/// elements' lifetime gone.
#[allow(clippy::unnecessary_filter_map)] // the map changes the element type; it never yields one
fn recycle<'b>(mut v: Vec<(&str, Flat<'_>)>) -> Vec<(&'b str, Flat<'b>)> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}
