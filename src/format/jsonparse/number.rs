//! JSON's number grammar, and CANN's microsecond texts as integer nanoseconds.

/// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
pub(super) fn is_json_number(t: &[u8]) -> bool {
    let mut i = usize::from(t.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < t.len() && t[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    let int_start = i;
    if !digits(&mut i) || (t[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if i < t.len() && t[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < t.len() && (t[i] == b'e' || t[i] == b'E') {
        i += 1;
        if i < t.len() && (t[i] == b'+' || t[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
}

/// A decimal microsecond text (`"1717575960208020.758"`, `151.0`, `"12.5\t"`, `3e2`) → integer ns, exact for up
/// to 3 decimals (more are rounded). `None` for anything else or a negative value.
pub fn us_to_ns(t: &str) -> Option<u64> {
    let t = t.trim();
    if t.is_empty() || t.starts_with('-') {
        return None;
    }
    if t.contains(['e', 'E']) {
        let v: f64 = t.parse().ok()?;
        return (v.is_finite() && v >= 0.0).then(|| (v * 1000.0).round() as u64);
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ns = int.checked_mul(1000)?;
    let f = frac.as_bytes();
    for (i, &d) in f.iter().take(3).enumerate() {
        ns = ns.checked_add((d - b'0') as u64 * [100, 10, 1][i])?;
    }
    if f.len() > 3 && f[3] >= b'5' {
        ns = ns.checked_add(1)?;
    }
    Some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_grammar() {
        for ok in ["0", "-1", "1.5", "1e3", "1.25E-2", "12345678901234567890"] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1-2", "--1", "1.2.3",
        ] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn microseconds_to_integer_ns() {
        assert_eq!(
            us_to_ns("1717575960208020.758\t"),
            Some(1_717_575_960_208_020_758)
        );
        assert_eq!(us_to_ns("151.000"), Some(151_000));
        assert_eq!(us_to_ns("0.45077999999999996"), Some(451));
        assert_eq!(us_to_ns("990.0"), Some(990_000));
        assert_eq!(us_to_ns("7"), Some(7000));
        assert_eq!(us_to_ns("N/A"), None);
        assert_eq!(us_to_ns("-1"), None);
        assert_eq!(us_to_ns("18446744073709551.999"), None);
        assert_eq!(us_to_ns("99999999999999999999"), None);
        assert_eq!(us_to_ns(""), None);
    }
}
