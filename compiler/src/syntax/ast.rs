//! The abstract syntax tree. Every node carries its span; nothing here is resolved
//! or checked (that is `sema`). Parenthesised expressions leave no node: the
//! printer (`print.rs`) puts back exactly the parentheses the grammar needs, so
//! parse -> print -> parse gives the same tree.

use crate::diag::Span;

/// A name with its place in the source.
#[derive(Clone, Debug)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A whole `.seq` file.
#[derive(Clone, Debug, Default)]
pub struct File {
    pub items: Vec<Item>,
    /// Comments, in source order, kept for the formatter.
    pub comments: Vec<Comment>,
}

/// A `//` or `/* */` comment, text included.
#[derive(Clone, Debug)]
pub struct Comment {
    pub span: Span,
    pub text: String,
}

#[derive(Clone, Debug)]
pub enum Item {
    Layer(LayerDef),
    Model(ModelDef),
}

/// `layer NAME(params) { members }`
#[derive(Clone, Debug)]
pub struct LayerDef {
    pub name: Ident,
    pub params: Vec<Param>,
    pub members: Vec<LayerMember>,
    pub span: Span,
}

/// `NAME: TYPE [= DEFAULT]` in a layer's parameter list.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: Ident,
    pub ty: Ident,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum LayerMember {
    /// `let NAME = EXPR`: a compile-time constant.
    Let(ConstDef),
    /// `weight NAME: ...`
    Weight(WeightDecl),
    Forward(ForwardDef),
    /// What remains of a member the parser recovered from.
    Error,
}

