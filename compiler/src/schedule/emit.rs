//! Loop nests from scalar bodies: the code of one `generic` or `scan` kernel.
//!
//! A body is evaluated at each point of its result; its reductions become serial
//! loops with an accumulator register. A reduction is computed at the outermost
//! place where every index it depends on is bound, and reused from there (a
//! norm's `mean[k] x^2` once per row, not once per element; a softmax's max and
//! normaliser once per query). Reads that may fall outside their operand are
//! clamped and select 0, the generic op's semantics for out-of-range reads.

use super::ScheduleError;
use crate::ir::kernel::{CmpOp, Expr, IntOp, LoopKind, Reg, Stmt, Var};
use crate::ir::ops::{Generic, LoopVar, ScanOp, StateInit};
use crate::ir::{Scalar, ScalarFn};
use crate::sema::types::Dim;
use crate::syntax::ast::ReduceOp;
use std::collections::BTreeSet;

/// A kernel parameter's shape, for loads and stores.
#[derive(Clone, Debug)]
pub struct Param {
    pub shape: Vec<Dim>,
}

/// Builds one kernel body.
pub struct Emitter<'a> {
    pub dims: &'a [String],
    /// The op's loop indices (their extents).
    pub loop_vars: &'a [LoopVar],
    /// The kernel expression each loop index is bound to, where bound.
    bound: Vec<Option<Expr>>,
    /// Operand `k` of the op is parameter `operand_param[k]`.
    pub operand_params: Vec<u32>,
    pub params: Vec<Param>,
    /// Scan states: their parameter and the element offset of the slot read now.
    states: Vec<(u32, Expr)>,
    cond: Option<&'a Scalar>,
    /// Conjuncts of the condition that the loops open now enforce by their
    /// bounds: no need to test them again inside.
    enforced: Vec<Scalar>,
    /// Reductions computed so far in the enclosing scopes.
    cache: Vec<(Scalar, Reg)>,
    /// Subexpressions computed for every value of an index into a scratch
    /// parameter: the expression, the index, the parameter.
    rows: Vec<(Scalar, u32, u32)>,
    /// Kernel variables set once per grid point (its coordinates).
    grid_level: Vec<Var>,
    /// Divisions of grid coordinates, computed once per grid point (a grouped
    /// head's `h / g`) rather than in every inner iteration: placed after the
    /// coordinates by `finish`.
    prelude: Vec<(Expr, Var)>,
    pub next_var: u32,
    pub next_reg: u32,
}

fn err(what: impl Into<String>) -> ScheduleError {
    ScheduleError(what.into())
}

/// What a loop nest emits inside its loops.
type Inner<'a, S> = dyn FnMut(&mut S, &mut Vec<Stmt>) -> Result<(), ScheduleError> + 'a;

impl<'a> Emitter<'a> {
    pub fn new(dims: &'a [String], loop_vars: &'a [LoopVar], params: Vec<Param>, cond: Option<&'a Scalar>) -> Self {
        Emitter {
            dims,
            loop_vars,
            bound: vec![None; loop_vars.len()],
            operand_params: (0..params.len() as u32).collect(),
            params,
            states: Vec::new(),
            cond,
            enforced: Vec::new(),
            cache: Vec::new(),
            rows: Vec::new(),
            grid_level: vec![Var(0)],
            prelude: Vec::new(),
            next_var: 1, // v0 is the grid variable
            next_reg: 0,
        }
    }

    pub fn dim(&self, d: &Dim) -> Result<Expr, ScheduleError> {
        match d {
            Dim::Known(v) => Ok(Expr::Int(*v)),
            Dim::Sym(s) => self
                .dims
                .iter()
                .position(|x| **x == **s)
                .map(|i| Expr::Dim(i as u32))
                .ok_or_else(|| err(format!("unknown dimension `{s}`"))),
        }
    }

    pub fn product(&self, ds: &[Dim]) -> Result<Expr, ScheduleError> {
        ds.iter().try_fold(Expr::Int(1), |acc, d| Ok(Expr::mul(acc, self.dim(d)?)))
    }

    fn var(&mut self) -> Var {
        self.next_var += 1;
        Var(self.next_var - 1)
    }

    fn reg(&mut self) -> Reg {
        self.next_reg += 1;
        Reg(self.next_reg - 1)
    }

    pub fn bind(&mut self, v: u32, e: Expr) {
        self.bound[v as usize] = Some(e);
    }

    pub fn unbind(&mut self, v: u32) {
        self.bound[v as usize] = None;
    }

    fn bound_set(&self) -> BTreeSet<u32> {
        (0..self.bound.len() as u32).filter(|&v| self.bound[v as usize].is_some()).collect()
    }

    /// `for` loops over loop indices `vars`, binding them, around `inner`.
    pub fn nest(
        &mut self,
        vars: &[u32],
        out: &mut Vec<Stmt>,
        inner: &mut Inner<'_, Self>,
    ) -> Result<(), ScheduleError> {
        self.nest_within(vars, false, out, inner)
    }

    /// Like `nest`; with `bounded`, each loop covers only the range the op's
    /// condition allows (a causal key index up to the query's, a window's last
    /// `w` positions), so masked points cost no iterations.
    fn nest_within(
        &mut self,
        vars: &[u32],
        bounded: bool,
        out: &mut Vec<Stmt>,
        inner: &mut Inner<'_, Self>,
    ) -> Result<(), ScheduleError> {
        let Some((&v, rest)) = vars.split_first() else { return inner(self, out) };
        let var = self.var();
        let mut extent = self.dim(&self.loop_vars[v as usize].extent.clone())?;
        let mut start = None;
        let enforced = self.enforced.len();
        if bounded {
            let (lo, hi) = self.bounds(v, out)?;
            if let Some(hi) = hi {
                extent = Expr::int(IntOp::Min, extent, hi);
            }
            if let Some(lo) = lo {
                let lo = Expr::int(IntOp::Max, lo, Expr::Int(0));
                extent = Expr::int(IntOp::Max, Expr::int(IntOp::Sub, extent, lo.clone()), Expr::Int(0));
                start = Some(lo);
            }
        }
        let outer = self.bound[v as usize].take();
        match start {
            Some(lo) => self.bind(v, Expr::add(lo, Expr::Var(var))),
            None => self.bind(v, Expr::Var(var)),
        }
        let saved = self.cache.len();
        let mut body = Vec::new();
        let r = self.nest_within(rest, bounded, &mut body, inner);
        self.cache.truncate(saved);
        self.enforced.truncate(enforced);
        self.bound[v as usize] = outer;
        r?;
        out.push(Stmt::For { var, extent, kind: LoopKind::Serial, body });
        Ok(())
    }

