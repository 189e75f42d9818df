//! The pipeline from bytes to checked model, shared by the command line, the
//! tests and the benchmarks. Every failure is a diagnostic; nothing here panics
//! on user input.

use crate::diag::{Code, Diagnostic, FileId, SourceFile, SourceMap, Span};
use crate::sema::{self, Checked, ConfigOverride};
use crate::syntax::{self, ast};
use crate::{limits, prelude};

/// A compilation's sources: the prelude (file 0), the user's file, and the
/// `--config` text when given (so its errors can be underlined too).
pub struct Session {
    pub sources: SourceMap,
    pub prelude: &'static ast::File,
    pub file: FileId,
}

/// The outcome of one stage: its product, or the diagnostics that stopped it.
pub type Outcome<T> = Result<T, Vec<Diagnostic>>;

impl Session {
    /// Reads a user's file from bytes: UTF-8 and size are checked here.
    pub fn new(name: &str, bytes: &[u8]) -> (Session, Outcome<()>) {
        let mut sources = SourceMap::default();
        let prelude_id = sources.add(SourceFile::new(prelude::FILE_NAME, prelude::SOURCE));
        debug_assert_eq!(prelude_id, prelude::PRELUDE_FILE);
        let (prelude_ast, prelude_diags) = prelude::parsed();
        if bytes.len() > limits::MAX_SOURCE_BYTES {
            let file = sources.add(SourceFile::new(name, ""));
            let session = Session { sources, prelude: prelude_ast, file };
            let d = Diagnostic::error(
                Code::FileTooLarge,
                format!("the file is {} bytes; the limit is {}", bytes.len(), limits::MAX_SOURCE_BYTES),
                Span::new(file, 0, 0),
                "file too large",
            );
            return (session, Err(vec![d]));
        }
        let (text, utf8_error) = match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_string(), None),
            Err(e) => (String::from_utf8_lossy(bytes).into_owned(), Some(e.valid_up_to())),
        };
        let file = sources.add(SourceFile::new(name, text));
        let session = Session { sources, prelude: prelude_ast, file };
        if !prelude_diags.is_empty() {
            return (session, Err(prelude_diags.clone()));
        }
        if let Some(at) = utf8_error {
            let d = Diagnostic::error(
                Code::InvalidUtf8,
                "the file is not valid UTF-8",
                Span::new(file, at, at + 1),
                "invalid byte here",
            )
            .with_note(format!("the first invalid byte is at offset {at}"));
            return (session, Err(vec![d]));
        }
        (session, Ok(()))
    }

    pub fn text(&self) -> &str {
        &self.sources.get(self.file).text
    }

    /// Parses the user's file.
    pub fn parse(&self) -> Outcome<ast::File> {
        let (file, diags) = syntax::parse(self.file, self.text());
        if diags.is_empty() {
            Ok(file)
        } else {
            Err(diags)
        }
    }

    /// Parses `--config k=v,...`; its text becomes a source file of its own.
    pub fn config_overrides(&mut self, text: &str) -> Outcome<Vec<ConfigOverride>> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let id = self.sources.add(SourceFile::new("<--config>", text));
        let mut out = Vec::new();
        let mut diags = Vec::new();
        let mut offset = 0;
        for part in text.split(',') {
            let start = offset;
            offset += part.len() + 1;
            if part.trim().is_empty() {
                continue;
            }
            let Some(eq) = part.find('=') else {
                diags.push(
                    Diagnostic::error(
                        Code::BadConfigValue,
                        "a config override is `key=value`",
                        Span::new(id, start, start + part.len()),
                        "no `=`",
                    )
                    .with_help("write `--config d_model=256,n_layer=2`"),
                );
                continue;
            };
            let key = part[..eq].trim();
            let key_start = start + part[..eq].find(key).unwrap_or(0);
            let value_text = &part[eq + 1..];
            let value_span = Span::new(id, start + eq + 1, start + part.len());
            match syntax::parse_expr(id, value_text) {
                Ok(mut value) => {
                    value.span = value_span;
                    out.push(ConfigOverride {
                        key: key.to_string(),
                        key_span: Span::new(id, key_start, key_start + key.len()),
                        value,
                    });
                }
                Err(_) => diags.push(Diagnostic::error(
                    Code::BadConfigValue,
                    format!("the value of `{key}` is not a literal"),
                    value_span,
                    "expected a number or `true`/`false`",
                )),
            }
        }
        if diags.is_empty() {
            Ok(out)
        } else {
            Err(diags)
        }
    }

    /// Parses and checks the user's file with the given overrides.
    pub fn check(&mut self, config: &str) -> Outcome<Checked> {
        let ast = self.parse()?;
        let overrides = self.config_overrides(config)?;
        sema::check(self.prelude, &ast, self.file, &overrides)
    }
}

/// Reads, parses and checks one file in one call.
pub fn check_bytes(name: &str, bytes: &[u8], config: &str) -> (Session, Outcome<Checked>) {
    let (mut session, ok) = Session::new(name, bytes);
    let result = ok.and_then(|_| session.check(config));
    (session, result)
}

/// The parameter count of a checked model.
pub fn parameter_count(m: &sema::CheckedModel) -> i128 {
    m.weights.iter().map(|w| w.shape.iter().map(|&d| d as i128).product::<i128>()).sum()
}

/// The table `seqc check --weights` prints: every checkpoint tensor the model
/// expects, with its shape, dtype and initialiser.
pub fn weight_table(m: &sema::CheckedModel) -> String {
    let shape = |s: &[i64]| format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
    let name_w = m.weights.iter().map(|w| w.name.len()).max().unwrap_or(4).max(4);
    let shape_w = m.weights.iter().map(|w| shape(&w.shape).len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:name_w$}  {:shape_w$}  dtype  init\n", "name", "shape");
    for w in &m.weights {
        out.push_str(&format!(
            "{:name_w$}  {:shape_w$}  {:5}  {}\n",
            w.name,
            shape(&w.shape),
            w.dtype.name(),
            w.init.describe()
        ));
    }
    out.push_str(&format!("{} tensors, {} parameters\n", m.weights.len(), parameter_count(m)));
    out
}
