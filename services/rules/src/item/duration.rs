//! Duration attributes: the text CEL's `duration()` reads (`"90s"`, `"1h30m"`, `"1.5h"`,
//! `"-2m"`, `"0"`), parsed exactly (to the nanosecond, fractions truncated) into a CEL duration
//! within CEL's range (an `i64` count of nanoseconds).

use cel::common::types::CelDuration;

/// Nanoseconds per unit, longest unit name first where one is a prefix of another.
const UNITS: [(&str, i128); 6] = [
    ("h", 3_600_000_000_000),
    ("ms", 1_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// `text` as a duration: an optional `-`, then `0` or one or more `<number><unit>` with
/// `number` = digits, optionally `.` and digits, and `unit` one of `h m s ms us ns`.
pub(super) fn parse_duration(text: &str) -> Option<CelDuration> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut nanos: i128 = 0;
    if rest != "0" {
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let (component, after) = component(rest)?;
            nanos = nanos.checked_add(component)?;
            rest = after;
        }
    }
    let nanos = i64::try_from(if negative { -nanos } else { nanos }).ok()?;
    Some(CelDuration::from(chrono::Duration::nanoseconds(nanos)))
}

/// The nanoseconds of the `<number><unit>` that `text` starts with, and the text after it.
fn component(text: &str) -> Option<(i128, &str)> {
    let (whole, rest) = digits(text)?;
    let (fraction, rest) = match rest.strip_prefix('.') {
        Some(after_point) => digits(after_point)?,
        None => ("", rest),
    };
    let (unit, per_unit) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
    let mut nanos = whole.parse::<i128>().ok()?.checked_mul(*per_unit)?;
    // Digits past the nanosecond change nothing; at most 19 keep 10^n within i128.
    let fraction = &fraction[..fraction.len().min(19)];
    if !fraction.is_empty() {
        let scale = 10i128.pow(u32::try_from(fraction.len()).ok()?);
        nanos += fraction.parse::<i128>().ok()? * per_unit / scale;
    }
    Some((nanos, &rest[unit.len()..]))
}

/// The ASCII digits `text` starts with (at least one), and the text after them.
fn digits(text: &str) -> Option<(&str, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (end > 0 && end <= 30).then(|| text.split_at(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> Option<i64> {
        parse_duration(text).map(|d| d.inner().num_nanoseconds().unwrap())
    }

    #[test]
    fn units_and_components_add_up() {
        assert_eq!(nanos("1h30m"), Some(5_400_000_000_000));
        assert_eq!(nanos("90s"), Some(90_000_000_000));
        assert_eq!(nanos("1m1ms1us1ns"), Some(60_001_001_001));
        assert_eq!(nanos("-2m"), Some(-120_000_000_000));
        assert_eq!(nanos("0"), Some(0));
        assert_eq!(nanos("-0"), Some(0));
    }

    #[test]
    fn fractions_are_exact_to_the_nanosecond() {
        assert_eq!(nanos("1.5h"), Some(5_400_000_000_000));
        assert_eq!(nanos("0.000000001s"), Some(1));
        assert_eq!(nanos("1.9ns"), Some(1));
        assert_eq!(nanos("1.0000000000000000000000001s"), Some(1_000_000_000));
    }

    #[test]
    fn text_outside_the_grammar_is_no_duration() {
        for text in [
            "", "-", "1", "h", "1x", "1.s", ".5s", "1h ", " 1h", "+1h", "1e3s", "--1s", "1h-1m",
            "00", "P1D",
        ] {
            assert_eq!(nanos(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_duration_beyond_an_i64_of_nanoseconds_is_no_duration() {
        assert_eq!(nanos("2562047h"), Some(2_562_047 * 3_600_000_000_000));
        assert_eq!(nanos("2562048h"), None);
        assert_eq!(nanos(&format!("{}h", "9".repeat(30))), None);
    }
}
