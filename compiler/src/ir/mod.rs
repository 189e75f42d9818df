//! The graph IR: SSA tensor values with dtype and symbolic shape, produced by
//! lowering the checked model (`sema`), read by the passes, the interpreter and the
//! scheduler.
//!
//! A [`Graph`] is a list of nodes in definition order; each node applies one
//! [`Op`](ops::Op) to earlier values and defines one or more new ones. Element-wise
//! and reduction work is one op, `generic`, whose body is a scalar expression
//! over loop indices (like MLIR's `linalg.generic`); recurrences are `scan`.
//!
//! Invariant (checked by `verify`): every operand is defined before use, every
//! value is defined once, and every value has a type.

pub mod interp;
pub mod kernel;
pub mod ops;
pub mod parse;
pub mod print;
pub mod scalar;
pub mod step;
pub mod verify;

pub use ops::Op;
pub use scalar::{Scalar, ScalarFn};

use crate::sema::types::TensorTy;

/// A tensor value: printed `%N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// One operation: its op, its operands and the values it defines.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub operands: Vec<ValueId>,
    pub results: Vec<ValueId>,
}

/// A model's computation.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    /// The type of each value, by id.
    pub types: Vec<TensorTy>,
    /// The model's outputs, by name.
    pub outputs: Vec<(String, ValueId)>,
    /// Step graphs only: the state for the next position, by the name of the
    /// `state` input it replaces.
    pub next_states: Vec<(String, ValueId)>,
    /// For each node, the layer instance it was lowered from (its checkpoint
    /// path; empty for the model's own forward), for error messages.
    pub origins: Vec<String>,
    /// The origin recorded for nodes added from now on.
    origin: String,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    /// Appends a node defining one value per type in `results`.
    pub fn add(&mut self, op: Op, operands: Vec<ValueId>, results: Vec<TensorTy>) -> Vec<ValueId> {
        let ids: Vec<ValueId> = results
            .into_iter()
            .map(|ty| {
                self.types.push(ty);
                ValueId((self.types.len() - 1) as u32)
            })
            .collect();
        self.nodes.push(Node { op, operands, results: ids.clone() });
        self.origins.push(self.origin.clone());
        ids
    }

    /// Sets the origin of the nodes added next; returns the previous one.
    pub fn set_origin(&mut self, origin: String) -> String {
        std::mem::replace(&mut self.origin, origin)
    }

    /// Appends a node with a single result.
    pub fn add1(&mut self, op: Op, operands: Vec<ValueId>, result: TensorTy) -> ValueId {
        self.add(op, operands, vec![result])[0]
    }

    /// Keeps the nodes (and their origins) whose entry in `keep` is true.
    pub fn retain_nodes(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.nodes.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        self.origins.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    pub fn ty(&self, v: ValueId) -> &TensorTy {
        &self.types[v.0 as usize]
    }
}
