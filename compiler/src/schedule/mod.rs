//! Scheduling: a fused graph (parallel or step) to the kernel IR.
//!
//! Builtins become generics first (`decompose`), so what remains is four kinds of
//! work: `linear` is a GEMM call (a parallel `fftconv` a long-convolution call),
//! `reshape` an alias, `generic` and `attention` a kernel whose grid covers the
//! result's rows, `scan` a kernel whose grid covers independent sequences and
//! whose steps run in order inside (`emit`). Every value
//! gets a buffer; the runtime reuses temp buffers by their lifetimes
//! (`KernelModule::lifetimes`).

mod attention;
pub mod decompose;
mod emit;

use crate::ir::kernel::attention::{Attention as KernelAttention, KeyRange};
use crate::ir::kernel::{BufId, Buffer, CmpOp, Expr, IntOp, Kernel, KernelModule, Launch, Role, Var};
use crate::ir::ops::{ScanOp, ScanStmt, State as ScanState, StateInit};
use crate::ir::{Graph, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::Dim;
use emit::Param;

/// The run-time dimension a chunked scan sizes its chunks by: how many grid
/// points the target runs at once (CPU threads), bound by the runtime.
pub use crate::ir::kernel::WORKERS;

/// The fewest steps a scan chunk takes (so each chunk's carry pays for itself).
pub const MIN_CHUNK: i64 = 16;

/// A scan splits along its axis only when there are at least this many
/// workers per independent slice: the chunk ends cost about two more passes of
/// the updates (the state's and the transition's), so a split in two or three
/// would not pay.
pub const SPLIT_WORKERS: i64 = 4;

/// A graph the scheduler cannot handle (a compiler limitation, named).
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cannot schedule: {0}")]
pub struct ScheduleError(pub String);

/// The kernel module of a graph.
pub fn schedule(g: &Graph) -> Result<KernelModule, ScheduleError> {
    let mut g = g.clone();
    decompose::decompose(&mut g);
    let mut dims: Vec<String> = Vec::new();
    for ty in &g.types {
        for d in &ty.shape {
            if let Dim::Sym(s) = d {
                if !dims.iter().any(|x| **x == **s) {
                    dims.push(s.to_string());
                }
            }
        }
    }
    // `T` and `P` are bound together in step mode, even where only one is read;
    // bodies may also read `T` (`rope`) where no shape has it.
    let step = g.nodes.iter().any(|n| matches!(n.op, Op::StateInput { .. }));
    let wanted: &[&str] = if step { &["B", "T", "P"] } else { &["B"] };
    for d in wanted {
        if !dims.iter().any(|x| x == d) {
            dims.push(d.to_string());
        }
    }
    let order = |d: &String| ["B", "L", "T", "P"].iter().position(|x| x == d).unwrap_or(4);
    dims.sort_by_key(|d| (order(d), d.clone()));
    let mut s = Scheduler {
        g: &g,
        m: KernelModule { name: g.name.clone(), dims, ..KernelModule::default() },
        bufs: vec![None; g.types.len()],
    };
    for (i, node) in g.nodes.iter().enumerate() {
        s.node(i, node)?;
    }
    s.m.outputs = g.outputs.iter().map(|(n, v)| (n.clone(), s.buf(*v))).collect();
    s.m.next_states = g.next_states.iter().map(|(n, v)| (n.clone(), s.buf(*v))).collect();
    Ok(s.m)
}

struct Scheduler<'g> {
    g: &'g Graph,
    m: KernelModule,
    bufs: Vec<Option<BufId>>,
}

