//! Inlining a point-wise producer into a consumer's scalar bodies: the shared
//! mechanism of element-wise fusion and scan fusion.

use crate::ir::ops::Generic;
use crate::ir::{Graph, Node, Op, Scalar, ValueId};
use crate::sema::types::Dim;

/// How many times each value is read (operands and outputs).
pub fn use_counts(g: &Graph) -> Vec<usize> {
    let mut uses = vec![0; g.types.len()];
    for n in &g.nodes {
        for o in &n.operands {
            uses[o.0 as usize] += 1;
        }
    }
    for (_, v) in &g.outputs {
        uses[v.0 as usize] += 1;
    }
    uses
}

/// A producer that can be recomputed wherever it is read: no reduction, no
/// condition (so no masks of its own).
pub fn pointwise(node: &Node) -> Option<&Generic> {
    match &node.op {
        Op::Generic(gen) if gen.cond.is_none() && gen.rank == gen.vars.len() && !has_reduce(&gen.body) => Some(gen),
        _ => None,
    }
}

fn has_reduce(e: &Scalar) -> bool {
    e.any(&|x| matches!(x, Scalar::Reduce { .. }))
}

/// Whether every load of operand `k` in `e` reads in range: each index a loop
/// index of the producer's extent, or 0 on an axis of extent 1. (A shifted read
/// may fall outside and read 0, which recomputing the producer would not give.)
pub fn loads_in_range(e: &Scalar, k: u32, producer: &Generic, consumer_extent: &dyn Fn(u32) -> Dim) -> bool {
    let ok = |idx: &[Scalar]| {
        idx.len() == producer.rank
            && idx.iter().zip(&producer.vars).all(|(ix, v)| match ix {
                Scalar::Index(i) => consumer_extent(*i) == v.extent,
                Scalar::Const(c) => *c == 0.0 && v.extent == Dim::Known(1),
                _ => false,
            })
    };
    match e {
        Scalar::Load { operand, indices } => {
            (*operand != k || ok(indices)) && indices.iter().all(|i| loads_in_range(i, k, producer, consumer_extent))
        }
        Scalar::State { indices, .. } => indices.iter().all(|i| loads_in_range(i, k, producer, consumer_extent)),
        Scalar::Apply(_, a) => a.iter().all(|x| loads_in_range(x, k, producer, consumer_extent)),
        Scalar::Select(c, a, b) => [c, a, b].iter().all(|x| loads_in_range(x, k, producer, consumer_extent)),
        Scalar::Reduce { body, .. } => loads_in_range(body, k, producer, consumer_extent),
        Scalar::Const(_) | Scalar::Index(_) | Scalar::Size(_) => true,
    }
}

/// Replaces every load of operand `k` by the producer's body at the load's
/// indices; the producer's own operands are appended to `operands` as needed.
pub fn substitute(
    e: Scalar,
    k: u32,
    producer: &Generic,
    producer_operands: &[ValueId],
    operands: &mut Vec<ValueId>,
) -> Scalar {
    let go = |x: Scalar, operands: &mut Vec<ValueId>| substitute(x, k, producer, producer_operands, operands);
    match e {
        Scalar::Load { operand, indices } if operand == k => {
            let indices: Vec<Scalar> = indices.into_iter().map(|i| go(i, operands)).collect();
            transplant(&producer.body, &|i| indices[i as usize].clone(), producer_operands, operands)
        }
        Scalar::Load { operand, indices } => {
            Scalar::Load { operand, indices: indices.into_iter().map(|i| go(i, operands)).collect() }
        }
        Scalar::State { state, indices } => {
            Scalar::State { state, indices: indices.into_iter().map(|i| go(i, operands)).collect() }
        }
        Scalar::Apply(f, a) => Scalar::Apply(f, a.into_iter().map(|x| go(x, operands)).collect()),
        Scalar::Select(c, a, b) => {
            Scalar::Select(Box::new(go(*c, operands)), Box::new(go(*a, operands)), Box::new(go(*b, operands)))
        }
        Scalar::Reduce { op, vars, body } => Scalar::Reduce { op, vars, body: Box::new(go(*body, operands)) },
        other => other,
    }
}

