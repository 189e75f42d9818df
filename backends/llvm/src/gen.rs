//! One kernel as an LLVM function. Loop indices and registers live in stack
//! slots that LLVM's `mem2reg` turns into SSA values; invariants are left for
//! LLVM's loop passes to hoist. `Vector(w)` loops run the host's full vector
//! width at a time (the scheduler's marking says the lanes are independent,
//! whatever their number), with a scalar tail.

use crate::values::{lane, ok, Shape, Values};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::{BasicTypeEnum, VectorType};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, FunctionValue, IntValue, PointerValue};
use inkwell::IntPredicate;
use seqc_codegen::math;
use seqc_compiler::ir::kernel::vector::{accumulation, depends, stride};
use seqc_compiler::ir::kernel::{CmpOp, Expr, IntOp, Kernel, LoopKind, Reg, Stmt, Ty, Var};
use seqc_compiler::ir::ScalarFn;
use std::collections::HashMap;

/// What code generation of a kernel needs of its target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// `f32` lanes of the widest vectors.
    pub lanes: u32,
    pub fma: bool,
}

/// A value in a vector loop: the same for every lane, or one per lane.
#[derive(Clone, Copy)]
enum Lanes<'c> {
    Uniform(BasicValueEnum<'c>),
    Vector(BasicValueEnum<'c>),
}

/// A reduction's vector accumulator in a vector loop.
struct Acc<'c> {
    reg: Reg,
    op: ScalarFn,
    slot: PointerValue<'c>,
}

pub(crate) struct Gen<'a, 'c> {
    ctx: &'c Context,
    b: &'a Builder<'c>,
    module: &'a Module<'c>,
    func: FunctionValue<'c>,
    target: Target,
    /// The entry block, which holds the stack slots.
    entry: BasicBlock<'c>,
    vars: HashMap<u32, PointerValue<'c>>,
    regs: HashMap<u32, PointerValue<'c>>,
    buffers: Vec<PointerValue<'c>>,
    dims: Vec<IntValue<'c>>,
    /// Indices read as a given value instead of their slot: every index
    /// inside its loop, `let`s, and one lane's index where a gather computes
    /// an address at a time.
    overrides: HashMap<u32, IntValue<'c>>,
}

impl<'a, 'c> Gen<'a, 'c> {
    /// Defines `func` (of the native kernel signature) as kernel `k`.
    pub fn define(
        ctx: &'c Context,
        b: &'a Builder<'c>,
        module: &'a Module<'c>,
        func: FunctionValue<'c>,
        k: &Kernel,
        n_dims: usize,
        target: Target,
    ) {
        let entry = ctx.append_basic_block(func, "entry");
        b.position_at_end(entry);
        let p = |i: u32| func.get_nth_param(i).expect("the kernel signature has four parameters");
        let (bufs, dims_ptr) = (p(0).into_pointer_value(), p(1).into_pointer_value());
        let (lo, hi) = (p(2).into_int_value(), p(3).into_int_value());
        let ptr = ctx.ptr_type(inkwell::AddressSpace::default());
        let i64t = ctx.i64_type();
        let n_buffers = k.params + usize::from(k.scratch.is_some());
        let load_at = |base: PointerValue<'c>, ty: BasicTypeEnum<'c>, i: usize| {
            // SAFETY: the caller passes arrays of at least this many entries.
            let at = unsafe { ok(b.build_in_bounds_gep(ty, base, &[i64t.const_int(i as u64, false)], "")) };
            ok(b.build_load(ty, at, ""))
        };
        let buffers = (0..n_buffers).map(|i| load_at(bufs, ptr.into(), i).into_pointer_value()).collect();
        let dims = (0..n_dims).map(|i| load_at(dims_ptr, i64t.into(), i).into_int_value()).collect();
        let body = ctx.append_basic_block(func, "body");
        ok(b.build_unconditional_branch(body));
        b.position_at_end(body);
        let mut g = Gen {
            ctx,
            b,
            module,
            func,
            target,
            entry,
            vars: HashMap::new(),
            regs: HashMap::new(),
            buffers,
            dims,
            overrides: HashMap::new(),
        };
        let grid = g.var(k.grid_var);
        ok(b.build_store(grid, lo));
        g.counted_loop(k.grid_var, hi, &k.body);
        ok(b.build_return(None));
    }

