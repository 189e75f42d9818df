//! seqc's CPU backend through Cranelift: each kernel of a [`KernelModule`]
//! becomes a native function of [`seqc_codegen::native`]'s ABI, compiled into
//! memory for `seqc run` ([`compile`]) or into a relocatable object file for an
//! artifact ([`compile_object`]), from the same Cranelift IR. Vector loops run
//! as `f32x4`; the element functions are [`seqc_codegen::math`]'s, inline.

mod math;
mod simd;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, FuncRef, InstBuilder, InstructionData, MemFlagsData, Opcode, Value, ValueDef,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
pub use seqc_codegen::native::{kernel_symbol, representatives, BackendError, Compiled, KernelFn};
use seqc_compiler::ir::kernel::{CmpOp, Expr, IntOp, Kernel, KernelModule, LoopKind, Stmt, Ty, Var};
use seqc_compiler::ir::ScalarFn;
use std::collections::HashMap;

/// Cranelift's errors say where they come from.
fn fail(e: impl std::fmt::Display) -> BackendError {
    BackendError(format!("cranelift: {e}"))
}

fn isa_flags() -> settings::Builder {
    let mut flags = settings::builder();
    // The kernel IR arrives optimised (folded, invariants hoisted by the
    // scheduler and `kernel::hoist`). Cranelift's `speed` mid-end re-places
    // pure values at their uses, and does not hoist what depends on its
    // rematerialised constants: an attention kernel's `exp` lands in the
    // innermost loop. Measured on the transformer at L = 2048: 2,150 tok/s
    // with `none`, 955 with `speed`; Mamba 2,981 against 2,613.
    flags.set("opt_level", "none").expect("a known flag");
    flags.set("use_colocated_libcalls", "false").expect("a known flag");
    flags.set("is_pic", "false").expect("a known flag");
    flags
}

/// Compiles every kernel of `m` for this machine.
pub fn compile(m: &KernelModule) -> Result<Compiled, BackendError> {
    let isa = cranelift_native::builder().map_err(fail)?.finish(settings::Flags::new(isa_flags())).map_err(fail)?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    for (name, f) in seqc_codegen::native::HOST_FUNCTIONS {
        builder.symbol(*name, *f);
    }
    let mut module = JITModule::new(builder);
    let host = declare_host(&mut module, false)?;
    let fma = has_fma(&module);
    let ids = define_all(&mut module, m, fma, |i| format!("k{i}"), &host, None)?;
    module.finalize_definitions().map_err(fail)?;
    let kernels = ids
        .into_iter()
        .map(|id| {
            let code = module.get_finalized_function(id);
            // SAFETY: defined above with exactly `KernelFn`'s signature.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(code) }
        })
        .collect();
    // SAFETY: the module owns the code and lives as long as the `Compiled`.
    Ok(unsafe { Compiled::new(Box::new(module), kernels) })
}

/// Compiles each `(prefix, module)` into one relocatable object file for this
/// machine, kernel `i` exported as [`kernel_symbol`]`(prefix, i)`. The one
/// function the kernels call on the host (`pow`) is defined inside it over
/// the C library's, so linking needs only `-lm`. Position-independent, for a
/// shared library.
pub fn compile_object(modules: &[(&str, &KernelModule)]) -> Result<Vec<u8>, BackendError> {
    let mut flags = isa_flags();
    flags.set("is_pic", "true").map_err(fail)?;
    let isa = cranelift_native::builder().map_err(fail)?.finish(settings::Flags::new(flags)).map_err(fail)?;
    let builder = ObjectBuilder::new(isa, "seqc_kernels", default_libcall_names()).map_err(fail)?;
    let mut module = ObjectModule::new(builder);
    let host = declare_host(&mut module, true)?;
    for (prefix, m) in modules {
        let fma = has_fma(&module);
        define_all(&mut module, m, fma, |i| kernel_symbol(prefix, i), &host, None)?;
    }
    module.finish().emit().map_err(fail)
}

/// The CPU features code compiled here relies on (Cranelift's ISA flags that
/// are on), for an artifact to record and a loader to check.
pub fn native_features() -> Result<Vec<String>, BackendError> {
    let isa = cranelift_native::builder().map_err(fail)?.finish(settings::Flags::new(isa_flags())).map_err(fail)?;
    let mut on: Vec<String> =
        isa.isa_flags().iter().filter(|v| v.as_bool() == Some(true)).map(|v| v.name.to_string()).collect();
    on.sort();
    Ok(on)
}

