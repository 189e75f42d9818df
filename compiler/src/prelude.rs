//! The prelude: the standard layers, written in `.seq` (`prelude.seq`) and compiled
//! into the crate. It is file 0 of every [`crate::diag::SourceMap`].

/// The prelude's source text.
pub const SOURCE: &str = include_str!("prelude.seq");

/// The name the prelude's spans show in diagnostics.
pub const FILE_NAME: &str = "<prelude>";

/// The prelude, parsed once per process (every compilation starts from it).
pub fn parsed() -> &'static (crate::syntax::ast::File, Vec<crate::diag::Diagnostic>) {
    static PARSED: std::sync::OnceLock<(crate::syntax::ast::File, Vec<crate::diag::Diagnostic>)> =
        std::sync::OnceLock::new();
    PARSED.get_or_init(|| crate::syntax::parse(PRELUDE_FILE, SOURCE))
}

/// The prelude is always file 0.
pub const PRELUDE_FILE: crate::diag::FileId = crate::diag::FileId(0);
