//! Runs a kernel module directly, in f32, statement by statement: the meaning of
//! the kernel IR written down, and the check that separates a scheduling bug
//! from a code generation bug (tests compare it with the graph interpreter and
//! with the backends).

use super::{Expr, KernelModule, Launch, Role, Stmt};
use crate::ir::scalar::apply_fn;
use crate::ir::ScalarFn;

/// Evaluates an expression to an integer (index arithmetic).
pub fn int(e: &Expr, dims: &[i64]) -> i64 {
    let mut frame = Frame { dims, map: &[], vars: &mut [], regs: &mut [], bufs: &mut [] };
    frame.int(e)
}

/// Every buffer's memory, by id (aliases resolved by the caller).
pub struct Memory {
    pub buffers: Vec<Vec<f32>>,
}

/// Runs the launches of `m` over `mem`, whose buffers must already have their
/// sizes (inputs, weights and states filled). Aliases are resolved here.
pub fn run(m: &KernelModule, dims: &[i64], mem: &mut Memory) {
    let root = |mut b: usize| {
        while let Role::Alias(a) = m.buffers[b].role {
            b = a.0 as usize;
        }
        b
    };
    for launch in &m.launches {
        match launch {
            Launch::Fill { buf, value } => {
                mem.buffers[root(buf.0 as usize)].iter_mut().for_each(|x| *x = *value as f32)
            }
            Launch::CausalConv { batch, len, channels, taps, x, k, starts, y } => {
                let [batch, len, channels, taps] = [batch, len, channels, taps].map(|e| int(e, dims) as usize);
                let (x, k, y) = (root(x.0 as usize), root(k.0 as usize), root(y.0 as usize));
                let mut out = vec![0f32; batch * len * channels];
                let starts = starts.map(|s| mem.buffers[root(s.0 as usize)].as_slice());
                for (at, n) in super::longconv::sequences(batch, len, starts) {
                    let (from, to) = (at * channels, (at + n) * channels);
                    let x = &mem.buffers[x][from..to];
                    super::longconv::direct(1, n, channels, taps, x, &mem.buffers[k], &mut out[from..to]);
                }
                mem.buffers[y] = out;
            }
            Launch::Attention(a) => {
                let s = a.sizes(dims);
                let [q, k, v, o] = [a.q, a.k, a.v, a.out].map(|b| root(b.0 as usize));
                let mut out = vec![0f32; s.batch * s.q_len * s.heads * s.dim_v];
                let from = a.keys.lo_from.map(|b| mem.buffers[root(b.0 as usize)].as_slice());
                super::attention::direct(&s, from, &mem.buffers[q], &mem.buffers[k], &mem.buffers[v], &mut out);
                mem.buffers[o] = out;
            }
            Launch::Gemm { m: rows, n, k, a, b, bias, c } => {
                let (rows, n, k) = (int(rows, dims) as usize, int(n, dims) as usize, int(k, dims) as usize);
                let (a, b, c) = (root(a.0 as usize), root(b.0 as usize), root(c.0 as usize));
                let bias = bias.map(|x| mem.buffers[root(x.0 as usize)].clone());
                let mut out = vec![0f32; rows * n];
                for i in 0..rows {
                    for j in 0..n {
                        let mut acc = bias.as_ref().map_or(0.0, |bv| bv[j]);
                        for t in 0..k {
                            acc += mem.buffers[a][i * k + t] * mem.buffers[b][j * k + t];
                        }
                        out[i * n + j] = acc;
                    }
                }
                mem.buffers[c] = out;
            }
            Launch::Kernel { kernel, grid, args } => {
                let kern = &m.kernels[*kernel];
                // Move the argument buffers out (once each, as a buffer may be
                // passed twice) so the frame can borrow them mutably.
                let mut ids: Vec<usize> = Vec::new();
                let map: Vec<usize> = args
                    .iter()
                    .map(|b| {
                        let r = root(b.0 as usize);
                        ids.iter().position(|&i| i == r).unwrap_or_else(|| {
                            ids.push(r);
                            ids.len() - 1
                        })
                    })
                    .collect();
                let mut bufs: Vec<Vec<f32>> = ids.iter().map(|&i| std::mem::take(&mut mem.buffers[i])).collect();
                let mut map = map;
                if let Some(size) = &kern.scratch {
                    bufs.push(vec![0.0; int(size, dims).max(1) as usize]);
                    map.push(bufs.len() - 1);
                }
                let mut vars = vec![0i64; kern.vars as usize + 1];
                let mut regs = vec![0f32; kern.regs as usize];
                for g in 0..int(grid, dims) {
                    vars[kern.grid_var.0 as usize] = g;
                    let mut frame = Frame { dims, map: &map, vars: &mut vars, regs: &mut regs, bufs: &mut bufs };
                    frame.block(&kern.body);
                }
                for (&i, b) in ids.iter().zip(bufs) {
                    mem.buffers[i] = b;
                }
                let _ = map;
            }
        }
    }
}

