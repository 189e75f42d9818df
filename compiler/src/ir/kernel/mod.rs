//! The kernel IR: what the scheduler produces and every backend consumes.
//!
//! A [`KernelModule`] is a set of buffers (sizes as expressions of the run-time
//! dimensions `B`, `L`, `T`, `P`), kernels (loop nests over those buffers) and the
//! launch plan: kernel launches and library calls (GEMM) in order. Each kernel has
//! one `grid` loop, the one a backend spreads over hardware (CPU threads taking
//! ranges of it; GPU blocks and threads); everything inside is sequential code of
//! serial, vector and unrolled loops over scalar expressions. Buffers a kernel
//! declares itself carry a scope (registers, shared, global), so a GPU backend
//! places them; barriers and warp-level operations are statements, which a CPU
//! backend lowers to nothing or to plain loops.
//!
//! Types are explicit: index expressions are `i64`, values `f32`, conditions
//! `bool`, and [`Expr::ty`] gives each.

pub mod attention;
pub mod eval;
pub mod hoist;
pub mod longconv;
pub mod print;
pub mod unroll;
pub mod vector;

use crate::ir::ScalarFn;

/// The run-time dimension that says how many grid points the target runs at
/// once (CPU threads); chunked scans size their chunks by it. The runtime binds
/// it; no `.seq` dimension can take the name.
pub const WORKERS: &str = "@workers";

/// A buffer of the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    /// For the text form and error messages (`%12`, `weight "x.w"`).
    pub name: String,
    /// Elements (f32).
    pub size: Expr,
    pub role: Role,
}

/// Where a buffer's memory comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// A model input, bound by the caller.
    Input(String),
    /// A checkpoint tensor, bound when weights are loaded.
    Weight(String),
    /// A step-mode state, bound from the caller's state; `init` fills a new one.
    State { name: String, init: f64 },
    /// Written by the launches; its memory is reused after its last reader.
    Temp,
    /// The same memory as another buffer (a reshape).
    Alias(BufId),
}

/// One entry of the launch plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Launch {
    /// Runs `kernels[kernel]` over `grid` points of its grid loop, with `args` as
    /// its buffer parameters.
    Kernel { kernel: usize, grid: Expr, args: Vec<BufId> },
    /// `c[m, n] = a[m, k] * b[n, k]^T (+ bias[n])`, row-major: a library call
    /// (the `gemm` crate on the CPU, cuBLAS on CUDA).
    Gemm { m: Expr, n: Expr, k: Expr, a: BufId, b: BufId, bias: Option<BufId>, c: BufId },
    /// Every element of `buf` set to `value`.
    Fill { buf: BufId, value: f64 },
    /// A long causal convolution along the second axis, channel by channel:
    /// `y[b, l, d] = sum_{t <= l, t < taps} k[t, d] * x[b, l - t, d]` (a library
    /// call; [`longconv`] says how it runs).
    CausalConv {
        batch: Expr,
        len: Expr,
        channels: Expr,
        taps: Expr,
        x: BufId,
        k: BufId,
        starts: Option<BufId>,
        y: BufId,
    },
    /// Scaled dot-product attention (a library call; tiles of queries and keys
    /// through dense products on the CPU, a fused kernel on a GPU):
    /// `out[b, i, h, :] = sum_j softmax_j(scale * q[b, i, h, :] . k[b, j, h / group, :]) * v[b, j, h / group, :]`
    /// over the keys `j` of [`Attention::keys`] for query `i`.
    Attention(Box<attention::Attention>),
}

/// A loop nest over buffer parameters `0..params`.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub params: usize,
    /// The grid loop's variable; the body runs once per grid point.
    pub grid_var: Var,
    pub body: Vec<Stmt>,
    /// Loop variables and registers used (for backends that preallocate).
    pub vars: u32,
    pub regs: u32,
    /// Elements of a buffer private to each grid point, passed as parameter
    /// `params` (after the launch's buffers): a row of attention probabilities.
    /// Its scope is the grid point: CPU threads get one each, a GPU block keeps
    /// it in shared or local memory; it is never in the launch plan.
    pub scratch: Option<Expr>,
}