impl Scheduler<'_> {
    fn buf(&self, v: ValueId) -> BufId {
        self.bufs[v.0 as usize].expect("defined before use")
    }

    fn dim(&self, d: &Dim) -> Expr {
        match d {
            Dim::Known(v) => Expr::Int(*v),
            Dim::Sym(s) => Expr::Dim(self.m.dims.iter().position(|x| **x == **s).expect("collected") as u32),
        }
    }

    fn size(&self, shape: &[Dim]) -> Expr {
        shape.iter().fold(Expr::Int(1), |acc, d| Expr::mul(acc, self.dim(d)))
    }

    fn new_buffer(&mut self, name: String, size: Expr, role: Role) -> BufId {
        self.m.buffers.push(Buffer { name, size, role });
        BufId(self.m.buffers.len() as u32 - 1)
    }

    fn define(&mut self, v: ValueId, role: Role) -> BufId {
        let size = self.size(&self.g.ty(v).shape);
        let b = self.new_buffer(format!("%{}", v.0), size, role);
        self.bufs[v.0 as usize] = Some(b);
        b
    }

    fn params(&self, values: &[ValueId]) -> Vec<Param> {
        values.iter().map(|v| Param { shape: self.g.ty(*v).shape.clone() }).collect()
    }

    fn node(&mut self, i: usize, node: &crate::ir::Node) -> Result<(), ScheduleError> {
        let origin = self.g.origins.get(i).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| self.g.name.clone());
        let r0 = node.results[0];
        match &node.op {
            Op::Input { name } => {
                self.define(r0, Role::Input(name.clone()));
            }
            Op::Weight { name } => {
                self.define(r0, Role::Weight(name.clone()));
            }
            Op::StateInput { name, init } => {
                self.define(r0, Role::State { name: name.clone(), init: *init });
            }
            Op::Const { value } => {
                let b = self.define(r0, Role::Temp);
                self.m.launches.push(Launch::Fill { buf: b, value: *value });
            }
            Op::Reshape => {
                let src = self.buf(node.operands[0]);
                self.define(r0, Role::Alias(src));
            }
            Op::Linear { bias } => {
                let x = self.g.ty(node.operands[0]);
                let w = self.g.ty(node.operands[1]);
                let m = self.size(&x.shape[..x.shape.len() - 1]);
                let (n, k) = (self.dim(&w.shape[0]), self.dim(&w.shape[1]));
                let (a, b) = (self.buf(node.operands[0]), self.buf(node.operands[1]));
                let bias = bias.then(|| self.buf(node.operands[2]));
                let c = self.define(r0, Role::Temp);
                self.m.launches.push(Launch::Gemm { m, n, k, a, b, bias, c });
            }
            Op::FftConv { starts } => {
                let x = &self.g.ty(node.operands[0]).shape;
                let (batch, len, channels) = (self.dim(&x[0]), self.dim(&x[1]), self.dim(&x[2]));
                let taps = self.dim(&self.g.ty(node.operands[1]).shape[0]);
                let (x, k) = (self.buf(node.operands[0]), self.buf(node.operands[1]));
                let starts = starts.then(|| self.buf(node.operands[2]));
                let y = self.define(r0, Role::Temp);
                self.m.launches.push(Launch::CausalConv { batch, len, channels, taps, x, k, starts, y });
            }
            Op::Generic(gen) | Op::Attention(gen) => {
                if matches!(node.op, Op::Attention(_)) {
                    if let Some(call) = self.attention_call(node, gen) {
                        self.m.launches.push(Launch::Attention(Box::new(call)));
                        return Ok(());
                    }
                }
                let mut values = node.operands.clone();
                values.push(r0);
                let (body, grid, vars, regs, scratch) = emit::generic(&self.m.dims, gen, self.params(&values))?;
                self.define(r0, Role::Temp);
                let args = values.iter().map(|v| self.buf(*v)).collect();
                self.kernel(format!("{} {origin}", node.op.name()), values.len(), body, grid, vars, regs, args);
                if let Some(k) = self.m.kernels.last_mut() {
                    k.scratch = scratch;
                }
            }
            Op::Scan(scan) => {
                let mut values = node.operands.clone();
                values.extend(&node.results);
                let mut params = self.params(&values);
                params.extend(scan.states.iter().map(|s| Param { shape: s.shape.clone() }));
                let layout = emit::scan_layout(scan);
                if let Some(coefficients) = chunkable(scan, &layout) {
                    return self.chunked_scan(node, scan, &layout, coefficients, &origin);
                }
                let (body, grid, vars, regs) =
                    emit::scan(&self.m.dims, scan, params, node.operands.len(), &layout, None)?;
                for r in &node.results {
                    self.define(*r, Role::Temp);
                }
                let mut args: Vec<BufId> = values.iter().map(|v| self.buf(*v)).collect();
                for st in &scan.states {
                    // Two slots (this step's states and the next) unless in place.
                    let slots = if layout.in_place { 1 } else { 2 };
                    let size = Expr::mul(Expr::Int(slots), self.size(&st.shape));
                    args.push(self.new_buffer(format!("{origin}:{}", st.name), size, Role::Temp));
                }
                let n = args.len();
                self.kernel(format!("scan {origin}"), n, body, grid, vars, regs, args);
            }
            other => return Err(ScheduleError(format!("`{}` is left after decomposition", other.name()))),
        }
        Ok(())
    }

    /// A diagonal linear scan, split along its axis into as many chunks as the
    /// target's workers need beyond the scan's independent slices (one chunk,
    /// the plain scan, when the slices alone keep them busy), in three launches:
    /// each chunk's end state from zero and its transition (every chunk but the
    /// last, in parallel); the carries (serial over chunks, parallel over
    /// slices); every chunk again from its carry, with the outputs.
    fn chunked_scan(
        &mut self,
        node: &crate::ir::Node,
        scan: &ScanOp,
        layout: &emit::ScanLayout,
        coefficients: Vec<Scalar>,
        origin: &str,
    ) -> Result<(), ScheduleError> {
        let workers = match self.m.dims.iter().position(|d| d == WORKERS) {
            Some(i) => Expr::Dim(i as u32),
            None => {
                self.m.dims.push(WORKERS.to_string());
                Expr::Dim(self.m.dims.len() as u32 - 1)
            }
        };
        let p = layout.independent;
        let slices = self.size(&scan.states[0].shape[..p]);
        let len = self.dim(&scan.vars[scan.axis as usize].extent);
        let per_slice = Expr::int(IntOp::Div, workers, slices);
        let split = Expr::cmp(CmpOp::Ge, per_slice.clone(), Expr::Int(SPLIT_WORKERS));
        let wanted = Expr::int(IntOp::Min, per_slice, emit::ceil_div(len, Expr::Int(MIN_CHUNK)));
        let count = Expr::int(IntOp::Max, Expr::Int(1), Expr::select(split, wanted, Expr::Int(1)));
        let n = scan.states.len();
        let mut states = Vec::new();
        let mut transitions = Vec::new();
        for st in &scan.states {
            let size = Expr::mul(count.clone(), self.size(&st.shape));
            states.push(self.new_buffer(format!("{origin}:{}", st.name), size.clone(), Role::Temp));
            transitions.push(self.new_buffer(format!("{origin}:{}.transition", st.name), size, Role::Temp));
        }
        let operands: Vec<BufId> = node.operands.iter().map(|v| self.buf(*v)).collect();
        let state_params = || scan.states.iter().map(|s| Param { shape: s.shape.clone() });

        // The chunk ends: the scan's updates from zero, and each transition
        // `t = a * t` from one, without outputs.
        let mut ends = scan.clone();
        ends.outputs.clear();
        for st in &mut ends.states {
            st.init = StateInit::Const(0.0);
        }
        for st in &scan.states {
            ends.states.push(ScanState {
                name: format!("{}.transition", st.name),
                shape: st.shape.clone(),
                init: StateInit::Const(1.0),
            });
        }
        for (u, a) in scan.updates.iter().zip(coefficients) {
            let target = u.target + n as u32;
            let own = Scalar::State { state: target, indices: u.left.iter().map(|&v| Scalar::Index(v)).collect() };
            ends.updates.push(ScanStmt {
                target,
                left: u.left.clone(),
                body: Scalar::Apply(ScalarFn::Mul, vec![a, own]),
                cond: None,
            });
        }
        let mut ends_layout = layout.clone();
        ends_layout.slice_vars.truncate(scan.updates.len());
        ends_layout.slice_vars.extend(layout.slice_vars[..scan.updates.len()].to_vec());
        let mut params = self.params(&node.operands);
        params.extend(state_params().chain(state_params()));
        let runs = Expr::int(IntOp::Sub, count.clone(), Expr::Int(1));
        let chunks = emit::Chunks { count: count.clone(), runs, resume: false };
        let (body, grid, vars, regs) =
            emit::scan(&self.m.dims, &ends, params.clone(), node.operands.len(), &ends_layout, Some(&chunks))?;
        let mut args: Vec<BufId> = operands.iter().chain(&states).chain(&transitions).copied().collect();
        self.kernel(format!("scan {origin}: chunk ends"), args.len(), body, grid, vars, regs, args.clone());

        let (body, slices, vars, regs) =
            emit::scan_carries(&self.m.dims, scan, params, node.operands.len(), layout, &count)?;
        let split = Expr::int(IntOp::Min, Expr::Int(1), Expr::int(IntOp::Sub, count.clone(), Expr::Int(1)));
        let grid = Expr::mul(slices, split);
        self.kernel(format!("scan {origin}: carries"), args.len(), body, grid, vars, regs, args);

        // Every chunk from its carry.
        for r in &node.results {
            self.define(*r, Role::Temp);
        }
        let mut values = node.operands.clone();
        values.extend(&node.results);
        let mut params = self.params(&values);
        params.extend(state_params());
        args = values.iter().map(|v| self.buf(*v)).chain(states).collect();
        let chunks = emit::Chunks { count: count.clone(), runs: count, resume: true };
        let (body, grid, vars, regs) =
            emit::scan(&self.m.dims, scan, params, node.operands.len(), layout, Some(&chunks))?;
        self.kernel(format!("scan {origin}"), args.len(), body, grid, vars, regs, args);
        Ok(())
    }

    /// The library call of an `attention` op of the standard form whose
    /// operands are laid out as the call reads them; defines its result (after
    /// every check, so a `None` changes nothing).
    fn attention_call(&mut self, node: &crate::ir::Node, gen: &crate::ir::ops::Generic) -> Option<KernelAttention> {
        let form = attention::recognise(gen)?;
        let extent = |v: u32| gen.vars.get(v as usize).map(|x| x.extent.clone());
        let [b, i, h, e, j, e1] = [0, 1, 2, 3, form.j, form.e1].map(extent);
        let (b, i, h, e, j, e1) = (b?, i?, h?, e?, j?, e1?);
        let kv_heads = match &h {
            Dim::Known(n) if n % form.group == 0 => Dim::Known(n / form.group),
            Dim::Sym(_) if form.group == 1 => h.clone(),
            _ => return None,
        };
        let shape = |x: u32| &self.g.ty(node.operands[x as usize]).shape;
        let laid_out = shape(form.q)[..] == [b.clone(), i.clone(), h.clone(), e1.clone()]
            && shape(form.k)[..] == [b.clone(), j.clone(), kv_heads.clone(), e1.clone()]
            && shape(form.v)[..] == [b.clone(), j.clone(), kv_heads, e.clone()];
        if !laid_out {
            return None;
        }
        let sizes = |x: &attention::Sizes| -> Option<Expr> {
            let mut acc = Expr::Int(0);
            for (c, name) in &x.terms {
                let d = Expr::Dim(self.m.dims.iter().position(|n| n == name)? as u32);
                acc = match c {
                    -1 => Expr::int(IntOp::Sub, acc, d),
                    c => Expr::add(acc, Expr::mul(Expr::Int(*c), d)),
                };
            }
            Some(match x.constant {
                c if c < 0 => Expr::int(IntOp::Sub, acc, Expr::Int(-c)),
                c => Expr::add(acc, Expr::Int(c)),
            })
        };
        let combine = |xs: &[attention::Sizes], op: IntOp| -> Option<Option<Expr>> {
            let mut out: Option<Expr> = None;
            for x in xs {
                let x = sizes(x)?;
                out = Some(out.map_or(x.clone(), |o| Expr::int(op, o, x)));
            }
            Some(out)
        };
        let keys = KeyRange {
            lo_rel: combine(&form.keys.lo_rel, IntOp::Max)?,
            hi_rel: combine(&form.keys.hi_rel, IntOp::Min)?,
            lo_abs: combine(&form.keys.lo_abs, IntOp::Max)?,
            hi_abs: combine(&form.keys.hi_abs, IntOp::Min)?,
            lo_from: form.keys.lo_from.map(|s| self.buf(node.operands[s as usize])),
        };
        let [q, k, v] = [form.q, form.k, form.v].map(|x| self.buf(node.operands[x as usize]));
        let out = self.define(node.results[0], Role::Temp);
        Some(KernelAttention {
            batch: self.dim(&b),
            q_len: self.dim(&i),
            kv_len: self.dim(&j),
            heads: self.dim(&h),
            group: Expr::Int(form.group),
            dim: self.dim(&e1),
            dim_v: self.dim(&e),
            scale: form.scale,
            keys,
            q,
            k,
            v,
            out,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn kernel(
        &mut self,
        name: String,
        params: usize,
        mut body: Vec<crate::ir::kernel::Stmt>,
        grid: Expr,
        vars: u32,
        regs: u32,
        args: Vec<BufId>,
    ) {
        let mut vars = vars;
        crate::ir::kernel::unroll::inline_short_reductions(&mut body);
        crate::ir::kernel::hoist::hoist(&mut body, &mut vars);
        // Four f32 lanes: what every CPU backend has (128-bit vectors).
        crate::ir::kernel::vector::mark(&mut body, 4);
        self.m.kernels.push(Kernel { name, params, grid_var: Var(0), body, vars, regs, scratch: None });
        self.m.launches.push(Launch::Kernel { kernel: self.m.kernels.len() - 1, grid, args });
    }
}

/// The coefficients of a scan whose every state is a diagonal linear
/// recurrence updated in place (what a chunked scan needs), in update order.
fn chunkable(scan: &ScanOp, layout: &emit::ScanLayout) -> Option<Vec<Scalar>> {
    if !layout.in_place || scan.states.is_empty() || layout.slice_vars.len() < scan.updates.len() {
        return None;
    }
    // A step graph's scans (one position) and short fixed ones never split.
    if matches!(scan.vars[scan.axis as usize].extent, Dim::Known(n) if n < 2 * MIN_CHUNK) {
        return None;
    }
    // An output without the scan axis (a chunk graph's next state) holds the
    // last position's value: every chunk would write its own.
    if scan.outputs.iter().any(|o| !o.left.contains(&scan.axis)) {
        return None;
    }
    if scan.updates.len() != scan.states.len() {
        return None;
    }
    scan.updates.iter().map(crate::passes::linear_recurrence::diagonal_coefficient).collect()
}
