//! Step mode in the reference interpreter: runs a step graph
//! (`passes::step_derivation`) one position at a time, carrying its next states
//! into its `state` inputs. Nothing here knows about layers: the state is what the
//! derivation put in the graph.

use super::interp::{run_with, Bindings, InterpError, Tensor};
use super::{Graph, Op};
use crate::passes::step_derivation::{POSITION, WINDOW};
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
        let dims = dims(batch, 0);
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

fn dims(batch: usize, position: usize) -> HashMap<String, usize> {
    HashMap::from([("B".to_string(), batch), (POSITION.to_string(), position), (WINDOW.to_string(), position + 1)])
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
    let dims = dims(state.batch, state.position);
    let mut bound = inputs.clone();
    bound.extend(state.tensors.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut results = run_with(step_graph, &Bindings { dims: &dims, inputs: &bound, weights }, check_finite)?;
    for (name, next) in results.drain(step_graph.outputs.len()..) {
        state.tensors.insert(name, next);
    }
    state.position += 1;
    Ok(results)
}
