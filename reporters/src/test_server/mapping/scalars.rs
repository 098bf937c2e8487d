//! Scalar values as Elasticsearch reads them: Java-style numbers, integers that fit, and the
//! date formats the test server checks.

use serde_json::Number;

/// A JSON number into an integer field: whole numbers in range; a fraction only with `coerce`
/// (Elasticsearch truncates it).
pub(super) fn integer_fits(number: &Number, coerce: bool) -> bool {
    if number.is_i64() || number.is_u64() {
        return true;
    }
    number
        .as_f64()
        .is_some_and(|v| v.abs() < 9.3e18 && (coerce || v.fract() == 0.0))
}

/// Java's `Double.parseDouble` closely enough: surrounding whitespace allowed, `NaN` and
/// `Infinity` spelled as Java spells them, Rust's own spellings of those refused.
pub(super) fn parse_java_double(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    let unsigned = trimmed.trim_start_matches(['+', '-']);
    match unsigned {
        "NaN" => return Some(f64::NAN),
        "Infinity" => return Some(f64::INFINITY),
        _ => {}
    }
    if unsigned
        .chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    trimmed.parse::<f64>().ok()
}

pub(super) fn parse_finite(text: &str) -> Option<f64> {
    parse_java_double(text).filter(|v| v.is_finite())
}

fn digits(text: &str, count: usize) -> Option<(u32, &str)> {
    let head = text.get(..count)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, text.get(count..)?))
}

/// `yyyy[-MM[-dd]]['T'HH[:mm[:ss[.f]]]][zone]`.
pub(super) fn is_optional_time(text: &str) -> bool {
    let Some((_, mut rest)) = digits(text, 4) else {
        return false;
    };
    let mut has_day = false;
    if let Some(after) = rest.strip_prefix('-') {
        let Some((month, after)) = digits(after, 2) else {
            return false;
        };
        if !(1..=12).contains(&month) {
            return false;
        }
        rest = after;
        if let Some(after) = rest.strip_prefix('-') {
            let Some((day, after)) = digits(after, 2) else {
                return false;
            };
            if !(1..=31).contains(&day) {
                return false;
            }
            rest = after;
            has_day = true;
        }
    }
    if rest.is_empty() {
        return true;
    }
    let Some(time) = rest.strip_prefix('T').filter(|_| has_day) else {
        return false;
    };
    let Some((hour, mut rest)) = digits(time, 2) else {
        return false;
    };
    if hour > 23 {
        return false;
    }
    for limit in [59, 59] {
        let Some(after) = rest.strip_prefix(':') else {
            break;
        };
        let Some((value, after)) = digits(after, 2) else {
            return false;
        };
        if value > limit {
            return false;
        }
        rest = after;
    }
    if let Some(after) = rest.strip_prefix(['.', ',']) {
        let fraction = after.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&fraction) {
            return false;
        }
        rest = after.get(fraction..).unwrap_or("");
    }
    is_zone(rest, true)
}

/// `` (when optional), `Z`, `±HH`, `±HHmm`, `±HH:mm`.
fn is_zone(text: &str, optional: bool) -> bool {
    if text.is_empty() {
        return optional;
    }
    if text == "Z" {
        return true;
    }
    let Some(offset) = text.strip_prefix(['+', '-']) else {
        return false;
    };
    match offset.len() {
        2 => digits(offset, 2).is_some(),
        4 => digits(offset, 4).is_some(),
        5 => {
            offset.as_bytes().get(2) == Some(&b':')
                && digits(offset, 2).is_some()
                && offset.get(3..).and_then(|m| digits(m, 2)).is_some()
        }
        _ => false,
    }
}

/// `yyyy/MM/dd[ HH:mm:ss][ Z]`.
pub(super) fn is_slash_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split(' ').collect();
    let Some(date) = parts.first() else {
        return false;
    };
    let fields: Vec<&str> = date.split('/').collect();
    let date_ok = matches!(fields.as_slice(), [y, m, d]
        if y.len() == 4 && digits(y, 4).is_some()
            && digits(m, 2).is_some_and(|(m, rest)| rest.is_empty() && (1..=12).contains(&m))
            && digits(d, 2).is_some_and(|(d, rest)| rest.is_empty() && (1..=31).contains(&d)));
    let time_ok = |t: &str| {
        let hms: Vec<&str> = t.split(':').collect();
        hms.len() == 3 && hms.iter().all(|p| p.len() == 2 && digits(p, 2).is_some())
    };
    date_ok
        && match parts.as_slice() {
            [_] => true,
            [_, second] => time_ok(second) || is_zone(second, false),
            [_, time, zone] => time_ok(time) && is_zone(zone, false),
            _ => false,
        }
}
