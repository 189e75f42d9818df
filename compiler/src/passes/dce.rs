//! dce: removes nodes whose results no output needs.
//!
//! Invariant: every remaining node contributes to an output.

use crate::ir::Graph;

pub fn run(g: &mut Graph) {
    let mut live = vec![false; g.types.len()];
    for (_, v) in &g.outputs {
        live[v.0 as usize] = true;
    }
    let mut keep = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if n.results.iter().any(|r| live[r.0 as usize]) {
            keep[i] = true;
            for o in &n.operands {
                live[o.0 as usize] = true;
            }
        }
    }
    g.retain_nodes(&keep);
}
