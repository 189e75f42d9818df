//! linear-recurrence: marks each scan state whose update is `h = a * h + b` (or
//! the dense `h[i] = b[i] + sum[j] a[i, j] * h[j]`) with `a` and `b` free of states
//! as linear, and as time-invariant when `a` does not depend on the scan index
//! (S4D: it can then run as a convolution).
//!
//! After: `state h[B, 128, 16] = 0 linear`
//! Invariant: a state marked linear has exactly that update form.

use crate::ir::ops::{Recurrence, ScanStmt};
use crate::ir::{Graph, Op, Scalar, ScalarFn};
use crate::syntax::ast::ReduceOp;

pub fn run(g: &mut Graph) {
    for node in &mut g.nodes {
        let Op::Scan(scan) = &mut node.op else { continue };
        let axis = scan.axis;
        let kinds: Vec<Recurrence> = (0..scan.states.len() as u32)
            .map(|s| match scan.updates.iter().find(|u| u.target == s) {
                Some(u) => classify(u, axis),
                None => Recurrence::Nonlinear,
            })
            .collect();
        scan.recurrence = kinds;
    }
}

fn classify(u: &ScanStmt, axis: u32) -> Recurrence {
    if u.cond.is_some() {
        return Recurrence::Nonlinear;
    }
    let terms = sum_terms(&u.body);
    let mut a: Option<&Scalar> = None;
    for t in &terms {
        match coefficient(t, u) {
            Some(c) if a.is_none() => a = Some(c),
            Some(_) => return Recurrence::Nonlinear,
            None if t.reads_state() => return Recurrence::Nonlinear,
            None => {}
        }
    }
    match a {
        Some(a) => Recurrence::Linear { time_invariant: !a.mentions(axis) },
        None => Recurrence::Nonlinear,
    }
}

/// The terms of a top-level sum.
fn sum_terms(e: &Scalar) -> Vec<&Scalar> {
    match e {
        Scalar::Apply(ScalarFn::Add, a) => sum_terms(&a[0]).into_iter().chain(sum_terms(&a[1])).collect(),
        other => vec![other],
    }
}

/// For a term `a * h` (or `sum[j] a * h`, or `h`), the coefficient `a`, free of
/// states; `None` when the term is not of that form.
fn coefficient<'e>(t: &'e Scalar, u: &ScanStmt) -> Option<&'e Scalar> {
    const ONE: &Scalar = &Scalar::Const(1.0);
    let own = |e: &Scalar| matches!(e, Scalar::State { state, .. } if *state == u.target);
    match t {
        e if own(e) => Some(ONE),
        Scalar::Apply(ScalarFn::Mul, x) if own(&x[1]) && !x[0].reads_state() => Some(&x[0]),
        Scalar::Apply(ScalarFn::Mul, x) if own(&x[0]) && !x[1].reads_state() => Some(&x[1]),
        Scalar::Reduce { op: ReduceOp::Sum, body, .. } => coefficient(body, u),
        _ => None,
    }
}
