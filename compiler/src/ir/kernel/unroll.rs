//! Short reductions inside loops become expressions. In
//!
//! ```text
//! for d { r = 0; for t in 0..4 { r = r + e(t, d) }; out[d] = f(r) }
//! ```
//!
//! (a depthwise convolution's taps) the reduction over `t` is written out,
//! `out[d] = f(e(0, d) + e(1, d) + e(2, d) + e(3, d))`: the loop over `d` is then
//! element-wise and vectorises, where a reduction innermost kept it scalar. The
//! sum keeps its order, so results do not change.

use super::vector::accumulation;
use super::{Expr, Reg, Stmt, Var};
use crate::ir::ScalarFn;

/// Reductions of at most this many terms are written out.
const MAX_TERMS: i64 = 8;

/// Rewrites every short reduction in `body` (a kernel's statements).
pub fn inline_short_reductions(body: &mut Vec<Stmt>) {
    let snapshot = body.clone();
    rewrite(body, &snapshot);
}

fn rewrite(stmts: &mut Vec<Stmt>, kernel: &[Stmt]) {
    for s in stmts.iter_mut() {
        match s {
            Stmt::For { body, .. } | Stmt::If { then: body, .. } => rewrite(body, kernel),
            _ => {}
        }
    }
    let mut p = 0;
    while p + 1 < stmts.len() {
        let Some((reg, value)) = written_out(&stmts[p], &stmts[p + 1]) else {
            p += 1;
            continue;
        };
        // Read only by the accumulation and once just below: substitute it there.
        let consumer = match stmts.get_mut(p + 2) {
            Some(Stmt::Store { value: v, .. } | Stmt::Set { value: v, .. })
                if count(v, reg) == 1 && reads(kernel, reg) == 2 =>
            {
                Some(v)
            }
            _ => None,
        };
        match consumer {
            Some(v) => {
                *v = substitute_reg(v, reg, &value);
                stmts.drain(p..p + 2);
            }
            None => {
                stmts.splice(p..p + 2, [Stmt::Set { reg, value }]);
                p += 1;
            }
        }
    }
}

/// `r = init` then `for t in 0..n { r = r op e(t) }` with `n` small: `r` and
/// `init op e(0) op ... op e(n - 1)`.
fn written_out(init: &Stmt, lp: &Stmt) -> Option<(Reg, Expr)> {
    let Stmt::Set { reg, value: start } = init else { return None };
    let Stmt::For { var, extent: Expr::Int(n), body, .. } = lp else { return None };
    let [step] = &body[..] else { return None };
    let (r, op, e) = accumulation(step)?;
    if r != *reg || !(1..=MAX_TERMS).contains(n) {
        return None;
    }
    let mut acc = start.clone();
    for k in 0..*n {
        let term = substitute_var(e, *var, k);
        acc = match (&acc, op) {
            (Expr::Float(z), ScalarFn::Add) if *z == 0.0 && k == 0 => term,
            _ => Expr::call(op, vec![acc, term]),
        };
    }
    Some((*reg, acc))
}

/// How many times the statements read `r`.
fn reads(stmts: &[Stmt], r: Reg) -> usize {
    stmts
        .iter()
        .map(|s| match s {
            Stmt::For { extent, body, .. } => count(extent, r) + reads(body, r),
            Stmt::Let { value, .. } | Stmt::Set { value, .. } => count(value, r),
            Stmt::Store { index, value, .. } => count(index, r) + count(value, r),
            Stmt::If { cond, then } => count(cond, r) + reads(then, r),
            Stmt::Barrier => 0,
        })
        .sum()
}

fn count(e: &Expr, r: Reg) -> usize {
    let mut n = 0;
    visit(e, &mut |x| n += usize::from(matches!(x, Expr::Reg(y) if *y == r)));
    n
}

fn visit(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Int(_) | Expr::Float(_) | Expr::Var(_) | Expr::Dim(_) | Expr::Reg(_) => {}
        Expr::Load { index, .. } => visit(index, f),
        Expr::Int2(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            visit(a, f);
            visit(b, f);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| visit(a, f)),
        Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => visit(a, f),
        Expr::Select(c, a, b) => {
            visit(c, f);
            visit(a, f);
            visit(b, f);
        }
    }
}