    /// Bounds on loop index `v` from the condition's conjuncts whose other
    /// indices are bound: `v <= x` (end `x + 1`), `x - v < w` (start `x - w + 1`),
    /// `v + y >= z` (start `z - y`).
    fn bounds(&mut self, v: u32, out: &mut Vec<Stmt>) -> Result<(Option<Expr>, Option<Expr>), ScheduleError> {
        let Some(cond) = self.cond else { return Ok((None, None)) };
        let conjuncts = conjuncts(cond);
        let bound = self.bound_set();
        let usable = |x: &Scalar| is_integer(x) && free_vars(x).iter().all(|u| *u != v && bound.contains(u));
        let is_v = |x: &Scalar| matches!(x, Scalar::Index(u) if *u == v);
        let (mut lo, mut hi): (Option<Expr>, Option<Expr>) = (None, None);
        let tighter =
            |old: Option<Expr>, new: Expr, op: IntOp| Some(old.map_or(new.clone(), |o| Expr::int(op, o, new)));
        for c in conjuncts {
            let Scalar::Apply(f, a) = c else { continue };
            self.enforced.push(c.clone());
            match (f, &a[0], &a[1]) {
                (ScalarFn::Le, x, y) if is_v(x) && usable(y) => {
                    let e = Expr::add(self.index(y, out)?, Expr::Int(1));
                    hi = tighter(hi, e, IntOp::Min);
                }
                (ScalarFn::Lt, x, y) if is_v(x) && usable(y) => {
                    let e = self.index(y, out)?;
                    hi = tighter(hi, e, IntOp::Min);
                }
                (ScalarFn::Lt | ScalarFn::Le, Scalar::Apply(ScalarFn::Sub, d), Scalar::Const(w))
                    if is_v(&d[1]) && usable(&d[0]) =>
                {
                    // x - v < w: v >= x - w + 1; x - v <= w: v >= x - w.
                    let back = if *f == ScalarFn::Lt { *w as i64 - 1 } else { *w as i64 };
                    let e = Expr::int(IntOp::Sub, self.index(&d[0], out)?, Expr::Int(back));
                    lo = tighter(lo, e, IntOp::Max);
                }
                (ScalarFn::Ge, Scalar::Apply(ScalarFn::Add, s), z) if is_v(&s[0]) && usable(&s[1]) && usable(z) => {
                    let e = Expr::int(IntOp::Sub, self.index(z, out)?, self.index(&s[1], out)?);
                    lo = tighter(lo, e, IntOp::Max);
                }
                _ => {
                    self.enforced.pop();
                }
            }
        }
        Ok((lo, hi))
    }

    /// Computes, into registers, every reduction in `e` that depends only on
    /// indices bound now, so the loops inside reuse them.
    pub fn hoist(&mut self, e: &Scalar, out: &mut Vec<Stmt>) -> Result<(), ScheduleError> {
        let bound = self.bound_set();
        let mut found = Vec::new();
        // What a scratch row holds is read, not recomputed: nothing in it is hoisted.
        let rows: Vec<Scalar> = self.rows.iter().map(|(x, _, _)| x.clone()).collect();
        hoistable(e, &bound, &rows, &mut found);
        for r in found {
            if !self.cache.iter().any(|(s, _)| *s == r) {
                let reg = self.reduction(&r, out)?;
                self.cache.push((r, reg));
            }
        }
        Ok(())
    }

    /// The condition, where every index it reads is bound and it reads one of
    /// `vars` (`None` otherwise).
    fn cond_over(&mut self, vars: &[u32], out: &mut Vec<Stmt>) -> Result<Option<Expr>, ScheduleError> {
        let Some(c) = self.cond else { return Ok(None) };
        let free = free_vars(c);
        let bound = self.bound_set();
        if !free.is_subset(&bound) || !vars.iter().any(|v| free.contains(v)) {
            return Ok(None);
        }
        if conjuncts(c).iter().all(|x| self.enforced.contains(x)) {
            return Ok(None);
        }
        Ok(Some(self.truth(c, out)?))
    }

    /// The condition restricted to result indices `result`, if it reads only them.
    pub fn result_cond(&mut self, result: &[u32], out: &mut Vec<Stmt>) -> Result<Option<Expr>, ScheduleError> {
        let Some(c) = self.cond else { return Ok(None) };
        if !free_vars(c).iter().all(|v| result.contains(v)) {
            return Ok(None);
        }
        Ok(Some(self.truth(c, out)?))
    }

    /// A condition (`bool`): comparisons of index expressions in integers.
    pub fn truth(&mut self, e: &Scalar, out: &mut Vec<Stmt>) -> Result<Expr, ScheduleError> {
        let op = |f: &ScalarFn| match f {
            ScalarFn::Lt => Some(CmpOp::Lt),
            ScalarFn::Le => Some(CmpOp::Le),
            ScalarFn::Gt => Some(CmpOp::Gt),
            ScalarFn::Ge => Some(CmpOp::Ge),
            ScalarFn::Eq => Some(CmpOp::Eq),
            ScalarFn::Ne => Some(CmpOp::Ne),
            _ => None,
        };
        Ok(match e {
            Scalar::Apply(ScalarFn::And, a) => Expr::and(self.truth(&a[0], out)?, self.truth(&a[1], out)?),
            Scalar::Apply(ScalarFn::Or, a) => {
                Expr::Or(Box::new(self.truth(&a[0], out)?), Box::new(self.truth(&a[1], out)?))
            }
            Scalar::Apply(ScalarFn::Not, a) => Expr::Not(Box::new(self.truth(&a[0], out)?)),
            Scalar::Apply(f, a) if op(f).is_some() && is_integer(&a[0]) && is_integer(&a[1]) => {
                Expr::cmp(op(f).expect("checked"), self.index(&a[0], out)?, self.index(&a[1], out)?)
            }
            Scalar::Apply(f, a) if op(f).is_some() => {
                Expr::cmp(op(f).expect("checked"), self.value(&a[0], out)?, self.value(&a[1], out)?)
            }
            other => Expr::cmp(CmpOp::Ne, self.value(other, out)?, Expr::Float(0.0)),
        })
    }