/// An `i64` loop variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub u32);

/// A mutable `f32` scalar (an accumulator, a hoisted value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopKind {
    /// In order, one iteration at a time.
    Serial,
    /// Independent iterations, `width` at a time (SIMD lanes; GPU threads).
    Vector(u32),
    /// Unrolled by `factor`.
    Unroll(u32),
}

#[derive(Clone, Debug, PartialEq, Hash)]
pub enum Stmt {
    For {
        var: Var,
        extent: Expr,
        kind: LoopKind,
        body: Vec<Stmt>,
    },
    /// `var = value`: an index computed once where it is set (a grid point's
    /// coordinates), read below.
    Let {
        var: Var,
        value: Expr,
    },
    /// `reg = value`.
    Set {
        reg: Reg,
        value: Expr,
    },
    /// `param[index] = value`.
    Store {
        param: u32,
        index: Expr,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
    },
    /// All threads of a block reach this point before any continues (GPU); a CPU
    /// backend emits nothing.
    Barrier,
}

/// Integer operations (index arithmetic). `Div` and `Rem` are Euclidean
/// (`0 <= rem < |divisor|`), which floors for positive divisors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Min,
    Max,
}

impl IntOp {
    /// The operation on values: what generated code computes and the
    /// evaluator checks (a backend folding constants calls this too).
    pub fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            IntOp::Add => a.wrapping_add(b),
            IntOp::Sub => a.wrapping_sub(b),
            IntOp::Mul => a.wrapping_mul(b),
            IntOp::Div => a.div_euclid(b),
            IntOp::Rem => a.rem_euclid(b),
            IntOp::Min => a.min(b),
            IntOp::Max => a.max(b),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    /// Whether `a op b` holds.
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    I64,
    F32,
    Bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Int(i64),
    Float(f64),
    Var(Var),
    /// A run-time dimension, by its index in [`KernelModule::dims`].
    Dim(u32),
    Reg(Reg),
    /// `param[index]`; the index is in range (the scheduler guards the rest).
    Load {
        param: u32,
        index: Box<Expr>,
    },
    Int2(IntOp, Box<Expr>, Box<Expr>),
    /// An element function of `f32` values (arithmetic and math functions;
    /// comparisons are [`Expr::Cmp`]).
    Call(ScalarFn, Vec<Expr>),
    /// Compares two `i64` or two `f32` values.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `if c then a else b`, both of one type, without branching.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    ToFloat(Box<Expr>),
    /// Truncates toward zero.
    ToInt(Box<Expr>),
}

/// Structural, with float constants by their bits (`0.0` and `-0.0`, which
/// compare equal, hash alike): kernels are grouped by it before `==` decides
/// which share code.
impl std::hash::Hash for Expr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Expr::Int(v) => v.hash(h),
            Expr::Float(v) => (if *v == 0.0 { 0 } else { v.to_bits() }).hash(h),
            Expr::Var(v) => v.hash(h),
            Expr::Dim(d) => d.hash(h),
            Expr::Reg(r) => r.hash(h),
            Expr::Load { param, index } => (param, index).hash(h),
            Expr::Int2(op, a, b) => (op, a, b).hash(h),
            Expr::Call(f, args) => (f, args).hash(h),
            Expr::Cmp(op, a, b) => (op, a, b).hash(h),
            Expr::And(a, b) | Expr::Or(a, b) => (a, b).hash(h),
            Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => a.hash(h),
            Expr::Select(c, a, b) => (c, a, b).hash(h),
        }
    }
}

impl Expr {
    pub fn ty(&self) -> Ty {
        match self {
            Expr::Int(_) | Expr::Var(_) | Expr::Dim(_) | Expr::Int2(..) | Expr::ToInt(_) => Ty::I64,
            Expr::Float(_) | Expr::Reg(_) | Expr::Load { .. } | Expr::Call(..) | Expr::ToFloat(_) => Ty::F32,
            Expr::Cmp(..) | Expr::And(..) | Expr::Or(..) | Expr::Not(_) => Ty::Bool,
            Expr::Select(_, a, _) => a.ty(),
        }
    }

