//! Problems found in a config file: where, what, why and how to fix it.

use std::fmt;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config is refused.
    Error,
    /// The config is accepted; the finding is reported (lint).
    Warning,
}

/// One finding, positioned in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or other origin) the source came from.
    pub origin: String,
    /// 1-based line; 0 when the finding has no position (e.g. the file cannot be read).
    pub line: usize,
    /// 1-based column (in characters); 0 when there is no position.
    pub column: usize,
    /// Dotted path of the key concerned, e.g. `listener[0].idle_timeout`; empty when none.
    pub key: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it; empty when there is nothing useful to add.
    pub hint: String,
}

impl Diagnostic {
    /// A problem with the file as a whole (no position).
    pub fn file_error(origin: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            origin: origin.to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {level}: ",
                self.origin, self.line, self.column
            )?;
        } else {
            write!(f, "{}: {level}: ", self.origin)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Every error found in one config (at least one), with any warnings, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// A list of one.
    pub fn single(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