/// The Cranelift IR of every kernel, as `seqc compile --emit clif` prints it
/// for this machine.
pub fn clif(m: &KernelModule) -> Result<String, BackendError> {
    let isa = cranelift_native::builder().map_err(fail)?.finish(settings::Flags::new(isa_flags())).map_err(fail)?;
    let fma = isa.isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true));
    clif_with(m, fma)
}

/// The Cranelift IR of every kernel for a CPU that has fused multiply-adds or
/// not (the one feature the IR itself depends on): the same text on every
/// machine, for snapshots.
pub fn clif_with(m: &KernelModule, fma: bool) -> Result<String, BackendError> {
    let isa = cranelift_native::builder().map_err(fail)?.finish(settings::Flags::new(isa_flags())).map_err(fail)?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let mut text = String::new();
    let host = declare_host(&mut module, false)?;
    define_all(&mut module, m, fma, |i| format!("k{i}"), &host, Some(&mut text))?;
    Ok(text)
}

/// Whether the module's target fuses multiply-adds (polynomials then use them).
fn has_fma(module: &impl Module) -> bool {
    module.isa().isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true))
}

/// The host functions kernels call, by symbol, in a fixed order (so `--emit
/// clif` is the same on every run). `define`: define each here, in f64 over
/// the C library's function and rounded once (as the JIT's Rust ones are);
/// otherwise they are imports the JIT resolves to [`seqc_codegen::native::HOST_FUNCTIONS`].
fn declare_host(
    module: &mut impl Module,
    define: bool,
) -> Result<std::collections::BTreeMap<&'static str, FuncId>, BackendError> {
    let mut host = std::collections::BTreeMap::new();
    for (name, _) in seqc_codegen::native::HOST_FUNCTIONS {
        let arity = seqc_codegen::native::host_arity(name);
        let sig = |module: &mut dyn Module, ty: types::Type| {
            let mut s = module.make_signature();
            s.params.extend((0..arity).map(|_| AbiParam::new(ty)));
            s.returns.push(AbiParam::new(ty));
            s
        };
        let narrow = sig(module, types::F32);
        if !define {
            host.insert(*name, module.declare_function(name, Linkage::Import, &narrow).map_err(fail)?);
            continue;
        }
        let id = module.declare_function(name, Linkage::Local, &narrow).map_err(fail)?;
        let wide = sig(module, types::F64);
        let libc = module.declare_function(name.trim_start_matches("seqc_"), Linkage::Import, &wide).map_err(fail)?;
        let mut ctx = module.make_context();
        ctx.func.signature = narrow;
        let mut fctx = FunctionBuilderContext::new();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let args: Vec<Value> =
                b.block_params(entry).to_vec().into_iter().map(|x| b.ins().fpromote(types::F64, x)).collect();
            let f = module.declare_func_in_func(libc, b.func);
            let call = b.ins().call(f, &args);
            let y = b.inst_results(call)[0];
            let y = b.ins().fdemote(types::F32, y);
            b.ins().return_(&[y]);
            b.seal_all_blocks();
            b.finalize(module.target_config());
        }
        module.define_function(id, &mut ctx).map_err(|e| fail(format!("{name}: {e:?}")))?;
        host.insert(*name, id);
    }
    Ok(host)
}

/// Defines every distinct kernel of `m` ([`representatives`]), kernel `i`
/// under the symbol `symbol(i)`; returns each kernel's function.
fn define_all(
    module: &mut impl Module,
    m: &KernelModule,
    fma: bool,
    symbol: impl Fn(usize) -> String,
    host: &std::collections::BTreeMap<&'static str, FuncId>,
    mut text: Option<&mut String>,
) -> Result<Vec<FuncId>, BackendError> {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for ty in [ptr, ptr, types::I64, types::I64] {
        sig.params.push(AbiParam::new(ty));
    }
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids: Vec<FuncId> = Vec::new();
    for (i, (k, rep)) in m.kernels.iter().zip(representatives(m)).enumerate() {
        if rep != i {
            if let Some(t) = text.as_deref_mut() {
                t.push_str(&format!("; k{i}: {}: the code of k{rep}\n\n", k.name));
            }
            ids.push(ids[rep]);
            continue;
        }
        let id = module.declare_function(&symbol(i), Linkage::Export, &sig).map_err(fail)?;
        ctx.func.signature = sig.clone();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let refs: HashMap<&str, FuncRef> =
                host.iter().map(|(n, id)| (*n, module.declare_func_in_func(*id, b.func))).collect();
            Gen::build(&mut b, k, m.dims.len(), refs, ptr, fma);
            b.seal_all_blocks();
            b.finalize(module.target_config());
        }
        if let Some(t) = text.as_deref_mut() {
            t.push_str(&format!("; k{i}: {}\n{}\n", k.name, ctx.func.display()));
        }
        module.define_function(id, &mut ctx).map_err(|e| fail(format!("k{i} ({}): {e:?}", k.name)))?;
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    Ok(ids)
}

