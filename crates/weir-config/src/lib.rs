//! weir's configuration: the TOML schema, parsing with source positions, validation and lint.
//!
//! Pure: no I/O beyond reading the file. [`parse()`] turns text into a validated [`Config`] or
//! the full list of problems, each with `file:line:column`, the key and a hint.
//!
//! How a file goes through: `parse.rs` gets the spanned TOML tree and walks it with the
//! typed readers of `reader.rs`/`value.rs` (`listener.rs`, `acl.rs` for its `acl` and `limits`,
//! `http.rs` for the HTTP and TLS keys of a listener, `rule.rs` for its routing rules, `group.rs`, `health.rs` hold the schema of
//! each table; `duration.rs`, `size.rs`, `addr.rs` and `acl.rs` the value syntaxes); `validate.rs` checks
//! across tables; `lint.rs` warns on a valid result. `unsupported.rs` refuses what parses but
//! this build cannot run yet.

mod acl;
mod addr;
mod diagnostic;
mod duration;
mod group;
mod health;
mod http;
mod lint;
mod listener;
pub mod model;
mod parse;
mod reader;
mod rule;
mod sink;
mod size;
mod suggest;
mod unsupported;
mod validate;
mod value;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use duration::{format_duration, parse_duration};
pub use model::*;
pub use size::{format_size, parse_size};

/// A configuration that passed validation, with the lint warnings it raised.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Non-fatal findings (`weir check` prints them; `weir run` logs them).
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates `source`; `origin` names it in messages (usually the file path).
pub fn parse(source: &str, origin: &str) -> Result<Loaded, Diagnostics> {
    parse::parse(source, origin)
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(source) => parse(&source, &origin),
        Err(err) => Err(Diagnostics::single(Diagnostic::file_error(
            &origin,
            format!("cannot read the config file: {err}"),
            "check the path given with -c, or create weir.toml (see examples/weir.toml)",
        ))),
    }
}