/// `NAME = EXPR` as a constant (layer `let`, config entry).
#[derive(Clone, Debug)]
pub struct ConstDef {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// A weight declaration: a sub-layer or a raw tensor.
#[derive(Clone, Debug)]
pub struct WeightDecl {
    pub name: Ident,
    /// Boxed, like statements: the parser moves declarations often.
    pub kind: Box<WeightKind>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum WeightKind {
    /// `linear(d, 2 * d, bias = false)`
    Layer(Call),
    /// `f32[d, n] init ...`
    Tensor { ty: TensorType, init: Option<Init> },
}

/// A call with positional then keyword arguments.
#[derive(Clone, Debug)]
pub struct Call {
    pub callee: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

/// `init EXPR` or `init[i, j] = EXPR`.
#[derive(Clone, Debug)]
pub enum Init {
    Value(Expr),
    Indexed { indices: Vec<Ident>, value: Expr, span: Span },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    Bf16,
    I32,
    I64,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::Bf16)
    }
}

/// `f32[B, L, d_model]`: the dims are expressions (constants or symbols).
#[derive(Clone, Debug)]
pub struct TensorType {
    pub dtype: DType,
    pub dims: Vec<Expr>,
    pub span: Span,
}

/// `forward [NAME](params) [-> TYPE] { body }`; a model's forward has no params.
#[derive(Clone, Debug)]
pub struct ForwardDef {
    pub name: Option<Ident>,
    pub params: Option<Vec<TypedParam>>,
    pub ret: Option<TensorType>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct TypedParam {
    pub name: Ident,
    pub ty: TensorType,
    pub span: Span,
}

/// `model NAME { members }`
#[derive(Clone, Debug)]
pub struct ModelDef {
    pub name: Ident,
    pub members: Vec<ModelMember>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ModelMember {
    Config {
        entries: Vec<ConstDef>,
        span: Span,
    },
    Input(IoDecl),
    Output(IoDecl),
    Weights(WeightsBlock),
    Forward(ForwardDef),
    /// What remains of a member the parser recovered from.
    Error,
}

/// `input NAME: TYPE` or `output NAME: TYPE`.
#[derive(Clone, Debug)]
pub struct IoDecl {
    pub name: Ident,
    pub ty: TensorType,
    pub span: Span,
}

/// `weights ["prefix"] { entries }`
#[derive(Clone, Debug)]
pub struct WeightsBlock {
    pub prefix: Option<(String, Span)>,
    pub entries: Vec<WeightEntry>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum WeightEntry {
    /// `NAME: LAYER_CALL` or `NAME: TYPE [init ...]`
    Decl(WeightDecl),
    /// `NAME { ... }` (count `None`) or `NAME[count] { ... }`
    Group { name: Ident, count: Option<Expr>, entries: Vec<WeightEntry>, span: Span },
}

/// An index on the left of a definition, with an optional extent: `i in L`.
#[derive(Clone, Debug)]
pub struct IndexBinder {
    pub name: Ident,
    pub extent: Option<Expr>,
}

#[derive(Clone, Debug)]
pub struct Stmt {
    /// Boxed: statements are large and the parser moves them often.
    pub kind: Box<StmtKind>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum StmtKind {
    /// `let a = e` or `let a, b = split(...)`
    Let {
        names: Vec<Ident>,
        value: Expr,
    },
    /// `let s[b, i, j in L] = e [where c]`
    Define {
        name: Ident,
        indices: Vec<IndexBinder>,
        value: Expr,
        cond: Option<Expr>,
    },
    /// `x = e`
    Assign {
        name: Ident,
        value: Expr,
    },
    /// `h[b, d, n] = e [where c]`: a scan update or output.
    IndexedAssign {
        name: Ident,
        indices: Vec<Ident>,
        value: Expr,
        cond: Option<Expr>,
    },
    /// `state h[b, d, n] = init`
    State {
        name: Ident,
        indices: Vec<Ident>,
        init: Expr,
    },
    /// `for blk in layers { ... }`
    For {
        var: Ident,
        group: Expr,
        body: Vec<Stmt>,
    },
    /// `scan l in L { ... }`
    Scan {
        index: Ident,
        dim: Expr,
        body: Vec<Stmt>,
    },
    Return(Expr),
    /// What remains of a statement the parser recovered from.
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne)
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
    Mean,
    Softmax,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Mean => "mean",
            ReduceOp::Softmax => "softmax",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Height of the tree under this node; the grammar refuses trees taller than
    /// [`crate::limits::MAX_EXPR_DEPTH`], so every recursive walk is bounded.
    pub depth: u32,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Name(String),
    /// `blk.mixer`, `embedding.weight`
    Member(Box<Expr>, Ident),
    /// `f(a, k = v)`; builtin reductions written as functions (`max(a, b)`) are
    /// calls of the name `max`.
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    /// `x[b, l - 1, d]`
    Index {
        base: Box<Expr>,
        indices: Vec<Expr>,
    },
    /// `[d_inner, d_inner]`
    List(Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    /// `sum[n] body`; the body extends as far right as possible.
    Reduce {
        op: ReduceOp,
        indices: Vec<Ident>,
        body: Box<Expr>,
    },
    /// What remains of an expression the parser recovered from.
    Error,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        let depth = 1 + match &kind {
            ExprKind::Member(e, _) | ExprKind::Unary(_, e) => e.depth,
            ExprKind::Call { callee, args } => {
                args.iter().map(|a| a.value.depth).chain([callee.depth]).max().unwrap_or(0)
            }
            ExprKind::Index { base, indices } => indices.iter().map(|e| e.depth).chain([base.depth]).max().unwrap_or(0),
            ExprKind::List(items) => items.iter().map(|e| e.depth).max().unwrap_or(0),
            ExprKind::Binary(_, a, b) => a.depth.max(b.depth),
            ExprKind::If { cond, then, otherwise } => cond.depth.max(then.depth).max(otherwise.depth),
            ExprKind::Reduce { body, .. } => body.depth,
            _ => 0,
        };
        Expr { kind, span, depth }
    }

    /// The name, when the expression is a plain name.
    pub fn as_name(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Name(n) => Some(n),
            _ => None,
        }
    }
}