    /// A reduction's value, computed into a register by loops appended to `out`.
    fn reduction(&mut self, r: &Scalar, out: &mut Vec<Stmt>) -> Result<Reg, ScheduleError> {
        let Scalar::Reduce { op, vars, body } = r else { unreachable!("only reductions are hoisted") };
        if *op == ReduceOp::Softmax {
            return Err(err("a softmax outside the reduction over its index"));
        }
        if let (ReduceOp::Sum, Some((inner, f, factor))) = (op, invariant_factor(body, vars)) {
            // sum(x * c) = sum(x) * c: attention's `/ sqrt(d)` once per score,
            // not once per product.
            let inner = Scalar::Reduce { op: ReduceOp::Sum, vars: vars.clone(), body: Box::new(inner) };
            let sum = self.reduced(&inner, out)?;
            let factor = self.value(&factor, out)?;
            let reg = self.reg();
            out.push(Stmt::Set { reg, value: Expr::call(f, vec![sum, factor]) });
            return Ok(reg);
        }
        self.hoist(body, out)?;
        let acc = self.reg();
        let count = self.reg();
        let init = match op {
            ReduceOp::Sum | ReduceOp::Mean => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
            ReduceOp::Softmax => unreachable!(),
        };
        out.push(Stmt::Set { reg: acc, value: Expr::Float(init) });
        if *op == ReduceOp::Mean {
            out.push(Stmt::Set { reg: count, value: Expr::Float(0.0) });
        }
        let op = *op;
        self.nest_within(vars, true, out, &mut |em, out| {
            let cond = em.cond_over(vars, out)?;
            let mut point = Vec::new();
            em.hoist(body, &mut point)?;
            let v = em.value(body, &mut point)?;
            let combined = match op {
                ReduceOp::Sum | ReduceOp::Mean => Expr::call(ScalarFn::Add, vec![Expr::Reg(acc), v]),
                ReduceOp::Max => Expr::call(ScalarFn::Max, vec![Expr::Reg(acc), v]),
                ReduceOp::Min => Expr::call(ScalarFn::Min, vec![Expr::Reg(acc), v]),
                ReduceOp::Softmax => unreachable!(),
            };
            point.push(Stmt::Set { reg: acc, value: combined });
            if op == ReduceOp::Mean {
                point.push(Stmt::Set {
                    reg: count,
                    value: Expr::call(ScalarFn::Add, vec![Expr::Reg(count), Expr::Float(1.0)]),
                });
            }
            match cond {
                Some(c) => out.push(Stmt::If { cond: c, then: point }),
                None => out.extend(point),
            }
            Ok(())
        })?;
        if op == ReduceOp::Mean {
            let mean = Expr::select(
                Expr::cmp(CmpOp::Gt, Expr::Reg(count), Expr::Float(0.0)),
                Expr::call(ScalarFn::Div, vec![Expr::Reg(acc), Expr::Reg(count)]),
                Expr::Float(0.0),
            );
            out.push(Stmt::Set { reg: acc, value: mean });
        }
        Ok(acc)
    }

    /// An index expression (`i64`).
    pub fn index(&mut self, e: &Scalar, out: &mut Vec<Stmt>) -> Result<Expr, ScheduleError> {
        Ok(match e {
            Scalar::Const(v) => Expr::Int(*v as i64),
            Scalar::Index(i) => self.bound[*i as usize].clone().ok_or_else(|| err("an index read outside its loop"))?,
            Scalar::Size(s) => self.dim(&Dim::Sym(s.as_str().into()))?,
            Scalar::Apply(ScalarFn::Neg, a) => Expr::int(IntOp::Sub, Expr::Int(0), self.index(&a[0], out)?),
            Scalar::Apply(f @ (ScalarFn::Add | ScalarFn::Sub | ScalarFn::Mul | ScalarFn::Div), a) => {
                let op = match f {
                    ScalarFn::Add => IntOp::Add,
                    ScalarFn::Sub => IntOp::Sub,
                    ScalarFn::Mul => IntOp::Mul,
                    _ => IntOp::Div,
                };
                let (x, y) = (self.index(&a[0], out)?, self.index(&a[1], out)?);
                let e = Expr::int(op, x, y);
                if op == IntOp::Div && matches!(e, Expr::Int2(..)) && reads_only(&e, &self.grid_level) {
                    if let Some((_, v)) = self.prelude.iter().find(|(p, _)| *p == e) {
                        return Ok(Expr::Var(*v));
                    }
                    let v = self.var();
                    self.prelude.push((e, v));
                    return Ok(Expr::Var(v));
                }
                e
            }
            Scalar::Load { .. } => Expr::ToInt(Box::new(self.value(e, out)?)),
            other => return Err(err(format!("an index expression the scheduler does not handle: {other:?}"))),
        })
    }

