//! Diagnostics: one type for every error the compiler reports, a stable code per
//! kind of error (`codes.rs`), and one renderer (`render.rs`) for terminals, snapshots
//! and editors (JSON).
//!
//! Invariant: every diagnostic of the user's input has a code and a primary label;
//! internal failures are bugs and are not diagnostics.

mod codes;
mod render;
mod source;

pub use codes::Code;
pub use render::{render_json, render_text, ColorChoice};
pub use source::{FileId, SourceFile, SourceMap, Span};

/// One labelled place in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// An error in the user's input, with where it is and what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error whose primary label is `span`, saying `label` there.
    pub fn error(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            labels: vec![Label { span, message: label.into(), primary: true }],
            notes: Vec::new(),
            help: None,
        }
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label { span, message: message.into(), primary: false });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The span of the primary label.
    pub fn primary_span(&self) -> Span {
        self.labels.iter().find(|l| l.primary).map(|l| l.span).unwrap_or_default()
    }
}

/// How many diagnostics a run reports before it stops with `E0506`.
pub const MAX_DIAGNOSTICS: usize = 100;

/// A growing list of diagnostics that drops exact repeats (a layer instantiated 24
/// times reports its error once) and caps the total.
#[derive(Default, Debug)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
    seen: std::collections::HashSet<(Code, Span, String)>,
}

impl Diagnostics {
    pub fn push(&mut self, diag: Diagnostic) {
        if self.is_full() {
            return;
        }
        if !self.seen.insert((diag.code, diag.primary_span(), diag.message.clone())) {
            return;
        }
        if self.list.len() + 1 == MAX_DIAGNOSTICS {
            let span = diag.primary_span();
            self.list.push(diag);
            self.list.push(Diagnostic::error(
                Code::TooManyErrors,
                format!("too many errors; stopped after {}", MAX_DIAGNOSTICS - 1),
                span,
                "last error reported",
            ));
            return;
        }
        self.list.push(diag);
    }

    pub fn extend(&mut self, diags: impl IntoIterator<Item = Diagnostic>) {
        for d in diags {
            self.push(d);
        }
    }

    pub fn is_full(&self) -> bool {
        self.list.len() >= MAX_DIAGNOSTICS
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The diagnostics in source order (file, then offset), stable for snapshots.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by_key(|d| {
            let s = d.primary_span();
            (d.code == Code::TooManyErrors, s.file, s.start, s.end)
        });
        self.list
    }
}