/// Moves an expression from one op into another: loop index `i` becomes `at(i)`
/// (a reduction's own index must map to an index), and operand `k` of the source
/// becomes the target's operand for the same value, appended to `operands` when
/// new. Element-wise fusion, scan fusion, attention fusion and licm all move
/// expressions this way.
pub fn transplant(e: &Scalar, at: &dyn Fn(u32) -> Scalar, from: &[ValueId], operands: &mut Vec<ValueId>) -> Scalar {
    let mut go = |x: &Scalar| transplant(x, at, from, operands);
    match e {
        Scalar::Index(i) => at(*i),
        Scalar::Load { operand, indices } => {
            let indices: Vec<Scalar> = indices.iter().map(&mut go).collect();
            let v = from[*operand as usize];
            let k = match operands.iter().position(|&o| o == v) {
                Some(k) => k,
                None => {
                    operands.push(v);
                    operands.len() - 1
                }
            };
            Scalar::Load { operand: k as u32, indices }
        }
        Scalar::State { state, indices } => Scalar::State { state: *state, indices: indices.iter().map(go).collect() },
        Scalar::Apply(f, a) => Scalar::Apply(*f, a.iter().map(go).collect()),
        Scalar::Select(c, a, b) => Scalar::Select(Box::new(go(c)), Box::new(go(a)), Box::new(go(b))),
        Scalar::Reduce { op, vars, body } => Scalar::Reduce {
            op: *op,
            vars: vars.iter().map(|&v| if let Scalar::Index(i) = at(v) { i } else { v }).collect(),
            body: Box::new(go(body)),
        },
        other => other.clone(),
    }
}

/// Drops operands no body reads any more and renumbers the loads.
pub fn compact(bodies: &mut [&mut Scalar], operands: &mut Vec<ValueId>, also_used: &[u32]) {
    let mut used = vec![false; operands.len()];
    for b in bodies.iter() {
        let mut ks = Vec::new();
        b.operands(&mut ks);
        for k in ks {
            used[k as usize] = true;
        }
    }
    for &k in also_used {
        used[k as usize] = true;
    }
    let mut map = vec![0u32; operands.len()];
    let mut kept = Vec::new();
    for (k, v) in operands.iter().enumerate() {
        if used[k] {
            map[k] = kept.len() as u32;
            kept.push(*v);
        }
    }
    for b in bodies.iter_mut() {
        renumber(b, &map);
    }
    *operands = kept;
}

/// Renumbers operand `k` to `map[k]` in place.
pub fn renumber(e: &mut Scalar, map: &[u32]) {
    let taken = std::mem::replace(e, Scalar::Const(0.0));
    *e = taken.renumbered(&|i| i, &|k| map[k as usize], &|s| s);
}

/// The node that defines each value.
pub fn producers(g: &Graph) -> Vec<Option<usize>> {
    let mut p = vec![None; g.types.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for r in &n.results {
            p[r.0 as usize] = Some(i);
        }
    }
    p
}

/// Drops operands a scan no longer reads (its statements and initial values).
pub fn compact_scan(scan: &mut crate::ir::ops::ScanOp, operands: &mut Vec<ValueId>) {
    use crate::ir::ops::StateInit;
    let mut bodies: Vec<&mut Scalar> = Vec::new();
    for st in scan.updates.iter_mut().chain(scan.outputs.iter_mut()) {
        bodies.push(&mut st.body);
        if let Some(c) = st.cond.as_mut() {
            bodies.push(c);
        }
    }
    // Initial values are operands too: carried through as loads, renumbered.
    let mut inits: Vec<Scalar> = scan
        .states
        .iter()
        .filter_map(|s| {
            if let StateInit::Operand(k) = s.init {
                Some(Scalar::Load { operand: k, indices: Vec::new() })
            } else {
                None
            }
        })
        .collect();
    bodies.extend(inits.iter_mut());
    compact(&mut bodies, operands, &[]);
    for (s, m) in scan.states.iter_mut().filter(|s| matches!(s.init, StateInit::Operand(_))).zip(&inits) {
        if let Scalar::Load { operand, .. } = m {
            s.init = StateInit::Operand(*operand);
        }
    }
}
