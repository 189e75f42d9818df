//! Syntax: the logos lexer, the lalrpop grammar, the AST and its printer.

pub mod ast;
pub mod lexer;
pub mod parser;
pub mod print;
pub mod tree;

pub use parser::{parse, parse_expr};
