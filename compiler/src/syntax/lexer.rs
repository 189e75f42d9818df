//! The lexer: logos turns source text into tokens with byte spans.
//!
//! Soft keywords (`model layer config input output weights weight forward state
//! init`) are tokens of their own; the grammar accepts them as names wherever a
//! declaration or statement does not begin with them (LANGUAGE.md, Lexical).

use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::syntax::ast::Comment;
use logos::Logos;

/// What went wrong in a token. `Default` is the character that starts no token.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LexError {
    #[default]
    UnexpectedChar,
    IntegerTooLarge,
    UnterminatedString,
    InvalidEscape(usize),
    UnterminatedComment,
}

fn lex_int<'a>(lex: &mut logos::Lexer<'a, Token<'a>>) -> Result<i64, LexError> {
    lex.slice().parse::<i64>().map_err(|_| LexError::IntegerTooLarge)
}

fn lex_float<'a>(lex: &mut logos::Lexer<'a, Token<'a>>) -> Result<f64, LexError> {
    // Rust's parser rounds out-of-range exponents to inf or 0; inf is not a finite double.
    match lex.slice().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(LexError::IntegerTooLarge),
    }
}

/// Scans a string body after the opening quote; only `\"` and `\\` are escapes.
fn lex_string<'a>(lex: &mut logos::Lexer<'a, Token<'a>>) -> Result<String, LexError> {
    let rest = lex.remainder();
    let mut value = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                lex.bump(i + 1);
                return Ok(value);
            }
            '\n' => break,
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => value.push(e),
                Some((j, '\n')) | Some((j, _)) => {
                    // Skip to the end of the line so one bad escape is one error.
                    let end = rest[j..].find(['"', '\n']).map(|k| j + k + 1).unwrap_or(rest.len());
                    lex.bump(end.min(rest.len()));
                    return Err(LexError::InvalidEscape(i));
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    let end = rest.find('\n').unwrap_or(rest.len());
    lex.bump(end);
    Err(LexError::UnterminatedString)
}

fn block_comment<'a>(lex: &mut logos::Lexer<'a, Token<'a>>) -> Result<(), LexError> {
    match lex.remainder().find("*/") {
        Some(i) => {
            lex.bump(i + 2);
            Ok(())
        }
        None => {
            lex.bump(lex.remainder().len());
            Err(LexError::UnterminatedComment)
        }
    }
}

#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(error = LexError)]
#[logos(skip r"[ \t\r\n\f]+")]
pub enum Token<'a> {
    // Comments are tokens so that `fmt` can keep them; `lex` takes them out of the
    // stream the grammar sees.
    #[regex(r"//[^\n]*", allow_greedy = true)]
    LineComment,
    #[token("/*", block_comment)]
    BlockComment,

    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident(&'a str),
    #[regex(r"[0-9]+", lex_int)]
    Int(i64),
    #[regex(r"[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?", lex_float)]
    #[regex(r"[0-9]+[eE][+-]?[0-9]+", lex_float)]
    Float(f64),
    #[token("\"", lex_string)]
    Str(String),

    // Soft keywords.
    #[token("model")]
    Model,
    #[token("layer")]
    Layer,
    #[token("config")]
    Config,
    #[token("input")]
    Input,
    #[token("output")]
    Output,
    #[token("weights")]
    Weights,
    #[token("weight")]
    Weight,
    #[token("forward")]
    Forward,
    #[token("state")]
    State,
    #[token("init")]
    Init,

    // Reserved keywords.
    #[token("let")]
    Let,
    #[token("return")]
    Return,
    #[token("scan")]
    Scan,
    #[token("sum")]
    Sum,
    #[token("max")]
    Max,
    #[token("min")]
    Min,
    #[token("mean")]
    Mean,
    #[token("softmax")]
    Softmax,
    #[token("where")]
    Where,
    #[token("for")]
    For,
    #[token("in")]
    In,
    #[token("if")]
    If,
    #[token("then")]
    Then,
    #[token("else")]
    Else,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("f32")]
    F32,
    #[token("f16")]
    F16,
    #[token("bf16")]
    Bf16,
    #[token("i32")]
    I32,
    #[token("i64")]
    I64,

    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(";")]
    Semi,
    #[token("=")]
    Eq,
    #[token(".")]
    Dot,
    #[token("->")]
    Arrow,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("==")]
    EqEq,
    #[token("!=")]
    Ne,
    #[token("&&")]
    AndAnd,
    #[token("||")]
    OrOr,
    #[token("!")]
    Bang,
}

