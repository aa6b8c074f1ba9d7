//! Reading one TOML value as the type a key expects, or saying what was found instead:
//! "expected a duration string like \"15s\", found integer 15".

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::de::DeValue;

use crate::duration::parse_duration;
use crate::reader::{Table, Value, Zero};
use crate::sink::Sink;
use crate::size::{format_size, parse_size};

/// A string value, or a type error.
pub(crate) fn expect_str<'t>(
    sink: &mut Sink<'_>,
    value: &'t Value<'_>,
    path: &str,
) -> Option<&'t str> {
    match value.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => {
            type_error(sink, value, path, "a string");
            None
        }
    }
}

/// An integer within `range`, or an error saying what was wrong.
pub(crate) fn expect_integer(
    sink: &mut Sink<'_>,
    value: &Value<'_>,
    path: &str,
    range: RangeInclusive<i64>,
) -> Option<i64> {
    let DeValue::Integer(int) = value.get_ref() else {
        type_error(sink, value, path, "an integer");
        return None;
    };
    let parsed = i64::from_str_radix(int.as_str(), int.radix()).ok();
    match parsed {
        Some(n) if range.contains(&n) => Some(n),
        _ => {
            sink.error(
                &value.span(),
                path,
                format!(
                    "must be between {} and {}, found {int}",
                    range.start(),
                    range.end()
                ),
                "",
            );
            None
        }
    }
}

/// A duration string, or an error saying what was wrong.
pub(crate) fn expect_duration(
    sink: &mut Sink<'_>,
    value: &Value<'_>,
    path: &str,
    zero: Zero,
) -> Option<Duration> {
    let DeValue::String(text) = value.get_ref() else {
        type_error(sink, value, path, "a duration string like \"15s\"");
        return None;
    };
    match parse_duration(text) {
        Ok(d) if d.is_zero() && zero == Zero::Refused => {
            sink.error(
                &value.span(),
                path,
                "must be greater than zero",
                "give a positive duration such as \"1s\"",
            );
            None
        }
        Ok(d) => Some(d),
        Err(why) => {
            sink.error(
                &value.span(),
                path,
                format!("invalid duration: {why}"),
                "durations are a number and a unit: ms, s, m, h or d, e.g. \"500ms\" or \"15s\"",
            );
            None
        }
    }
}

/// A size string within `range` (in bytes), or an error saying what was wrong.
pub(crate) fn expect_size(
    sink: &mut Sink<'_>,
    value: &Value<'_>,
    path: &str,
    range: RangeInclusive<u64>,
) -> Option<u64> {
    let DeValue::String(text) = value.get_ref() else {
        type_error(sink, value, path, "a size string like \"64KiB\"");
        return None;
    };
    match parse_size(text) {
        Ok(n) if range.contains(&n) => Some(n),
        Ok(_) => {
            sink.error(
                &value.span(),
                path,
                format!(
                    "must be between {} and {}, found \"{text}\"",
                    format_size(*range.start()),
                    format_size(*range.end())
                ),
                "",
            );
            None
        }
        Err(why) => {
            let hint = if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
                format!("write \"{text}KiB\", or \"{text}B\" for bytes")
            } else {
                "sizes are a whole number and a unit: B, KiB, MiB or GiB (KB, MB, GB are powers \
                 of 1000), e.g. \"64KiB\""
                    .to_string()
            };
            sink.error(&value.span(), path, format!("invalid size: {why}"), hint);
            None
        }
    }
}

/// A table value, wrapped for reading, or a type error.
pub(crate) fn expect_table<'t, 'i>(
    sink: &mut Sink<'_>,
    value: &'t Value<'i>,
    path: String,
) -> Option<Table<'t, 'i>> {
    match value.get_ref() {
        DeValue::Table(entries) => Some(Table::new(entries, value.span(), path)),
        _ => {
            type_error(sink, value, &path, "a table");
            None
        }
    }
}

/// Records "expected X, found Y", with a hint when the fix is obvious.
pub(crate) fn type_error(sink: &mut Sink<'_>, value: &Value<'_>, path: &str, expected: &str) {
    let found = value.get_ref();
    let hint = match found {
        DeValue::Integer(n) if expected.contains("duration") => {
            format!("write the unit: \"{n}s\" or \"{n}ms\"")
        }
        DeValue::Integer(n) if expected.contains("size") => {
            match u64::from_str_radix(n.as_str(), n.radix()) {
                Ok(bytes) => format!("write the unit: \"{}\"", format_size(bytes)),
                Err(_) => String::new(),
            }
        }
        DeValue::Float(f) if expected == "a string" => format!("quote it: \"{f}\""),
        DeValue::String(s) if expected == "an integer" && s.parse::<i64>().is_ok() => {
            format!("remove the quotes: {s}")
        }
        DeValue::String(s) if expected == "true or false" && (*s == "true" || *s == "false") => {
            format!("remove the quotes: {s}")
        }
        _ => String::new(),
    };
    sink.error(
        &value.span(),
        path,
        format!("expected {expected}, found {}", describe(found)),
        hint,
    );
}

/// A short description of a value for messages: `integer 15`, `string "abc"`, `a table`.
pub(crate) fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("string \"{head}...\"")
        }
        DeValue::String(s) => format!("string \"{s}\""),
        DeValue::Integer(n) => format!("integer {n}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}
