//! Parsing: lex, bound the nesting, run the lalrpop grammar with error recovery,
//! and turn every failure into a diagnostic.

use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::limits;
use crate::syntax::ast::*;
use crate::syntax::lexer::{self, Token};
use lalrpop_util::ParseError;

lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, unused_parens, dead_code)]
    grammar,
    "/syntax/grammar.rs"
);

/// Errors raised by grammar actions.
#[derive(Clone, Debug, PartialEq)]
pub enum UserError {
    TooDeep(Span),
    PositionalAfterKeyword(Span),
    InitIndices(Span),
}

/// Builds an expression node, refusing trees taller than the limit so that every
/// later recursive walk (and drop) stays bounded.
pub(crate) fn mk<'a>(kind: ExprKind, span: Span) -> Result<Expr, ParseError<usize, Token<'a>, UserError>> {
    let e = Expr::new(kind, span);
    if e.depth as usize > limits::MAX_EXPR_DEPTH {
        return Err(ParseError::User { error: UserError::TooDeep(span) });
    }
    Ok(e)
}

pub(crate) fn bin<'a>(
    op: BinOp,
    a: Expr,
    b: Expr,
    span: Span,
) -> Result<Expr, ParseError<usize, Token<'a>, UserError>> {
    mk(ExprKind::Binary(op, Box::new(a), Box::new(b)), span)
}

pub(crate) fn args_ok<'a>(args: &[Arg]) -> Result<(), ParseError<usize, Token<'a>, UserError>> {
    let mut keyword_seen = false;
    for a in args {
        match a.name {
            Some(_) => keyword_seen = true,
            None if keyword_seen => {
                return Err(ParseError::User { error: UserError::PositionalAfterKeyword(a.value.span) })
            }
            None => {}
        }
    }
    Ok(())
}

/// `init E` or `init [i, j] = E`: the bracket list is parsed as an expression and
/// must then be a list of plain index names.
pub(crate) fn init_of<'a>(
    head: Expr,
    value: Option<Expr>,
    span: Span,
) -> Result<Init, ParseError<usize, Token<'a>, UserError>> {
    let Some(value) = value else { return Ok(Init::Value(head)) };
    let ExprKind::List(items) = &head.kind else {
        return Err(ParseError::User { error: UserError::InitIndices(head.span) });
    };
    let mut indices = Vec::new();
    for item in items {
        match &item.kind {
            ExprKind::Name(n) => indices.push(Ident { name: n.clone(), span: item.span }),
            _ => return Err(ParseError::User { error: UserError::InitIndices(item.span) }),
        }
    }
    Ok(Init::Indexed { indices, value, span })
}

/// Parses one file. Returns the tree (with `Error` nodes where it recovered) and
/// every diagnostic found, lexical and syntactic.
pub fn parse(file: FileId, src: &str) -> (File, Vec<Diagnostic>) {
    let lexer::Lexed { tokens, comments, mut diags } = lexer::lex(file, src, crate::diag::MAX_DIAGNOSTICS);
    if let Some(d) = check_nesting(file, &tokens) {
        diags.push(d);
        return (File::default(), diags);
    }
    // A token the lexer dropped confuses the parser just after it: report parse
    // errors only before the first lexical error.
    let lex_cut = diags.iter().map(|d| d.primary_span().start as usize).min().unwrap_or(usize::MAX);
    let keep = |d: Diagnostic, diags: &mut Vec<Diagnostic>| {
        if (d.primary_span().start as usize) < lex_cut {
            diags.push(d);
        }
    };
    let mut recovered = Vec::new();
    let result = grammar::FileParser::new().parse(file, &mut recovered, tokens.into_iter().map(Ok::<_, UserError>));
    for r in recovered {
        keep(parse_error(file, src, r.error), &mut diags);
    }
    match result {
        Ok(mut ast) => {
            ast.comments = comments;
            if ast.items.is_empty() && diags.is_empty() {
                diags.push(
                    Diagnostic::error(
                        Code::EmptyFile,
                        "the file defines nothing",
                        Span::new(file, 0, 0),
                        "expected `layer` or `model`",
                    )
                    .with_note("a `.seq` file holds at least one `layer` or `model`"),
                );
            }
            (ast, diags)
        }
        Err(e) => {
            keep(parse_error(file, src, e), &mut diags);
            (File::default(), diags)
        }
    }
}

