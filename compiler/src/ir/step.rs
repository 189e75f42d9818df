//! Step mode in the reference interpreter: one position at a time, keeping only
//! the state the analysis derives (`analysis::state`): scan states, and for each
//! value read at past positions a ring of as many positions as its readers need.
//!
//! Each step evaluates every node at the current position. A node that reads the
//! past sees a window of the sequence (its operands' kept rows, then the current
//! row) in which positions keep their distances, so masks like `j <= i` and
//! `i - j < window` hold as in parallel mode; `rope` is told where the window
//! starts. Reading a position that was not kept reads 0, so a layout that keeps
//! too little shows up as a difference from parallel mode.

use super::interp::{eval_node, initial_states, scan_run, Bindings, InterpError, Tensor};
use super::{Graph, Op};
use crate::analysis::state::{position_axis, retention, Positions};
use std::collections::{HashMap, VecDeque};

/// What step mode carries from one position to the next.
#[derive(Clone, Debug)]
pub struct StepState {
    /// Positions consumed so far.
    pub position: usize,
    batch: usize,
    scans: HashMap<usize, Vec<Tensor>>,
    history: HashMap<u32, VecDeque<Tensor>>,
}

impl StepState {
    pub fn new(batch: usize) -> StepState {
        StepState { position: 0, batch, scans: HashMap::new(), history: HashMap::new() }
    }

    /// Elements held (the step-mode memory, for checks against the layout).
    pub fn elements(&self) -> usize {
        self.scans.values().flatten().map(|t| t.data.len()).sum::<usize>()
            + self.history.values().flatten().map(|t| t.data.len()).sum::<usize>()
    }
}

/// Runs one position. `inputs` hold that position only (`L` = 1); returns each
/// output at that position.
pub fn step(
    g: &Graph,
    state: &mut StepState,
    inputs: &HashMap<String, Tensor>,
    weights: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>, InterpError> {
    let keep = retention(g);
    let t = state.position;
    let mut current: Vec<Option<Tensor>> = vec![None; g.types.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        let pos_axis = |v: super::ValueId| position_axis(g.ty(v));
        // How far back this node's window reaches: the longest kept history of
        // its operands.
        let reach = node.operands.iter().filter_map(|v| state.history.get(&v.0).map(|h| h.len())).max().unwrap_or(0);
        let len = reach + 1;
        let dims = HashMap::from([("B".to_string(), state.batch), ("L".to_string(), len)]);
        let mut args: Vec<Tensor> = Vec::with_capacity(node.operands.len());
        for v in &node.operands {
            let cur = current[v.0 as usize].as_ref().expect("operands come first");
            args.push(match pos_axis(*v) {
                None => cur.clone(),
                Some(axis) => {
                    let past: Vec<&Tensor> = state.history.get(&v.0).map(|h| h.iter().collect()).unwrap_or_default();
                    let rows: Vec<&Tensor> = past.into_iter().chain(std::iter::once(cur)).collect();
                    Tensor::join(&rows, axis, len - rows.len())
                }
            });
        }
        let arg_refs: Vec<&Tensor> = args.iter().collect();
        let shapes: Vec<Vec<usize>> = node
            .results
            .iter()
            .map(|r| {
                g.ty(*r)
                    .shape
                    .iter()
                    .map(|d| match d {
                        crate::sema::Dim::Known(v) => Ok(*v as usize),
                        crate::sema::Dim::Sym(s) => {
                            dims.get(&**s).copied().ok_or_else(|| InterpError::UnknownDim(s.to_string()))
                        }
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        let no_inputs = HashMap::new();
        let bindings = Bindings { dims: &dims, inputs: &no_inputs, weights };
        let results = match &node.op {
            Op::Input { name } => {
                let x = inputs.get(name).ok_or_else(|| InterpError::Missing { kind: "input", name: name.clone() })?;
                let mut want = shapes[0].clone();
                if let Some(a) = pos_axis(node.results[0]) {
                    want[a] = 1;
                }
                if x.shape != want {
                    return Err(InterpError::Shape {
                        kind: "input",
                        name: name.clone(),
                        expected: want,
                        found: x.shape.clone(),
                    });
                }
                // Widen to the window so the row extraction below is uniform.
                vec![match pos_axis(node.results[0]) {
                    Some(a) => Tensor::join(&[x], a, len - 1),
                    None => x.clone(),
                }]
            }
            Op::Scan(scan) => {
                let states = match state.scans.remove(&i) {
                    Some(s) => s,
                    None => initial_states(scan, &arg_refs, &dims)?,
                };
                let (outs, finals) = scan_run(scan, &arg_refs, &shapes, &dims, states, len - 1)?;
                state.scans.insert(i, finals);
                outs
            }
            op => eval_node(op, &arg_refs, &shapes, &bindings, t + 1 - len)?,
        };
        for (r, full) in node.results.iter().zip(results) {
            let now = match pos_axis(*r) {
                Some(a) => full.row(a, len - 1),
                None => full,
            };
            current[r.0 as usize] = Some(now);
        }
    }
    // The current rows become the past of the next step, only now: every reader
    // of this step saw them once, as the current row.
    for (v, kept) in keep.iter().enumerate() {
        let (Some((p, _)), Some(now)) = (kept, current[v].as_ref()) else { continue };
        let ring = state.history.entry(v as u32).or_default();
        ring.push_back(now.clone());
        let cap = match p {
            Positions::Last(n) => *n as usize,
            Positions::All => usize::MAX,
        };
        while ring.len() > cap {
            ring.pop_front();
        }
    }
    state.position += 1;
    Ok(g.outputs
        .iter()
        .map(|(n, v)| (n.clone(), current[v.0 as usize].clone().expect("outputs are computed")))
        .collect())
}
