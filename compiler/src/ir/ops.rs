//! The op table: every graph op, its operands and attributes. The printer, the
//! verifier and the interpreter match on [`Op`] exhaustively, so a new op is one
//! variant here and one arm in each of them (docs/add-an-op.md).

use super::Scalar;
use crate::sema::types::Dim;

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A model input, by name. No operands.
    Input { name: String },
    /// A checkpoint tensor, by name. No operands.
    Weight { name: String },
    /// A scalar constant (`f32[]`). No operands.
    Const { value: f64 },
    /// `x @ w^T (+ b)`: operands x `[..., in]`, w `[out, in]`, b `[out]` when `bias`.
    Linear { bias: bool },
    /// Rows of a table: operands ids `[...]` (integer), table `[n, d]`.
    Embed,
    /// `x * rsqrt(mean(x^2) + eps) * w` over the last axis: operands x, w.
    RmsNorm { eps: f64 },
    /// `(x - mean) * rsqrt(var + eps) * w + b` over the last axis: operands x, w, b.
    LayerNorm { eps: f64 },
    /// Causal depthwise convolution along `L`: operands x `[B, L, C]`, w `[C, 1, W]`,
    /// b `[C]` when `bias`.
    Conv1d { bias: bool },
    /// Causal long convolution along `L`: operands x `[B, L, D]`, k `[Lk, D]`,
    /// and when `starts`, a packed batch's starts `[L]` (each position's first
    /// position: the convolution reads nothing before it).
    FftConv { starts: bool },
    /// Softmax over the last axis. Operand x.
    Softmax,
    /// Rotary embedding (half rotation) of x `[B, L, H, E]` by position along `L`.
    Rope { theta: f64 },
    /// Same elements, the result's shape. Operand x.
    Reshape,
    /// Pieces of the last axis, one result each. Operand x.
    Split { sizes: Vec<i64> },
    /// Joins operands along the last axis.
    Concat,
    /// Element-wise and reduction work over a loop nest.
    Generic(Box<Generic>),
    /// Attention recognised by `attention-fusion`: a `generic` of the form
    /// `sum[j] (softmax[j] score) * value where mask`, which a backend runs as one
    /// tiled online-softmax kernel that never stores the `[L, L]` scores.
    Attention(Box<Generic>),
    /// A recurrence along one axis.
    Scan(Box<ScanOp>),
    /// Step graphs only (`passes/step_derivation.rs`): the state carried from the
    /// previous position, by name; `init` fills it before the first position.
    StateInput { name: String, init: f64 },
    /// Step graphs only: a value's kept positions, then the current one, joined
    /// along `axis`. Operands past, current.
    Append { axis: usize },
    /// Step graphs only: the last positions of the operand along `axis`, as many
    /// as the result has.
    Tail { axis: usize },
}

/// A loop index: its name (for printing) and extent.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopVar {
    pub name: String,
    pub extent: Dim,
}

/// `result[v0, ..., v{rank-1}] = body where cond`: the first `rank` loop indices
/// are the result's axes, the others are bound by reductions in `body`.
#[derive(Clone, Debug, PartialEq)]
pub struct Generic {
    pub vars: Vec<LoopVar>,
    pub rank: usize,
    pub body: Scalar,
    /// Restricts the points (result and reduction indices) the body ranges over;
    /// a result element for which it holds nowhere is masked.
    pub cond: Option<Scalar>,
}

/// A scan state: its shape and initial value.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub name: String,
    pub shape: Vec<Dim>,
    pub init: StateInit,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StateInit {
    Const(f64),
    /// An operand that broadcasts to the state's shape.
    Operand(u32),
}

/// One statement of a scan: `target[left...] = body where cond`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanStmt {
    /// The state updated (updates) or the result defined (outputs).
    pub target: u32,
    /// Loop indices of the left side, in order.
    pub left: Vec<u32>,
    pub body: Scalar,
    pub cond: Option<Scalar>,
}

/// What the `linear-recurrence` pass found about a state's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recurrence {
    /// Not analysed yet.
    Unknown,
    /// `h = a * h + b` or `h[i] = b[i] + sum[j] a[i, j] * h[j]`, with `a` and `b` free
    /// of states: a chunked or tree-parallel scan may run it; when `a` does not
    /// depend on the scan index, so may a convolution.
    Linear { time_invariant: bool },
    /// Anything else: runs sequentially along the axis.
    Nonlinear,
}

/// `for axis in 0..extent { states = updates(states); outputs[axis] = ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanOp {
    /// The loop index of the scan axis.
    pub axis: u32,
    pub vars: Vec<LoopVar>,
    pub states: Vec<State>,
    pub updates: Vec<ScanStmt>,
    pub outputs: Vec<ScanStmt>,
    /// One per state, in state order.
    pub recurrence: Vec<Recurrence>,
}

impl Op {
    /// The op's name in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Weight { .. } => "weight",
            Op::Const { .. } => "const",
            Op::Linear { .. } => "linear",
            Op::Embed => "embed",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::LayerNorm { .. } => "layernorm",
            Op::Conv1d { .. } => "conv1d",
            Op::FftConv { .. } => "fftconv",
            Op::Softmax => "softmax",
            Op::Rope { .. } => "rope",
            Op::Reshape => "reshape",
            Op::Split { .. } => "split",
            Op::Concat => "concat",
            Op::Generic(_) => "generic",
            Op::Attention(_) => "attention",
            Op::Scan(_) => "scan",
            Op::StateInput { .. } => "state",
            Op::Append { .. } => "append",
            Op::Tail { .. } => "tail",
        }
    }

    /// How many operands the op takes (`None`: any number).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input { .. } | Op::Weight { .. } | Op::Const { .. } | Op::StateInput { .. } => 0,
            Op::Append { .. } => 2,
            Op::Tail { .. } => 1,
            Op::Linear { bias } | Op::Conv1d { bias } => 2 + usize::from(*bias),
            Op::Embed | Op::RmsNorm { .. } => 2,
            Op::FftConv { starts } => 2 + usize::from(*starts),
            Op::LayerNorm { .. } => 3,
            Op::Softmax | Op::Rope { .. } | Op::Reshape | Op::Split { .. } => 1,
            Op::Concat | Op::Generic(_) | Op::Attention(_) | Op::Scan(_) => return None,
        })
    }
}