/// Parses a single expression (used by `--config` values and tests).
pub fn parse_expr(file: FileId, src: &str) -> Result<Expr, Vec<Diagnostic>> {
    let lexer::Lexed { tokens, mut diags, .. } = lexer::lex(file, src, crate::diag::MAX_DIAGNOSTICS);
    if !diags.is_empty() {
        return Err(diags);
    }
    if let Some(d) = check_nesting(file, &tokens) {
        return Err(vec![d]);
    }
    let mut recovered = Vec::new();
    match grammar::ExprParser::new().parse(file, &mut recovered, tokens.into_iter().map(Ok::<_, UserError>)) {
        Ok(e) if recovered.is_empty() => Ok(e),
        Ok(_) => {
            diags.extend(recovered.into_iter().map(|r| parse_error(file, src, r.error)));
            Err(diags)
        }
        Err(e) => Err(vec![parse_error(file, src, e)]),
    }
}

/// Brackets nested beyond the limit are refused before parsing, so statement and
/// expression trees stay shallow enough for recursive walks.
fn check_nesting(file: FileId, tokens: &[lexer::Spanned<'_>]) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (l, tok, r) in tokens {
        match tok {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > limits::MAX_NESTING {
                    return Some(
                        Diagnostic::error(
                            Code::NestingTooDeep,
                            format!("brackets nested more than {} deep", limits::MAX_NESTING),
                            Span::new(file, *l, *r),
                            "the limit is reached here",
                        )
                        .with_help("split the expression with `let`"),
                    );
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

const SOFT_KEYWORDS: &[&str] = &[
    "\"model\"",
    "\"layer\"",
    "\"config\"",
    "\"input\"",
    "\"output\"",
    "\"weights\"",
    "\"weight\"",
    "\"forward\"",
    "\"state\"",
    "\"init\"",
];

fn describe_expected(expected: &[String]) -> String {
    let has = |t: &str| expected.iter().any(|e| e == t);
    if has("Int") && has("Float") && has("\"(\"") {
        return "expected an expression".to_string();
    }
    // Soft keywords are names wherever an identifier is: say "identifier" once.
    let expected: Vec<String> = if has("Ident") {
        expected.iter().filter(|e| !SOFT_KEYWORDS.contains(&e.as_str())).cloned().collect()
    } else {
        expected.to_vec()
    };
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| match e.as_str() {
            "Ident" => "identifier".to_string(),
            "Int" => "integer".to_string(),
            "Float" => "float".to_string(),
            "Str" => "string".to_string(),
            other => format!("`{}`", other.trim_matches('"').replace("\\\"", "\"")),
        })
        .collect();
    names.dedup();
    match names.len() {
        0 => "nothing more here".to_string(),
        1 => format!("expected {}", names[0]),
        n if n <= 8 => {
            let last = names.pop().unwrap_or_default();
            format!("expected {} or {}", names.join(", "), last)
        }
        _ => format!("expected one of {}, ...", names[..6].join(", ")),
    }
}

fn parse_error(file: FileId, src: &str, err: ParseError<usize, Token<'_>, UserError>) -> Diagnostic {
    match err {
        ParseError::UnrecognizedEof { location, expected } => {
            let at = location.min(src.len());
            Diagnostic::error(
                Code::UnexpectedEof,
                "unexpected end of file",
                Span::new(file, at, at),
                describe_expected(&expected),
            )
        }
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => Diagnostic::error(
            Code::UnexpectedToken,
            format!("unexpected {}", tok.describe()),
            Span::new(file, l, r),
            describe_expected(&expected),
        ),
        ParseError::ExtraToken { token: (l, tok, r) } => Diagnostic::error(
            Code::UnexpectedToken,
            format!("unexpected {}", tok.describe()),
            Span::new(file, l, r),
            "expected the end of the file",
        ),
        ParseError::InvalidToken { location } => Diagnostic::error(
            Code::UnexpectedChar,
            "invalid token",
            Span::new(file, location, location + 1),
            "no token starts here",
        ),
        ParseError::User { error } => match error {
            UserError::TooDeep(span) => Diagnostic::error(
                Code::NestingTooDeep,
                format!("expression nested more than {} deep", limits::MAX_EXPR_DEPTH),
                Span { end: span.start + 1, ..span },
                "this expression is too deep",
            )
            .with_help("split the expression with `let`"),
            UserError::PositionalAfterKeyword(span) => Diagnostic::error(
                Code::PositionalAfterKeyword,
                "positional argument after a keyword argument",
                span,
                "positional argument",
            )
            .with_note("positional arguments come before keyword arguments"),
            UserError::InitIndices(span) => Diagnostic::error(
                Code::InvalidInitIndices,
                "`init[...]` must list index names",
                span,
                "not an index name",
            )
            .with_help("write `init[d, n] = expression`"),
        },
    }
}
