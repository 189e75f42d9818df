//! Loop-invariant index arithmetic moves out of loops: an address like
//! `((b * L + i) * H + h) * 64 + e` inside a loop over `e` becomes
//! `t + e`, with `t` computed once before the loop. Code generators then see
//! the invariance in the IR itself (Cranelift's optimiser does not hoist past
//! its rematerialised constants, and a GPU backend wants the same shape).
//!
//! Only integer arithmetic moves: never loads (memory changes inside loops),
//! and no division or remainder by anything but a positive constant (a loop
//! that runs zero times must not divide by a zero dimension).

use super::{Expr, IntOp, Stmt, Var};
use std::collections::HashSet;

/// Hoists invariant index arithmetic out of every loop of `body`; new
/// variables are numbered from `*next_var`.
pub fn hoist(body: &mut Vec<Stmt>, next_var: &mut u32) {
    let old = std::mem::take(body);
    for mut s in old {
        match &mut s {
            Stmt::For { var, body: inner, .. } => {
                hoist(inner, next_var);
                let mut defined = HashSet::from([*var]);
                defined_in(inner, &mut defined);
                let mut lets: Vec<(Expr, Var)> = Vec::new();
                // `let`s at the top of the loop whose values are invariant move out whole.
                let mut kept = Vec::new();
                let mut renames: Vec<(Var, Var)> = Vec::new();
                for st in std::mem::take(inner) {
                    match st {
                        Stmt::Let { var: v, value } if invariant(&value, &defined, &[*var]) => {
                            let same = body.iter().find_map(|b| match b {
                                Stmt::Let { var, value: x } if *x == value => Some(*var),
                                _ => None,
                            });
                            match same {
                                Some(earlier) => renames.push((v, earlier)),
                                None => body.push(Stmt::Let { var: v, value }),
                            }
                            defined.remove(&v);
                        }
                        other => kept.push(other),
                    }
                }
                for (from, to) in renames {
                    kept.iter_mut().for_each(|st| rename_stmt(st, from, to));
                }
                *inner = kept;
                // Recompute what is defined inside: the moved `let`s no longer are.
                let mut defined = HashSet::from([*var]);
                defined_in(inner, &mut defined);
                // Values already set earlier in this scope are reused, not recomputed.
                let known: Vec<(Expr, Var)> = body
                    .iter()
                    .filter_map(|st| match st {
                        Stmt::Let { var, value } => Some((value.clone(), *var)),
                        _ => None,
                    })
                    .collect();
                lets.extend(known.iter().cloned());
                for st in inner.iter_mut() {
                    rewrite_stmt(st, &defined, &mut lets, next_var);
                }
                body.extend(lets.into_iter().skip(known.len()).map(|(value, var)| Stmt::Let { var, value }));
            }
            Stmt::If { then, .. } => hoist(then, next_var),
            _ => {}
        }
        body.push(s);
    }
}

fn rename_stmt(s: &mut Stmt, from: Var, to: Var) {
    let r = |e: &mut Expr| rename(e, from, to);
    match s {
        Stmt::For { extent, body, .. } => {
            r(extent);
            body.iter_mut().for_each(|b| rename_stmt(b, from, to));
        }
        Stmt::Let { value, .. } | Stmt::Set { value, .. } => r(value),
        Stmt::Store { index, value, .. } => {
            r(index);
            r(value);
        }
        Stmt::If { cond, then } => {
            r(cond);
            then.iter_mut().for_each(|b| rename_stmt(b, from, to));
        }
        Stmt::Barrier => {}
    }
}

fn rename(e: &mut Expr, from: Var, to: Var) {
    match e {
        Expr::Var(v) if *v == from => *v = to,
        Expr::Load { index, .. } => rename(index, from, to),
        Expr::Int2(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            rename(a, from, to);
            rename(b, from, to);
        }
        Expr::Call(_, args) => args.iter_mut().for_each(|a| rename(a, from, to)),
        Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => rename(a, from, to),
        Expr::Select(c, a, b) => {
            rename(c, from, to);
            rename(a, from, to);
            rename(b, from, to);
        }
        _ => {}
    }
}

/// Variables a statement list defines (its loops' and `let`s'), nested ones too.
fn defined_in(stmts: &[Stmt], out: &mut HashSet<Var>) {
    for s in stmts {
        match s {
            Stmt::For { var, body, .. } => {
                out.insert(*var);
                defined_in(body, out);
            }
            Stmt::Let { var, .. } => {
                out.insert(*var);
            }
            Stmt::If { then, .. } => defined_in(then, out),
            _ => {}
        }
    }
}

