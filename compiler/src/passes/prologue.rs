//! prologue: what a graph computes from its weights alone (Mamba's
//! `A = -exp(A_log)`, a per-layer constant) is the same on every call, and a
//! decode step would recompute it at every position. `split` moves those values
//! into a prologue graph, run once per set of weights, and the graph reads each
//! as a weight of its own, `@prologue:N`.
//!
//! Not in the pass pipeline: the graph as the passes leave it is the reference
//! (its weights are the checkpoint's); the runtime splits the graph it compiles.
//!
//! After: `%27 = weight "@prologue:27" : f32[1536, 16]`, and the prologue graph's
//! output `@prologue:27` is `-exp(A_log)`.
//! Invariant: no node of the graph that takes an operand computes a value from
//! weights and constants alone, except views (reshapes and splits).

use crate::ir::{Graph, Op, ValueId};
use crate::sema::types::Dim;

/// The prefix of the weights a prologue computes.
pub const PREFIX: &str = "@prologue:";

/// Splits `g`; returns the prologue graph (its outputs named as the weights `g`
/// now reads), or `None` (and `g` unchanged) when nothing depends on weights alone.
pub fn split(g: &mut Graph) -> Option<Graph> {
    // Whether each value depends on weights and constants only, and has a
    // shape known before any call.
    let mut fixed = vec![false; g.types.len()];
    for node in &g.nodes {
        let f = match &node.op {
            Op::Weight { .. } | Op::Const { .. } => true,
            Op::Input { .. } | Op::StateInput { .. } | Op::Scan(_) => false,
            _ => {
                !node.operands.is_empty()
                    && node.operands.iter().all(|o| fixed[o.0 as usize])
                    && node.results.iter().all(|r| g.ty(*r).shape.iter().all(|d| matches!(d, Dim::Known(_))))
            }
        };
        for r in &node.results {
            fixed[r.0 as usize] = f;
        }
    }
    // Values computed (not views of a weight) and read where the inputs are.
    let mut defined_by: Vec<Option<usize>> = vec![None; g.types.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for r in &node.results {
            defined_by[r.0 as usize] = Some(i);
        }
    }
    let computed = |v: ValueId| {
        defined_by[v.0 as usize].is_some_and(|i| {
            let node = &g.nodes[i];
            node.results.len() == 1 && !matches!(node.op, Op::Weight { .. } | Op::Const { .. } | Op::Reshape)
        })
    };
    let mut frontier: Vec<ValueId> = Vec::new();
    let reads = g.nodes.iter().filter(|n| !n.results.iter().all(|r| fixed[r.0 as usize])).flat_map(|n| &n.operands);
    for &v in reads.chain(g.outputs.iter().map(|(_, v)| v)) {
        if fixed[v.0 as usize] && computed(v) && !frontier.contains(&v) {
            frontier.push(v);
        }
    }
    if frontier.is_empty() {
        return None;
    }
    frontier.sort_by_key(|v| v.0);
    let name = |v: ValueId| format!("{PREFIX}{}", v.0);
    let mut prologue = g.clone();
    prologue.name = format!("{} prologue", g.name);
    prologue.outputs = frontier.iter().map(|&v| (name(v), v)).collect();
    prologue.next_states.clear();
    super::dce::run(&mut prologue);
    for &v in &frontier {
        let node = &mut g.nodes[defined_by[v.0 as usize].expect("computed")];
        node.op = Op::Weight { name: name(v) };
        node.operands.clear();
    }
    super::dce::run(g);
    Some(prologue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::interp::{self, Bindings, Tensor};
    use std::collections::HashMap;

    /// Mamba's `-exp(A_log)` leaves the graph for the prologue; the graph with
    /// the prologue's values as weights computes what the whole graph did.
    #[test]
    fn weight_only_values_move_to_the_prologue() {
        let src = crate::driver::check_bytes(
            "m.seq",
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../dsl-examples/mamba.seq")).unwrap().as_slice(),
            "d_model=16,n_layer=2,vocab=50,d_state=4",
        );
        let Ok(crate::sema::Checked::Model(m)) = src.1 else { panic!("mamba checks") };
        let mut g = m.graph.clone();
        crate::passes::run_until(&mut g, None).unwrap();
        let whole = g.clone();
        let prologue = split(&mut g).expect("A = -exp(A_log) is weight-only");
        assert_eq!(prologue.outputs.len(), 2, "one per layer: {:?}", prologue.outputs);
        let has_exp_of_weight = |g: &Graph| {
            g.nodes.iter().any(|n| {
                matches!(n.op, Op::Generic(_))
                    && n.operands
                        .iter()
                        .all(|o| g.nodes.iter().any(|d| d.results.contains(o) && matches!(d.op, Op::Weight { .. })))
            })
        };
        assert!(has_exp_of_weight(&whole) && !has_exp_of_weight(&g));

        let weights = crate::init::init_weights(&m, 3);
        let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), 5)]);
        let inputs = crate::init::random_inputs(&m, &dims, 4);
        let none = HashMap::new();
        let derived =
            interp::run(&prologue, &Bindings { dims: &none, inputs: &HashMap::new(), weights: &weights }).unwrap();
        let mut all: HashMap<String, Tensor> = weights.clone();
        all.extend(derived);
        let want = interp::run(&whole, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
        let got = interp::run(&g, &Bindings { dims: &dims, inputs: &inputs, weights: &all }).unwrap();
        assert_eq!(got[0].1.data, want[0].1.data);
        // The graph reads the prologue's values: without them it cannot run.
        assert!(interp::run(&g, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).is_err());
    }
}
