//! The prelude: the standard layers, written in `.seq` (`prelude.seq`) and compiled
//! into the crate. It is file 0 of every [`crate::diag::SourceMap`].

/// The prelude's source text.
pub const SOURCE: &str = include_str!("prelude.seq");

/// The name the prelude's spans show in diagnostics.
pub const FILE_NAME: &str = "<prelude>";
