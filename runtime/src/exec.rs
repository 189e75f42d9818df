//! Runs a compiled kernel module on the CPU: binds buffers, reuses temp memory by
//! lifetime, spreads each kernel's grid over threads (rayon) and calls `gemm` for
//! the dense products, `realfft` for long convolutions and tiled products for
//! attention.

use crate::products::{gemm_nt, Rhs};
use seqc_compiler::ir::kernel::eval::int;
use seqc_compiler::ir::kernel::{KernelModule, Launch, Role, WORKERS};
use seqc_cranelift::Compiled;
use std::collections::HashMap;

/// What an empty buffer points to: clamped reads of it read here.
static EMPTY: [f32; 1] = [0.0];

/// A kernel module and its machine code.
pub struct Program {
    pub module: KernelModule,
    pub code: Compiled,
    /// Each kernel's work per grid point for the last dimensions run (a decode
    /// runs the same ones every step), so launches do not walk kernels again.
    work: std::sync::Mutex<(Vec<i64>, Vec<u64>)>,
    /// Temp memory kept from one run to the next: a decode step would
    /// otherwise map, fault in and zero the same megabytes every position.
    pool: std::sync::Mutex<Vec<Vec<f32>>>,
}

/// The memory a run reads: by buffer role name (inputs, weights, states).
pub trait Source {
    fn get(&self, role: &Role) -> Option<&[f32]>;
    /// A weight read only by products, where the runtime holds it in another
    /// layout or precision than the checkpoint's (`get` then gives `None`).
    fn product_weight(&self, role: &Role) -> Option<Rhs<'_>>;
}

/// Buffer pointers shared by the threads of one launch; each grid point writes
/// its own elements only (the scheduler's contract).
struct Pointers(Vec<*mut f32>);
unsafe impl Send for Pointers {}
unsafe impl Sync for Pointers {}

impl Program {
    pub fn new(module: KernelModule, code: Compiled) -> Program {
        Program { module, code, work: Default::default(), pool: Default::default() }
    }

    /// Work per grid point of every kernel, for `dims`.
    fn point_work(&self, dims: &[i64]) -> Vec<u64> {
        let mut cached = self.work.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != dims || cached.1.len() != self.module.kernels.len() {
            let work = self.module.kernels.iter().map(|k| point_work(&k.body, dims)).collect();
            *cached = (dims.to_vec(), work);
        }
        cached.1.clone()
    }

    /// Weights read only as the right-hand side of products: the runtime may
    /// hold them transposed (and need not keep them as stored).
    pub fn gemm_only_weights(&self) -> Vec<(String, usize, usize)> {
        self.product_weights().into_iter().filter(|w| !w.3).map(|(name, n, k, _)| (name, n, k)).collect()
    }

    /// Weights read as the right-hand side of products, `[n, k]`, and whether
    /// kernels read them too (a tied embedding).
    pub fn product_weights(&self) -> Vec<(String, usize, usize, bool)> {
        let m = &self.module;
        let mut in_kernels = std::collections::HashSet::new();
        let mut in_gemm: Vec<(usize, &seqc_compiler::ir::kernel::Expr, &seqc_compiler::ir::kernel::Expr)> = Vec::new();
        for l in &m.launches {
            match l {
                Launch::Kernel { args, .. } => in_kernels.extend(args.iter().map(|b| b.0 as usize)),
                Launch::Gemm { a, b, bias, n, k, .. } => {
                    in_kernels.insert(a.0 as usize);
                    in_kernels.extend(bias.map(|x| x.0 as usize));
                    in_gemm.push((b.0 as usize, n, k));
                }
                Launch::CausalConv { x, k, starts, .. } => {
                    in_kernels.extend([*x, *k].into_iter().chain(*starts).map(|b| b.0 as usize))
                }
                Launch::Attention(a) => {
                    in_kernels.extend([a.q, a.k, a.v].into_iter().chain(a.keys.lo_from).map(|b| b.0 as usize))
                }
                Launch::Fill { .. } => {}
            }
        }
        let mut out: Vec<(String, usize, usize, bool)> = Vec::new();
        for (b, n, k) in in_gemm {
            if let Role::Weight(name) = &m.buffers[b].role {
                let (n, k) = (int(n, &[]) as usize, int(k, &[]) as usize);
                let shared = in_kernels.contains(&b);
                match out.iter_mut().find(|w| &w.0 == name) {
                    Some(w) => w.3 |= shared,
                    None => out.push((name.clone(), n, k, shared)),
                }
            }
        }
        out
    }

