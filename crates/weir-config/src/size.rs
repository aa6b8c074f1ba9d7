//! Sizes written with units: "512B", "64KiB", "100MiB", "1GiB", and the decimal "64KB".
//!
//! Only the syntax lives here. Which range a key accepts belongs to the schema (`value.rs`).

/// The units a size may use, with their length in bytes. Binary units are powers of 1024,
/// decimal ones powers of 1000.
const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses a size with a unit (`B`, `KiB`, `MiB`, `GiB`, `TiB`, or the decimal `KB`, `MB`,
/// `GB`, `TB`), e.g. `"64KiB"` or `"100MiB"`, into bytes. The number must be whole.
///
/// The error is a sentence fragment suitable for a diagnostic: it says what is wrong with the
/// text, not where it was found.
pub fn parse_size(text: &str) -> Result<u64, String> {
    if text.trim().is_empty() {
        return Err("the size is empty; write it with a unit, e.g. \"64KiB\"".to_string());
    }
    if text.trim_start().starts_with('-') {
        return Err(format!("\"{text}\" is negative; sizes cannot be negative"));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("\"{text}\" has no unit; write \"{text}KiB\" or \"{text}B\""))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("\"{text}\" does not start with a number"));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "\"{text}\" is not a whole number; use a smaller unit, e.g. KiB instead of MiB"
        ));
    }
    if unit.starts_with(char::is_whitespace) {
        let joined: String = text.split_whitespace().collect();
        return Err(format!(
            "\"{text}\" has a space between the number and the unit; write \"{joined}\""
        ));
    }
    let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "unknown unit \"{unit}\" in \"{text}\"; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB \
             for powers of 1000)"
        ));
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("\"{text}\" is out of range"))
}

/// Formats a size the way the config file writes it ("512B", "64KiB", "100MiB").
///
/// Picks the largest binary unit that represents the value exactly, so
/// `parse_size(&format_size(n))` gives `n` back for every `n`.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("100MiB").unwrap(), 100 * 1024 * 1024);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("64KB").unwrap(), 64_000);
        assert_eq!(parse_size("3MB").unwrap(), 3_000_000);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("2TB").unwrap(), 2_000_000_000_000);
        assert_eq!(parse_size("0B").unwrap(), 0);
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("64", "no unit; write \"64KiB\" or \"64B\""),
            ("-1KiB", "negative"),
            (
                "64 KB",
                "a space between the number and the unit; write \"64KB\"",
            ),
            ("12XB", "unknown unit \"XB\""),
            ("64kib", "unknown unit \"kib\""),
            ("1.5MiB", "not a whole number"),
            ("KiB", "does not start with a number"),
            ("99999999999TiB", "out of range"),
            ("99999999999999999999B", "out of range"),
        ];
        for (text, want) in cases {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for n in [
            0,
            1,
            1000,
            1024,
            1536,
            65_536,
            8 << 20,
            3 << 30,
            1 << 40,
            u64::MAX,
        ] {
            assert_eq!(parse_size(&format_size(n)).unwrap(), n, "{n}");
        }
        assert_eq!(format_size(65_536), "64KiB");
        assert_eq!(format_size(1536), "1536B");
        assert_eq!(format_size(100 * 1024 * 1024), "100MiB");
    }
}
