//! licm: loop-invariant terms of a scan's statements (Mamba's `-exp(A_log[d, n])`)
//! move out of the scan into a `generic` computed once, over the indices they use.
//!
//! Before: %h = scan [l] (%A, ...) { h[b, d, n] = exp(%dt[b, l, d] * -exp(%A[d, n])) * h[b, d, n] + ... }
//! After:  %a = generic [d, n] (%A) = -exp(%A[d, n])
//!         %h = scan [l] (%a, ...) { h[b, d, n] = exp(%dt[b, l, d] * %a[d, n]) * h[b, d, n] + ... }
//! Invariant: no statement of a scan applies a function to a term that reads
//! neither the scan index nor a state.

use crate::ir::ops::{Generic, LoopVar, ScanOp};
use crate::ir::{Graph, Node, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::TensorTy;
use crate::syntax::ast::DType;

pub fn run(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        if let Op::Scan(scan) = &g.nodes[i].op {
            let mut scan = (**scan).clone();
            let mut operands = g.nodes[i].operands.clone();
            let mut hoisted: Vec<(Node, TensorTy)> = Vec::new();
            let axis = scan.axis;
            let ScanOp { updates, outputs, vars, .. } = &mut scan;
            for st in updates.iter_mut().chain(outputs.iter_mut()) {
                let reduced = reduction_vars(&st.body);
                let body = std::mem::replace(&mut st.body, Scalar::Const(0.0));
                st.body = hoist(body, axis, &reduced, vars, &mut operands, &mut hoisted);
            }
            if !hoisted.is_empty() {
                let before = g.nodes.len();
                let origin = g.origins.get(i).cloned().unwrap_or_default();
                for (k, (mut node, ty)) in hoisted.into_iter().enumerate() {
                    g.types.push(ty);
                    let v = ValueId((g.types.len() - 1) as u32);
                    // The placeholder operand of the scan becomes the new value.
                    let placeholder = node.results[0];
                    node.results = vec![v];
                    for o in operands.iter_mut() {
                        if *o == placeholder {
                            *o = v;
                        }
                    }
                    g.nodes.insert(i + k, node);
                    g.origins.insert(i + k, origin.clone());
                }
                // The scan moved down past the hoisted nodes.
                i += g.nodes.len() - before;
                super::inline::compact_scan(&mut scan, &mut operands);
                g.nodes[i].op = Op::Scan(Box::new(scan));
                g.nodes[i].operands = operands;
            }
        }
        i += 1;
    }
}

fn reduction_vars(e: &Scalar) -> Vec<u32> {
    let mut out = Vec::new();
    e.visit(&mut |x| {
        if let Scalar::Reduce { vars, .. } = x {
            out.extend(vars);
        }
    });
    out
}

/// Whether a term can be computed once, outside the scan: it reads no state, not
/// the scan index, no reduction index, and holds no reduction.
fn invariant(e: &Scalar, axis: u32, reduced: &[u32]) -> bool {
    match e {
        Scalar::Index(i) => *i != axis && !reduced.contains(i),
        Scalar::State { .. } | Scalar::Reduce { .. } | Scalar::Size(_) => false,
        Scalar::Load { indices, .. } => indices.iter().all(|x| invariant(x, axis, reduced)),
        Scalar::Apply(_, a) => a.iter().all(|x| invariant(x, axis, reduced)),
        Scalar::Select(c, a, b) => [c, a, b].iter().all(|x| invariant(x, axis, reduced)),
        Scalar::Const(_) => true,
    }
}

/// Worth a tensor of its own: it applies a function that costs more than a load.
fn costly(e: &Scalar) -> bool {
    match e {
        Scalar::Apply(f, a) => {
            !matches!(f, ScalarFn::Neg | ScalarFn::Add | ScalarFn::Sub | ScalarFn::Mul) || a.iter().any(costly)
        }
        Scalar::Select(c, a, b) => costly(c) || costly(a) || costly(b),
        _ => false,
    }
}

fn indices_of(e: &Scalar, out: &mut Vec<u32>) {
    e.visit(&mut |x| {
        if let Scalar::Index(i) = x {
            if !out.contains(i) {
                out.push(*i);
            }
        }
    });
}

/// Replaces maximal invariant, costly terms by loads of hoisted generics.
fn hoist(
    e: Scalar,
    axis: u32,
    reduced: &[u32],
    vars: &[LoopVar],
    operands: &mut Vec<ValueId>,
    hoisted: &mut Vec<(Node, TensorTy)>,
) -> Scalar {
    let loads_only_operands = |x: &Scalar| {
        let mut ks = Vec::new();
        x.operands(&mut ks);
        !ks.is_empty()
    };
    if invariant(&e, axis, reduced) && costly(&e) && loads_only_operands(&e) {
        let mut used = Vec::new();
        indices_of(&e, &mut used);
        used.sort();
        let new_vars: Vec<LoopVar> = used.iter().map(|&v| vars[v as usize].clone()).collect();
        let mut gen_operands: Vec<ValueId> = Vec::new();
        let at = |i: u32| Scalar::Index(used.iter().position(|u| *u == i).unwrap_or(0) as u32);
        let body = super::inline::transplant(&e, &at, operands, &mut gen_operands);
        let ty = TensorTy { dtype: DType::F32, shape: new_vars.iter().map(|v| v.extent.clone()).collect() };
        let rank = new_vars.len();
        // A placeholder id, past every value, replaced when the node is inserted.
        let placeholder = ValueId(u32::MAX - hoisted.len() as u32);
        let gen = Generic { vars: new_vars, rank, body, cond: None };
        hoisted.push((Node { op: Op::Generic(Box::new(gen)), operands: gen_operands, results: vec![placeholder] }, ty));
        operands.push(placeholder);
        return Scalar::Load {
            operand: (operands.len() - 1) as u32,
            indices: used.iter().map(|&v| Scalar::Index(v)).collect(),
        };
    }
    let go = |x: Scalar, operands: &mut Vec<ValueId>, hoisted: &mut Vec<(Node, TensorTy)>| {
        hoist(x, axis, reduced, vars, operands, hoisted)
    };
    match e {
        Scalar::Apply(f, a) => Scalar::Apply(f, a.into_iter().map(|x| go(x, operands, hoisted)).collect()),
        Scalar::Select(c, a, b) => Scalar::Select(
            Box::new(go(*c, operands, hoisted)),
            Box::new(go(*a, operands, hoisted)),
            Box::new(go(*b, operands, hoisted)),
        ),
        Scalar::Reduce { op, vars: rv, body } => {
            Scalar::Reduce { op, vars: rv, body: Box::new(go(*body, operands, hoisted)) }
        }
        other => other,
    }
}