    /// `a op b` on integers, folding constants (index arithmetic stays small).
    pub fn int(op: IntOp, a: Expr, b: Expr) -> Expr {
        match (op, &a, &b) {
            (_, Expr::Int(x), Expr::Int(y)) => match op {
                IntOp::Add => Expr::Int(x + y),
                IntOp::Sub => Expr::Int(x - y),
                IntOp::Mul => Expr::Int(x * y),
                IntOp::Div if *y != 0 => Expr::Int(x.div_euclid(*y)),
                IntOp::Rem if *y != 0 => Expr::Int(x.rem_euclid(*y)),
                IntOp::Min => Expr::Int(*x.min(y)),
                IntOp::Max => Expr::Int(*x.max(y)),
                _ => Expr::Int2(op, Box::new(a), Box::new(b)),
            },
            (IntOp::Add | IntOp::Sub, _, Expr::Int(0)) | (IntOp::Mul | IntOp::Div, _, Expr::Int(1)) => a,
            (IntOp::Add, Expr::Int(0), _) | (IntOp::Mul, Expr::Int(1), _) => b,
            (IntOp::Mul, Expr::Int(0), _) | (IntOp::Mul, _, Expr::Int(0)) => Expr::Int(0),
            _ => Expr::Int2(op, Box::new(a), Box::new(b)),
        }
    }

    // Constructors that fold constants, not operators: `Expr` has no `Add`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(a: Expr, b: Expr) -> Expr {
        Expr::int(IntOp::Add, a, b)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn mul(a: Expr, b: Expr) -> Expr {
        Expr::int(IntOp::Mul, a, b)
    }

    pub fn cmp(op: CmpOp, a: Expr, b: Expr) -> Expr {
        Expr::Cmp(op, Box::new(a), Box::new(b))
    }

    pub fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }

    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }

    pub fn call(f: ScalarFn, args: Vec<Expr>) -> Expr {
        Expr::Call(f, args)
    }
}

/// A compiled model: buffers, kernels and the launch plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelModule {
    pub name: String,
    /// The run-time dimensions, by index (`Expr::Dim`).
    pub dims: Vec<String>,
    pub buffers: Vec<Buffer>,
    pub kernels: Vec<Kernel>,
    pub launches: Vec<Launch>,
    /// The model's outputs, by name.
    pub outputs: Vec<(String, BufId)>,
    /// Step modules: the next value of each state, by name.
    pub next_states: Vec<(String, BufId)>,
}

impl KernelModule {
    /// Each temp buffer's live range in the launch plan: the first launch that
    /// writes it and the last that reads it (outputs and next states live to the
    /// end). The runtime reuses memory by these ranges.
    pub fn lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let mut live: Vec<Option<(usize, usize)>> = vec![None; self.buffers.len()];
        let root = |mut b: BufId| {
            while let Role::Alias(a) = self.buffers[b.0 as usize].role {
                b = a;
            }
            b
        };
        let mut touch = |b: BufId, at: usize| {
            let b = root(b);
            if self.buffers[b.0 as usize].role == Role::Temp {
                let slot = &mut live[b.0 as usize];
                *slot = Some(slot.map_or((at, at), |(s, _)| (s, at)));
            }
        };
        for (at, launch) in self.launches.iter().enumerate() {
            match launch {
                Launch::Kernel { args, .. } => args.iter().for_each(|b| touch(*b, at)),
                Launch::Gemm { a, b, bias, c, .. } => {
                    for x in [Some(*a), Some(*b), *bias, Some(*c)].into_iter().flatten() {
                        touch(x, at);
                    }
                }
                Launch::Fill { buf, .. } => touch(*buf, at),
                Launch::CausalConv { x, k, starts, y, .. } => {
                    [*x, *k, *y].into_iter().chain(*starts).for_each(|b| touch(b, at))
                }
                Launch::Attention(a) => {
                    [a.q, a.k, a.v, a.out].into_iter().chain(a.keys.lo_from).for_each(|b| touch(b, at))
                }
            }
        }
        let end = self.launches.len();
        for (_, b) in self.outputs.iter().chain(&self.next_states) {
            touch(*b, end);
        }
        live
    }
}
