//! A small walker over the spanned TOML tree: typed reads that report, never stop.
//!
//! The schema code asks a [`Table`] for each key it knows (`t.string(sink, "name")`,
//! `t.duration(sink, "idle_timeout", Zero::Refused)`, ...). Every read records the key as known;
//! a value of the wrong type or out of range becomes a diagnostic and the read returns `None`, so
//! the caller keeps its default and carries on. [`Table::finish`] then reports every key nobody
//! asked for, with the keys that table accepts and a "did you mean" when one is close.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::sink::{Sink, Span};
use crate::suggest::suggest;
use crate::value::{
    describe, expect_duration, expect_integer, expect_size, expect_str, expect_table, type_error,
};

/// A value in the parsed tree, with its position.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Whether a duration key accepts `"0s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    /// Zero means something (e.g. "no grace period").
    Allowed,
    /// Zero would make the setting useless (e.g. a timeout that always fires).
    Refused,
}

/// One TOML table being read by the schema, with the keys asked for so far.
pub(crate) struct Table<'t, 'i> {
    entries: &'t DeTable<'i>,
    span: Span,
    path: String,
    asked: Vec<&'static str>,
}

impl<'t, 'i> Table<'t, 'i> {
    /// Wraps `entries`; `span` is where "missing key" errors point (the header or the `{`), and
    /// `path` names the table in messages (empty for the document root).
    pub(crate) fn new(entries: &'t DeTable<'i>, span: Span, path: String) -> Self {
        Table {
            entries,
            span,
            path,
            asked: Vec::new(),
        }
    }

