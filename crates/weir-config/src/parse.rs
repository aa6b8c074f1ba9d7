//! Placeholder: the TOML walker and validator land here.

use crate::{Diagnostic, Diagnostics, Loaded};

pub(crate) fn parse(_source: &str, origin: &str) -> Result<Loaded, Diagnostics> {
    Err(Diagnostics::single(Diagnostic::file_error(origin, "not implemented", "")))
}
