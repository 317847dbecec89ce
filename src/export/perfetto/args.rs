//! JSON pieces of the trace's events (string literals, `args` objects, flow ids) in Perfetto's terms: a
//! decoded name, debug annotations, a flow id.

use super::pb::debug_annotation::Value as AnnValue;
use crate::format::jsonparse::{Parser, Value};

/// The text of a JSON string literal (quotes included); a literal that does not parse is kept as written.
pub(super) fn unquote(lit: &str) -> String {
    unquote_cow(lit).into_owned()
}

/// [`unquote`], borrowing the text when the literal has no escapes (no parse, no copy).
pub(super) fn unquote_cow(lit: &str) -> std::borrow::Cow<'_, str> {
    if let Some(inner) = lit.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        if !inner.bytes().any(|b| b == b'\\' || b == b'"' || b < 0x20) {
            return std::borrow::Cow::Borrowed(inner);
        }
    }
    match Parser::new(lit.as_bytes()).value(0) {
        Ok(Value::Str(s)) => std::borrow::Cow::Owned(s.into_owned()),
        _ => std::borrow::Cow::Borrowed(lit),
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

/// A member's value in a flat object (see [`flat_members`]), borrowed from the object's text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Flat<'a> {
    Str(&'a str),
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
}

/// The members of `obj` (braces included) into `out` when it is a flat object of strings without escapes,
/// numbers and booleans, as the device lanes write their args: no allocation, no copy. `false` (and `out`
/// unspecified) for anything else, which [`members`] reads.
pub(super) fn flat_members<'a>(obj: &'a str, out: &mut Vec<(&'a str, Flat<'a>)>) -> bool {
    out.clear();
    let b = obj.as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    // A string without escapes or control characters, at `i` (its opening quote).
    let string = |i: &mut usize| -> Option<&'a str> {
        if b.get(*i) != Some(&b'"') {
            return None;
        }
        let from = *i + 1;
        let mut j = from;
        while j < b.len() && b[j] != b'"' {
            if b[j] == b'\\' || b[j] < 0x20 {
                return None;
            }
            j += 1;
        }
        if j >= b.len() {
            return None;
        }
        *i = j + 1;
        obj.get(from..j)
    };
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return false;
    }
    i += 1;
    ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
        ws(&mut i);
        return i == b.len();
    }
    loop {
        ws(&mut i);
        let Some(key) = string(&mut i) else {
            return false;
        };
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return false;
        }
        i += 1;
        ws(&mut i);
        let value = match b.get(i) {
            Some(b'"') => match string(&mut i) {
                Some(s) => Flat::Str(s),
                None => return false,
            },
            Some(b't') if b[i..].starts_with(b"true") => {
                i += 4;
                Flat::Bool(true)
            }
            Some(b'f') if b[i..].starts_with(b"false") => {
                i += 5;
                Flat::Bool(false)
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let from = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let t = &obj[from..i];
                if let Ok(v) = t.parse::<i64>() {
                    Flat::Int(v)
                } else if let Ok(v) = t.parse::<u64>() {
                    Flat::Uint(v)
                } else if crate::format::jsonparse::Parser::new(t.as_bytes())
                    .value(0)
                    .is_ok_and(|v| matches!(v, Value::Num(_)))
                {
                    match t.parse::<f64>() {
                        Ok(v) => Flat::Double(v),
                        Err(_) => return false,
                    }
                } else {
                    return false;
                }
            }
            _ => return false,
        };
        out.push((key, value));
        ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                ws(&mut i);
                return i == b.len();
            }
            _ => return false,
        }
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

    /// The flat reader agrees with the full one wherever it accepts, and declines what it cannot borrow.
    #[test]
    fn flat_members_agree_with_members() {
        let accepted = [
            r#"{"Task Type":"AI_CORE","correlation_id":5}"#,
            r#" { "a" : "x" , "n":-3,"u":18446744073709551615,"d":1.5e3,"b":true,"f":false } "#,
            "{}",
            r#"{"k":"é unicode é"}"#,
        ];
        for obj in accepted {
            let mut flat = Vec::new();
            assert!(flat_members(obj, &mut flat), "{obj}");
            let mut full = Vec::new();
            members(obj, |k, a| full.push((k.to_string(), a)));
            assert_eq!(flat.len(), full.len(), "{obj}");
            for ((k, f), (k2, a)) in flat.iter().zip(&full) {
                assert_eq!(k, k2);
                let same = match (f, a) {
                    (Flat::Str(s), Arg::Str(t)) => s == t,
                    (Flat::Int(i), Arg::Value(AnnValue::IntValue(j))) => i == j,
                    (Flat::Uint(i), Arg::Value(AnnValue::UintValue(j))) => i == j,
                    (Flat::Double(i), Arg::Value(AnnValue::DoubleValue(j))) => i == j,
                    (Flat::Bool(i), Arg::Value(AnnValue::BoolValue(j))) => i == j,
                    _ => false,
                };
                assert!(same, "{obj}: {k} {f:?}");
            }
        }
        let declined = [
            r#"{"a":"x\"y"}"#,
            r#"{"a":null}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":01x}"#,
            r#"{"a":1} x"#,
            "",
            r#"{"a":tru}"#,
        ];
        for obj in declined {
            assert!(!flat_members(obj, &mut Vec::new()), "{obj}");
        }
    }

    #[test]
    fn flow_ids_follow_perfettos_json_reading() {
        assert_eq!(flow_id("42"), 42);
        assert_eq!(flow_id("\"42\""), 0x42);
        assert_eq!(flow_id("\"0x1f\""), 0x1f);
        assert_eq!(flow_id("\"zz\""), flow_id("\"zz\""));
        assert_ne!(flow_id("\"zz\""), flow_id("\"zy\""));
        assert_eq!(unquote("\"a\\u0041\""), "aA");
        assert!(matches!(
            unquote_cow("\"plain\""),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(unquote_cow("\"a\\\"b\""), "a\"b");
        assert_eq!(unquote_cow("\"\""), "");
        assert_eq!(unquote("bad"), "bad");
    }
}
