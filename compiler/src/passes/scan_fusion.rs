//! scan-fusion: point-wise producers read only by a scan, at in-range indices,
//! move into the scan's statements, so no tensor with the scan axis and the
//! state's extra axes (Mamba's `[B, L, D, N]`) is stored.
//!
//! Before: %a = generic [b, l, d, n] (%dt, %A) = exp(%dt[b, l, d] * %A[d, n]); %h = scan ... %a[b, l, d, n] * h[b, d, n] ...
//! After:  %h = scan ... exp(%dt[b, l, d] * %A[d, n]) * h[b, d, n] ...
//! Invariant: no operand of a scan is a point-wise generic, used by it alone, with
//! more axes than the scan's outputs.
//! Reductions over states already sit in the scan's outputs (lowering puts them
//! there), and loop-invariant terms stay outside as their own generics.

use super::inline::{compact_scan, loads_in_range, pointwise, producers, substitute, use_counts};
use crate::ir::ops::StateInit;
use crate::ir::{Graph, Op};

pub fn run(g: &mut Graph) {
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let mut changed = false;
        for c in 0..g.nodes.len() {
            let Op::Scan(scan) = &g.nodes[c].op else { continue };
            let extent = |i: u32| scan.vars[i as usize].extent.clone();
            let inits: Vec<u32> = scan
                .states
                .iter()
                .filter_map(|s| if let StateInit::Operand(k) = s.init { Some(k) } else { None })
                .collect();
            let widest_output = scan.outputs.iter().map(|o| o.left.len()).max().unwrap_or(0);
            let pick = g.nodes[c].operands.iter().enumerate().find_map(|(k, v)| {
                let k = k as u32;
                let p = prod[v.0 as usize]?;
                let producer = pointwise(&g.nodes[p])?;
                let reads_ok = scan.updates.iter().chain(&scan.outputs).all(|st| {
                    loads_in_range(&st.body, k, producer, &extent)
                        && st.cond.as_ref().is_none_or(|cond| loads_in_range(cond, k, producer, &extent))
                });
                // Only producers wider than the scan's outputs: those are the tensors
                // (`[B, L, D, N]`) fusion exists to avoid; a `[B, L, D]` producer is
                // cheaper computed once than once per state element.
                let wide = producer.rank > widest_output;
                (uses[v.0 as usize] == 1 && reads_ok && wide && !inits.contains(&k)).then_some((k, p))
            });
            let Some((k, p)) = pick else { continue };
            let (producer, producer_operands) = match &g.nodes[p].op {
                Op::Generic(gen) => ((**gen).clone(), g.nodes[p].operands.clone()),
                _ => unreachable!("pointwise producers are generics"),
            };
            let node = &mut g.nodes[c];
            let Op::Scan(scan) = &mut node.op else { unreachable!() };
            let mut operands = node.operands.clone();
            for st in scan.updates.iter_mut().chain(scan.outputs.iter_mut()) {
                st.body = substitute(st.body.clone(), k, &producer, &producer_operands, &mut operands);
                if let Some(cond) = st.cond.take() {
                    st.cond = Some(substitute(cond, k, &producer, &producer_operands, &mut operands));
                }
            }
            compact_scan(scan, &mut operands);
            node.operands = operands;
            changed = true;
            break;
        }
        if !changed {
            return;
        }
    }
}
