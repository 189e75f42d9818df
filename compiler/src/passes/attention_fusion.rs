//! attention-fusion: scores, masked softmax and weighted sum become one
//! `attention` op that keeps the mask (causal, window, any `where`) and the
//! grouped-head indexing, and stores no `[L, L]` tensor.
//!
//! Before:
//!   %s = generic [b, h, i, j] (%q, %k) = sum[e] %q[b, i, h, e] * %k[b, j, h / 2, e] / 8 where j <= i
//!   %p = generic [b, h, i, j] (%s) = softmax[j] %s[b, h, i, j]
//!   %o = generic [b, i, h, e] (%p, %v) = sum[j] %p[b, h, i, j] * %v[b, j, h / 2, e]
//! After:
//!   %o = attention [b, i, h, e] (%q, %k, %v) = sum[j] (softmax[j] sum[e1] %q[b, i, h, e1] * %k[b, j, h / 2, e1] / 8) * %v[b, j, h / 2, e] where j <= i
//! Invariant: no value of two sequence axes feeds an `attention`; the scores and
//! probabilities are left for `dce`.

use super::inline::{producers, transplant, use_counts};
use crate::ir::ops::{Generic, LoopVar};
use crate::ir::{Graph, Op, Scalar, ScalarFn, ValueId};
use crate::syntax::ast::ReduceOp;

pub fn run(g: &mut Graph) {
    loop {
        let uses = use_counts(g);
        let prod = producers(g);
        let found = (0..g.nodes.len()).find_map(|c| matches(g, c, &uses, &prod).map(|m| (c, m)));
        let Some((c, (p, s))) = found else { return };
        let fused = fuse(g, c, p, s);
        g.nodes[c].operands = fused.1;
        g.nodes[c].op = Op::Attention(Box::new(fused.0));
    }
}

/// `C = sum[j] P[.., j] * V` with `P = softmax[j] S` and `S` single-use: the nodes
/// of P and S.
fn matches(g: &Graph, c: usize, uses: &[usize], prod: &[Option<usize>]) -> Option<(usize, usize)> {
    let Op::Generic(cg) = &g.nodes[c].op else { return None };
    if cg.cond.is_some() {
        return None;
    }
    let Scalar::Reduce { op: ReduceOp::Sum, vars, body } = &cg.body else { return None };
    let [j] = vars[..] else { return None };
    let Scalar::Apply(ScalarFn::Mul, f) = &**body else { return None };
    let (p_load, _) =
        [(&f[0], &f[1]), (&f[1], &f[0])].into_iter().find(|(a, _)| probabilities(g, c, a, j, uses, prod).is_some())?;
    probabilities(g, c, p_load, j, uses, prod)
}

/// A load of a softmax-of-scores value at plain indices, the last of them `j`.
fn probabilities(
    g: &Graph,
    c: usize,
    load: &Scalar,
    j: u32,
    uses: &[usize],
    prod: &[Option<usize>],
) -> Option<(usize, usize)> {
    let Scalar::Load { operand, indices } = load else { return None };
    if !indices.iter().all(|i| matches!(i, Scalar::Index(_))) || indices.last() != Some(&Scalar::Index(j)) {
        return None;
    }
    let pv = g.nodes[c].operands[*operand as usize];
    let p = prod[pv.0 as usize]?;
    let Op::Generic(pg) = &g.nodes[p].op else { return None };
    let last = (pg.rank - 1) as u32;
    let identity = |idx: &[Scalar]| idx.iter().enumerate().all(|(k, i)| *i == Scalar::Index(k as u32));
    let Scalar::Reduce { op: ReduceOp::Softmax, vars, body } = &pg.body else { return None };
    let Scalar::Load { operand: so, indices: sidx } = &**body else { return None };
    if pg.cond.is_some() || vars[..] != [last] || !identity(sidx) || uses[pv.0 as usize] != 1 {
        return None;
    }
    let sv = g.nodes[p].operands[*so as usize];
    let s = prod[sv.0 as usize]?;
    let Op::Generic(sg) = &g.nodes[s].op else { return None };
    (uses[sv.0 as usize] == 1 && sg.rank == pg.rank).then_some((p, s))
}

/// The fused generic and its operands.
fn fuse(g: &Graph, c: usize, p: usize, s: usize) -> (Generic, Vec<ValueId>) {
    let (Op::Generic(cg), Op::Generic(sg)) = (&g.nodes[c].op, &g.nodes[s].op) else { unreachable!("matched") };
    let mut vars: Vec<LoopVar> = cg.vars.clone();
    let mut operands: Vec<ValueId> = g.nodes[c].operands.clone();
    let p_value = g.nodes[p].results[0];
    let Scalar::Reduce { vars: jv, body, .. } = &cg.body else { unreachable!("matched") };
    let j = jv[0];
    let Scalar::Apply(_, f) = &**body else { unreachable!("matched") };
    let mut cond = None;
    let factors: Vec<Scalar> = f
        .iter()
        .map(|x| match x {
            Scalar::Load { operand, indices } if operands[*operand as usize] == p_value => {
                // softmax[j] (scores at the load's indices), the mask moving to the op.
                let base = vars.len() as u32;
                vars.extend(sg.vars[sg.rank..].iter().cloned());
                let at = |v: u32| {
                    if (v as usize) < sg.rank {
                        indices[v as usize].clone()
                    } else {
                        Scalar::Index(base + v - sg.rank as u32)
                    }
                };
                let score = transplant(&sg.body, &at, &g.nodes[s].operands, &mut operands);
                cond = sg.cond.as_ref().map(|cnd| transplant(cnd, &at, &g.nodes[s].operands, &mut operands));
                Scalar::Reduce { op: ReduceOp::Softmax, vars: vec![j], body: Box::new(score) }
            }
            other => other.clone(),
        })
        .collect();
    let body =
        Scalar::Reduce { op: ReduceOp::Sum, vars: vec![j], body: Box::new(Scalar::Apply(ScalarFn::Mul, factors)) };
    let mut fused = Generic { vars, rank: cg.rank, body, cond };
    // The probabilities are no longer read.
    let mut bodies: Vec<&mut Scalar> = vec![&mut fused.body];
    if let Some(c) = fused.cond.as_mut() {
        bodies.push(c);
    }
    super::inline::compact(&mut bodies, &mut operands, &[]);
    (fused, operands)
}
