//! JSON pieces of the trace's events (string literals, `args` objects, flow ids) in Perfetto's terms: a
//! decoded name, debug annotations, a flow id.

use super::pb::debug_annotation::{NameField, Value as AnnValue};
use super::pb::DebugAnnotation;
use crate::format::jsonparse::{Parser, Value};

/// The text of a JSON string literal (quotes included); a literal that does not parse is kept as written.
pub(super) fn unquote(lit: &str) -> String {
    match Parser::new(lit.as_bytes()).value(0) {
        Ok(Value::Str(s)) => s.into_owned(),
        _ => lit.to_string(),
    }
}

/// One annotation's value, from the member's parsed value and raw text.
pub(super) enum Arg {
    Str(String),
    Value(AnnValue),
}

/// Calls `f(key, value)` for each member of the JSON object `obj` (braces included): strings as text,
/// integers as `int_value` (or `uint_value` past i64), other numbers as `double_value`, booleans as
/// `bool_value`, and null, arrays and objects as `legacy_json_value` (which Perfetto expands into args as it
/// does a JSON trace's). An object that does not parse becomes one `args` member holding its text.
pub(super) fn members(obj: &str, mut f: impl FnMut(&str, Arg)) {
    let mut p = Parser::new(obj.as_bytes());
    let mut out: Vec<(String, Arg)> = Vec::new();
    let r = p.object(|key, p| {
        let from = p.pos;
        let v = p.scalar()?;
        let raw = obj.get(from..p.pos).unwrap_or("").trim();
        let arg = match v {
            Some(Value::Str(s)) => Arg::Str(s.into_owned()),
            Some(Value::Num(n)) => Arg::Value(number(n)),
            Some(Value::Bool(b)) => Arg::Value(AnnValue::BoolValue(b)),
            _ => Arg::Value(AnnValue::LegacyJsonValue(raw.to_string())),
        };
        out.push((key.to_string(), arg));
        Ok(())
    });
    if r.is_err() || !p.finished() {
        f(
            "args",
            Arg::Value(AnnValue::LegacyJsonValue(obj.to_string())),
        );
        return;
    }
    for (k, a) in out {
        f(&k, a);
    }
}

fn number(n: &str) -> AnnValue {
    if let Ok(i) = n.parse::<i64>() {
        AnnValue::IntValue(i)
    } else if let Ok(u) = n.parse::<u64>() {
        AnnValue::UintValue(u)
    } else {
        AnnValue::DoubleValue(n.parse::<f64>().unwrap_or(f64::NAN))
    }
}

/// A counter sample's value: a JSON number, or a string holding one (`None` otherwise).
pub(super) fn counter_value(a: &Arg) -> Option<f64> {
    match a {
        Arg::Value(AnnValue::IntValue(i)) => Some(*i as f64),
        Arg::Value(AnnValue::UintValue(u)) => Some(*u as f64),
        Arg::Value(AnnValue::DoubleValue(d)) if d.is_finite() => Some(*d),
        Arg::Str(s) => s.trim().parse::<f64>().ok().filter(|d| d.is_finite()),
        _ => None,
    }
}

/// A flow id as Perfetto reads a JSON trace's `id`: a number as itself, a string as hexadecimal (as its
/// JSON importer does); anything else (or a string that is no hex number) by its FNV-1a hash, so equal ids
/// stay equal.
pub(super) fn flow_id(lit: &str) -> u64 {
    let t = lit.trim();
    if let Ok(n) = t.parse::<u64>() {
        return n;
    }
    let inner = t.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
    if let Some(h) = inner {
        let h = h.strip_prefix("0x").unwrap_or(h);
        if let Ok(n) = u64::from_str_radix(h, 16) {
            return n;
        }
    }
    crate::device::fnv1a(crate::device::FNV_OFFSET, t.as_bytes())
}

/// A debug annotation named by `name` (an interned id or the inline text) holding `value`.
pub(super) fn annotation(name: NameField, value: AnnValue) -> DebugAnnotation {
    DebugAnnotation {
        name_field: Some(name),
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(obj: &str) -> Vec<(String, String)> {
        let mut v = Vec::new();
        members(obj, |k, a| {
            let s = match a {
                Arg::Str(s) => format!("str:{s}"),
                Arg::Value(v) => format!("{v:?}"),
            };
            v.push((k.to_string(), s));
        });
        v
    }

    #[test]
    fn members_keep_each_json_type() {
        let v = collect(
            r#"{"a":"x\"y","n":-3,"u":18446744073709551615,"d":1.5,"b":true,"z":null,"o":{"k":[1,2]}}"#,
        );
        assert_eq!(v[0], ("a".into(), "str:x\"y".into()));
        assert_eq!(v[1], ("n".into(), "IntValue(-3)".into()));
        assert_eq!(v[2], ("u".into(), "UintValue(18446744073709551615)".into()));
        assert_eq!(v[3], ("d".into(), "DoubleValue(1.5)".into()));
        assert_eq!(v[4], ("b".into(), "BoolValue(true)".into()));
        assert_eq!(v[5], ("z".into(), "LegacyJsonValue(\"null\")".into()));
        assert_eq!(
            v[6],
            ("o".into(), "LegacyJsonValue(\"{\\\"k\\\":[1,2]}\")".into())
        );
        // Not an object: one member with the text.
        assert_eq!(
            collect("{\"a\":"),
            vec![("args".into(), "LegacyJsonValue(\"{\\\"a\\\":\")".into())]
        );
        assert!(collect("{}").is_empty());
    }

    #[test]
    fn flow_ids_follow_perfettos_json_reading() {
        assert_eq!(flow_id("42"), 42);
        assert_eq!(flow_id("\"42\""), 0x42);
        assert_eq!(flow_id("\"0x1f\""), 0x1f);
        assert_eq!(flow_id("\"zz\""), flow_id("\"zz\""));
        assert_ne!(flow_id("\"zz\""), flow_id("\"zy\""));
        assert_eq!(unquote("\"a\\u0041\""), "aA");
        assert_eq!(unquote("bad"), "bad");
    }
}
