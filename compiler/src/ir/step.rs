//! Step mode in the reference interpreter: runs a step graph
//! (`passes::step_derivation`) one position at a time, or a chunk graph several,
//! carrying its next states into its `state` inputs. Nothing here knows about layers: the state is what the
//! derivation put in the graph.

use super::interp::{run_with, Bindings, InterpError, Tensor};
use super::{Graph, Op};
use crate::passes::step_derivation::{dim_value, POSITION, WINDOW};
use crate::sema::types::Dim;
use std::collections::HashMap;

/// What step mode carries from one position to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState {
    /// Positions consumed so far.
    pub position: usize,
    pub batch: usize,
    /// Each `state` input's value, by name.
    pub tensors: HashMap<String, Tensor>,
}

impl StepState {
    /// The state before the first position: every `state` input at its `init`.
    pub fn new(step_graph: &Graph, batch: usize) -> Result<StepState, InterpError> {
        let dims = dims(step_graph, batch, 0, 1)?;
        let mut tensors = HashMap::new();
        for node in &step_graph.nodes {
            if let Op::StateInput { name, init } = &node.op {
                let shape = step_graph
                    .ty(node.results[0])
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Known(v) => Ok(*v as usize),
                        Dim::Sym(s) => dims.get(&**s).copied().ok_or_else(|| InterpError::UnknownDim(s.to_string())),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let n = shape.iter().product();
                tensors.insert(name.clone(), Tensor::new(shape, vec![*init; n]));
            }
        }
        Ok(StepState { position: 0, batch, tensors })
    }

    /// Elements held (the step-mode memory, for checks against the layout).
    pub fn elements(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }
}

/// Every dimension `g` has, for `len` positions after `position`.
fn dims(g: &Graph, batch: usize, position: usize, len: usize) -> Result<HashMap<String, usize>, InterpError> {
    let mut names: Vec<&str> = vec!["B", POSITION, WINDOW];
    names.extend(g.types.iter().flat_map(|t| &t.shape).filter_map(|d| match d {
        Dim::Sym(s) => Some(&**s),
        Dim::Known(_) => None,
    }));
    names
        .into_iter()
        .map(|n| {
            dim_value(n, batch, position, len)
                .map(|v| (n.to_string(), v))
                .ok_or_else(|| InterpError::UnknownDim(n.into()))
        })
        .collect()
}

/// Runs one position. `inputs` hold that position only (`L` = 1); returns each
/// output at that position.
pub fn step(
    step_graph: &Graph,
    state: &mut StepState,
    inputs: &HashMap<String, Tensor>,
    weights: &HashMap<String, Tensor>,
    check_finite: bool,
) -> Result<Vec<(String, Tensor)>, InterpError> {
    chunk(step_graph, state, inputs, 1, weights, check_finite)
}

/// Runs `len` positions through a chunk graph (`derive_chunk`; a step graph
/// for one), continuing `state`; returns each output at those positions.
pub fn chunk(
    graph: &Graph,
    state: &mut StepState,
    inputs: &HashMap<String, Tensor>,
    len: usize,
    weights: &HashMap<String, Tensor>,
    check_finite: bool,
) -> Result<Vec<(String, Tensor)>, InterpError> {
    let dims = dims(graph, state.batch, state.position, len)?;
    let mut bound = inputs.clone();
    bound.extend(state.tensors.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut results = run_with(graph, &Bindings { dims: &dims, inputs: &bound, weights }, check_finite)?;
    for (name, next) in results.drain(graph.outputs.len()..) {
        state.tensors.insert(name, next);
    }
    state.position += len;
    Ok(results)
}
