//! `Vector(4)` loops as `f32x4` code: the scheduler marked them
//! (`kernel::vector`), so their bodies are stores of lane-wise values and
//! accumulations. Four lanes run per iteration, the remainder in a scalar tail.

use crate::{math, Gen};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use seqc_compiler::ir::kernel::vector::{accumulation, depends, stride};
use seqc_compiler::ir::kernel::{Expr, Stmt, Ty, Var};
use seqc_compiler::ir::ScalarFn;

const LANES: i64 = 4;

/// A reduction's vector accumulator in a vector loop.
struct Acc {
    reg: seqc_compiler::ir::kernel::Reg,
    op: ScalarFn,
    acc: cranelift_frontend::Variable,
}

/// A value in a vector loop: the same for every lane, or one per lane.
#[derive(Clone, Copy)]
enum Lanes {
    Uniform(Value),
    Vector(Value),
}

fn unaligned() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

fn lane_order() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl Gen<'_, '_> {
    pub(crate) fn vector_loop(&mut self, var: Var, end: Value, body: &[Stmt]) {
        let v = self.var(var.0);
        let zero = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(v, zero);
        // Reductions keep two sets of vector accumulators, taking alternate
        // chunks of four lanes, so one chunk's adds do not wait on the last's
        // (a dot product is bound by add latency otherwise).
        let reduces = body.iter().any(|s| accumulation(s).is_some());
        let sets = if reduces { 2 } else { 1 };
        let accs: Vec<Vec<Acc>> = (0..sets).map(|_| self.accumulators(body)).collect();
        let step = LANES * sets as i64;
        let main_end = self.b.ins().band_imm_s(end, !(step - 1));
        let (i, header, exit) = self.loop_head(v, main_end);
        for (k, set) in accs.iter().enumerate() {
            let at = self.b.ins().iadd_imm_s(i, LANES * k as i64);
            self.chunk(body, var, at, set);
        }
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(v, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
        if sets == 2 {
            // At most one more whole chunk, into the first set; then the sets merge.
            let four_end = self.b.ins().band_imm_s(end, !(LANES - 1));
            let i = self.b.use_var(v);
            let fits = self.b.ins().icmp(IntCC::SignedLessThan, i, four_end);
            let (last, done) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(fits, last, &[], done, &[]);
            self.b.switch_to_block(last);
            self.chunk(body, var, i, &accs[0]);
            let next = self.b.ins().iadd_imm_s(i, LANES);
            self.b.def_var(v, next);
            self.b.ins().jump(done, &[]);
            self.b.switch_to_block(done);
            for (a, b) in accs[0].iter().zip(&accs[1]) {
                let (x, y) = (self.b.use_var(a.acc), self.b.use_var(b.acc));
                let merged = self.combine(a.op, x, y);
                self.b.def_var(a.acc, merged);
            }
        }
        // Fold the lanes into the scalar accumulators, then the tail.
        for a in &accs[0] {
            let x = self.b.use_var(a.acc);
            let r = self.reg(a.reg.0);
            let mut total = self.b.use_var(r);
            for lane in 0..LANES as u8 {
                let l = self.b.ins().extractlane(x, lane);
                total = self.combine(a.op, total, l);
            }
            self.b.def_var(r, total);
        }
        self.counted_loop(var, end, body);
    }

    /// One vector accumulator per reduction of `body`, at the op's identity.
    fn accumulators(&mut self, body: &[Stmt]) -> Vec<Acc> {
        let mut accs = Vec::new();
        for s in body {
            if let Some((reg, op, _)) = accumulation(s) {
                let identity = match op {
                    ScalarFn::Max => f32::NEG_INFINITY,
                    ScalarFn::Min => f32::INFINITY,
                    _ => 0.0,
                };
                let acc = self.b.declare_var(types::F32X4);
                let c = self.b.ins().f32const(identity);
                let splat = self.b.ins().splat(types::F32X4, c);
                self.b.def_var(acc, splat);
                accs.push(Acc { reg, op, acc });
            }
        }
        accs
    }

    /// The body on the four lanes from index `at`, accumulating into `accs`.
    fn chunk(&mut self, body: &[Stmt], var: Var, at: Value, accs: &[Acc]) {
        let outer = self.overrides.insert(var.0, at);
        let mut k = 0;
        for s in body {
            match s {
                Stmt::Store { param, index, value } => {
                    let x = self.lanes(value, var);
                    let x = self.widen(x);
                    let addr = self.address(*param, index);
                    self.b.ins().store(unaligned(), x, addr, 0);
                }
                Stmt::Set { .. } => {
                    let (_, op, e) = accumulation(s).expect("marked loops accumulate");
                    let x = self.lanes(e, var);
                    let x = self.widen(x);
                    let acc = accs[k].acc;
                    k += 1;
                    let a = self.b.use_var(acc);
                    let y = self.combine(op, a, x);
                    self.b.def_var(acc, y);
                }
                _ => unreachable!("marked loops hold stores and accumulations"),
            }
        }
        self.restore(var.0, outer);
    }

    /// `a op b` for sum, max and min, on scalars or vectors alike.
    fn combine(&mut self, op: ScalarFn, a: Value, b: Value) -> Value {
        match op {
            ScalarFn::Add => self.b.ins().fadd(a, b),
            ScalarFn::Max => self.pick_f(FloatCC::GreaterThan, a, b),
            _ => self.pick_f(FloatCC::LessThan, a, b),
        }
    }

    /// `a cc b ? a : b`.
    fn pick_f(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        if self.b.func.dfg.value_type(a).is_vector() {
            let m = self.b.ins().bitcast(types::F32X4, lane_order(), m);
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(m, a, b)
        }
    }

    fn widen(&mut self, x: Lanes) -> Value {
        match x {
            Lanes::Vector(v) => v,
            Lanes::Uniform(s) => self.b.ins().splat(types::F32X4, s),
        }
    }

    /// A condition as an `f32x4` lane mask.
    fn mask(&mut self, x: Lanes) -> Value {
        match x {
            Lanes::Vector(m) => m,
            Lanes::Uniform(c) => {
                let ones = self.b.ins().f32const(f32::from_bits(u32::MAX));
                let zeros = self.b.ins().f32const(0.0);
                let s = self.b.ins().select(c, ones, zeros);
                self.b.ins().splat(types::F32X4, s)
            }
        }
    }

    fn lanes(&mut self, e: &Expr, var: Var) -> Lanes {
        match e {
            Expr::Load { param, index } => match stride(index, var) {
                Some(0) => Lanes::Uniform(self.expr(e)),
                Some(1) => {
                    let addr = self.address(*param, index);
                    Lanes::Vector(self.b.ins().load(types::F32X4, unaligned(), addr, 0))
                }
                // A gather: each lane's address with the index at its value.
                _ => Lanes::Vector(self.per_lane(e, var)),
            },
            Expr::Call(f, args) => {
                let xs: Vec<Lanes> = args.iter().map(|a| self.lanes(a, var)).collect();
                if let Some(s) = xs
                    .iter()
                    .map(|x| if let Lanes::Uniform(s) = x { Some(*s) } else { None })
                    .collect::<Option<Vec<_>>>()
                {
                    return Lanes::Uniform(self.call(*f, &s));
                }
                let v: Vec<Value> = xs.into_iter().map(|x| self.widen(x)).collect();
                Lanes::Vector(self.call_x4(*f, &v))
            }
            Expr::Cmp(op, a, b) if a.ty() == Ty::F32 => {
                let (x, y) = (self.lanes(a, var), self.lanes(b, var));
                if let (Lanes::Uniform(_), Lanes::Uniform(_)) = (x, y) {
                    return Lanes::Uniform(self.expr(e));
                }
                let (x, y) = (self.widen(x), self.widen(y));
                let m = self.b.ins().fcmp(crate::float_cc(*op), x, y);
                Lanes::Vector(self.b.ins().bitcast(types::F32X4, lane_order(), m))
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let (x, y) = (self.lanes(a, var), self.lanes(b, var));
                if let (Lanes::Uniform(_), Lanes::Uniform(_)) = (x, y) {
                    return Lanes::Uniform(self.expr(e));
                }
                let (x, y) = (self.mask(x), self.mask(y));
                Lanes::Vector(if matches!(e, Expr::And(..)) { self.b.ins().band(x, y) } else { self.b.ins().bor(x, y) })
            }
            Expr::Not(a) => match self.lanes(a, var) {
                Lanes::Uniform(_) => Lanes::Uniform(self.expr(e)),
                Lanes::Vector(m) => Lanes::Vector(self.b.ins().bnot(m)),
            },
            Expr::Select(c, a, b) => {
                let c = self.lanes(c, var);
                let (x, y) = (self.lanes(a, var), self.lanes(b, var));
                match (c, x, y) {
                    (Lanes::Uniform(c), Lanes::Uniform(x), Lanes::Uniform(y)) => {
                        Lanes::Uniform(self.b.ins().select(c, x, y))
                    }
                    (c, x, y) => {
                        let (m, x, y) = (self.mask(c), self.widen(x), self.widen(y));
                        Lanes::Vector(self.b.ins().bitselect(m, x, y))
                    }
                }
            }
            // What reads the index otherwise (a converted index, an index
            // comparison) is computed lane by lane; the rest is the same in
            // every lane, by the marking's rules.
            _ if depends(e, var) => Lanes::Vector(self.per_lane(e, var)),
            _ => Lanes::Uniform(self.expr(e)),
        }
    }

    /// `e` computed once per lane, with the index at each lane's value, as an
    /// `f32x4` (a condition as a lane mask).
    fn per_lane(&mut self, e: &Expr, var: Var) -> Value {
        let i = self.overrides[&var.0];
        let zero = self.b.ins().f32const(0.0);
        let mut v = self.b.ins().splat(types::F32X4, zero);
        for lane in 0..LANES {
            let at = self.b.ins().iadd_imm_s(i, lane);
            self.overrides.insert(var.0, at);
            let mut x = self.expr(e);
            if e.ty() == Ty::Bool {
                let ones = self.b.ins().f32const(f32::from_bits(u32::MAX));
                x = self.b.ins().select(x, ones, zero);
            }
            v = self.b.ins().insertlane(v, x, lane as u8);
        }
        self.overrides.insert(var.0, i);
        v
    }

    /// An element function on `f32x4` values: inline, or lane by lane through
    /// the host.
    fn call_x4(&mut self, f: ScalarFn, x: &[Value]) -> Value {
        if let Some(v) = math::inline(self.b, f, x, true, self.fma) {
            return v;
        }
        let zero = self.b.ins().f32const(0.0);
        let mut out = self.b.ins().splat(types::F32X4, zero);
        for lane in 0..LANES as u8 {
            let args: Vec<Value> = x.iter().map(|v| self.b.ins().extractlane(*v, lane)).collect();
            let y = self.call(f, &args);
            out = self.b.ins().insertlane(out, y, lane);
        }
        out
    }
}
