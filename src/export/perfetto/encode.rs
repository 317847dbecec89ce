//! The hot packets written by hand with prost's wire-format helpers (a slice's BEGIN and END, instants,
//! flows: millions of them), field for field what `prost` would write for the same `TracePacket`, without
//! building a message per event. `tests::the_hand_encoding_is_prosts` decodes each with prost.

use prost::encoding::{encoded_len_varint, WireType};

/// A base-128 varint, as prost's `encode_varint` writes it: one reservation, then plain pushes (a
/// variable-length copy of 1-10 bytes went through a `memcpy` call, the writer's largest cost).
#[inline]
fn encode_varint(mut v: u64, buf: &mut Vec<u8>) {
    // Keys, types, flags and small ids: one byte.
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    buf.reserve(10);
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A field's key (tag and wire type), as prost's `encode_key` writes it.
#[inline]
fn encode_key(tag: u32, wt: WireType, buf: &mut Vec<u8>) {
    encode_varint(u64::from(tag << 3 | wt as u32), buf);
}

/// `TracePacket` fields.
const TIMESTAMP: u32 = 8;
const SEQUENCE_ID: u32 = 10;
const TRACK_EVENT: u32 = 11;
const SEQUENCE_FLAGS: u32 = 13;
/// `TrackEvent` fields.
const CATEGORY_IIDS: u32 = 3;
const DEBUG_ANNOTATIONS: u32 = 4;
const LEGACY_EVENT: u32 = 6;
const TYPE: u32 = 9;
const NAME_IID: u32 = 10;
const TRACK_UUID: u32 = 11;
const CATEGORIES: u32 = 22;
const NAME: u32 = 23;
/// `TrackEvent.LegacyEvent` fields.
const PHASE: u32 = 2;
const UNSCOPED_ID: u32 = 6;
const BIND_TO_ENCLOSING: u32 = 12;

/// A name or category: an interned id, or the text.
#[derive(Clone, Copy, Debug)]
pub(super) enum Text<'a> {
    Iid(u64),
    Inline(&'a str),
}

/// A debug annotation's value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value<'a> {
    Bool(bool),
    Uint(u64),
    Int(i64),
    Double(f64),
    Str(&'a str),
    StrIid(u64),
    Json(&'a str),
}

/// `DebugAnnotation` fields.
const ANN_NAME_IID: u32 = 1;
const ANN_BOOL: u32 = 2;
const ANN_UINT: u32 = 3;
const ANN_INT: u32 = 4;
const ANN_DOUBLE: u32 = 5;
const ANN_STRING: u32 = 6;
const ANN_JSON: u32 = 9;
const ANN_NAME: u32 = 10;
const ANN_STRING_IID: u32 = 17;

/// One `TrackEvent.debug_annotations` element (key and length included) appended to `buf`; `one` is
/// scratch.
pub(super) fn annotation(buf: &mut Vec<u8>, one: &mut Vec<u8>, name: Text<'_>, value: Value<'_>) {
    one.clear();
    text(one, ANN_NAME_IID, ANN_NAME, name);
    match value {
        Value::Bool(b) => varint_field(one, ANN_BOOL, b as u64),
        Value::Uint(u) => varint_field(one, ANN_UINT, u),
        Value::Int(i) => varint_field(one, ANN_INT, i as u64),
        Value::Double(d) => {
            encode_key(ANN_DOUBLE, WireType::SixtyFourBit, one);
            one.extend_from_slice(&d.to_le_bytes());
        }
        Value::Str(s) => bytes_field(one, ANN_STRING, s.as_bytes()),
        Value::StrIid(i) => varint_field(one, ANN_STRING_IID, i),
        Value::Json(s) => bytes_field(one, ANN_JSON, s.as_bytes()),
    }
    bytes_field(buf, DEBUG_ANNOTATIONS, one);
}

/// One track event's content, encoded into `buf` (a `TrackEvent` body).
pub(super) struct Event<'a> {
    pub(super) kind: i32,
    pub(super) uuid: u64,
    pub(super) name: Option<Text<'a>>,
    pub(super) category: Option<Text<'a>>,
    /// Encoded `debug_annotations` elements (see [`annotation`]).
    pub(super) annotations: &'a [u8],
    /// A v1 flow: (phase, id, bind to the enclosing slice).
    pub(super) flow: Option<(u8, u64, bool)>,
}

fn varint_field(buf: &mut Vec<u8>, tag: u32, v: u64) {
    encode_key(tag, WireType::Varint, buf);
    encode_varint(v, buf);
}

fn bytes_field(buf: &mut Vec<u8>, tag: u32, b: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(b.len() as u64, buf);
    buf.extend_from_slice(b);
}

fn text(buf: &mut Vec<u8>, iid_tag: u32, text_tag: u32, t: Text<'_>) {
    match t {
        Text::Iid(i) => varint_field(buf, iid_tag, i),
        Text::Inline(s) => bytes_field(buf, text_tag, s.as_bytes()),
    }
}

impl Event<'_> {
    /// The `TrackEvent` body.
    pub(super) fn encode(&self, buf: &mut Vec<u8>) {
        if let Some(c) = self.category {
            text(buf, CATEGORY_IIDS, CATEGORIES, c);
        }
        buf.extend_from_slice(self.annotations);
        if let Some((phase, id, bind)) = self.flow {
            let mut l = Vec::with_capacity(16);
            varint_field(&mut l, PHASE, phase as u64);
            varint_field(&mut l, UNSCOPED_ID, id);
            if bind {
                varint_field(&mut l, BIND_TO_ENCLOSING, 1);
            }
            bytes_field(buf, LEGACY_EVENT, &l);
        }
        if self.kind != 0 {
            varint_field(buf, TYPE, self.kind as u64);
        }
        if let Some(n) = self.name {
            text(buf, NAME_IID, NAME, n);
        }
        varint_field(buf, TRACK_UUID, self.uuid);
    }
}