struct Frame<'a> {
    dims: &'a [i64],
    /// Parameter -> index in `bufs`.
    map: &'a [usize],
    vars: &'a mut [i64],
    regs: &'a mut [f32],
    bufs: &'a mut [Vec<f32>],
}

impl Frame<'_> {
    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            match s {
                Stmt::For { var, extent, body, .. } => {
                    for i in 0..self.int(extent) {
                        self.vars[var.0 as usize] = i;
                        self.block(body);
                    }
                }
                Stmt::Let { var, value } => self.vars[var.0 as usize] = self.int(value),
                Stmt::Set { reg, value } => self.regs[reg.0 as usize] = self.float(value),
                Stmt::Store { param, index, value } => {
                    let (i, v) = (self.int(index) as usize, self.float(value));
                    self.bufs[self.map[*param as usize]][i] = v;
                }
                Stmt::If { cond, then } => {
                    if self.bool(cond) {
                        self.block(then);
                    }
                }
                Stmt::Barrier => {}
            }
        }
    }

    fn int(&mut self, e: &Expr) -> i64 {
        match e {
            Expr::Int(v) => *v,
            Expr::Var(v) => self.vars[v.0 as usize],
            Expr::Dim(d) => self.dims[*d as usize],
            Expr::Int2(op, a, b) => {
                let (a, b) = (self.int(a), self.int(b));
                op.apply(a, b)
            }
            Expr::ToInt(x) => self.float(x) as i64,
            Expr::Select(c, a, b) => {
                if self.bool(c) {
                    self.int(a)
                } else {
                    self.int(b)
                }
            }
            other => panic!("not an integer expression: {other:?}"),
        }
    }

    fn float(&mut self, e: &Expr) -> f32 {
        match e {
            Expr::Float(v) => *v as f32,
            Expr::Reg(r) => self.regs[r.0 as usize],
            Expr::Load { param, index } => {
                let i = self.int(index) as usize;
                self.bufs[self.map[*param as usize]][i]
            }
            Expr::Call(f, args) => {
                let x: Vec<f64> = args.iter().map(|a| self.float(a) as f64).collect();
                call(*f, &x)
            }
            Expr::Select(c, a, b) => {
                if self.bool(c) {
                    self.float(a)
                } else {
                    self.float(b)
                }
            }
            Expr::ToFloat(x) => self.int(x) as f32,
            other => panic!("not a value expression: {other:?}"),
        }
    }

    fn bool(&mut self, e: &Expr) -> bool {
        match e {
            Expr::Cmp(op, a, b) => {
                let (x, y) = if a.ty() == super::Ty::I64 {
                    (self.int(a) as f64, self.int(b) as f64)
                } else {
                    (self.float(a) as f64, self.float(b) as f64)
                };
                op.holds(x, y)
            }
            Expr::And(a, b) => self.bool(a) && self.bool(b),
            Expr::Or(a, b) => self.bool(a) || self.bool(b),
            Expr::Not(a) => !self.bool(a),
            other => panic!("not a condition: {other:?}"),
        }
    }
}

/// An element function in f32 (computed in f64, rounded once).
pub fn call(f: ScalarFn, x: &[f64]) -> f32 {
    apply_fn(f, x) as f32
}

/// Runs `m` with its dimensions by name and its inputs, weights and states by
/// name (flat, row-major); returns the outputs and then the next states.
pub fn run_named(
    m: &KernelModule,
    dims: &std::collections::HashMap<String, usize>,
    tensors: &std::collections::HashMap<String, Vec<f32>>,
) -> Result<Vec<(String, Vec<f32>)>, String> {
    let dims: Vec<i64> = m
        .dims
        .iter()
        .map(|d| match dims.get(d) {
            Some(&v) => Ok(v as i64),
            // The evaluator runs one grid point at a time.
            None if d == super::WORKERS => Ok(1),
            None => Err(format!("dimension `{d}` is not given")),
        })
        .collect::<Result<_, _>>()?;
    let mut mem = Memory { buffers: Vec::with_capacity(m.buffers.len()) };
    for b in &m.buffers {
        let size = int(&b.size, &dims) as usize;
        let data = match &b.role {
            Role::Input(n) | Role::Weight(n) | Role::State { name: n, .. } => {
                let t = tensors.get(n).ok_or_else(|| format!("`{n}` is not given"))?;
                if t.len() != size {
                    return Err(format!("`{n}` has {} elements, expected {size}", t.len()));
                }
                t.clone()
            }
            Role::Temp => vec![0.0; size],
            Role::Alias(_) => Vec::new(),
        };
        mem.buffers.push(data);
    }
    run(m, &dims, &mut mem);
    let root = |mut b: usize| {
        while let Role::Alias(a) = m.buffers[b].role {
            b = a.0 as usize;
        }
        b
    };
    Ok(m.outputs
        .iter()
        .chain(&m.next_states)
        .map(|(n, b)| (n.clone(), mem.buffers[root(b.0 as usize)].clone()))
        .collect())
}