    /// The values an integer index expression can take, where its loop indices'
    /// extents are known (`None`: unknown).
    fn range(&self, e: &Scalar) -> Option<(i64, i64)> {
        Some(match e {
            Scalar::Const(c) if c.fract() == 0.0 => (*c as i64, *c as i64),
            Scalar::Index(v) => (0, self.loop_vars[*v as usize].extent.known()? - 1),
            Scalar::Apply(f @ (ScalarFn::Add | ScalarFn::Sub | ScalarFn::Mul), a) => {
                let ((a0, a1), (b0, b1)) = (self.range(&a[0])?, self.range(&a[1])?);
                match f {
                    ScalarFn::Add => (a0 + b0, a1 + b1),
                    ScalarFn::Sub => (a0 - b1, a1 - b0),
                    _ => {
                        let p = [a0 * b0, a0 * b1, a1 * b0, a1 * b1];
                        (*p.iter().min()?, *p.iter().max()?)
                    }
                }
            }
            // Index division floors (Euclidean), monotone for a positive divisor.
            Scalar::Apply(ScalarFn::Div, a) => match (self.range(&a[0])?, &a[1]) {
                ((lo, hi), Scalar::Const(c)) if *c >= 1.0 && c.fract() == 0.0 => {
                    let c = *c as i64;
                    (lo.div_euclid(c), hi.div_euclid(c))
                }
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Element offset of `indices` in a row-major `shape`, clamped into range,
    /// and the condition that they were in range (`None`: always).
    fn offset(
        &mut self,
        shape: &[Dim],
        indices: &[Scalar],
        out: &mut Vec<Stmt>,
    ) -> Result<(Expr, Option<Expr>), ScheduleError> {
        let mut offset = Expr::Int(0);
        let mut inside: Option<Expr> = None;
        for (d, ix) in shape.iter().zip(indices) {
            let extent = self.dim(d)?;
            let at = self.index(ix, out)?;
            let safe = match ix {
                Scalar::Index(v) => self.loop_vars[*v as usize].extent == *d,
                // A grouped head's `h / g`: in range whatever `h` is.
                _ => d.known().zip(self.range(ix)).is_some_and(|(n, (lo, hi))| lo >= 0 && hi < n),
            };
            let at = if safe {
                at
            } else {
                let ok = Expr::and(
                    Expr::cmp(CmpOp::Ge, at.clone(), Expr::Int(0)),
                    Expr::cmp(CmpOp::Lt, at.clone(), extent.clone()),
                );
                inside = Some(match inside {
                    Some(prev) => Expr::and(prev, ok),
                    None => ok,
                });
                // Into [0, extent - 1], and 0 for an empty axis (a buffer has at
                // least one element to read, whose value the select drops).
                let high = Expr::int(IntOp::Sub, extent.clone(), Expr::Int(1));
                Expr::int(IntOp::Max, Expr::int(IntOp::Min, at, high), Expr::Int(0))
            };
            offset = Expr::add(Expr::mul(offset, extent), at);
        }
        Ok((offset, inside))
    }

    fn load(
        &mut self,
        param: u32,
        shape: &[Dim],
        indices: &[Scalar],
        out: &mut Vec<Stmt>,
    ) -> Result<Expr, ScheduleError> {
        let (index, inside) = self.offset(shape, indices, out)?;
        let load = Expr::Load { param, index: Box::new(index) };
        Ok(match inside {
            Some(ok) => Expr::select(ok, load, Expr::Float(0.0)),
            None => load,
        })
    }

    /// The flat offset of a point of `shape` given by loop indices, for stores.
    pub fn store_offset(&mut self, shape: &[Dim], vars: &[u32]) -> Result<Expr, ScheduleError> {
        let mut out = Vec::new();
        let indices: Vec<Scalar> = vars.iter().map(|&v| Scalar::Index(v)).collect();
        Ok(self.offset(shape, &indices, &mut out)?.0)
    }

    /// A value (`f32`).
    pub fn value(&mut self, e: &Scalar, out: &mut Vec<Stmt>) -> Result<Expr, ScheduleError> {
        if let Some((_, reg)) = self.cache.iter().rev().find(|(s, _)| s == e) {
            return Ok(Expr::Reg(*reg));
        }
        if let Some((_, j, param)) = self.rows.iter().find(|(x, _, _)| x == e) {
            let at = self.bound[*j as usize].clone().ok_or_else(|| err("a scratch row read outside its index"))?;
            return Ok(Expr::Load { param: *param, index: Box::new(at) });
        }
        let flag = |c: Expr| Expr::select(c, Expr::Float(1.0), Expr::Float(0.0));
        let truth = |x: Expr| Expr::cmp(CmpOp::Ne, x, Expr::Float(0.0));
        Ok(match e {
            Scalar::Const(v) => Expr::Float(*v),
            Scalar::Index(_) | Scalar::Size(_) => Expr::ToFloat(Box::new(self.index(e, out)?)),
            Scalar::Load { operand, indices } => {
                let param = self.operand_params[*operand as usize];
                let shape = self.params[param as usize].shape.clone();
                self.load(param, &shape, indices, out)?
            }
            Scalar::State { state, indices } => {
                let (param, base) = self.states[*state as usize].clone();
                let shape = self.params[param as usize].shape.clone();
                let (index, inside) = self.offset(&shape, indices, out)?;
                let load = Expr::Load { param, index: Box::new(Expr::add(base, index)) };
                match inside {
                    Some(ok) => Expr::select(ok, load, Expr::Float(0.0)),
                    None => load,
                }
            }
            Scalar::Apply(f, args) => {
                let vals = args.iter().map(|a| self.value(a, out)).collect::<Result<Vec<_>, _>>()?;
                let cmp = |op| Ok::<_, ScheduleError>(flag(Expr::cmp(op, vals[0].clone(), vals[1].clone())));
                match f {
                    ScalarFn::Lt => cmp(CmpOp::Lt)?,
                    ScalarFn::Le => cmp(CmpOp::Le)?,
                    ScalarFn::Gt => cmp(CmpOp::Gt)?,
                    ScalarFn::Ge => cmp(CmpOp::Ge)?,
                    ScalarFn::Eq => cmp(CmpOp::Eq)?,
                    ScalarFn::Ne => cmp(CmpOp::Ne)?,
                    ScalarFn::And => flag(Expr::and(truth(vals[0].clone()), truth(vals[1].clone()))),
                    ScalarFn::Or => flag(Expr::Or(Box::new(truth(vals[0].clone())), Box::new(truth(vals[1].clone())))),
                    ScalarFn::Not => flag(Expr::cmp(CmpOp::Eq, vals[0].clone(), Expr::Float(0.0))),
                    f => Expr::call(*f, vals),
                }
            }
            Scalar::Select(c, a, b) => {
                let c = self.truth(c, out)?;
                Expr::select(c, self.value(a, out)?, self.value(b, out)?)
            }
            Scalar::Reduce { op: ReduceOp::Softmax, vars, body } => {
                // exp(s - max) / sum exp(s - max), the normalisers over `vars`.
                let (max, sum) = normalisers(vars, body);
                let m = self.reduced(&max, out)?;
                let z = self.reduced(&sum, out)?;
                let s = self.value(body, out)?;
                let v = Expr::call(
                    ScalarFn::Div,
                    vec![Expr::call(ScalarFn::Exp, vec![Expr::call(ScalarFn::Sub, vec![s, m])]), z],
                );
                match self.cond_over(vars, out)? {
                    Some(c) => Expr::select(c, v, Expr::Float(0.0)),
                    None => v,
                }
            }
            Scalar::Reduce { .. } => self.reduced(e, out)?,
        })
    }

    /// A reduction: from the enclosing scopes if computed there, else now.
    fn reduced(&mut self, r: &Scalar, out: &mut Vec<Stmt>) -> Result<Expr, ScheduleError> {
        if let Some((_, reg)) = self.cache.iter().rev().find(|(s, _)| s == r) {
            return Ok(Expr::Reg(*reg));
        }
        let reg = self.reduction(r, out)?;
        self.cache.push((r.clone(), reg));
        Ok(Expr::Reg(reg))
    }
}

/// The terms of a conjunction `a && b && ...`.
fn conjuncts(c: &Scalar) -> Vec<&Scalar> {
    match c {
        Scalar::Apply(ScalarFn::And, a) => {
            let mut out = conjuncts(&a[0]);
            out.extend(conjuncts(&a[1]));
            out
        }
        other => vec![other],
    }
}

/// `x * c`, `c * x` or `x / c` with `c` free of `vars`: `(x, Mul or Div, c)`.
fn invariant_factor(body: &Scalar, vars: &[u32]) -> Option<(Scalar, ScalarFn, Scalar)> {
    let free = |x: &Scalar| free_vars(x).iter().all(|v| !vars.contains(v));
    match body {
        Scalar::Apply(ScalarFn::Mul, a) if free(&a[1]) => Some((a[0].clone(), ScalarFn::Mul, a[1].clone())),
        Scalar::Apply(ScalarFn::Mul, a) if free(&a[0]) => Some((a[1].clone(), ScalarFn::Mul, a[0].clone())),
        Scalar::Apply(ScalarFn::Div, a) if free(&a[1]) => Some((a[0].clone(), ScalarFn::Div, a[1].clone())),
        _ => None,
    }
}

/// The largest subexpressions of `e` that do work (an operation, a reduction)
/// and do not read index `v`.
fn free_of(e: &Scalar, v: u32, out: &mut Vec<Scalar>) {
    let works = matches!(e, Scalar::Apply(..) | Scalar::Select(..) | Scalar::Reduce { .. });
    if works && !free_vars(e).contains(&v) {
        out.push(e.clone());
        return;
    }
    match e {
        Scalar::Apply(_, a) => a.iter().for_each(|x| free_of(x, v, out)),
        Scalar::Select(c, a, b) => [c, a, b].into_iter().for_each(|x| free_of(x, v, out)),
        _ => {}
    }
}

/// A subexpression worth a scratch row: inside a reduction over one index `j`
/// that depends on the inner result index `e`, the largest term free of `e`
/// that depends on `j` and does reduction work itself (attention's
/// probabilities, whose scores would otherwise be recomputed for every `e`).
fn row_candidate(e: &Scalar, inner: u32) -> Option<(u32, Scalar)> {
    fn costly(x: &Scalar) -> bool {
        x.any(&|y| matches!(y, Scalar::Reduce { .. }))
    }
    // The innermost such term: attention's scores rather than its
    // probabilities, so the softmax's passes read them from the row.
    fn largest(x: &Scalar, j: u32, inner: u32) -> Option<Scalar> {
        let deeper = match x {
            Scalar::Apply(_, a) => a.iter().find_map(|y| largest(y, j, inner)),
            Scalar::Select(c, a, b) => [c, a, b].into_iter().find_map(|y| largest(y, j, inner)),
            Scalar::Reduce { op: ReduceOp::Softmax, body, .. } => largest(body, j, inner),
            _ => None,
        };
        let free = free_vars(x);
        let here = !free.contains(&inner) && free.contains(&j) && costly(x);
        deeper.or_else(|| here.then(|| x.clone()))
    }
    match e {
        Scalar::Reduce { op, vars, body }
            if *op != ReduceOp::Softmax && vars.len() == 1 && free_vars(e).contains(&inner) =>
        {
            largest(body, vars[0], inner).map(|x| (vars[0], x)).or_else(|| row_candidate(body, inner))
        }
        Scalar::Reduce { body, .. } => row_candidate(body, inner),
        Scalar::Apply(_, a) => a.iter().find_map(|y| row_candidate(y, inner)),
        Scalar::Select(c, a, b) => [c, a, b].into_iter().find_map(|y| row_candidate(y, inner)),
        _ => None,
    }
}

/// Whether an expression is integer arithmetic on indices, sizes and integer
/// constants (so it compares exactly as `i64`).
fn is_integer(e: &Scalar) -> bool {
    match e {
        Scalar::Const(v) => v.fract() == 0.0,
        Scalar::Index(_) | Scalar::Size(_) => true,
        Scalar::Apply(ScalarFn::Add | ScalarFn::Sub | ScalarFn::Mul | ScalarFn::Neg, a) => a.iter().all(is_integer),
        _ => false,
    }
}

/// Whether an index expression reads no loop variable but `vars`.
fn reads_only(e: &Expr, vars: &[Var]) -> bool {
    match e {
        Expr::Var(v) => vars.contains(v),
        Expr::Int(_) | Expr::Dim(_) => true,
        Expr::Int2(_, a, b) => reads_only(a, vars) && reads_only(b, vars),
        _ => false,
    }
}

impl Emitter<'_> {
    /// A scan state's initial value at element `offset` of the state.
    fn initial(&self, st: &crate::ir::ops::State, offset: Expr) -> Result<Expr, ScheduleError> {
        Ok(match st.init {
            StateInit::Const(v) => Expr::Float(v),
            StateInit::Operand(o) => {
                let param = self.operand_params[o as usize];
                // Broadcast from the right: a tensor of the state's last axes
                // (a weight shared by the batch) repeats every `size` elements.
                let from = &self.params[param as usize].shape;
                let kept: Vec<&Dim> = from.iter().skip_while(|d| d.known() == Some(1)).collect();
                let suffix = st.shape.len() >= kept.len()
                    && st.shape[st.shape.len() - kept.len()..].iter().eq(kept.iter().copied());
                if !suffix {
                    return Err(err(format!("scan state `{}` starts from a tensor of another shape", st.name)));
                }
                let index = match kept.len() == st.shape.len() {
                    true => offset,
                    false => {
                        let size = kept.iter().try_fold(Expr::Int(1), |acc, d| Ok(Expr::mul(acc, self.dim(d)?)))?;
                        Expr::int(IntOp::Rem, offset, size)
                    }
                };
                Expr::Load { param, index: Box::new(index) }
            }
        })
    }

    /// Places the grid-level divisions after the `lets` coordinate statements.
    fn finish(&mut self, body: &mut Vec<Stmt>, lets: usize) {
        let prelude = std::mem::take(&mut self.prelude).into_iter().map(|(value, var)| Stmt::Let { var, value });
        body.splice(lets..lets, prelude);
    }
}

/// A softmax's normalisers over `vars`: `max[vars] s` and `sum[vars] exp(s - max)`.
fn normalisers(vars: &[u32], s: &Scalar) -> (Scalar, Scalar) {
    let max = Scalar::Reduce { op: ReduceOp::Max, vars: vars.to_vec(), body: Box::new(s.clone()) };
    let shifted = Scalar::Apply(ScalarFn::Exp, vec![Scalar::Apply(ScalarFn::Sub, vec![s.clone(), max.clone()])]);
    (max.clone(), Scalar::Reduce { op: ReduceOp::Sum, vars: vars.to_vec(), body: Box::new(shifted) })
}

/// Loop indices an expression reads and does not bind itself.
pub fn free_vars(e: &Scalar) -> BTreeSet<u32> {
    match e {
        Scalar::Index(v) => BTreeSet::from([*v]),
        Scalar::Reduce { op, vars, body } => {
            let mut f = free_vars(body);
            if *op != ReduceOp::Softmax {
                for v in vars {
                    f.remove(v);
                }
            }
            f
        }
        Scalar::Load { indices, .. } | Scalar::State { indices, .. } => indices.iter().flat_map(free_vars).collect(),
        Scalar::Apply(_, a) => a.iter().flat_map(free_vars).collect(),
        Scalar::Select(c, a, b) => [c, a, b].into_iter().flat_map(|x| free_vars(x)).collect(),
        Scalar::Const(_) | Scalar::Size(_) => BTreeSet::new(),
    }
}

/// The outermost reductions of `e` (softmaxes by their normalisers) that read
/// only `bound` indices.
fn hoistable(e: &Scalar, bound: &BTreeSet<u32>, rows: &[Scalar], out: &mut Vec<Scalar>) {
    if rows.contains(e) {
        return;
    }
    match e {
        Scalar::Reduce { op: ReduceOp::Softmax, vars, body } => {
            let mut free = free_vars(body);
            vars.iter().for_each(|v| {
                free.remove(v);
            });
            if free.is_subset(bound) {
                let (max, sum) = normalisers(vars, body);
                out.push(max);
                out.push(sum);
            }
            hoistable(body, bound, rows, out);
        }
        Scalar::Reduce { body, .. } => {
            if free_vars(e).is_subset(bound) {
                out.push(e.clone());
            } else {
                hoistable(body, bound, rows, out);
            }
        }
        Scalar::Load { indices, .. } | Scalar::State { indices, .. } => {
            indices.iter().for_each(|i| hoistable(i, bound, rows, out))
        }
        Scalar::Apply(_, a) => a.iter().for_each(|x| hoistable(x, bound, rows, out)),
        Scalar::Select(c, a, b) => [c, a, b].into_iter().for_each(|x| hoistable(x, bound, rows, out)),
        Scalar::Index(_) | Scalar::Const(_) | Scalar::Size(_) => {}
    }
}

/// The body of a generic kernel: parameters are the operands, then the result.
/// The grid covers every result axis but the last, which is a loop inside.
/// The body of a generic kernel: its statements, grid, variables, registers,
/// and the scratch row each grid point needs, if any.
pub type GenericKernel = (Vec<Stmt>, Expr, u32, u32, Option<Expr>);

pub fn generic(dims: &[String], gen: &Generic, params: Vec<Param>) -> Result<GenericKernel, ScheduleError> {
    let result = params.len() as u32 - 1;
    let mut em = Emitter::new(dims, &gen.vars, params, gen.cond.as_ref());
    let rank = gen.rank as u32;
    let (rows, inner): (Vec<u32>, Vec<u32>) =
        if rank == 0 { (vec![], vec![]) } else { ((0..rank - 1).collect(), vec![rank - 1]) };
    // Grid point g -> row indices, last varying fastest.
    let mut grid = Expr::Int(1);
    let mut stride = Expr::Int(1);
    let mut body = Vec::new();
    for &v in rows.iter().rev() {
        let extent = em.dim(&gen.vars[v as usize].extent)?;
        let at = Expr::int(IntOp::Rem, Expr::int(IntOp::Div, Expr::Var(Var(0)), stride.clone()), extent.clone());
        let var = em.var();
        body.push(Stmt::Let { var, value: at });
        em.grid_level.push(var);
        em.bind(v, Expr::Var(var));
        stride = Expr::mul(stride, extent.clone());
        grid = Expr::mul(grid, extent);
    }
    let lets = body.len();
    // Terms free of the inner result index, per value of a reduction index:
    // computed once per grid point into its scratch row.
    let mut scratch = None;
    if let Some((j, x)) = inner.first().and_then(|&e| row_candidate(&gen.body, e)) {
        let param = result + 1;
        let extent = gen.vars[j as usize].extent.clone();
        em.params.push(Param { shape: vec![extent.clone()] });
        em.hoist(&x, &mut body)?;
        em.nest_within(&[j], true, &mut body, &mut |em, out| {
            let v = em.value(&x, out)?;
            let at = em.bound[j as usize].clone().expect("bound by the loop");
            out.push(Stmt::Store { param, index: at, value: v });
            Ok(())
        })?;
        em.rows.push((x, j, param));
        scratch = Some(em.dim(&extent)?);
    }
    let result_vars: Vec<u32> = (0..rank).collect();
    let out_shape: Vec<Dim> = gen.vars[..gen.rank].iter().map(|v| v.extent.clone()).collect();
    // `sum[j] t` with an inner output index the condition does not read: the
    // output row accumulates over `j` outside and the inner index runs inside,
    // contiguous (attention's weighted sum of values, vectorised over the head).
    if let (Some(&e), Scalar::Reduce { op: ReduceOp::Sum, vars, body: t }) = (inner.first(), &gen.body) {
        let cond_free = gen.cond.as_ref().map(free_vars).unwrap_or_default();
        // (A condition on output indices alone masks whole outputs: not here.)
        let cond_ok =
            gen.cond.is_none() || (!cond_free.contains(&e) && !cond_free.iter().all(|v| result_vars.contains(v)));
        if vars.len() == 1 && cond_ok {
            let j = vars[0];
            em.hoist(&gen.body, &mut body)?;
            em.nest(&inner, &mut body, &mut |em, out| {
                let index = em.store_offset(&out_shape, &result_vars)?;
                out.push(Stmt::Store { param: result, index, value: Expr::Float(0.0) });
                Ok(())
            })?;
            em.nest_within(&[j], true, &mut body, &mut |em, out| {
                let cond = em.cond_over(&[j], out)?;
                let mut point = Vec::new();
                em.hoist(t, &mut point)?;
                // Terms free of the inner index, once per `j` (a probability).
                let mut invariant = Vec::new();
                free_of(t, e, &mut invariant);
                for x in invariant {
                    if !em.cache.iter().any(|(c, _)| *c == x) {
                        let v = em.value(&x, &mut point)?;
                        let reg = em.reg();
                        point.push(Stmt::Set { reg, value: v });
                        em.cache.push((x, reg));
                    }
                }
                em.nest(&inner, &mut point, &mut |em, out| {
                    let v = em.value(t, out)?;
                    let index = em.store_offset(&out_shape, &result_vars)?;
                    let sum = Expr::call(
                        ScalarFn::Add,
                        vec![Expr::Load { param: result, index: Box::new(index.clone()) }, v],
                    );
                    out.push(Stmt::Store { param: result, index, value: sum });
                    Ok(())
                })?;
                match cond {
                    Some(c) => out.push(Stmt::If { cond: c, then: point }),
                    None => out.extend(point),
                }
                Ok(())
            })?;
            em.finish(&mut body, lets);
            return Ok((body, grid, em.next_var, em.next_reg, scratch));
        }
    }
    em.hoist(&gen.body, &mut body)?;
    em.nest(&inner, &mut body, &mut |em, out| {
        let v = em.value(&gen.body, out)?;
        let v = match em.result_cond(&result_vars, out)? {
            Some(c) => Expr::select(c, v, Expr::Float(0.0)),
            None => v,
        };
        let index = em.store_offset(&out_shape, &result_vars)?;
        out.push(Stmt::Store { param: result, index, value: v });
        Ok(())
    })?;
    em.finish(&mut body, lets);
    Ok((body, grid, em.next_var, em.next_reg, scratch))
}

/// How a scan is laid out: see [`scan_layout`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScanLayout {
    /// The leading state axes whose slices evolve independently (every statement
    /// reads and writes its own slice): the grid runs over them.
    pub independent: usize,
    /// For each statement (updates, then outputs), the loop indices that walk
    /// the independent axes.
    pub slice_vars: Vec<Vec<u32>>,
    /// Each state is updated by one statement reading only its own element, so
    /// it can be updated in place (else two slots, swapped by step parity).
    pub in_place: bool,
}

/// The independent axes of a scan's states and whether it updates in place.
pub fn scan_layout(scan: &ScanOp) -> ScanLayout {
    let stmts: Vec<&crate::ir::ops::ScanStmt> = scan.updates.iter().chain(&scan.outputs).collect();
    let reads = |st: &crate::ir::ops::ScanStmt| {
        let mut out: Vec<(u32, Vec<Scalar>)> = Vec::new();
        let mut grab = |e: &Scalar| {
            if let Scalar::State { state, indices } = e {
                out.push((*state, indices.clone()));
            }
        };
        st.body.visit(&mut grab);
        if let Some(c) = &st.cond {
            c.visit(&mut grab);
        }
        out
    };
    let max = scan.states.iter().map(|s| s.shape.len()).min().unwrap_or(0);
    let mut best = ScanLayout { independent: 0, slice_vars: vec![Vec::new(); stmts.len()], in_place: false };
    'width: for p in (1..=max).rev() {
        // Every state has the same extents on the independent axes.
        if scan.states.iter().any(|s| s.shape[..p] != scan.states[0].shape[..p]) {
            continue;
        }
        let mut slice_vars = Vec::new();
        for (i, st) in stmts.iter().enumerate() {
            let is_update = i < scan.updates.len();
            let state_reads = reads(st);
            let vars: Vec<u32> = if is_update {
                st.left[..p].to_vec()
            } else {
                let Some((_, first)) = state_reads.first() else { continue 'width };
                let vars: Option<Vec<u32>> =
                    first[..p].iter().map(|x| if let Scalar::Index(v) = x { Some(*v) } else { None }).collect();
                match vars {
                    Some(v) if v.iter().all(|x| st.left.contains(x)) => v,
                    _ => continue 'width,
                }
            };
            let own =
                state_reads.iter().all(|(_, idx)| idx[..p].iter().zip(&vars).all(|(x, v)| *x == Scalar::Index(*v)));
            if !own {
                continue 'width;
            }
            slice_vars.push(vars);
        }
        best = ScanLayout { independent: p, slice_vars, in_place: false };
        break;
    }
    let single_updates =
        (0..scan.states.len()).all(|k| scan.updates.iter().filter(|u| u.target as usize == k).count() == 1);
    best.in_place = single_updates
        && scan.updates.iter().all(|u| {
            reads(u).iter().all(|(k, idx)| {
                *k == u.target
                    && idx.len() == u.left.len()
                    && idx.iter().zip(&u.left).all(|(x, v)| *x == Scalar::Index(*v))
            })
        });
    best
}

/// The body of a scan kernel. Parameters: the operands, the results, then one
/// buffer per state: one slot updated in place, or two (this step's and the
/// next) swapped by the parity of the step. The grid runs over the independent
/// slices of the states (`scan_layout`); each grid point runs every step of its
/// slice.
pub fn scan(
    dims: &[String],
    scan: &ScanOp,
    params: Vec<Param>,
    n_operands: usize,
    layout: &ScanLayout,
    chunks: Option<&Chunks>,
) -> Result<(Vec<Stmt>, Expr, u32, u32), ScheduleError> {
    let mut em = Emitter::new(dims, &scan.vars, params, None);
    let n_results = em.params.len() - n_operands - scan.states.len();
    let state_param = |k: usize| (n_operands + n_results + k) as u32;
    let sizes: Vec<Expr> = scan.states.iter().map(|s| em.product(&s.shape)).collect::<Result<_, _>>()?;
    let p = layout.independent;
    // Grid point -> index on each independent axis, the last varying fastest.
    let mut slice: Vec<Expr> = vec![Expr::Int(0); p];
    let mut grid = Expr::Int(1);
    let mut body = Vec::new();
    if let Some(first) = scan.states.first() {
        let mut stride = Expr::Int(1);
        for a in (0..p).rev() {
            let extent = em.dim(&first.shape[a])?;
            let var = em.var();
            let at = Expr::int(IntOp::Rem, Expr::int(IntOp::Div, Expr::Var(Var(0)), stride.clone()), extent.clone());
            body.push(Stmt::Let { var, value: at });
            em.grid_level.push(var);
            slice[a] = Expr::Var(var);
            stride = Expr::mul(stride, extent.clone());
            grid = Expr::mul(grid, extent);
        }
    }
    // A chunk's states are at `chunk * size` in their buffers (one slot each:
    // chunked scans update in place).
    let mut lets = p;
    let mut chunk_base: Vec<Expr> = vec![Expr::Int(0); sizes.len()];
    let mut first_step = Expr::Int(0);
    let mut steps_extent = em.dim(&scan.vars[scan.axis as usize].extent)?;
    let mut chunk = None;
    if let Some(ch) = chunks {
        let chunk = *chunk.insert(em.var());
        body.push(Stmt::Let { var: chunk, value: Expr::int(IntOp::Div, Expr::Var(Var(0)), grid.clone()) });
        em.grid_level.push(chunk);
        lets += 1;
        grid = Expr::mul(grid, ch.runs.clone());
        chunk_base = sizes.iter().map(|s| Expr::mul(Expr::Var(chunk), s.clone())).collect();
        // Computed once per grid point: the chunk's first step and its length.
        let len = steps_extent;
        let [per_chunk, first, steps] = [em.var(), em.var(), em.var()];
        let rest = Expr::int(IntOp::Sub, len.clone(), Expr::Var(first));
        body.extend([
            Stmt::Let { var: per_chunk, value: ceil_div(len, ch.count.clone()) },
            Stmt::Let { var: first, value: Expr::mul(Expr::Var(chunk), Expr::Var(per_chunk)) },
            Stmt::Let {
                var: steps,
                value: Expr::int(IntOp::Max, Expr::Int(0), Expr::int(IntOp::Min, Expr::Var(per_chunk), rest)),
            },
        ]);
        em.grid_level.extend([per_chunk, first, steps]);
        lets += 3;
        first_step = Expr::Var(first);
        steps_extent = Expr::Var(steps);
    }

    // Slot 0 starts from the initial value; a resumed chunk but the first from
    // its carry, already there.
    let mut init = Vec::new();
    for (k, st) in scan.states.iter().enumerate() {
        let mut loops: Vec<(Var, Expr)> = Vec::new();
        let mut offset = Expr::Int(0);
        for (a, d) in st.shape.iter().enumerate() {
            let at = if a < p {
                slice[a].clone()
            } else {
                let var = em.var();
                loops.push((var, em.dim(d)?));
                Expr::Var(var)
            };
            offset = Expr::add(Expr::mul(offset, em.dim(d)?), at);
        }
        let value = em.initial(st, offset.clone())?;
        let index = Expr::add(chunk_base[k].clone(), offset);
        let mut code = vec![Stmt::Store { param: state_param(k), index, value }];
        for (var, extent) in loops.into_iter().rev() {
            code = vec![Stmt::For { var, extent, kind: LoopKind::Serial, body: code }];
        }
        init.extend(code);
    }
    match (chunks, chunk) {
        (Some(c), Some(chunk)) if c.resume => {
            body.push(Stmt::If { cond: Expr::cmp(CmpOp::Eq, Expr::Var(chunk), Expr::Int(0)), then: init })
        }
        _ => body.extend(init),
    }

    let step_var = em.var();
    let (now, next) = if layout.in_place {
        (Expr::Int(0), Expr::Int(0))
    } else {
        let two = |e: Expr| Expr::int(IntOp::Rem, e, Expr::Int(2));
        (two(Expr::Var(step_var)), two(Expr::add(Expr::Var(step_var), Expr::Int(1))))
    };
    em.bind(scan.axis, Expr::add(first_step, Expr::Var(step_var)));
    let mut steps = Vec::new();
    let reads = |em: &mut Emitter, slot: &Expr| {
        // Reductions read before are of the other slot.
        em.cache.clear();
        em.states = (0..scan.states.len())
            .map(|k| (state_param(k), Expr::add(chunk_base[k].clone(), Expr::mul(slot.clone(), sizes[k].clone()))))
            .collect();
    };
    for (k, st) in scan.states.iter().enumerate() {
        if !scan.updates.iter().any(|u| u.target as usize == k) {
            return Err(err(format!("scan state `{}` is never updated", st.name)));
        }
    }
    let stmts: Vec<(usize, &crate::ir::ops::ScanStmt)> =
        scan.updates.iter().map(|u| (0, u)).chain(scan.outputs.iter().map(|o| (1, o))).collect();
    reads(&mut em, &now);
    for (i, (kind, st)) in stmts.into_iter().enumerate() {
        if kind == 1 && i == scan.updates.len() {
            // Outputs read the new states.
            reads(&mut em, &next);
        }
        let fixed = &layout.slice_vars[i];
        for (a, v) in fixed.iter().enumerate() {
            em.bind(*v, slice[a].clone());
        }
        em.cond = st.cond.as_ref();
        let rest: Vec<u32> = st.left.iter().copied().filter(|v| !fixed.contains(v) && *v != scan.axis).collect();
        let left = st.left.clone();
        let (param, shape, base) = if kind == 0 {
            let k = st.target as usize;
            let base = Expr::add(chunk_base[k].clone(), Expr::mul(next.clone(), sizes[k].clone()));
            (state_param(k), scan.states[k].shape.clone(), base)
        } else {
            let r = (n_operands + st.target as usize) as u32;
            (r, em.params[r as usize].shape.clone(), Expr::Int(0))
        };
        let target = st.target;
        em.hoist(&st.body, &mut steps)?;
        em.nest(&rest, &mut steps, &mut |em, out| {
            let mut v = em.value(&st.body, out)?;
            if let Some(c) = em.result_cond(&left, out)? {
                let otherwise = if kind == 0 {
                    let own = left.iter().map(|&v| Scalar::Index(v)).collect();
                    em.value(&Scalar::State { state: target, indices: own }, out)?
                } else {
                    Expr::Float(0.0)
                };
                v = Expr::select(c, v, otherwise);
            }
            let index = Expr::add(base.clone(), em.store_offset(&shape, &left)?);
            out.push(Stmt::Store { param, index, value: v });
            Ok(())
        })?;
        for v in fixed {
            em.unbind(*v);
        }
    }
    body.push(Stmt::For { var: step_var, extent: steps_extent, kind: LoopKind::Serial, body: steps });
    em.finish(&mut body, lets);
    Ok((body, grid, em.next_var, em.next_reg))
}

/// A scan split along its axis: `count` chunks of `ceil(L / count)` steps, a
/// grid point per chunk and slice, the kernel covering chunks `0..runs`.
/// Chunked scans update their states in place; a state buffer holds one copy
/// per chunk.
pub struct Chunks {
    pub count: Expr,
    pub runs: Expr,
    /// Each chunk starts from what its copy of the states holds (its carry)
    /// instead of the scan's initial values.
    pub resume: bool,
}

/// `ceil(a / b)` for a positive `b`.
pub fn ceil_div(a: Expr, b: Expr) -> Expr {
    Expr::int(IntOp::Div, Expr::add(a, Expr::add(b.clone(), Expr::Int(-1))), b)
}

/// The carries of a chunked diagonal scan: for each slice (grid point) and each
/// state element, a serial pass over the chunks turns the chunk ends (each
/// chunk's end state from zero, and its transition, the product of the
/// coefficients) into each chunk's starting state,
/// `carry[c + 1] = transition[c] * carry[c] + end[c]`, `carry[0]` the initial
/// value, written over the ends. Parameters: the operands, then each state's
/// buffer, then each state's transitions. Only a split scan needs it: the
/// first chunk starts from the initial value itself.
pub fn scan_carries(
    dims: &[String],
    scan: &ScanOp,
    params: Vec<Param>,
    n_operands: usize,
    layout: &ScanLayout,
    count: &Expr,
) -> Result<(Vec<Stmt>, Expr, u32, u32), ScheduleError> {
    let mut em = Emitter::new(dims, &scan.vars, params, None);
    let p = layout.independent;
    let n = scan.states.len();
    let Some(first) = scan.states.first() else { return Err(err("a scan without states")) };
    let grid = em.product(&first.shape[..p])?;
    let (carry, end) = (em.reg(), em.reg());
    let chunks = em.var();
    let mut body = vec![Stmt::Let { var: chunks, value: count.clone() }];
    let count = Expr::Var(chunks);
    for (k, st) in scan.states.iter().enumerate() {
        let size = em.product(&st.shape)?;
        let slice = em.product(&st.shape[p..])?;
        let (element, chunk) = (em.var(), em.var());
        let at = Expr::add(Expr::mul(Expr::Var(Var(0)), slice.clone()), Expr::Var(element));
        let initial = em.initial(st, at.clone())?;
        let (states, transitions) = ((n_operands + k) as u32, (n_operands + n + k) as u32);
        let index = Expr::add(Expr::mul(Expr::Var(chunk), size.clone()), at.clone());
        let load = |param: u32| Expr::Load { param, index: Box::new(index.clone()) };
        let pass = vec![
            Stmt::Set { reg: end, value: load(states) },
            Stmt::Store { param: states, index: index.clone(), value: Expr::Reg(carry) },
            Stmt::Set {
                reg: carry,
                value: Expr::call(
                    ScalarFn::Add,
                    vec![Expr::call(ScalarFn::Mul, vec![load(transitions), Expr::Reg(carry)]), Expr::Reg(end)],
                ),
            },
        ];
        let last = Expr::add(Expr::mul(Expr::int(IntOp::Sub, count.clone(), Expr::Int(1)), size), at);
        let per_element = vec![
            Stmt::Set { reg: carry, value: initial },
            Stmt::For {
                var: chunk,
                extent: Expr::int(IntOp::Sub, count.clone(), Expr::Int(1)),
                kind: LoopKind::Serial,
                body: pass,
            },
            Stmt::Store { param: states, index: last, value: Expr::Reg(carry) },
        ];
        body.push(Stmt::For { var: element, extent: slice, kind: LoopKind::Serial, body: per_element });
    }
    Ok((body, grid, em.next_var, em.next_reg))
}