impl Token<'_> {
    /// How the token is written, for "expected ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("identifier `{s}`"),
            Token::Int(v) => format!("integer `{v}`"),
            Token::Float(v) => format!("float `{v:?}`"),
            Token::Str(_) => "a string".to_string(),
            other => format!("`{}`", other.text()),
        }
    }

    /// The fixed text of a punctuation or keyword token.
    pub fn text(&self) -> &'static str {
        match self {
            Token::LineComment => "//",
            Token::BlockComment => "/*",
            Token::Ident(_) => "identifier",
            Token::Int(_) => "integer",
            Token::Float(_) => "float",
            Token::Str(_) => "string",
            Token::Model => "model",
            Token::Layer => "layer",
            Token::Config => "config",
            Token::Input => "input",
            Token::Output => "output",
            Token::Weights => "weights",
            Token::Weight => "weight",
            Token::Forward => "forward",
            Token::State => "state",
            Token::Init => "init",
            Token::Let => "let",
            Token::Return => "return",
            Token::Scan => "scan",
            Token::Sum => "sum",
            Token::Max => "max",
            Token::Min => "min",
            Token::Mean => "mean",
            Token::Softmax => "softmax",
            Token::Where => "where",
            Token::For => "for",
            Token::In => "in",
            Token::If => "if",
            Token::Then => "then",
            Token::Else => "else",
            Token::True => "true",
            Token::False => "false",
            Token::F32 => "f32",
            Token::F16 => "f16",
            Token::Bf16 => "bf16",
            Token::I32 => "i32",
            Token::I64 => "i64",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::Semi => ";",
            Token::Eq => "=",
            Token::Dot => ".",
            Token::Arrow => "->",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::EqEq => "==",
            Token::Ne => "!=",
            Token::AndAnd => "&&",
            Token::OrOr => "||",
            Token::Bang => "!",
        }
    }
}

/// A token with its byte range, as lalrpop's external lexer interface wants it.
pub type Spanned<'a> = (usize, Token<'a>, usize);

/// The tokens of a file, its comments, and its lexical errors.
pub struct Lexed<'a> {
    pub tokens: Vec<Spanned<'a>>,
    pub comments: Vec<Comment>,
    pub diags: Vec<Diagnostic>,
}

/// Lexes a whole file. Errors become diagnostics and lexing goes on after them,
/// so one run reports several; it stops at `max_errors`.
pub fn lex(file: FileId, src: &str, max_errors: usize) -> Lexed<'_> {
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut lexer = Token::lexer(src);
    let mut last_bad_end = None;
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        match result {
            Ok(Token::LineComment | Token::BlockComment) => comments.push(Comment {
                span: Span::new(file, range.start, range.end),
                text: src[range.clone()].trim_end().to_string(),
            }),
            Ok(tok) => tokens.push((range.start, tok, range.end)),
            Err(LexError::UnexpectedChar) if last_bad_end == Some(range.start) => {
                // A run of characters that start no token is one error.
                last_bad_end = Some(range.end);
                if let Some(d) = diags.last_mut() {
                    let span = &mut d.labels[0].span;
                    span.end = range.end as u32;
                    let run = &src[span.start as usize..span.end as usize];
                    d.message = format!("unexpected characters {}", show_chars(run));
                    d.labels[0].message = "no token starts with these characters".into();
                }
            }
            Err(err) => {
                last_bad_end = (err == LexError::UnexpectedChar).then_some(range.end);
                diags.push(lex_error(file, src, range, err));
                if diags.len() >= max_errors {
                    break;
                }
            }
        }
    }
    Lexed { tokens, comments, diags }
}

/// Characters as a user can read them: control characters by code point.
fn show_chars(run: &str) -> String {
    if run.chars().any(|c| c.is_control() || c == '\u{feff}') {
        run.chars().map(|c| format!("U+{:04X}", c as u32)).collect::<Vec<_>>().join(" ")
    } else {
        format!("`{run}`")
    }
}

fn lex_error(file: FileId, src: &str, range: std::ops::Range<usize>, err: LexError) -> Diagnostic {
    let span = Span::new(file, range.start, range.end);
    match err {
        LexError::UnexpectedChar => {
            let c = src[range.start..].chars().next().unwrap_or('\0');
            let shown = show_chars(&c.to_string());
            let mut d = Diagnostic::error(
                Code::UnexpectedChar,
                format!("unexpected character {shown}"),
                Span::new(file, range.start, range.start + c.len_utf8()),
                "no token starts with this character",
            );
            if !c.is_ascii() {
                d = d.with_note("identifiers are ASCII: `[A-Za-z_][A-Za-z0-9_]*`");
            }
            d
        }
        LexError::IntegerTooLarge => {
            Diagnostic::error(Code::IntegerTooLarge, "number literal out of range", span, "does not fit")
                .with_note("integers are 0 to 2^63 - 1 and floats must be finite doubles")
        }
        LexError::UnterminatedString => Diagnostic::error(
            Code::UnterminatedString,
            "unterminated string",
            span,
            "this string has no closing `\"` on its line",
        ),
        LexError::InvalidEscape(offset) => {
            let at = range.start + 1 + offset;
            Diagnostic::error(
                Code::InvalidEscape,
                "invalid escape in string",
                Span::new(file, at, at + 2),
                "unknown escape",
            )
            .with_note("the only escapes are `\\\"` and `\\\\`")
        }
        LexError::UnterminatedComment => Diagnostic::error(
            Code::UnterminatedComment,
            "unterminated block comment",
            Span::new(file, range.start, range.start + 2),
            "this comment has no closing `*/`",
        ),
    }
}
