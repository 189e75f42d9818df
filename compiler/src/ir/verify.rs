//! The verifier: structural invariants of a graph. Runs after lowering and after
//! every pass in tests; a failure is a compiler bug, reported with the graph.

use super::ops::StateInit;
use super::{Graph, Op, Scalar};

/// Checks the graph; `Err` names the first broken invariant.
pub fn verify(g: &Graph) -> Result<(), String> {
    let mut defined = vec![false; g.types.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        let at = || format!("node {i} ({})", node.op.name());
        for o in &node.operands {
            if !defined.get(o.0 as usize).copied().unwrap_or(false) {
                return Err(format!("{}: operand %{} is used before it is defined", at(), o.0));
            }
        }
        if let Some(n) = node.op.arity() {
            if node.operands.len() != n {
                return Err(format!("{}: {} operands, expected {n}", at(), node.operands.len()));
            }
        }
        for r in &node.results {
            let slot = defined.get_mut(r.0 as usize).ok_or_else(|| format!("{}: %{} has no type", at(), r.0))?;
            if *slot {
                return Err(format!("{}: %{} is defined twice", at(), r.0));
            }
            *slot = true;
        }
        let reads = |body: &Scalar| {
            let mut ops = Vec::new();
            body.operands(&mut ops);
            ops.into_iter().all(|k| (k as usize) < node.operands.len())
        };
        match &node.op {
            Op::Generic(gen) | Op::Attention(gen) => {
                if gen.rank > gen.vars.len() || !reads(&gen.body) || !gen.cond.as_ref().is_none_or(reads) {
                    return Err(format!("{}: body reads an operand it does not have", at()));
                }
                if g.ty(node.results[0]).shape.len() != gen.rank {
                    return Err(format!("{}: result rank differs from the loop nest", at()));
                }
            }
            Op::Scan(scan) => {
                if node.results.len() != scan.outputs.len() {
                    return Err(format!("{}: {} results for {} outputs", at(), node.results.len(), scan.outputs.len()));
                }
                for st in scan.updates.iter().chain(&scan.outputs) {
                    if !reads(&st.body) {
                        return Err(format!("{}: a statement reads an operand it does not have", at()));
                    }
                }
                for s in &scan.states {
                    if let StateInit::Operand(k) = s.init {
                        if k as usize >= node.operands.len() {
                            return Err(format!("{}: state `{}` starts from a missing operand", at(), s.name));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (name, v) in &g.outputs {
        if !defined.get(v.0 as usize).copied().unwrap_or(false) {
            return Err(format!("output `{name}` is never defined"));
        }
    }
    Ok(())
}