    /// The table's header or inline-table span.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The table's name in messages, e.g. `listener "web"`.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The dotted name of one of this table's keys, e.g. `listener "web".idle_timeout`.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of `key`, marking the key as known.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'t Value<'i>> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.entries.get(key)
    }

    /// The string value of `key` without reading it (to name a table after its `name`).
    pub(crate) fn peek_str(&self, key: &str) -> Option<&'t str> {
        self.entries.get(key).and_then(|v| v.get_ref().as_str())
    }

    /// Where `key` itself is written, if it is present.
    pub(crate) fn key_span(&self, key: &str) -> Option<Span> {
        self.entries.get_key_value(key).map(|(k, _)| k.span())
    }

    /// Reports `key` as missing when absent; `example` shows a line that would fix it.
    pub(crate) fn require(&mut self, sink: &mut Sink<'_>, key: &'static str, example: &str) {
        if self.get(key).is_none() {
            sink.error(
                &self.span,
                &self.path,
                format!("missing required key `{key}`"),
                format!("add {example}"),
            );
        }
    }

    /// A string.
    pub(crate) fn string(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
    ) -> Option<Spanned<&'t str>> {
        let value = self.get(key)?;
        let text = expect_str(sink, value, &self.key_path(key))?;
        Some(Spanned::new(value.span(), text))
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self, sink: &mut Sink<'_>, key: &'static str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                type_error(sink, value, &self.key_path(key), "true or false");
                None
            }
        }
    }

    /// An integer within `range`.
    pub(crate) fn integer(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
        range: RangeInclusive<i64>,
    ) -> Option<Spanned<i64>> {
        let value = self.get(key)?;
        let n = expect_integer(sink, value, &self.key_path(key), range)?;
        Some(Spanned::new(value.span(), n))
    }

    /// A duration string such as `"15s"`.
    pub(crate) fn duration(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
        zero: Zero,
    ) -> Option<Spanned<Duration>> {
        let value = self.get(key)?;
        let d = expect_duration(sink, value, &self.key_path(key), zero)?;
        Some(Spanned::new(value.span(), d))
    }

    /// A size string such as `"64KiB"`, in bytes, within `range`.
    pub(crate) fn size(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
        range: RangeInclusive<u64>,
    ) -> Option<Spanned<u64>> {
        let value = self.get(key)?;
        let n = expect_size(sink, value, &self.key_path(key), range)?;
        Some(Spanned::new(value.span(), n))
    }

    /// One of a fixed set of strings, mapped to its meaning.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
        choices: &[(&'static str, T)],
    ) -> Option<Spanned<T>> {
        let value = self.get(key)?;
        let path = self.key_path(key);
        let text = expect_str(sink, value, &path)?;
        if let Some((_, meaning)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(Spanned::new(value.span(), *meaning));
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let hint = match suggest(text, &names) {
            Some(near) => format!("did you mean \"{near}\"?"),
            None => String::new(),
        };
        sink.error(
            &value.span(),
            &path,
            format!(
                "unknown value \"{text}\"; expected one of {}",
                names.join(", ")
            ),
            hint,
        );
        None
    }

    /// A nested table (`[a.b]`, `b = { ... }` or dotted keys).
    pub(crate) fn table(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
    ) -> Option<Table<'t, 'i>> {
        let value = self.get(key)?;
        expect_table(sink, value, self.key_path(key))
    }

    /// An array of any values; the caller reads the elements.
    pub(crate) fn array(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
    ) -> Option<Spanned<&'t [Value<'i>]>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Array(items) => Some(Spanned::new(value.span(), items.as_ref())),
            _ => {
                type_error(sink, value, &self.key_path(key), "an array");
                None
            }
        }
    }

    /// The tables of `[[key]]`, each named `key "name"` when it has a string `name`, else
    /// `key[index]`.
    pub(crate) fn array_of_tables(
        &mut self,
        sink: &mut Sink<'_>,
        key: &'static str,
    ) -> Vec<Table<'t, 'i>> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            sink.error(
                &value.span(),
                &self.key_path(key),
                format!(
                    "expected an array of tables, found {}",
                    describe(value.get_ref())
                ),
                format!("write each entry under its own [[{key}]] header (double brackets)"),
            );
            return Vec::new();
        };
        let mut tables = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let indexed = format!("{}[{i}]", self.key_path(key));
            let Some(mut table) = expect_table(sink, item, indexed) else {
                continue;
            };
            if let Some(name) = table.peek_str("name").filter(|n| !n.is_empty()) {
                table.path = format!("{} {name:?}", self.key_path(key));
            }
            tables.push(table);
        }
        tables
    }

    /// Reports every key that no read asked for.
    pub(crate) fn finish(self, sink: &mut Sink<'_>) {
        for (key, _) in self.entries.iter() {
            let name: &str = key.get_ref();
            if self.asked.contains(&name) {
                continue;
            }
            let mut hint = match suggest(name, &self.asked) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            let place = if self.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {}", self.path)
            };
            hint.push_str(&format!("keys accepted {place}: {}", self.asked.join(", ")));
            sink.error(
                &key.span(),
                &self.key_path(name),
                format!("unknown key `{name}`"),
                hint,
            );
        }
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Diagnostic;

    /// Reads `source`'s root table with `read`, returning the result and the findings.
    fn read<T>(
        source: &str,
        read: impl FnOnce(&mut Table<'_, '_>, &mut Sink<'_>) -> T,
    ) -> (T, Vec<Diagnostic>) {
        let (root, errors) = DeTable::parse_recoverable(source);
        assert!(errors.is_empty(), "{errors:?}");
        let mut sink = Sink::new(source, "t.toml");
        let mut table = Table::new(root.get_ref(), 0..0, String::new());
        let out = read(&mut table, &mut sink);
        (out, sink.finish())
    }

    #[test]
    fn typed_reads_return_values_and_spans() {
        let src = "a = \"x\"\nb = true\nc = 7\nd = \"1m\"\ne = \"wrr\"\nf = [1, 2]\n";
        let (out, found) = read(src, |t, sink| {
            (
                t.string(sink, "a").map(|s| s.get_ref().to_string()),
                t.boolean(sink, "b"),
                t.integer(sink, "c", 0..=10)
                    .map(|n| (n.span(), n.into_inner())),
                t.duration(sink, "d", Zero::Refused)
                    .map(Spanned::into_inner),
                t.choice(sink, "e", &[("rr", 1), ("wrr", 2)])
                    .map(Spanned::into_inner),
                t.array(sink, "f").map(|a| a.get_ref().len()),
                t.string(sink, "absent").is_none(),
            )
        });
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(out.0.as_deref(), Some("x"));
        assert_eq!(out.1, Some(true));
        assert_eq!(out.2, Some((21..22, 7)));
        assert_eq!(out.3, Some(Duration::from_secs(60)));
        assert_eq!(out.4, Some(2));
        assert_eq!(out.5, Some(2));
        assert!(out.6);
    }

    #[test]
    fn wrong_types_and_ranges_are_reported_not_fatal() {
        let src = "a = 15\nb = \"true\"\nc = 0x10\nd = \"0s\"\ne = \"RR\"\n";
        let (_, found) = read(src, |t, sink| {
            t.duration(sink, "a", Zero::Refused);
            t.boolean(sink, "b");
            t.integer(sink, "c", 0..=10);
            t.duration(sink, "d", Zero::Refused);
            t.choice(sink, "e", &[("rr", 1), ("wrr", 2)]);
        });
        let got: Vec<_> = found
            .iter()
            .map(|d| {
                (
                    d.line,
                    d.column,
                    d.key.as_str(),
                    d.message.as_str(),
                    d.hint.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    1,
                    5,
                    "a",
                    "expected a duration string like \"15s\", found integer 15",
                    "write the unit: \"15s\" or \"15ms\""
                ),
                (
                    2,
                    5,
                    "b",
                    "expected true or false, found string \"true\"",
                    "remove the quotes: true"
                ),
                (3, 5, "c", "must be between 0 and 10, found 0x10", ""),
                (
                    4,
                    5,
                    "d",
                    "must be greater than zero",
                    "give a positive duration such as \"1s\""
                ),
                (
                    5,
                    5,
                    "e",
                    "unknown value \"RR\"; expected one of rr, wrr",
                    "did you mean \"rr\"?"
                ),
            ]
        );
    }

    #[test]
    fn unknown_keys_list_what_is_accepted() {
        let src = "[t]\nname = \"a\"\nidle_timout = \"1s\"\nzzz = 1\n";
        let (_, found) = read(src, |root, sink| {
            let mut t = root.table(sink, "t").unwrap();
            t.string(sink, "name");
            t.duration(sink, "idle_timeout", Zero::Refused);
            t.finish(sink);
        });
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].line, found[0].column), (3, 1));
        assert_eq!(found[0].key, "t.idle_timout");
        assert_eq!(found[0].message, "unknown key `idle_timout`");
        assert_eq!(
            found[0].hint,
            "did you mean `idle_timeout`? keys accepted in t: name, idle_timeout"
        );
        assert_eq!(found[1].hint, "keys accepted in t: name, idle_timeout");
    }

    #[test]
    fn missing_keys_point_at_the_table() {
        let src = "x = 1\n[t]\nname = \"a\"\n";
        let (_, found) = read(src, |root, sink| {
            let mut t = root.table(sink, "t").unwrap();
            t.require(sink, "bind", "bind = \"0.0.0.0:80\"");
        });
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].column), (2, 1));
        assert_eq!(found[0].message, "missing required key `bind`");
    }
}