/// One `Trace.packet`: a `TracePacket` of sequence `seq` at `ts` with the track event body `te`, appended to
/// `out`.
pub(super) fn packet(out: &mut Vec<u8>, ts: u64, seq: u32, flags: u32, te: &[u8]) {
    let len = 1
        + encoded_len_varint(ts)
        + 1
        + encoded_len_varint(seq as u64)
        + 1
        + encoded_len_varint(te.len() as u64)
        + te.len()
        + 1
        + encoded_len_varint(flags as u64);
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    varint_field(out, TIMESTAMP, ts);
    varint_field(out, SEQUENCE_ID, seq as u64);
    bytes_field(out, TRACK_EVENT, te);
    varint_field(out, SEQUENCE_FLAGS, flags as u64);
}

#[cfg(test)]
mod tests {
    use super::super::pb::{
        self, debug_annotation, trace_packet, track_event, TracePacket, TrackEvent,
    };
    use super::*;

    use prost::Message as _;

    fn decode(b: &[u8]) -> TracePacket {
        let t = pb::Trace::decode(b).unwrap();
        assert_eq!(t.packet.len(), 1);
        t.packet[0].clone()
    }

    #[test]
    fn annotations_are_prosts() {
        let cases: Vec<(Text<'_>, Value<'_>, pb::DebugAnnotation)> = vec![
            (
                Text::Iid(1),
                Value::Bool(true),
                ann(dn::NameIid(1), dv::BoolValue(true)),
            ),
            (
                Text::Iid(2),
                Value::Uint(u64::MAX),
                ann(dn::NameIid(2), dv::UintValue(u64::MAX)),
            ),
            (
                Text::Iid(3),
                Value::Int(i64::MIN),
                ann(dn::NameIid(3), dv::IntValue(i64::MIN)),
            ),
            (
                Text::Inline("d"),
                Value::Double(-1.5),
                ann(dn::Name("d".into()), dv::DoubleValue(-1.5)),
            ),
            (
                Text::Iid(4),
                Value::Str("s\u{e9}"),
                ann(dn::NameIid(4), dv::StringValue("s\u{e9}".into())),
            ),
            (
                Text::Iid(5),
                Value::StrIid(9),
                ann(dn::NameIid(5), dv::StringValueIid(9)),
            ),
            (
                Text::Iid(6),
                Value::Json("[1]"),
                ann(dn::NameIid(6), dv::LegacyJsonValue("[1]".into())),
            ),
        ];
        for (name, value, want) in cases {
            let (mut buf, mut one) = (Vec::new(), Vec::new());
            annotation(&mut buf, &mut one, name, value);
            // A TrackEvent holding just that annotation.
            let te = TrackEvent::decode(buf.as_slice()).unwrap();
            assert_eq!(te.debug_annotations, vec![want]);
        }
    }