/// `e` with every node for which `f` gives a replacement replaced (integer
/// arithmetic folded again).
fn map(e: &Expr, f: &dyn Fn(&Expr) -> Option<Expr>) -> Expr {
    if let Some(x) = f(e) {
        return x;
    }
    let m = |x: &Expr| Box::new(map(x, f));
    match e {
        Expr::Int(_) | Expr::Float(_) | Expr::Var(_) | Expr::Dim(_) | Expr::Reg(_) => e.clone(),
        Expr::Load { param, index } => Expr::Load { param: *param, index: m(index) },
        Expr::Int2(op, a, b) => Expr::int(*op, map(a, f), map(b, f)),
        Expr::Cmp(op, a, b) => Expr::Cmp(*op, m(a), m(b)),
        Expr::And(a, b) => Expr::And(m(a), m(b)),
        Expr::Or(a, b) => Expr::Or(m(a), m(b)),
        Expr::Call(g, args) => Expr::Call(*g, args.iter().map(|a| map(a, f)).collect()),
        Expr::Not(a) => Expr::Not(m(a)),
        Expr::ToFloat(a) => Expr::ToFloat(m(a)),
        Expr::ToInt(a) => Expr::ToInt(m(a)),
        Expr::Select(c, a, b) => Expr::Select(m(c), m(a), m(b)),
    }
}

fn substitute_var(e: &Expr, v: Var, k: i64) -> Expr {
    map(e, &|x| matches!(x, Expr::Var(y) if *y == v).then_some(Expr::Int(k)))
}

fn substitute_reg(e: &Expr, r: Reg, value: &Expr) -> Expr {
    map(e, &|x| matches!(x, Expr::Reg(y) if *y == r).then(|| value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::kernel::{IntOp, LoopKind};

    /// `for d { r = 0; for t in 0..3 { r = r + p0[d * 3 + t] }; p1[d] = r * 2 }`
    /// becomes `for d { p1[d] = (p0[d * 3] + p0[d * 3 + 1] + p0[d * 3 + 2]) * 2 }`;
    /// a reduction of nine terms, or one whose register is read twice, stays.
    #[test]
    fn short_reductions_are_written_out() {
        let (d, t, r) = (Var(1), Var(2), Reg(0));
        let nest = |taps: i64, extra_read: bool| {
            let load = Expr::Load {
                param: 0,
                index: Box::new(Expr::add(Expr::mul(Expr::Var(d), Expr::Int(taps)), Expr::Var(t))),
            };
            let mut body = vec![
                Stmt::Set { reg: r, value: Expr::Float(0.0) },
                Stmt::For {
                    var: t,
                    extent: Expr::Int(taps),
                    kind: LoopKind::Serial,
                    body: vec![Stmt::Set { reg: r, value: Expr::call(ScalarFn::Add, vec![Expr::Reg(r), load]) }],
                },
                Stmt::Store {
                    param: 1,
                    index: Expr::Var(d),
                    value: Expr::call(ScalarFn::Mul, vec![Expr::Reg(r), Expr::Float(2.0)]),
                },
            ];
            if extra_read {
                body.push(Stmt::Store { param: 2, index: Expr::Var(d), value: Expr::Reg(r) });
            }
            vec![Stmt::For { var: d, extent: Expr::Int(16), kind: LoopKind::Serial, body }]
        };
        let mut k = nest(3, false);
        inline_short_reductions(&mut k);
        let Stmt::For { body, .. } = &k[0] else { panic!() };
        let at = |c: i64| Expr::Load {
            param: 0,
            index: Box::new(Expr::int(IntOp::Add, Expr::mul(Expr::Var(d), Expr::Int(3)), Expr::Int(c))),
        };
        let sum = Expr::call(ScalarFn::Add, vec![Expr::call(ScalarFn::Add, vec![at(0), at(1)]), at(2)]);
        let want = Stmt::Store {
            param: 1,
            index: Expr::Var(d),
            value: Expr::call(ScalarFn::Mul, vec![sum, Expr::Float(2.0)]),
        };
        assert_eq!(body, &vec![want]);
        for (taps, extra) in [(9, false), (3, true)] {
            let mut k = nest(taps, extra);
            let before = k.clone();
            inline_short_reductions(&mut k);
            if taps > MAX_TERMS {
                assert_eq!(k, before, "{taps} terms stay a loop");
            } else {
                let Stmt::For { body, .. } = &k[0] else { panic!() };
                assert!(
                    matches!(body[0], Stmt::Set { .. }) && body.len() == 3,
                    "a register read twice stays: {body:?}"
                );
            }
        }
    }
}