    fn values(&self, shape: Shape) -> Values<'_, 'c> {
        Values { ctx: self.ctx, b: self.b, module: self.module, shape, fma: self.target.fma }
    }

    /// A stack slot of type `ty` in the entry block (where `mem2reg` looks).
    fn slot(&self, ty: BasicTypeEnum<'c>) -> PointerValue<'c> {
        let here = self.b.get_insert_block().expect("positioned");
        match self.entry.get_first_instruction() {
            Some(first) => self.b.position_before(&first),
            None => self.b.position_at_end(self.entry),
        }
        let s = ok(self.b.build_alloca(ty, ""));
        self.b.position_at_end(here);
        s
    }

    fn var(&mut self, v: Var) -> PointerValue<'c> {
        if let Some(s) = self.vars.get(&v.0) {
            return *s;
        }
        let s = self.slot(self.ctx.i64_type().into());
        self.vars.insert(v.0, s);
        s
    }

    fn reg(&mut self, r: Reg) -> PointerValue<'c> {
        if let Some(s) = self.regs.get(&r.0) {
            return *s;
        }
        let s = self.slot(self.ctx.f32_type().into());
        self.regs.insert(r.0, s);
        s
    }

    fn i64(&self, v: i64) -> IntValue<'c> {
        self.ctx.i64_type().const_int(v as u64, true)
    }

    /// `while var < end { body; var += 1 }`, `var`'s slot already holding its
    /// start; the body reads the index as a plain value.
    fn counted_loop(&mut self, id: Var, end: IntValue<'c>, body: &[Stmt]) {
        let (i, header, exit) = self.loop_head(id, end);
        let outer = self.overrides.insert(id.0, i);
        self.block(body);
        self.restore(id.0, outer);
        let next = ok(self.b.build_int_add(i, self.i64(1), ""));
        ok(self.b.build_store(self.var(id), next));
        ok(self.b.build_unconditional_branch(header));
        self.b.position_at_end(exit);
    }

    /// Opens a loop `while var < end`; returns the counter's value in the
    /// body, the header (the back edge's target) and the exit block.
    fn loop_head(&mut self, id: Var, end: IntValue<'c>) -> (IntValue<'c>, BasicBlock<'c>, BasicBlock<'c>) {
        let header = self.ctx.append_basic_block(self.func, "loop");
        let inner = self.ctx.append_basic_block(self.func, "body");
        let exit = self.ctx.append_basic_block(self.func, "exit");
        ok(self.b.build_unconditional_branch(header));
        self.b.position_at_end(header);
        let slot = self.var(id);
        let i = ok(self.b.build_load(self.ctx.i64_type(), slot, "")).into_int_value();
        let more = ok(self.b.build_int_compare(IntPredicate::SLT, i, end, ""));
        ok(self.b.build_conditional_branch(more, inner, exit));
        self.b.position_at_end(inner);
        (i, header, exit)
    }

    fn restore(&mut self, var: u32, outer: Option<IntValue<'c>>) {
        match outer {
            Some(o) => self.overrides.insert(var, o),
            None => self.overrides.remove(&var),
        };
    }

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            match s {
                Stmt::For { var, extent: Expr::Int(n), body, kind: LoopKind::Unroll(f) } if *n == i64::from(*f) => {
                    for i in 0..*n {
                        let outer = self.overrides.insert(var.0, self.i64(i));
                        self.block(body);
                        self.restore(var.0, outer);
                    }
                }
                Stmt::For { var, extent, body, kind } => {
                    let end = self.int(extent);
                    ok(self.b.build_store(self.var(*var), self.i64(0)));
                    if matches!(kind, LoopKind::Vector(_)) {
                        self.vector_loop(*var, end, body);
                    } else {
                        self.counted_loop(*var, end, body);
                    }
                }
                Stmt::Let { var, value } => {
                    let x = self.int(value);
                    self.overrides.insert(var.0, x);
                }
                Stmt::Set { reg, value } => {
                    let x = self.expr(value);
                    ok(self.b.build_store(self.reg(*reg), x));
                }
                Stmt::Store { param, index, value } => {
                    let x = self.expr(value);
                    let at = self.address(*param, index);
                    ok(self.b.build_store(at, x));
                }
                Stmt::If { cond, then } => {
                    let c = self.expr(cond).into_int_value();
                    let yes = self.ctx.append_basic_block(self.func, "then");
                    let done = self.ctx.append_basic_block(self.func, "endif");
                    ok(self.b.build_conditional_branch(c, yes, done));
                    self.b.position_at_end(yes);
                    self.block(then);
                    ok(self.b.build_unconditional_branch(done));
                    self.b.position_at_end(done);
                }
                // A CPU thread runs its grid point alone.
                Stmt::Barrier => {}
            }
        }
    }

    fn address(&mut self, param: u32, index: &Expr) -> PointerValue<'c> {
        let i = self.int(index);
        // SAFETY (for LLVM): indices stay inside their buffers.
        unsafe { ok(self.b.build_gep(self.ctx.f32_type(), self.buffers[param as usize], &[i], "")) }
    }

    fn int(&mut self, e: &Expr) -> IntValue<'c> {
        self.expr(e).into_int_value()
    }

    fn expr(&mut self, e: &Expr) -> BasicValueEnum<'c> {
        match e {
            Expr::Int(v) => self.i64(*v).into(),
            Expr::Float(v) => self.values(Shape::Scalar).f32(*v as f32),
            Expr::Var(v) => match self.overrides.get(&v.0) {
                Some(x) => (*x).into(),
                None => {
                    let slot = self.var(*v);
                    ok(self.b.build_load(self.ctx.i64_type(), slot, ""))
                }
            },
            Expr::Dim(d) => self.dims[*d as usize].into(),
            Expr::Reg(r) => {
                let slot = self.reg(*r);
                ok(self.b.build_load(self.ctx.f32_type(), slot, ""))
            }
            Expr::Load { param, index } => {
                let at = self.address(*param, index);
                ok(self.b.build_load(self.ctx.f32_type(), at, ""))
            }
            Expr::Int2(op, a, b) => {
                let (x, y) = (self.int(a), self.int(b));
                let bl = self.b;
                match op {
                    IntOp::Add => ok(bl.build_int_add(x, y, "")).into(),
                    IntOp::Sub => ok(bl.build_int_sub(x, y, "")).into(),
                    IntOp::Mul => ok(bl.build_int_mul(x, y, "")).into(),
                    IntOp::Min | IntOp::Max => {
                        let p = if *op == IntOp::Min { IntPredicate::SLT } else { IntPredicate::SGT };
                        let c = ok(bl.build_int_compare(p, x, y, ""));
                        ok(bl.build_select(c, x, y, ""))
                    }
                    IntOp::Div | IntOp::Rem => self.floor_div(*op, x, y, b).into(),
                }
            }
            Expr::Call(f, args) => {
                let xs: Vec<BasicValueEnum<'c>> = args.iter().map(|a| self.expr(a)).collect();
                self.call(*f, &xs, Shape::Scalar)
            }
            Expr::Cmp(op, a, b) => {
                let float = a.ty() == Ty::F32;
                let (x, y) = (self.expr(a), self.expr(b));
                if float {
                    self.values(Shape::Scalar).fcmp(crate::values::predicate(*op), x, y)
                } else {
                    let p = match op {
                        CmpOp::Lt => IntPredicate::SLT,
                        CmpOp::Le => IntPredicate::SLE,
                        CmpOp::Gt => IntPredicate::SGT,
                        CmpOp::Ge => IntPredicate::SGE,
                        CmpOp::Eq => IntPredicate::EQ,
                        CmpOp::Ne => IntPredicate::NE,
                    };
                    ok(self.b.build_int_compare(p, x.into_int_value(), y.into_int_value(), "")).into()
                }
            }
            Expr::And(a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                self.values(Shape::Scalar).and(x, y)
            }
            Expr::Or(a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                self.values(Shape::Scalar).or(x, y)
            }
            Expr::Not(a) => {
                let x = self.expr(a);
                self.values(Shape::Scalar).not(x)
            }
            Expr::Select(c, a, b) => {
                let c = self.expr(c).into_int_value();
                // An unrolled copy knows its branch: only that side is emitted.
                match c.get_zero_extended_constant() {
                    Some(0) => self.expr(b),
                    Some(_) => self.expr(a),
                    None => {
                        let (x, y) = (self.expr(a), self.expr(b));
                        ok(self.b.build_select(c, x, y, ""))
                    }
                }
            }
            Expr::ToFloat(a) => {
                let x = self.int(a);
                ok(self.b.build_signed_int_to_float(x, self.ctx.f32_type(), "")).into()
            }
            Expr::ToInt(a) => {
                let x = self.expr(a);
                let f = inkwell::intrinsics::Intrinsic::find("llvm.fptosi.sat")
                    .and_then(|i| i.get_declaration(self.module, &[self.ctx.i64_type().into(), x.get_type()]))
                    .expect("LLVM 19 has llvm.fptosi.sat");
                ok(self.b.build_direct_call(f, &[x.into()], "")).try_as_basic_value().basic().expect("a value")
            }
        }
    }

    /// Euclidean division and remainder (`0 <= r < |y|`), as the interpreter
    /// computes index arithmetic; a zero divisor gives 0 (never undefined).
    fn floor_div(&mut self, op: IntOp, x: IntValue<'c>, y: IntValue<'c>, divisor: &Expr) -> IntValue<'c> {
        let b = self.b;
        if let Expr::Int(d) = divisor {
            if *d == 0 {
                return self.i64(0);
            }
            if *d > 0 && d.count_ones() == 1 {
                return match op {
                    IntOp::Div => ok(b.build_right_shift(x, self.i64(i64::from(d.trailing_zeros())), true, "")),
                    _ => ok(b.build_and(x, self.i64(d - 1), "")),
                };
            }
        }
        let zero = self.i64(0);
        let y_zero = ok(b.build_int_compare(IntPredicate::EQ, y, zero, ""));
        let safe = ok(b.build_select(y_zero, self.i64(1), y, "")).into_int_value();
        let q = ok(b.build_int_signed_div(x, safe, ""));
        let r = ok(b.build_int_signed_rem(x, safe, ""));
        let r_neg = ok(b.build_int_compare(IntPredicate::SLT, r, zero, ""));
        let y_neg = ok(b.build_int_compare(IntPredicate::SLT, safe, zero, ""));
        let v = match op {
            IntOp::Div => {
                let down = ok(b.build_int_sub(q, self.i64(1), ""));
                let up = ok(b.build_int_add(q, self.i64(1), ""));
                let step = ok(b.build_select(y_neg, up, down, "")).into_int_value();
                ok(b.build_select(r_neg, step, q, "")).into_int_value()
            }
            _ => {
                let neg = ok(b.build_int_neg(safe, ""));
                let abs = ok(b.build_select(y_neg, neg, safe, "")).into_int_value();
                let r1 = ok(b.build_int_add(r, abs, ""));
                ok(b.build_select(r_neg, r1, r, "")).into_int_value()
            }
        };
        ok(b.build_select(y_zero, zero, v, "")).into_int_value()
    }

    /// An element function on values of `shape`: inline, or through the host
    /// (lane by lane for vectors).
    fn call(&mut self, f: ScalarFn, x: &[BasicValueEnum<'c>], shape: Shape) -> BasicValueEnum<'c> {
        if let Some(v) = math::inline(&mut self.values(shape), f, x) {
            return v;
        }
        let name = seqc_codegen::native::host_name(f).expect("every other function has a host implementation");
        let Shape::Lanes(n) = shape else { return self.host_call(name, x) };
        let ty = self.ctx.f32_type().vec_type(n);
        let mut out: BasicValueEnum<'c> = ty.get_poison().into();
        for i in 0..n {
            let args: Vec<BasicValueEnum<'c>> =
                x.iter().map(|v| lane(self.b, self.ctx, v.into_vector_value(), i)).collect();
            let y = self.host_call(name, &args);
            let at = self.ctx.i32_type().const_int(u64::from(i), false);
            out = ok(self.b.build_insert_element(out.into_vector_value(), y, at, "")).into();
        }
        out
    }

    /// `seqc_pow(x, y)` and the like: the C library's f64 function, rounded once.
    fn host_call(&mut self, name: &str, x: &[BasicValueEnum<'c>]) -> BasicValueEnum<'c> {
        let f64t = self.ctx.f64_type();
        let libc = name.trim_start_matches("seqc_");
        let f = self.module.get_function(libc).unwrap_or_else(|| {
            let params: Vec<_> = x.iter().map(|_| f64t.into()).collect();
            self.module.add_function(libc, f64t.fn_type(&params, false), None)
        });
        let args: Vec<BasicMetadataValueEnum<'c>> =
            x.iter().map(|v| ok(self.b.build_float_ext(v.into_float_value(), f64t, "")).into()).collect();
        let y = ok(self.b.build_direct_call(f, &args, "")).try_as_basic_value().basic().expect("a value");
        ok(self.b.build_float_trunc(y.into_float_value(), self.ctx.f32_type(), "")).into()
    }

    /// A `Vector` loop over `var` from 0 to `end`, `lanes` at a time, then a
    /// scalar tail. Reductions keep two sets of vector accumulators taking
    /// alternate chunks, so one chunk's adds do not wait on the last's.
    fn vector_loop(&mut self, var: Var, end: IntValue<'c>, body: &[Stmt]) {
        let n = i64::from(self.target.lanes);
        if let Some(e) = end.get_sign_extended_constant().filter(|e| (n..=4 * n).contains(e)) {
            return self.straight_vector_loop(var, e, body);
        }
        let reduces = body.iter().any(|s| accumulation(s).is_some());
        let sets = if reduces { 2 } else { 1 };
        let accs: Vec<Vec<Acc<'c>>> = (0..sets).map(|_| self.accumulators(body)).collect();
        let step = n * sets;
        let main_end = ok(self.b.build_and(end, self.i64(!(step - 1)), ""));
        let (i, header, exit) = self.loop_head(var, main_end);
        for (k, set) in accs.iter().enumerate() {
            let at = ok(self.b.build_int_add(i, self.i64(n * k as i64), ""));
            self.chunk(body, var, at, set);
        }
        let next = ok(self.b.build_int_add(i, self.i64(step), ""));
        ok(self.b.build_store(self.var(var), next));
        ok(self.b.build_unconditional_branch(header));
        self.b.position_at_end(exit);
        let vty = self.ctx.f32_type().vec_type(self.target.lanes);
        if sets == 2 {
            // At most one more whole chunk, into the first set; then the sets merge.
            let whole_end = ok(self.b.build_and(end, self.i64(!(n - 1)), ""));
            let i = ok(self.b.build_load(self.ctx.i64_type(), self.var(var), "")).into_int_value();
            let fits = ok(self.b.build_int_compare(IntPredicate::SLT, i, whole_end, ""));
            let last = self.ctx.append_basic_block(self.func, "last");
            let done = self.ctx.append_basic_block(self.func, "merged");
            ok(self.b.build_conditional_branch(fits, last, done));
            self.b.position_at_end(last);
            self.chunk(body, var, i, &accs[0]);
            let next = ok(self.b.build_int_add(i, self.i64(n), ""));
            ok(self.b.build_store(self.var(var), next));
            ok(self.b.build_unconditional_branch(done));
            self.b.position_at_end(done);
            for (a, b) in accs[0].iter().zip(&accs[1]) {
                let x = ok(self.b.build_load(vty, a.slot, ""));
                let y = ok(self.b.build_load(vty, b.slot, ""));
                let merged = self.combine(a.op, x, y, Shape::Lanes(self.target.lanes));
                ok(self.b.build_store(a.slot, merged));
            }
        }
        self.fold(&accs[0]);
        // The tail continues from where the chunks stopped (the slot's value).
        self.counted_loop(var, end, body);
    }

    /// A `Vector` loop of a few chunks known now (`d_state` = 16): the chunks
    /// written out one after another, then the rest a lane at a time.
    fn straight_vector_loop(&mut self, var: Var, end: i64, body: &[Stmt]) {
        let n = i64::from(self.target.lanes);
        let accs = self.accumulators(body);
        for k in 0..end / n {
            self.chunk(body, var, self.i64(k * n), &accs);
        }
        self.fold(&accs);
        ok(self.b.build_store(self.var(var), self.i64(end / n * n)));
        self.counted_loop(var, self.i64(end), body);
    }

    /// Folds each vector accumulator's lanes into its scalar register, halves
    /// onto halves (log2 of the lanes steps).
    fn fold(&mut self, accs: &[Acc<'c>]) {
        let vty = self.ctx.f32_type().vec_type(self.target.lanes);
        for a in accs {
            let mut x = ok(self.b.build_load(vty, a.slot, "")).into_vector_value();
            let mut width = self.target.lanes;
            while width > 1 {
                width /= 2;
                let half = |from: u32| {
                    let picks: Vec<_> =
                        (from..from + width).map(|i| self.ctx.i32_type().const_int(u64::from(i), false)).collect();
                    ok(self.b.build_shuffle_vector(x, x.get_type().get_poison(), VectorType::const_vector(&picks), ""))
                };
                let (lo, hi) = (half(0), half(width));
                x = self.combine(a.op, lo.into(), hi.into(), Shape::Lanes(width)).into_vector_value();
            }
            let r = self.reg(a.reg);
            let total = ok(self.b.build_load(self.ctx.f32_type(), r, ""));
            let folded = lane(self.b, self.ctx, x, 0);
            let total = self.combine(a.op, total, folded, Shape::Scalar);
            ok(self.b.build_store(r, total));
        }
    }

    /// One vector accumulator per reduction of `body`, at the op's identity.
    fn accumulators(&mut self, body: &[Stmt]) -> Vec<Acc<'c>> {
        let vty = self.ctx.f32_type().vec_type(self.target.lanes);
        let lanes = self.values(Shape::Lanes(self.target.lanes));
        let mut accs = Vec::new();
        for s in body {
            if let Some((reg, op, _)) = accumulation(s) {
                let identity = match op {
                    ScalarFn::Max => f32::NEG_INFINITY,
                    ScalarFn::Min => f32::INFINITY,
                    _ => 0.0,
                };
                let slot = self.slot(vty.into());
                ok(self.b.build_store(slot, lanes.f32(identity)));
                accs.push(Acc { reg, op, slot });
            }
        }
        accs
    }

    /// The body on the lanes from index `at`, accumulating into `accs`.
    fn chunk(&mut self, body: &[Stmt], var: Var, at: IntValue<'c>, accs: &[Acc<'c>]) {
        let shape = Shape::Lanes(self.target.lanes);
        let vty = self.ctx.f32_type().vec_type(self.target.lanes);
        let outer = self.overrides.insert(var.0, at);
        let mut k = 0;
        for s in body {
            match s {
                Stmt::Store { param, index, value } => {
                    let x = self.lanes(value, var);
                    let x = self.widen(x);
                    let ptr = self.address(*param, index);
                    let store = ok(self.b.build_store(ptr, x));
                    store.set_alignment(4).expect("a store takes an alignment");
                }
                Stmt::Set { .. } => {
                    let (_, op, e) = accumulation(s).expect("marked loops accumulate");
                    let x = self.lanes(e, var);
                    let x = self.widen(x);
                    let slot = accs[k].slot;
                    k += 1;
                    let a = ok(self.b.build_load(vty, slot, ""));
                    let y = self.combine(op, a, x, shape);
                    ok(self.b.build_store(slot, y));
                }
                _ => unreachable!("marked loops hold stores and accumulations"),
            }
        }
        self.restore(var.0, outer);
    }

    /// `a op b` for sum, max and min.
    fn combine(
        &mut self,
        op: ScalarFn,
        a: BasicValueEnum<'c>,
        b: BasicValueEnum<'c>,
        shape: Shape,
    ) -> BasicValueEnum<'c> {
        let mut v = self.values(shape);
        match op {
            ScalarFn::Add => seqc_codegen::math::Lanes::add(&mut v, a, b),
            ScalarFn::Max => {
                let m = v.fcmp(crate::values::predicate(CmpOp::Gt), a, b);
                v.select(m, a, b)
            }
            _ => {
                let m = v.fcmp(crate::values::predicate(CmpOp::Lt), a, b);
                v.select(m, a, b)
            }
        }
    }

    fn widen(&mut self, x: Lanes<'c>) -> BasicValueEnum<'c> {
        match x {
            Lanes::Vector(v) => v,
            Lanes::Uniform(s) => self.values(Shape::Lanes(self.target.lanes)).splat(s),
        }
    }

    fn lanes(&mut self, e: &Expr, var: Var) -> Lanes<'c> {
        let n = self.target.lanes;
        let shape = Shape::Lanes(n);
        match e {
            Expr::Load { param, index } => match stride(index, var) {
                Some(0) => Lanes::Uniform(self.expr(e)),
                Some(1) => {
                    let ptr = self.address(*param, index);
                    let v = ok(self.b.build_load(self.ctx.f32_type().vec_type(n), ptr, ""));
                    inkwell::values::BasicValue::as_instruction_value(&v)
                        .expect("a load")
                        .set_alignment(4)
                        .expect("a load takes an alignment");
                    Lanes::Vector(v)
                }
                // A gather: each lane's address with the index at its value.
                _ => Lanes::Vector(self.per_lane(e, var)),
            },
            Expr::Call(f, args) => {
                let xs: Vec<Lanes<'c>> = args.iter().map(|a| self.lanes(a, var)).collect();
                if let Some(s) = uniform(&xs) {
                    return Lanes::Uniform(self.call(*f, &s, Shape::Scalar));
                }
                let v: Vec<BasicValueEnum<'c>> = xs.into_iter().map(|x| self.widen(x)).collect();
                Lanes::Vector(self.call(*f, &v, shape))
            }
            Expr::Cmp(op, a, b) if a.ty() == Ty::F32 => {
                let (x, y) = (self.lanes(a, var), self.lanes(b, var));
                if uniform(&[x, y]).is_some() {
                    return Lanes::Uniform(self.expr(e));
                }
                let (x, y) = (self.widen(x), self.widen(y));
                Lanes::Vector(self.values(shape).fcmp(crate::values::predicate(*op), x, y))
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let (x, y) = (self.lanes(a, var), self.lanes(b, var));
                if uniform(&[x, y]).is_some() {
                    return Lanes::Uniform(self.expr(e));
                }
                let (x, y) = (self.widen(x), self.widen(y));
                let v = self.values(shape);
                Lanes::Vector(if matches!(e, Expr::And(..)) { v.and(x, y) } else { v.or(x, y) })
            }
            Expr::Not(a) => match self.lanes(a, var) {
                Lanes::Uniform(_) => Lanes::Uniform(self.expr(e)),
                Lanes::Vector(m) => Lanes::Vector(self.values(shape).not(m)),
            },
            Expr::Select(c, a, b) => {
                let c = self.lanes(c, var);
                let (x, y) = (self.lanes(a, var), self.lanes(b, var));
                if let (Lanes::Uniform(c), Lanes::Uniform(x), Lanes::Uniform(y)) = (c, x, y) {
                    return Lanes::Uniform(self.values(Shape::Scalar).select(c, x, y));
                }
                let (m, x, y) = (self.widen(c), self.widen(x), self.widen(y));
                Lanes::Vector(self.values(shape).select(m, x, y))
            }
            // What reads the index otherwise (a converted index, an index
            // comparison) is computed lane by lane; the rest is the same in
            // every lane, by the marking's rules.
            _ if depends(e, var) => Lanes::Vector(self.per_lane(e, var)),
            _ => Lanes::Uniform(self.expr(e)),
        }
    }

    /// `e` computed once per lane, with the index at each lane's value: a
    /// vector of floats, or of `i1` for a condition.
    fn per_lane(&mut self, e: &Expr, var: Var) -> BasicValueEnum<'c> {
        let n = self.target.lanes;
        let i = self.overrides[&var.0];
        let ty = if e.ty() == Ty::Bool { self.ctx.bool_type().vec_type(n) } else { self.ctx.f32_type().vec_type(n) };
        let mut v = ty.get_poison();
        for l in 0..n {
            let at = ok(self.b.build_int_add(i, self.i64(i64::from(l)), ""));
            self.overrides.insert(var.0, at);
            let x = self.expr(e);
            let li = self.ctx.i32_type().const_int(u64::from(l), false);
            v = ok(self.b.build_insert_element(v, x, li, ""));
        }
        self.overrides.insert(var.0, i);
        v.into()
    }
}

/// The scalars, if every value is the same in all lanes.
fn uniform<'c>(xs: &[Lanes<'c>]) -> Option<Vec<BasicValueEnum<'c>>> {
    xs.iter().map(|x| if let Lanes::Uniform(s) = x { Some(*s) } else { None }).collect()
}