/// The Cranelift condition of a float comparison: ordered, except `Ne` (true
/// for NaN, as the interpreter's `!=`).
pub(crate) fn float_cc(op: CmpOp) -> FloatCC {
    match op {
        CmpOp::Lt => FloatCC::LessThan,
        CmpOp::Le => FloatCC::LessThanOrEqual,
        CmpOp::Gt => FloatCC::GreaterThan,
        CmpOp::Ge => FloatCC::GreaterThanOrEqual,
        CmpOp::Eq => FloatCC::Equal,
        CmpOp::Ne => FloatCC::NotEqual,
    }
}

/// Code generation of one kernel.
pub(crate) struct Gen<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    vars: HashMap<u32, Variable>,
    regs: HashMap<u32, Variable>,
    buffers: Vec<Value>,
    dims: Vec<Value>,
    host: HashMap<&'static str, FuncRef>,
    flags: MemFlagsData,
    /// The target fuses multiply-adds.
    fma: bool,
    /// Indices read as a given value instead of their variable: every index
    /// inside its loop, `let`s, and one lane's index where a gather computes
    /// an address at a time.
    overrides: HashMap<u32, Value>,
}

impl<'a, 'b> Gen<'a, 'b> {
    fn build(
        b: &'a mut FunctionBuilder<'b>,
        k: &Kernel,
        n_dims: usize,
        host: HashMap<&'static str, FuncRef>,
        ptr: types::Type,
        fma: bool,
    ) {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let flags = MemFlagsData::trusted();
        let n_buffers = k.params + usize::from(k.scratch.is_some());
        let buffers = (0..n_buffers).map(|p| b.ins().load(ptr, flags, params[0], (8 * p) as i32)).collect();
        let dims = (0..n_dims).map(|d| b.ins().load(types::I64, flags, params[1], (8 * d) as i32)).collect();
        let mut g = Gen {
            b,
            vars: HashMap::new(),
            regs: HashMap::new(),
            buffers,
            dims,
            host,
            flags,
            fma,
            overrides: HashMap::new(),
        };
        // The grid loop over lo..hi.
        let grid = g.var(k.grid_var.0);
        g.b.def_var(grid, params[2]);
        let hi = params[3];
        g.counted_loop(k.grid_var, hi, &k.body);
        g.b.ins().return_(&[]);
    }

    fn var(&mut self, v: u32) -> Variable {
        if let Some(x) = self.vars.get(&v) {
            return *x;
        }
        let x = self.b.declare_var(types::I64);
        self.vars.insert(v, x);
        x
    }

    fn reg(&mut self, r: u32) -> Variable {
        if let Some(x) = self.regs.get(&r) {
            return *x;
        }
        let x = self.b.declare_var(types::F32);
        self.regs.insert(r, x);
        x
    }

    /// `while var < end { body; var += 1 }`, `var` already holding its start.
    ///
    /// Only the counter is a Cranelift variable (a block parameter of the
    /// header); the body reads it as the plain value it has on entry, like every
    /// other index, so values computed from outer indices are visibly invariant
    /// and Cranelift hoists them out of inner loops.
    fn counted_loop(&mut self, id: Var, end: Value, body: &[Stmt]) {
        let var = self.var(id.0);
        let (i, header, exit) = self.loop_head(var, end);
        let outer = self.overrides.insert(id.0, i);
        self.block(body);
        self.restore(id.0, outer);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
    }

