//! Causality facts carried by tensors: masks (which elements a `where` removed)
//! and taint (the first read of a later position that feeds a value).
//!
//! A value may be computed from a later position; that is only an error when it
//! reaches a model output, where the checker reports the read and the output.

use crate::diag::{Code, Span};
use std::rc::Rc;

/// Elements with `idx[bounded] > idx[anchor] + offset` are masked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mask {
    pub bounded: usize,
    pub anchor: usize,
    pub offset: i64,
}

/// Where a value first came to depend on a later position.
#[derive(Clone, Debug, PartialEq)]
pub struct Taint {
    pub code: Code,
    pub span: Span,
    pub message: String,
    pub label: String,
}

pub type TaintRef = Option<Rc<Taint>>;

/// The first taint of two.
pub fn join(a: &TaintRef, b: &TaintRef) -> TaintRef {
    a.clone().or_else(|| b.clone())
}

/// `var <= anchor + offset`, between index variables (by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub var: String,
    pub anchor: String,
    pub offset: i64,
}
