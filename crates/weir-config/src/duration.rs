//! Durations written with units: "500ms", "15s", "2m", "1h", "1d".
//!
//! Only the syntax lives here. Whether zero is acceptable depends on the key, so that check
//! belongs to the schema (`reader.rs`).

use std::time::Duration;

/// The units a duration may use, smallest first, with their length in seconds.
const UNITS: [(&str, f64); 5] = [
    ("ms", 0.001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
];

/// Parses a duration with a unit (`ms`, `s`, `m`, `h`, `d`), e.g. `"500ms"`, `"1.5s"` or `"1h"`.
///
/// The error is a sentence fragment suitable for a diagnostic: it says what is wrong with the
/// text, not where it was found.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the duration is empty; write it with a unit, e.g. \"15s\"".to_string());
    }
    if text.starts_with('-') {
        return Err(format!(
            "\"{text}\" is negative; durations cannot be negative"
        ));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("\"{text}\" has no unit; write \"{text}s\" or \"{text}ms\""))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("\"{text}\" does not start with a number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{number}\" in \"{text}\" is not a number"))?;
    let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "unknown unit \"{unit}\" in \"{text}\"; use ms, s, m, h or d"
        ));
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("\"{text}\" is out of range"))
}

/// Formats a duration the way the config file writes it ("1500ms", "15s", "15m", "1h").
///
/// Picks the largest unit that represents the value exactly at millisecond precision, so
/// `parse_duration(&format_duration(d))` gives `d` back for any whole number of milliseconds.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    // Largest unit first. (`u128::is_multiple_of` would read better but needs Rust 1.87.)
    for (size, unit) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ] {
        let whole = ms / size;
        if whole * size == ms {
            return format!("{whole}{unit}");
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration(" 0s ").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("15", "no unit"),
            ("-5s", "negative"),
            ("5sec", "unknown unit \"sec\""),
            ("s", "does not start with a number"),
            ("1.2.3s", "not a number"),
            ("5 s", "unknown unit"),
            ("1e400s", "unknown unit"),
            ("99999999999999999999999d", "out of range"),
        ];
        for (text, want) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [
            0,
            1,
            999,
            1000,
            1500,
            60_000,
            90_000,
            3_600_000,
            86_400_000,
            172_800_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{ms}ms");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
    }
}
