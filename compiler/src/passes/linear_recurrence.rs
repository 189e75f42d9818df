//! linear-recurrence: marks each scan state whose update is affine in the states
//! as linear: `h = a * h + b`, the dense `h[i] = b[i] + sum[j] a[i, j] * h[j]`, or
//! coupled states (a complex state as its real and imaginary parts,
//! `hr = ar * hr - ai * hi + br * u`), with every coefficient and `b` free of states; and as
//! time-invariant when no coefficient depends on the scan index (S4D: it can then
//! run as a convolution).
//!
//! After: `state h[B, 128, 16] = 0 linear`
//! Invariant: a state marked linear has an update of that form.

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
    let mut coefficients: Vec<&Scalar> = Vec::new();
    for t in &terms {
        match coefficient(t) {
            Some(c) => coefficients.push(c),
            None if t.reads_state() => return Recurrence::Nonlinear,
            None => {}
        }
    }
    let own = |e: &Scalar| matches!(e, Scalar::State { state, .. } if *state == u.target);
    if !u.body.any(&own) {
        return Recurrence::Nonlinear;
    }
    Recurrence::Linear { time_invariant: coefficients.iter().all(|a| !a.mentions(axis)) }
}

/// The terms of a top-level sum or difference (signs do not matter here).
fn sum_terms(e: &Scalar) -> Vec<&Scalar> {
    match e {
        Scalar::Apply(ScalarFn::Add | ScalarFn::Sub, a) => {
            sum_terms(&a[0]).into_iter().chain(sum_terms(&a[1])).collect()
        }
        Scalar::Apply(ScalarFn::Neg, a) => sum_terms(&a[0]),
        other => vec![other],
    }
}

/// For a term `a * h` (or `sum[j] a * h`, or `h`) with `h` any state, the
/// coefficient `a`, free of states; `None` when the term is not of that form.
fn coefficient(t: &Scalar) -> Option<&Scalar> {
    const ONE: &Scalar = &Scalar::Const(1.0);
    let state = |e: &Scalar| matches!(e, Scalar::State { .. });
    match t {
        e if state(e) => Some(ONE),
        Scalar::Apply(ScalarFn::Mul, x) if state(&x[1]) && !x[0].reads_state() => Some(&x[0]),
        Scalar::Apply(ScalarFn::Mul, x) if state(&x[0]) && !x[1].reads_state() => Some(&x[1]),
        Scalar::Apply(ScalarFn::Neg, x) => coefficient(&x[0]),
        Scalar::Reduce { op: ReduceOp::Sum, body, .. } => coefficient(body),
        _ => None,
    }
}

/// For an update `h[i...] = a * h[i...] + b` that reads no state but its own
/// element (a diagonal recurrence: Mamba's, Griffin's, gated linear
/// attention's), the coefficient `a`, free of states; `None` for any other
/// update. A chunked scan runs such a state's transition across a chunk as the
/// running product of `a`.
pub fn diagonal_coefficient(u: &ScanStmt) -> Option<Scalar> {
    if u.cond.is_some() {
        return None;
    }
    let own = |e: &Scalar| match e {
        Scalar::State { state, indices } => {
            *state == u.target
                && indices.len() == u.left.len()
                && indices.iter().zip(&u.left).all(|(x, v)| *x == Scalar::Index(*v))
        }
        _ => false,
    };
    let mut a: Option<Scalar> = None;
    for (negative, t) in signed_terms(&u.body, false) {
        let c = match t {
            e if own(e) => Scalar::Const(1.0),
            Scalar::Apply(ScalarFn::Mul, x) if own(&x[1]) && !x[0].reads_state() => x[0].clone(),
            Scalar::Apply(ScalarFn::Mul, x) if own(&x[0]) && !x[1].reads_state() => x[1].clone(),
            t if t.reads_state() => return None,
            _ => continue,
        };
        let c = if negative { Scalar::Apply(ScalarFn::Neg, vec![c]) } else { c };
        a = Some(match a {
            None => c,
            Some(s) => Scalar::Apply(ScalarFn::Add, vec![s, c]),
        });
    }
    a
}

/// The terms of a top-level sum, each with whether it is subtracted.
fn signed_terms(e: &Scalar, negative: bool) -> Vec<(bool, &Scalar)> {
    match e {
        Scalar::Apply(ScalarFn::Add, a) => {
            signed_terms(&a[0], negative).into_iter().chain(signed_terms(&a[1], negative)).collect()
        }
        Scalar::Apply(ScalarFn::Sub, a) => {
            signed_terms(&a[0], negative).into_iter().chain(signed_terms(&a[1], !negative)).collect()
        }
        Scalar::Apply(ScalarFn::Neg, a) => signed_terms(&a[0], !negative),
        other => vec![(negative, other)],
    }
}
