//! Values the checker computes with: constants, dimensions, tensor types.

use crate::syntax::ast::DType;
use std::fmt;
use std::sync::Arc;

/// A compile-time constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Const {
    pub fn kind(&self) -> &'static str {
        match self {
            Const::Int(_) => "int",
            Const::Float(_) => "float",
            Const::Bool(_) => "bool",
            Const::Str(_) => "string",
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Const::Int(v) => Some(*v as f64),
            Const::Float(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Const::Int(v) => write!(f, "{v}"),
            Const::Float(v) => write!(f, "{v:?}"),
            Const::Bool(v) => write!(f, "{v}"),
            Const::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// A dimension: a size the config fixes, or a symbol bound at run time (`B`, `L`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    Sym(Arc<str>),
}

/// The symbol of the sequence axis; causality is about positions along it.
pub const SEQ: &str = "L";

impl Dim {
    pub fn is_seq(&self) -> bool {
        matches!(self, Dim::Sym(s) if &**s == SEQ)
    }

    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

pub type Shape = Vec<Dim>;

pub fn shape_str(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// The element count of a shape as `constant * symbols`, to compare reshapes.
pub fn element_count(shape: &[Dim]) -> (i128, Vec<Arc<str>>) {
    let mut n: i128 = 1;
    let mut syms = Vec::new();
    for d in shape {
        match d {
            Dim::Known(v) => n = n.saturating_mul(*v as i128),
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    syms.sort();
    (n, syms)
}

/// A tensor's type: dtype and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorTy {
    pub dtype: DType,
    pub shape: Shape,
}

impl fmt::Display for TensorTy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype.name(), shape_str(&self.shape))
    }
}

/// Numpy broadcasting of two shapes, aligned from the right.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Shape> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n { Some(&a[i + a.len() - n]) } else { None };
        let db = if i + b.len() >= n { Some(&b[i + b.len() - n]) } else { None };
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Known(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Known(1))) => x.clone(),
            _ => return None,
        });
    }
    Some(out)
}