    /// Runs every launch; returns the outputs, and leaves the next states in
    /// `next` (one per next state of the module, in order). A next state that
    /// a temp buffer of its own holds is written there by the kernels
    /// directly, so that a step copies no state.
    pub fn run(
        &self,
        dims: &HashMap<&str, usize>,
        source: &dyn Source,
        next: &mut [Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, String> {
        let m = &self.module;
        let dims: Vec<i64> = m
            .dims
            .iter()
            .map(|d| match dims.get(d.as_str()) {
                Some(&v) => Ok(v as i64),
                None if d == WORKERS => Ok(rayon::current_num_threads() as i64),
                None => Err(format!("dimension `{d}` is not bound")),
            })
            .collect::<Result<_, _>>()?;
        let sizes: Vec<usize> = m.buffers.iter().map(|b| int(&b.size, &dims).max(0) as usize).collect();
        let work_per_point = self.point_work(&dims);
        let root = |mut b: usize| {
            while let Role::Alias(a) = m.buffers[b].role {
                b = a.0 as usize;
            }
            b
        };

        // Temp memory: a pool of blocks, each buffer taking a free block from its
        // first launch to its last.
        let live = m.lifetimes();
        // The pool of the last run, unless another thread's run holds it.
        let mut blocks: Vec<Vec<f32>> = self.pool.try_lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        let mut block_of: Vec<Option<usize>> = vec![None; m.buffers.len()];
        let mut free: Vec<usize> = (0..blocks.len()).collect();
        let mut ends: Vec<Vec<usize>> = vec![Vec::new(); m.launches.len() + 1];
        let mut starts: Vec<Vec<usize>> = vec![Vec::new(); m.launches.len() + 1];
        for (b, l) in live.iter().enumerate() {
            if let Some((s, e)) = l {
                starts[*s].push(b);
                ends[*e].push(b);
            }
        }
        let mut ptrs: Vec<*mut f32> = vec![std::ptr::null_mut(); m.buffers.len()];
        for (b, buf) in m.buffers.iter().enumerate() {
            match &buf.role {
                Role::Input(_) | Role::Weight(_) | Role::State { .. } => {
                    if let Some(rhs) = source.product_weight(&buf.role) {
                        let held = match rhs {
                            Rhs::F32(w) => w.len(),
                            Rhs::F32T(w) => w.len(),
                            Rhs::Bf16T(w) => w.len(),
                        };
                        if held != sizes[b] {
                            return Err(format!("`{}` has {held} elements, expected {}", buf.name, sizes[b]));
                        }
                        if source.get(&buf.role).is_none() {
                            // Read only by products, which take it from `source`.
                            ptrs[b] = EMPTY.as_ptr() as *mut f32;
                            continue;
                        }
                    }
                    let data = source.get(&buf.role).ok_or_else(|| format!("`{}` is not bound", buf.name))?;
                    if data.len() != sizes[b] {
                        return Err(format!("`{}` has {} elements, expected {}", buf.name, data.len(), sizes[b]));
                    }
                    // Kernels never write their operands. An empty one (a cache
                    // before the first position) still gets one readable element.
                    ptrs[b] = if data.is_empty() { EMPTY.as_ptr() as *mut f32 } else { data.as_ptr() as *mut f32 };
                }
                Role::Temp | Role::Alias(_) => {}
            }
        }
        if next.len() != m.next_states.len() {
            return Err(format!("{} next states to hold, {} given", m.next_states.len(), next.len()));
        }
        // Next states written in place: temps that are no output and no other
        // next state.
        let mut in_place = vec![false; m.next_states.len()];
        for (i, (_, b)) in m.next_states.iter().enumerate() {
            let r = root(b.0 as usize);
            let shared = m.outputs.iter().chain(&m.next_states).filter(|(_, x)| root(x.0 as usize) == r).count() > 1;
            if m.buffers[r].role == Role::Temp && !shared {
                next[i].clear();
                next[i].resize(sizes[r].max(1), 0.0);
                ptrs[r] = next[i].as_mut_ptr();
                in_place[i] = true;
            }
        }
        let external: Vec<usize> =
            m.next_states.iter().zip(&in_place).filter(|(_, &p)| p).map(|((_, b), _)| root(b.0 as usize)).collect();
        for (at, launch) in m.launches.iter().enumerate() {
            for &b in starts[at].iter().filter(|b| !external.contains(b)) {
                let want = sizes[b].max(1);
                // Best fit among free blocks, else a new one.
                let pick = free
                    .iter()
                    .enumerate()
                    .filter(|(_, &k)| blocks[k].len() >= want)
                    .min_by_key(|(_, &k)| blocks[k].len())
                    .map(|(i, _)| i);
                let k = match pick {
                    Some(i) => free.swap_remove(i),
                    None => {
                        blocks.push(vec![0.0; want]);
                        blocks.len() - 1
                    }
                };
                block_of[b] = Some(k);
                ptrs[b] = blocks[k].as_mut_ptr();
            }
            let p = |b: seqc_compiler::ir::kernel::BufId| ptrs[root(b.0 as usize)];
            let timer = crate::profile::start();
            match launch {
                Launch::Fill { buf, value } => {
                    let n = sizes[root(buf.0 as usize)];
                    // SAFETY: a temp block of at least `n` elements.
                    unsafe { std::slice::from_raw_parts_mut(p(*buf), n) }.fill(*value as f32);
                }
                Launch::Gemm { m: rows, n, k, a, b, bias, c } => {
                    let (rows, n, k) = (int(rows, &dims) as usize, int(n, &dims) as usize, int(k, &dims) as usize);
                    let rb = root(b.0 as usize);
                    // SAFETY: a bound or temp buffer of `sizes[rb]` elements
                    // (or EMPTY, for a weight only products read).
                    let as_stored = Rhs::F32(unsafe { std::slice::from_raw_parts(ptrs[rb], sizes[rb]) });
                    let bound = !std::ptr::eq(ptrs[rb], EMPTY.as_ptr());
                    let rhs = match source.product_weight(&m.buffers[rb].role) {
                        // Many rows: `gemm` on the stored weight, where kernels
                        // keep it, over widening the held one.
                        Some(_) if rows > crate::products::SMALL_M && bound => as_stored,
                        Some(held) => held,
                        None => as_stored,
                    };
                    // SAFETY: sizes come from the module; c is a temp distinct from a, b.
                    unsafe { gemm_nt(rows, n, k, p(*a), rhs, bias.map(|x| p(x) as *const f32), p(*c)) };
                }
                Launch::CausalConv { batch, len, channels, taps, x, k, starts, y } => {
                    let [batch, len, channels, taps] = [batch, len, channels, taps].map(|e| int(e, &dims) as usize);
                    let (xn, kn, yn) =
                        (sizes[root(x.0 as usize)], sizes[root(k.0 as usize)], sizes[root(y.0 as usize)]);
                    // SAFETY: buffers of the sizes the module gives; y is a temp
                    // distinct from x and k.
                    let (x, k, y) = unsafe {
                        (
                            std::slice::from_raw_parts(p(*x), xn),
                            std::slice::from_raw_parts(p(*k), kn),
                            std::slice::from_raw_parts_mut(p(*y), yn),
                        )
                    };
                    match starts {
                        // A packed batch: each sequence on its own.
                        Some(s) if sizes[root(s.0 as usize)] >= len => {
                            // SAFETY: a buffer of at least `len` elements, read only.
                            let starts = unsafe { std::slice::from_raw_parts(p(*s), len) };
                            for (at, n) in seqc_compiler::ir::kernel::longconv::sequences(batch, len, Some(starts)) {
                                let (from, to) = (at * channels, (at + n) * channels);
                                crate::longconv::causal_conv(1, n, channels, taps, &x[from..to], k, &mut y[from..to]);
                            }
                        }
                        Some(_) => return Err(format!("causal_conv: fewer than {len} starts")),
                        None => crate::longconv::causal_conv(batch, len, channels, taps, x, k, y),
                    }
                }
                Launch::Attention(a) => {
                    let s = a.sizes(&dims);
                    let len = |b: seqc_compiler::ir::kernel::BufId| sizes[root(b.0 as usize)];
                    let (qn, kn, vn, on) = (len(a.q), len(a.k), len(a.v), len(a.out));
                    let want = (
                        s.batch * s.q_len * s.heads * s.dim,
                        s.batch * s.kv_len * (s.heads / s.group) * s.dim,
                        s.batch * s.kv_len * (s.heads / s.group) * s.dim_v,
                        s.batch * s.q_len * s.heads * s.dim_v,
                    );
                    if (qn, kn, vn, on) != want {
                        return Err(format!(
                            "attention: buffers of {:?} elements, expected {want:?}",
                            (qn, kn, vn, on)
                        ));
                    }
                    let from_len = a.keys.lo_from.map(len);
                    if from_len.is_some_and(|n| n < s.q_len) {
                        return Err(format!("attention: {from_len:?} key bounds for {} queries", s.q_len));
                    }
                    // SAFETY: buffers of the sizes checked above; `out` is a
                    // temp distinct from the operands.
                    let from = a.keys.lo_from.map(|b| unsafe { std::slice::from_raw_parts(p(b), s.q_len) });
                    let (q, k, v, out) = unsafe {
                        (
                            std::slice::from_raw_parts(p(a.q), qn),
                            std::slice::from_raw_parts(p(a.k), kn),
                            std::slice::from_raw_parts(p(a.v), vn),
                            std::slice::from_raw_parts_mut(p(a.out), on),
                        )
                    };
                    crate::attention::attention(&s, from, q, k, v, out);
                }
                Launch::Kernel { kernel, grid, args } => {
                    let f = self.code.kernels[*kernel];
                    let bufs = Pointers(args.iter().map(|b| p(*b)).collect());
                    let n = int(grid, &dims);
                    let scratch = m.kernels[*kernel].scratch.as_ref().map(|s| int(s, &dims).max(1) as usize);
                    let work = n.max(0) as u64 * work_per_point[*kernel];
                    launch_grid(f, &bufs, &dims, n, scratch, work);
                }
            }
            if let Some(t0) = timer {
                let what = match launch {
                    Launch::Kernel { kernel, .. } => m.kernels[*kernel].name.clone(),
                    Launch::Gemm { m: rows, n, k, .. } => {
                        format!("gemm {}x{}x{}", int(rows, &dims), int(n, &dims), int(k, &dims))
                    }
                    Launch::Fill { .. } => "fill".to_string(),
                    Launch::CausalConv { len, taps, .. } => {
                        format!("causal_conv L={} taps={}", int(len, &dims), int(taps, &dims))
                    }
                    Launch::Attention(a) => {
                        format!("attention q_len={} kv_len={}", int(&a.q_len, &dims), int(&a.kv_len, &dims))
                    }
                };
                crate::profile::record(what, t0);
            }
            for &b in &ends[at] {
                if let Some(k) = block_of[b] {
                    free.push(k);
                }
            }
        }
        let read = |b: usize| {
            let r = root(b);
            // SAFETY: a live buffer of `sizes[r]` elements.
            unsafe { std::slice::from_raw_parts(ptrs[r], sizes[r]) }.to_vec()
        };
        let results = m.outputs.iter().map(|(_, b)| read(b.0 as usize)).collect();
        for (i, (_, b)) in m.next_states.iter().enumerate() {
            if in_place[i] {
                next[i].truncate(sizes[root(b.0 as usize)]);
            } else {
                next[i] = read(b.0 as usize);
            }
        }
        if let Ok(mut pool) = self.pool.try_lock() {
            *pool = blocks;
        }
        Ok(results)
    }
}

/// Statements (loop iterations included) below which a launch runs on the
/// calling thread: the cost of waking the pool. Vector loops count each
/// element, so this is a few tens of microseconds of work at most. Measured on
/// 130M Mamba decode at B = 8 (ms per step, Cranelift / LLVM): 91.0 / 72.6 at
/// 20,000 statements, 73.7 / 66.4 at 80,000, 77.0 / 62.1 at 200,000.
const INLINE_WORK: u64 = 100_000;

/// Statements below which a launch goes to the team (`team.rs`), whose
/// helpers spin between launches instead of sleeping: about a millisecond.
const TEAM_WORK: u64 = 4_000_000;

/// Statements one grid point of a kernel runs, roughly: loops count their
/// extent (a bound that depends on an index, such as a causal one, counts 64).
fn point_work(body: &[seqc_compiler::ir::kernel::Stmt], dims: &[i64]) -> u64 {
    use seqc_compiler::ir::kernel::{Expr, IntOp, Stmt};
    fn extent(e: &Expr, dims: &[i64]) -> Option<i64> {
        Some(match e {
            Expr::Int(v) => *v,
            Expr::Dim(d) => *dims.get(*d as usize)?,
            Expr::Int2(op, a, b) => match (op, extent(a, dims), extent(b, dims)) {
                (IntOp::Min, Some(x), None) | (IntOp::Min, None, Some(x)) => x,
                (op, Some(x), Some(y)) if !matches!(op, IntOp::Div | IntOp::Rem) || y != 0 => op.apply(x, y),
                _ => return None,
            },
            _ => return None,
        })
    }
    body.iter()
        .map(|s| match s {
            Stmt::For { extent: e, body, .. } => {
                extent(e, dims).unwrap_or(64).max(0) as u64 * (1 + point_work(body, dims))
            }
            Stmt::If { then, .. } => 1 + point_work(then, dims),
            _ => 1,
        })
        .fold(0u64, u64::saturating_add)
}

/// Calls `f` over grid points `0..n`, in ranges spread over the thread pool;
/// with `scratch`, each range gets its own buffer of that many elements (the
/// kernel's last parameter), reused by the grid points it runs.
fn launch_grid(f: seqc_cranelift::KernelFn, bufs: &Pointers, dims: &[i64], n: i64, scratch: Option<usize>, work: u64) {
    if n <= 0 {
        return;
    }
    let threads = rayon::current_num_threads() as i64;
    // Small launches (most of a decode step's) run on this thread: handing
    // them out costs more than they do. Medium ones go to the spinning team,
    // large ones to rayon, whose finer pieces balance the load.
    let pieces = if work < INLINE_WORK { 1 } else { (threads * 4).min(n) };
    let call = |lo: i64, hi: i64| {
        let mut own = Vec::new();
        let mut ptrs = bufs.0.clone();
        if let Some(size) = scratch {
            own = vec![0f32; size];
            ptrs.push(own.as_mut_ptr());
        }
        // SAFETY: the kernel reads and writes the buffers of its launch, within
        // their sizes, and grid points write disjoint elements; the scratch
        // buffer is this range's alone.
        unsafe { f(ptrs.as_ptr(), dims.as_ptr(), lo, hi) };
        drop(own);
    };
    if pieces <= 1 {
        call(0, n);
        return;
    }
    if work < TEAM_WORK {
        let members = crate::team::size() as i64;
        crate::team::run(&|i| call(n * i as i64 / members, n * (i as i64 + 1) / members));
        return;
    }
    crate::team::rest();
    use rayon::prelude::*;
    (0..pieces).into_par_iter().for_each(|i| call(n * i / pieces, n * (i + 1) / pieces));
}
