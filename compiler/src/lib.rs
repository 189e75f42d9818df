//! seqc-compiler: the `.seq` language from source text to checked model.
//!
//! Stages, each in its own module:
//! - [`syntax`]: logos lexer, lalrpop grammar, AST with spans, canonical printer;
//! - [`sema`]: names, layer instantiation, shapes, index extents, causality, scans,
//!   weights: the checked model;
//! - [`diag`]: diagnostics with stable codes and their renderer;
//! - [`driver`]: the pipeline shared by the command line and the tests.

pub mod analysis;
pub mod bind;
pub mod checkpoint;
pub mod diag;
pub mod driver;
pub mod init;
pub mod ir;
pub mod limits;
pub mod passes;
pub mod prelude;
pub mod schedule;
pub mod sema;
pub mod syntax;