    use debug_annotation::NameField as dn;
    use debug_annotation::Value as dv;
    fn ann(n: dn, v: dv) -> pb::DebugAnnotation {
        pb::DebugAnnotation {
            name_field: Some(n),
            value: Some(v),
        }
    }

    #[test]
    fn varints_and_keys_are_prosts() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_varint(v, &mut a);
            prost::encoding::encode_varint(v, &mut b);
            assert_eq!(a, b, "{v}");
        }
        for tag in [1u32, 15, 16, 23, 60, 2047, 2048] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_key(tag, WireType::LengthDelimited, &mut a);
            prost::encoding::encode_key(tag, WireType::LengthDelimited, &mut b);
            assert_eq!(a, b, "{tag}");
        }
    }

    #[test]
    fn the_hand_encoding_is_prosts() {
        let anns = vec![
            pb::DebugAnnotation {
                name_field: Some(debug_annotation::NameField::NameIid(3)),
                value: Some(debug_annotation::Value::IntValue(-5)),
            },
            pb::DebugAnnotation {
                name_field: Some(debug_annotation::NameField::Name("k".into())),
                value: Some(debug_annotation::Value::StringValue("v".into())),
            },
        ];
        let mut encoded = Vec::new();
        let mut one = Vec::new();
        annotation(&mut encoded, &mut one, Text::Iid(3), Value::Int(-5));
        annotation(&mut encoded, &mut one, Text::Inline("k"), Value::Str("v"));
        let cases = [
            Event {
                kind: 1,
                uuid: 300,
                name: Some(Text::Iid(7)),
                category: Some(Text::Iid(2)),
                annotations: &encoded,
                flow: None,
            },
            Event {
                kind: 2,
                uuid: 1,
                name: None,
                category: None,
                annotations: &[],
                flow: None,
            },
            Event {
                kind: 0,
                uuid: 9,
                name: Some(Text::Inline("flow \u{e9}")),
                category: Some(Text::Inline("async_npu")),
                annotations: &[],
                flow: Some((b'f', u64::MAX, true)),
            },
        ];
        for (i, e) in cases.iter().enumerate() {
            let mut te = Vec::new();
            e.encode(&mut te);
            let mut out = Vec::new();
            packet(&mut out, 1_700_000_000_000_000_123, 1, 2, &te);
            let p = decode(&out);
            let want = TracePacket {
                timestamp: Some(1_700_000_000_000_000_123),
                optional_trusted_packet_sequence_id: Some(
                    trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(1),
                ),
                sequence_flags: Some(2),
                data: Some(trace_packet::Data::TrackEvent(TrackEvent {
                    r#type: (e.kind != 0).then_some(e.kind),
                    track_uuid: Some(e.uuid),
                    name_field: e.name.map(|n| match n {
                        Text::Iid(i) => track_event::NameField::NameIid(i),
                        Text::Inline(s) => track_event::NameField::Name(s.into()),
                    }),
                    category_iids: match e.category {
                        Some(Text::Iid(i)) => vec![i],
                        _ => vec![],
                    },
                    categories: match e.category {
                        Some(Text::Inline(s)) => vec![s.into()],
                        _ => vec![],
                    },
                    debug_annotations: if e.annotations.is_empty() {
                        vec![]
                    } else {
                        anns.clone()
                    },
                    legacy_event: e.flow.map(|(ph, id, bind)| track_event::LegacyEvent {
                        phase: Some(ph as i32),
                        id: Some(track_event::legacy_event::Id::UnscopedId(id)),
                        bind_to_enclosing: bind.then_some(true),
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            };
            assert_eq!(p, want, "case {i}");
            // And byte for byte what prost writes for that message.
            let mut prost_bytes = Vec::new();
            prost::encoding::message::encode(1, &want, &mut prost_bytes);
            assert_eq!(decode(&prost_bytes), p);
        }
    }
}
