//! Typing of plain (unquoted) YAML scalars, exactly as serde_yaml 0.9 does it, so the located
//! reader never gives a valid file another meaning: `null`/`~`/empty, `true`/`false` (three
//! spellings each), integers in decimal, `0x`, `0o` and `0b` (a sign only before the prefix; a
//! leading zero makes `0123` a string), finite floats, `.inf` and `.nan`.

use std::num::ParseIntError;

/// `null`, `Null`, `NULL`, `~` or nothing.
pub fn is_null(text: &str) -> bool {
    matches!(text, "" | "null" | "Null" | "NULL" | "~")
}

/// `true`/`True`/`TRUE`, `false`/`False`/`FALSE`.
pub fn boolean(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// An integer, if the scalar is one.
pub fn integer(text: &str) -> Option<i128> {
    if let Some(u) = unsigned(text, u128::from_str_radix) {
        return i128::try_from(u).ok();
    }
    negative(text, i128::from_str_radix)
}

/// A float, if the scalar is one and not an integer or a zero-led digit string.
pub fn float(text: &str) -> Option<f64> {
    if digits_but_not_number(text) {
        return None;
    }
    let unpositive = match text.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => text,
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = text {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = text {
        return Some(f64::NAN);
    }
    unpositive.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn unsigned(text: &str, radix: fn(&str, u32) -> Result<u128, ParseIntError>) -> Option<u128> {
    let unpositive = text.strip_prefix('+').unwrap_or(text);
    for (prefix, base) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(n) = radix(rest, base) {
                return Some(n);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(text) {
        return None;
    }
    radix(unpositive, 10).ok()
}

fn negative(text: &str, radix: fn(&str, u32) -> Result<i128, ParseIntError>) -> Option<i128> {
    for (prefix, base) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = text.strip_prefix(prefix) {
            if let Ok(n) = radix(&format!("-{rest}"), base) {
                return Some(n);
            }
        }
    }
    if digits_but_not_number(text) {
        return None;
    }
    radix(text, 10).ok()
}

/// A leading zero followed by digits is a string in YAML 1.2.
fn digits_but_not_number(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    t.len() > 1 && t.starts_with('0') && t[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_typed_as_serde_yaml_types_them() {
        assert_eq!(integer("10"), Some(10));
        assert_eq!(integer("+10"), Some(10));
        assert_eq!(integer("-10"), Some(-10));
        assert_eq!(integer("0x1f"), Some(31));
        assert_eq!(integer("-0x1f"), Some(-31));
        assert_eq!(integer("0o17"), Some(15));
        assert_eq!(integer("0b101"), Some(5));
        assert_eq!(integer("0x-5"), None);
        assert_eq!(integer("0123"), None, "a zero-led digit string is a string");
        assert_eq!(integer("1.5"), None);
        assert_eq!(float("1.5"), Some(1.5));
        assert_eq!(float("1e3"), Some(1000.0));
        assert_eq!(float("1e999"), None, "not finite");
        assert_eq!(float(".inf"), Some(f64::INFINITY));
        assert_eq!(float("0123"), None);
        assert_eq!(boolean("True"), Some(true));
        assert_eq!(boolean("yes"), None, "YAML 1.2: yes is a string");
        assert!(is_null("~") && is_null("") && !is_null("none"));
    }
}
