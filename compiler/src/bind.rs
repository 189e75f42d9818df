//! Binds a run's tensors to a checked model: weights by checkpoint name, inputs
//! by their declarations, and the symbolic dimensions (`B`, `L`) from the inputs'
//! shapes. Every mismatch is an error that names the tensor and both shapes.

use crate::checkpoint::Stored;
use crate::ir::interp::Tensor;
use crate::sema::{CheckedModel, Dim};
use crate::syntax::ast::DType;
use std::collections::HashMap;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BindError {
    #[error("missing {kind} `{name}` (expected {expected})")]
    Missing { kind: &'static str, name: String, expected: String },
    #[error("unexpected {kind} `{name}`: the model declares no such tensor")]
    Extra { kind: &'static str, name: String },
    #[error("{kind} `{name}` has shape {found:?}, expected {expected}")]
    Shape { kind: &'static str, name: String, expected: String, found: Vec<usize> },
    #[error("{kind} `{name}` is {found}, expected {expected}")]
    Dtype { kind: &'static str, name: String, expected: String, found: String },
    #[error("input `{name}` gives `{dim}` = {found}, but another input gives {bound}")]
    DimConflict { name: String, dim: String, found: usize, bound: usize },
}

fn shape_text(shape: &[i64]) -> String {
    format!("{shape:?}")
}

/// Checks a checkpoint against the model's weight table.
pub fn weights(model: &CheckedModel, stored: Vec<(String, Stored)>) -> Result<HashMap<String, Tensor>, BindError> {
    let mut by_name: HashMap<String, Stored> = stored.into_iter().collect();
    let mut out = HashMap::new();
    for w in &model.weights {
        let expected = shape_text(&w.shape);
        let Some(s) = by_name.remove(&w.name) else {
            return Err(BindError::Missing { kind: "weight", name: w.name.clone(), expected });
        };
        if !s.dtype.is_float() {
            return Err(BindError::Dtype {
                kind: "weight",
                name: w.name.clone(),
                expected: "a float tensor".into(),
                found: s.dtype.name().into(),
            });
        }
        let want: Vec<usize> = w.shape.iter().map(|&d| d as usize).collect();
        if s.tensor.shape != want {
            return Err(BindError::Shape { kind: "weight", name: w.name.clone(), expected, found: s.tensor.shape });
        }
        out.insert(w.name.clone(), s.tensor);
    }
    let mut extra: Vec<String> = by_name.into_keys().collect();
    extra.sort();
    match extra.into_iter().next() {
        Some(name) => Err(BindError::Extra { kind: "weight", name }),
        None => Ok(out),
    }
}

/// Sizes of the symbolic dimensions, by name.
type Dims = HashMap<String, usize>;

/// Checks inputs against the model's declarations and infers the symbolic
/// dimensions from their shapes.
pub fn inputs(
    model: &CheckedModel,
    stored: Vec<(String, Stored)>,
) -> Result<(Dims, HashMap<String, Tensor>), BindError> {
    let described: Vec<InputOf> =
        stored.iter().map(|(n, s)| InputOf { name: n, dtype: s.dtype, shape: &s.tensor.shape }).collect();
    let dims = input_dims(model, &described)?;
    let mut by_name: HashMap<String, Stored> = stored.into_iter().collect();
    let out = model.inputs.iter().filter_map(|io| Some((io.name.clone(), by_name.remove(&io.name)?.tensor))).collect();
    Ok((dims, out))
}

/// An input as [`input_dims`] checks it: its name, element type and shape.
pub struct InputOf<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
}

/// Checks inputs against the model's declarations (names, element types,
/// shapes; not their values) and infers the symbolic dimensions.
pub fn input_dims(model: &CheckedModel, given: &[InputOf]) -> Result<HashMap<String, usize>, BindError> {
    let mut by_name: HashMap<&str, &InputOf> = given.iter().map(|i| (i.name, i)).collect();
    let mut dims: HashMap<String, usize> = HashMap::new();
    for io in &model.inputs {
        let expected = crate::sema::types::shape_str(&io.ty.shape);
        let Some(s) = by_name.remove(io.name.as_str()) else {
            return Err(BindError::Missing { kind: "input", name: io.name.clone(), expected });
        };
        if s.dtype.is_float() != io.ty.dtype.is_float() {
            return Err(BindError::Dtype {
                kind: "input",
                name: io.name.clone(),
                expected: io.ty.dtype.name().into(),
                found: s.dtype.name().into(),
            });
        }
        if s.shape.len() != io.ty.shape.len() {
            return Err(BindError::Shape { kind: "input", name: io.name.clone(), expected, found: s.shape.to_vec() });
        }
        for (d, &n) in io.ty.shape.iter().zip(s.shape) {
            match d {
                Dim::Known(k) if *k as usize != n => {
                    return Err(BindError::Shape {
                        kind: "input",
                        name: io.name.clone(),
                        expected,
                        found: s.shape.to_vec(),
                    })
                }
                Dim::Known(_) => {}
                Dim::Sym(sym) => match dims.get(&**sym) {
                    Some(&b) if b != n => {
                        return Err(BindError::DimConflict {
                            name: io.name.clone(),
                            dim: sym.to_string(),
                            found: n,
                            bound: b,
                        })
                    }
                    _ => {
                        dims.insert(sym.to_string(), n);
                    }
                },
            }
        }
    }
    let mut extra: Vec<&str> = by_name.into_keys().collect();
    extra.sort();
    match extra.into_iter().next() {
        Some(name) => Err(BindError::Extra { kind: "input", name: name.to_string() }),
        None => Ok(dims),
    }
}
