//! Collecting findings while the config is read: byte offsets become `line:column`, and every
//! error and warning is kept so the user sees all of them at once, in source order.

use std::ops::Range;

use crate::{Diagnostic, Severity};

/// A byte range in the config source, as the TOML parser reports it.
pub(crate) type Span = Range<usize>;

/// Where findings go while a config is read, validated and linted.
pub(crate) struct Sink<'s> {
    source: &'s str,
    origin: &'s str,
    /// Byte offset at which each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
    found: Vec<Diagnostic>,
}

impl<'s> Sink<'s> {
    /// A sink for findings in `source`, named `origin` in messages.
    pub(crate) fn new(source: &'s str, origin: &'s str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Sink {
            source,
            origin,
            line_starts,
            found: Vec::new(),
        }
    }

    /// The name the source goes by (usually the config file's path).
    pub(crate) fn origin(&self) -> &'s str {
        self.origin
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let column = match self.source.get(start..offset) {
            Some(text) => text.chars().count(),
            // Not on a character boundary (the parser never does this): count bytes.
            None => offset - start,
        };
        (line.max(1), column + 1)
    }

    /// The 1-based line of a span, for hints like "first defined at line 3".
    pub(crate) fn line_of(&self, span: &Span) -> usize {
        self.position(span.start).0
    }

    /// Records an error at `span`.
    pub(crate) fn error(
        &mut self,
        span: &Span,
        key: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Error,
            Some(span),
            key,
            message.into(),
            hint.into(),
        );
    }

    /// Records an error with no position (the parser gave none).
    pub(crate) fn error_unplaced(&mut self, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Error, None, "", message.into(), hint.into());
    }

    /// Records a warning at `span`.
    pub(crate) fn warn(
        &mut self,
        span: &Span,
        key: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Warning,
            Some(span),
            key,
            message.into(),
            hint.into(),
        );
    }

    /// Whether any error (not warning) was recorded.
    pub(crate) fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// How many errors were recorded so far (to tell whether a step added any).
    pub(crate) fn error_count(&self) -> usize {
        self.found
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Everything recorded, in source order (findings without a position first).
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        // Stable: two findings at the same position keep the order they were found in.
        self.found.sort_by_key(|d| (d.line, d.column));
        self.found
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Option<&Span>,
        key: &str,
        message: String,
        hint: String,
    ) {
        let (line, column) = span.map_or((0, 0), |s| self.position(s.start));
        self.found.push(Diagnostic {
            severity,
            origin: self.origin.to_string(),
            line,
            column,
            key: key.to_string(),
            message,
            hint,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let source = "a = 1\nnamé = \"x\"\n\nz";
        let sink = Sink::new(source, "t.toml");
        assert_eq!(sink.position(0), (1, 1));
        assert_eq!(sink.position(4), (1, 5));
        assert_eq!(sink.position(5), (1, 6)); // the newline itself
        assert_eq!(sink.position(6), (2, 1));
        // "namé" is 5 bytes, 4 characters: the '=' after it is column 6.
        assert_eq!(sink.position(6 + 6), (2, 6));
        assert_eq!(sink.position(source.len() - 1), (4, 1));
        assert_eq!(sink.position(10_000), (4, 2));
    }

    #[test]
    fn findings_come_out_in_source_order() {
        let mut sink = Sink::new("a\nb\nc\n", "t.toml");
        sink.error(&(4..5), "c", "third", "");
        sink.warn(&(0..1), "a", "first", "");
        sink.error(&(2..3), "b", "second", "");
        assert!(sink.has_errors());
        let found = sink.finish();
        let messages: Vec<_> = found.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["first", "second", "third"]);
        assert_eq!((found[2].line, found[2].column), (3, 1));
    }
}