    /// Opens a loop `while var < end`: jumps to a new header that tests it and
    /// continues in the body. Returns the counter's value in the body, the
    /// header (the back edge's target) and the exit block (not yet entered).
    pub(crate) fn loop_head(
        &mut self,
        var: Variable,
        end: Value,
    ) -> (Value, cranelift_codegen::ir::Block, cranelift_codegen::ir::Block) {
        let (header, inner, exit) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(more, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        (i, header, exit)
    }

    /// Puts back what `overrides` held for `var` before.
    pub(crate) fn restore(&mut self, var: u32, outer: Option<Value>) {
        match outer {
            Some(o) => self.overrides.insert(var, o),
            None => self.overrides.remove(&var),
        };
    }

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            match s {
                Stmt::For { var, extent: Expr::Int(n), body, kind: LoopKind::Unroll(f) } if *n == i64::from(*f) => {
                    // Fully unrolled: the index is a constant in each copy.
                    for i in 0..*n {
                        let at = self.b.ins().iconst(types::I64, i);
                        let outer = self.overrides.insert(var.0, at);
                        self.block(body);
                        self.restore(var.0, outer);
                    }
                }
                Stmt::For { var, extent, body, kind: LoopKind::Vector(4) } => {
                    let end = self.expr(extent);
                    self.vector_loop(*var, end, body);
                }
                Stmt::For { var, extent, body, .. } => {
                    let end = self.expr(extent);
                    let v = self.var(var.0);
                    let zero = self.b.ins().iconst(types::I64, 0);
                    self.b.def_var(v, zero);
                    self.counted_loop(*var, end, body);
                }
                Stmt::Let { var, value } => {
                    // Set once where it dominates its readers: a plain value.
                    let x = self.expr(value);
                    self.overrides.insert(var.0, x);
                }
                Stmt::Set { reg, value } => {
                    let x = self.expr(value);
                    let r = self.reg(reg.0);
                    self.b.def_var(r, x);
                }
                Stmt::Store { param, index, value } => {
                    let x = self.expr(value);
                    let addr = self.address(*param, index);
                    self.b.ins().store(self.flags, x, addr, 0);
                }
                Stmt::If { cond, then } => {
                    let c = self.expr(cond);
                    let (yes, done) = (self.b.create_block(), self.b.create_block());
                    self.b.ins().brif(c, yes, &[], done, &[]);
                    self.b.switch_to_block(yes);
                    self.block(then);
                    self.b.ins().jump(done, &[]);
                    self.b.switch_to_block(done);
                }
                Stmt::Barrier => {}
            }
        }
    }

    fn address(&mut self, param: u32, index: &Expr) -> Value {
        let i = self.expr(index);
        let bytes = self.b.ins().ishl_imm_s(i, 2);
        self.b.ins().iadd(self.buffers[param as usize], bytes)
    }

    fn expr(&mut self, e: &Expr) -> Value {
        match e {
            Expr::Int(v) => self.b.ins().iconst(types::I64, *v),
            Expr::Float(v) => self.b.ins().f32const(*v as f32),
            Expr::Var(v) => {
                if let Some(x) = self.overrides.get(&v.0) {
                    return *x;
                }
                let x = self.var(v.0);
                self.b.use_var(x)
            }
            Expr::Dim(d) => self.dims[*d as usize],
            Expr::Reg(r) => {
                let x = self.reg(r.0);
                self.b.use_var(x)
            }
            Expr::Load { param, index } => {
                let addr = self.address(*param, index);
                self.b.ins().load(types::F32, self.flags, addr, 0)
            }
            Expr::Int2(op, a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                if let (Some(p), Some(q)) = (self.constant(x), self.constant(y)) {
                    return self.b.ins().iconst(types::I64, fold_int(*op, p, q));
                }
                let ins = self.b.ins();
                match op {
                    IntOp::Add => ins.iadd(x, y),
                    IntOp::Sub => ins.isub(x, y),
                    IntOp::Mul => ins.imul(x, y),
                    IntOp::Min => ins.smin(x, y),
                    IntOp::Max => ins.smax(x, y),
                    IntOp::Div | IntOp::Rem => self.floor_div(*op, x, y, b),
                }
            }
            Expr::Call(f, args) => {
                let xs: Vec<Value> = args.iter().map(|a| self.expr(a)).collect();
                self.call(*f, &xs)
            }
            Expr::Cmp(op, a, b) => {
                let float = a.ty() == Ty::F32;
                let (x, y) = (self.expr(a), self.expr(b));
                if float {
                    self.b.ins().fcmp(float_cc(*op), x, y)
                } else {
                    if let (Some(p), Some(q)) = (self.constant(x), self.constant(y)) {
                        return self.b.ins().iconst(types::I8, i64::from(op.holds(p, q)));
                    }
                    let cc = match op {
                        CmpOp::Lt => IntCC::SignedLessThan,
                        CmpOp::Le => IntCC::SignedLessThanOrEqual,
                        CmpOp::Gt => IntCC::SignedGreaterThan,
                        CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
                        CmpOp::Eq => IntCC::Equal,
                        CmpOp::Ne => IntCC::NotEqual,
                    };
                    self.b.ins().icmp(cc, x, y)
                }
            }
            Expr::And(a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                match (self.constant(x), self.constant(y)) {
                    (Some(0), _) | (_, Some(1)) => x,
                    (Some(1), _) | (_, Some(0)) => y,
                    _ => self.b.ins().band(x, y),
                }
            }
            Expr::Or(a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                match (self.constant(x), self.constant(y)) {
                    (Some(1), _) | (_, Some(0)) => x,
                    (Some(0), _) | (_, Some(1)) => y,
                    _ => self.b.ins().bor(x, y),
                }
            }
            Expr::Not(a) => {
                let x = self.expr(a);
                match self.constant(x) {
                    Some(c) => self.b.ins().iconst(types::I8, i64::from(c == 0)),
                    None => self.b.ins().bxor_imm_u(x, 1),
                }
            }
            Expr::Select(c, a, b) => {
                let c = self.expr(c);
                match self.constant(c) {
                    // An unrolled copy knows its branch: only that side is emitted.
                    Some(0) => self.expr(b),
                    Some(_) => self.expr(a),
                    None => {
                        let (x, y) = (self.expr(a), self.expr(b));
                        self.b.ins().select(c, x, y)
                    }
                }
            }
            Expr::ToFloat(a) => {
                let x = self.expr(a);
                self.b.ins().fcvt_from_sint(types::F32, x)
            }
            Expr::ToInt(a) => {
                let x = self.expr(a);
                self.b.ins().fcvt_to_sint_sat(types::I64, x)
            }
        }
    }

    /// The value of an integer constant (Cranelift's optimiser is off, so
    /// unrolled copies fold their index arithmetic here).
    fn constant(&self, v: Value) -> Option<i64> {
        let dfg = &self.b.func.dfg;
        let ValueDef::Result(inst, _) = dfg.value_def(v) else { return None };
        match dfg.insts[inst] {
            InstructionData::UnaryImm { opcode: Opcode::Iconst, imm } => Some(imm.bits()),
            _ => None,
        }
    }

    /// Euclidean division and remainder (`0 <= r < |y|`; for positive divisors,
    /// the floor), as the interpreter computes index arithmetic.
    fn floor_div(&mut self, op: IntOp, x: Value, y: Value, divisor: &Expr) -> Value {
        if let Expr::Int(d) = divisor {
            if *d == 0 {
                return self.b.ins().iconst(types::I64, 0);
            }
            // A positive power of two: an arithmetic shift floors, a mask is the
            // Euclidean remainder (two's complement), and neither can trap, so
            // they stay cheap inside loops (`h / 2` for grouped heads).
            if *d > 0 && d.count_ones() == 1 {
                return match op {
                    IntOp::Div => self.b.ins().sshr_imm_s(x, i64::from(d.trailing_zeros())),
                    _ => self.b.ins().band_imm_s(x, d - 1),
                };
            }
        }
        let q = self.b.ins().sdiv(x, y);
        let r = self.b.ins().srem(x, y);
        let zero = self.b.ins().iconst(types::I64, 0);
        // A negative truncated remainder moves the quotient one step away from
        // the divisor's sign.
        let r_neg = self.b.ins().icmp(IntCC::SignedLessThan, r, zero);
        let y_neg = self.b.ins().icmp(IntCC::SignedLessThan, y, zero);
        match op {
            IntOp::Div => {
                let down = self.b.ins().iadd_imm_s(q, -1);
                let up = self.b.ins().iadd_imm_s(q, 1);
                let step = self.b.ins().select(y_neg, up, down);
                self.b.ins().select(r_neg, step, q)
            }
            _ => {
                // Euclidean: 0 <= r < |y|.
                let abs = self.b.ins().iabs(y);
                let r1 = self.b.ins().iadd(r, abs);
                self.b.ins().select(r_neg, r1, r)
            }
        }
    }

    fn call(&mut self, f: ScalarFn, x: &[Value]) -> Value {
        if let Some(v) = math::inline(self.b, f, x, false, self.fma) {
            return v;
        }
        let name = seqc_codegen::native::host_name(f).expect("every other function has a host implementation");
        let call = self.b.ins().call(self.host[name], x);
        self.b.inst_results(call)[0]
    }
}

/// Integer arithmetic on constants, as the generated code computes it (a zero
/// divisor gives 0, as `floor_div` emits for one).
fn fold_int(op: IntOp, p: i64, q: i64) -> i64 {
    match op {
        IntOp::Div | IntOp::Rem if q == 0 => 0,
        op => op.apply(p, q),
    }
}
