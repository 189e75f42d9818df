//! Which loops run as vector loops. An innermost loop is vectorised when its
//! body is stores of values (element-wise work) or accumulations `r = r op e`
//! (reductions), its stores are contiguous in the loop index, and the index is
//! read only inside load addresses (contiguous loads become vector loads,
//! invariant ones a broadcast, others a gather) or by integer parts a backend
//! computes once per lane: the index converted to a float, compared, or
//! selected on (`f32(d)`, `d < 32` in rope). A backend runs `Vector(w)` loops
//! `w` lanes at a time with a scalar tail; reductions combine their lanes at
//! the end, which reorders floating-point sums.

use super::{Expr, IntOp, LoopKind, Stmt, Var};
use crate::ir::ScalarFn;

/// Whether `e` reads loop index `v`.
pub fn depends(e: &Expr, v: Var) -> bool {
    match e {
        Expr::Var(x) => *x == v,
        Expr::Int(_) | Expr::Float(_) | Expr::Dim(_) | Expr::Reg(_) => false,
        Expr::Load { index, .. } => depends(index, v),
        Expr::Int2(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => depends(a, v) || depends(b, v),
        Expr::Call(_, args) => args.iter().any(|a| depends(a, v)),
        Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => depends(a, v),
        Expr::Select(c, a, b) => depends(c, v) || depends(a, v) || depends(b, v),
    }
}

/// The coefficient of `v` in an index expression affine in it.
pub fn stride(e: &Expr, v: Var) -> Option<i64> {
    match e {
        Expr::Var(x) => Some(i64::from(*x == v)),
        Expr::Int2(IntOp::Add, a, b) => Some(stride(a, v)? + stride(b, v)?),
        Expr::Int2(IntOp::Sub, a, b) => Some(stride(a, v)? - stride(b, v)?),
        Expr::Int2(IntOp::Mul, a, b) => match (stride(a, v)?, stride(b, v)?, &**a, &**b) {
            (0, 0, _, _) => Some(0),
            (s, 0, _, Expr::Int(c)) | (0, s, Expr::Int(c), _) => Some(s * c),
            _ => None,
        },
        _ if !depends(e, v) => Some(0),
        _ => None,
    }
}

/// Whether the values of `e` can be computed lane-wise: float and boolean
/// operations lane by lane, loads by their index's stride, and the integer
/// values that read `v` (a converted index, an index comparison) once per lane.
/// Integer values elsewhere (load addresses aside) must not read `v`.
fn lanewise(e: &Expr, v: Var) -> bool {
    match e {
        Expr::Load { .. } => true,
        Expr::Var(_) | Expr::Int2(..) | Expr::ToInt(_) => !depends(e, v),
        // Converted per lane where it reads the index (rope's `f32(d)`).
        Expr::ToFloat(_) => true,
        Expr::Int(_) | Expr::Float(_) | Expr::Dim(_) | Expr::Reg(_) => true,
        Expr::Call(_, args) => args.iter().all(|a| lanewise(a, v)),
        // Integer comparisons are made per lane where they read the index.
        Expr::Cmp(_, a, b) => a.ty() != super::Ty::F32 || (lanewise(a, v) && lanewise(b, v)),
        Expr::And(a, b) | Expr::Or(a, b) => lanewise(a, v) && lanewise(b, v),
        Expr::Not(a) => lanewise(a, v),
        Expr::Select(c, a, b) => {
            (a.ty() != super::Ty::I64 || !depends(e, v)) && lanewise(c, v) && lanewise(a, v) && lanewise(b, v)
        }
    }
}

fn reads_reg(e: &Expr, r: super::Reg) -> bool {
    match e {
        Expr::Reg(x) => *x == r,
        Expr::Int(_) | Expr::Float(_) | Expr::Dim(_) | Expr::Var(_) => false,
        Expr::Load { index, .. } => reads_reg(index, r),
        Expr::Int2(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            reads_reg(a, r) || reads_reg(b, r)
        }
        Expr::Call(_, args) => args.iter().any(|a| reads_reg(a, r)),
        Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => reads_reg(a, r),
        Expr::Select(c, a, b) => reads_reg(c, r) || reads_reg(a, r) || reads_reg(b, r),
    }
}

/// An accumulation `r = r op e` (`op` sum, max or min) with `e` free of `r`:
/// the register, the op and `e`.
pub fn accumulation(s: &Stmt) -> Option<(super::Reg, ScalarFn, &Expr)> {
    let Stmt::Set { reg, value: Expr::Call(f @ (ScalarFn::Add | ScalarFn::Max | ScalarFn::Min), args) } = s else {
        return None;
    };
    match &args[..] {
        [Expr::Reg(r), e] if r == reg && !reads_reg(e, *reg) => Some((*reg, *f, e)),
        _ => None,
    }
}

/// Whether a loop over `v` with this body can run as a vector loop.
pub fn vectorizable(body: &[Stmt], v: Var) -> bool {
    let accs: Vec<super::Reg> = body.iter().filter_map(accumulation).map(|a| a.0).collect();
    !body.is_empty()
        && body.iter().all(|s| match s {
            Stmt::Store { index, value, .. } => {
                stride(index, v) == Some(1) && lanewise(value, v) && !accs.iter().any(|r| reads_reg(value, *r))
            }
            Stmt::Set { .. } => {
                accumulation(s).is_some_and(|(_, _, e)| lanewise(e, v) && !accs.iter().any(|r| reads_reg(e, *r)))
            }
            _ => false,
        })
}

/// Marks every innermost serial loop that can run `width` lanes at a time, and
/// unrolls loops of fewer than `width` iterations (a complex number's two
/// parts): their bounds and comparisons become constants.
pub fn mark(stmts: &mut [Stmt], width: u32) {
    for s in stmts {
        match s {
            Stmt::For { var, kind, body, extent } => {
                let innermost = !body.iter().any(|b| matches!(b, Stmt::For { .. } | Stmt::If { .. }));
                if let (Expr::Int(n), LoopKind::Serial) = (&*extent, *kind) {
                    if (1..i64::from(width)).contains(n) {
                        *kind = LoopKind::Unroll(*n as u32);
                        mark(body, width);
                        continue;
                    }
                }
                if innermost && *kind == LoopKind::Serial && vectorizable(body, *var) {
                    *kind = LoopKind::Vector(width);
                } else {
                    mark(body, width);
                }
            }
            Stmt::If { then, .. } => mark(then, width),
            _ => {}
        }
    }
}
