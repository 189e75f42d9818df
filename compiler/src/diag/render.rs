//! The one renderer: rich text (terminal and snapshots, through codespan-reporting)
//! and JSON lines for editors (`--message-format json`).

use super::{Diagnostic, SourceMap};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::term::{self, termcolor};

/// Whether text output uses colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Never,
    Auto,
}

fn to_codespan(diag: &Diagnostic) -> cs::Diagnostic<super::FileId> {
    let labels = diag
        .labels
        .iter()
        .map(|l| {
            let style = if l.primary { cs::LabelStyle::Primary } else { cs::LabelStyle::Secondary };
            cs::Label::new(style, l.span.file, l.span.range()).with_message(&l.message)
        })
        .collect();
    let mut notes: Vec<String> = diag.notes.iter().map(|n| format!("note: {n}")).collect();
    if let Some(help) = &diag.help {
        notes.push(format!("help: {help}"));
    }
    cs::Diagnostic::error()
        .with_code(diag.code.to_string())
        .with_message(&diag.message)
        .with_labels(labels)
        .with_notes(notes)
}

/// Renders diagnostics as text, the way a terminal shows them.
pub fn render_text(map: &SourceMap, diags: &[Diagnostic], color: ColorChoice) -> String {
    let config = term::Config::default();
    let mut out = Vec::new();
    for diag in diags {
        let cd = to_codespan(diag);
        let result = match color {
            ColorChoice::Never => {
                let mut w = termcolor::NoColor::new(&mut out);
                term::emit(&mut w, &config, map, &cd)
            }
            ColorChoice::Auto => {
                let mut w = termcolor::Ansi::new(&mut out);
                term::emit(&mut w, &config, map, &cd)
            }
        };
        if result.is_err() {
            // A span outside its file is a compiler bug; still say what went wrong.
            out.extend_from_slice(format!("error[{}]: {}\n", diag.code, diag.message).as_bytes());
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders diagnostics as JSON, one object per line, for editors.
pub fn render_json(map: &SourceMap, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        let labels: Vec<serde_json::Value> = diag
            .labels
            .iter()
            .map(|l| {
                let file = map.get(l.span.file);
                let (line, column) = file.line_col(l.span.start as usize);
                let (end_line, end_column) = file.line_col(l.span.end as usize);
                serde_json::json!({
                    "file": file.name,
                    "byte_start": l.span.start,
                    "byte_end": l.span.end,
                    "line": line,
                    "column": column,
                    "end_line": end_line,
                    "end_column": end_column,
                    "message": l.message,
                    "primary": l.primary,
                })
            })
            .collect();
        let value = serde_json::json!({
            "severity": "error",
            "code": diag.code.to_string(),
            "message": diag.message,
            "labels": labels,
            "notes": diag.notes,
            "help": diag.help,
        });
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}
