//! cse: a node identical to an earlier one (same op, same operands) is replaced
//! by it; weights and inputs read twice become one read.
//!
//! Invariant: no two nodes have the same op and operands.

use crate::ir::{Graph, ValueId};

pub fn run(g: &mut Graph) {
    let mut replace: Vec<ValueId> = (0..g.types.len() as u32).map(ValueId).collect();
    let mut kept: Vec<usize> = Vec::new();
    let mut keep = vec![true; g.nodes.len()];
    for (i, keep_i) in keep.iter_mut().enumerate() {
        let operands: Vec<ValueId> = g.nodes[i].operands.iter().map(|o| replace[o.0 as usize]).collect();
        g.nodes[i].operands = operands;
        let same = kept.iter().copied().find(|&j| {
            let (a, b) = (&g.nodes[j], &g.nodes[i]);
            a.op == b.op && a.operands == b.operands && a.results.len() == b.results.len()
        });
        match same {
            Some(j) => {
                for (r, s) in g.nodes[i].results.clone().iter().zip(g.nodes[j].results.clone()) {
                    replace[r.0 as usize] = s;
                }
                *keep_i = false;
            }
            None => kept.push(i),
        }
    }
    for (_, v) in &mut g.outputs {
        *v = replace[v.0 as usize];
    }
    g.retain_nodes(&keep);
}