/// Integer arithmetic safe to compute early that reads none of `defined`
/// (nor `also`).
fn invariant(e: &Expr, defined: &HashSet<Var>, also: &[Var]) -> bool {
    match e {
        Expr::Int(_) | Expr::Dim(_) => true,
        Expr::Var(v) => !defined.contains(v) && !also.contains(v),
        Expr::Int2(op, a, b) => {
            let safe_divisor = !matches!(op, IntOp::Div | IntOp::Rem) || matches!(**b, Expr::Int(c) if c > 0);
            safe_divisor && invariant(a, defined, also) && invariant(b, defined, also)
        }
        _ => false,
    }
}

/// Replaces the largest invariant arithmetic of `e` with variables set before
/// the loop (one per distinct expression).
fn rewrite(e: &mut Expr, defined: &HashSet<Var>, lets: &mut Vec<(Expr, Var)>, next_var: &mut u32) {
    if matches!(e, Expr::Int2(..)) && invariant(e, defined, &[]) {
        let v = match lets.iter().find(|(x, _)| x == e) {
            Some((_, v)) => *v,
            None => {
                let v = Var(*next_var);
                *next_var += 1;
                lets.push((e.clone(), v));
                v
            }
        };
        *e = Expr::Var(v);
        return;
    }
    match e {
        Expr::Load { index, .. } => rewrite(index, defined, lets, next_var),
        Expr::Int2(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            rewrite(a, defined, lets, next_var);
            rewrite(b, defined, lets, next_var);
        }
        Expr::Call(_, args) => args.iter_mut().for_each(|a| rewrite(a, defined, lets, next_var)),
        Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => rewrite(a, defined, lets, next_var),
        Expr::Select(c, a, b) => {
            rewrite(c, defined, lets, next_var);
            rewrite(a, defined, lets, next_var);
            rewrite(b, defined, lets, next_var);
        }
        Expr::Int(_) | Expr::Float(_) | Expr::Var(_) | Expr::Dim(_) | Expr::Reg(_) => {}
    }
}

fn rewrite_stmt(s: &mut Stmt, defined: &HashSet<Var>, lets: &mut Vec<(Expr, Var)>, next_var: &mut u32) {
    match s {
        Stmt::For { extent, body, .. } => {
            rewrite(extent, defined, lets, next_var);
            body.iter_mut().for_each(|b| rewrite_stmt(b, defined, lets, next_var));
        }
        Stmt::Let { value, .. } | Stmt::Set { value, .. } => rewrite(value, defined, lets, next_var),
        Stmt::Store { index, value, .. } => {
            rewrite(index, defined, lets, next_var);
            rewrite(value, defined, lets, next_var);
        }
        Stmt::If { cond, then } => {
            rewrite(cond, defined, lets, next_var);
            then.iter_mut().for_each(|b| rewrite_stmt(b, defined, lets, next_var));
        }
        Stmt::Barrier => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::kernel::LoopKind;

    fn var(v: u32) -> Expr {
        Expr::Var(Var(v))
    }

    #[test]
    fn invariant_addresses_leave_the_loop_and_divisions_by_dimensions_stay() {
        // for v2 in 0..L { p0[(v1 * L + 3) * 4 + v2] = p1[v1 / L + v2] }
        let base = Expr::mul(Expr::add(Expr::mul(var(1), Expr::Dim(0)), Expr::Int(3)), Expr::Int(4));
        let div = Expr::int(IntOp::Div, var(1), Expr::Dim(0));
        let store = Stmt::Store {
            param: 0,
            index: Expr::add(base.clone(), var(2)),
            value: Expr::Load { param: 1, index: Box::new(Expr::add(div.clone(), var(2))) },
        };
        let mut body = vec![Stmt::For { var: Var(2), extent: Expr::Dim(0), kind: LoopKind::Serial, body: vec![store] }];
        let mut next = 3;
        hoist(&mut body, &mut next);
        assert_eq!(next, 4, "one new variable");
        assert_eq!(body[0], Stmt::Let { var: Var(3), value: base });
        let Stmt::For { body: inner, .. } = &body[1] else { panic!("the loop follows its lets") };
        let Stmt::Store { index, value, .. } = &inner[0] else { panic!() };
        assert_eq!(*index, Expr::add(var(3), var(2)));
        assert_eq!(*value, Expr::Load { param: 1, index: Box::new(Expr::add(div, var(2))) });
    }
}
