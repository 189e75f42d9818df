//! elementwise-fusion: a point-wise `generic` read only by another `generic`, at
//! in-range indices, moves into its consumer's body, so the intermediate tensor is
//! never stored.
//!
//! Before: %1 = generic [i] (%0) = silu(%0[i]); %2 = generic [i] (%1, %3) = %1[i] * %3[i]
//! After:  %2 = generic [i] (%0, %3) = silu(%0[i]) * %3[i]
//! Invariant: the consumer computes the same values; the producer is left for `dce`.

use super::inline::{compact, loads_in_range, pointwise, producers, substitute, use_counts};
use crate::ir::{Graph, Op};

pub fn run(g: &mut Graph) {
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let mut changed = false;
        for c in 0..g.nodes.len() {
            let Op::Generic(consumer) = &g.nodes[c].op else { continue };
            let extent = |i: u32| consumer.vars[i as usize].extent.clone();
            let pick = g.nodes[c].operands.iter().enumerate().find_map(|(k, v)| {
                let p = prod[v.0 as usize]?;
                let producer = pointwise(&g.nodes[p])?;
                let ok = uses[v.0 as usize] == 1
                    && loads_in_range(&consumer.body, k as u32, producer, &extent)
                    && consumer.cond.as_ref().is_none_or(|cond| loads_in_range(cond, k as u32, producer, &extent));
                ok.then_some((k as u32, p))
            });
            let Some((k, p)) = pick else { continue };
            let (producer, producer_operands) = match &g.nodes[p].op {
                Op::Generic(gen) => ((**gen).clone(), g.nodes[p].operands.clone()),
                _ => unreachable!("pointwise producers are generics"),
            };
            let node = &mut g.nodes[c];
            let Op::Generic(consumer) = &mut node.op else { unreachable!() };
            let mut operands = node.operands.clone();
            consumer.body = substitute(consumer.body.clone(), k, &producer, &producer_operands, &mut operands);
            if let Some(cond) = consumer.cond.take() {
                consumer.cond = Some(substitute(cond, k, &producer, &producer_operands, &mut operands));
            }
            let consumer = &mut **consumer;
            let mut bodies: Vec<&mut crate::ir::Scalar> = vec![&mut consumer.body];
            if let Some(cond) = consumer.cond.as_mut() {
                bodies.push(cond);
            }
            compact(&mut bodies, &mut operands, &[]);
            node.operands = operands;
            changed = true;
            break;
        }
        if !changed {
            return;
        }
    }
}
