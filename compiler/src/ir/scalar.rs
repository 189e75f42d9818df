//! Scalar expressions: the bodies of `generic` and `scan`. They read operands at
//! index expressions, combine values with element functions, and may reduce over
//! loop indices. Index expressions are the same type, evaluated as integers.

use crate::syntax::ast::ReduceOp;

/// Element functions and operators of a scalar body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarFn {
    Neg,
    Not,
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
    Max,
    Min,
    Pow,
    Exp,
    Log,
    Log1p,
    Sqrt,
    Rsqrt,
    Abs,
    Tanh,
    Sigmoid,
    Silu,
    Gelu,
    Relu,
    Softplus,
    Cos,
    Sin,
}

impl ScalarFn {
    /// The name in the text form (operators by their `.seq` spelling).
    pub fn name(self) -> &'static str {
        use ScalarFn::*;
        match self {
            Neg => "neg",
            Not => "not",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            Eq => "==",
            Ne => "!=",
            And => "&&",
            Or => "||",
            Max => "max",
            Min => "min",
            Pow => "pow",
            Exp => "exp",
            Log => "log",
            Log1p => "log1p",
            Sqrt => "sqrt",
            Rsqrt => "rsqrt",
            Abs => "abs",
            Tanh => "tanh",
            Sigmoid => "sigmoid",
            Silu => "silu",
            Gelu => "gelu",
            Relu => "relu",
            Softplus => "softplus",
            Cos => "cos",
            Sin => "sin",
        }
    }

    /// An element function by its `.seq` name.
    pub fn function(name: &str) -> Option<ScalarFn> {
        use ScalarFn::*;
        Some(match name {
            "max" => Max,
            "min" => Min,
            "pow" => Pow,
            "exp" => Exp,
            "log" => Log,
            "log1p" => Log1p,
            "sqrt" => Sqrt,
            "rsqrt" => Rsqrt,
            "abs" => Abs,
            "tanh" => Tanh,
            "sigmoid" => Sigmoid,
            "silu" => Silu,
            "gelu" => Gelu,
            "relu" => Relu,
            "softplus" => Softplus,
            "cos" => Cos,
            "sin" => Sin,
            _ => return None,
        })
    }

    pub fn is_infix(self) -> bool {
        use ScalarFn::*;
        matches!(self, Add | Sub | Mul | Div | Lt | Le | Gt | Ge | Eq | Ne | And | Or)
    }
}

/// A scalar expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Const(f64),
    /// A loop index of the enclosing op, by number.
    Index(u32),
    /// The run-time size of a symbolic dimension (`L`).
    Size(String),
    /// Operand `operand` at the given indices; out of range reads 0.
    Load {
        operand: u32,
        indices: Vec<Scalar>,
    },
    /// A scan state (the previous step's in an update, the new one in an output).
    State {
        state: u32,
        indices: Vec<Scalar>,
    },
    Apply(ScalarFn, Vec<Scalar>),
    Select(Box<Scalar>, Box<Scalar>, Box<Scalar>),
    /// A reduction over loop indices `vars`, skipping points where the op's
    /// condition is false or the body is masked.
    Reduce {
        op: ReduceOp,
        vars: Vec<u32>,
        body: Box<Scalar>,
    },
}

impl Scalar {
    pub fn apply(f: ScalarFn, args: Vec<Scalar>) -> Scalar {
        Scalar::Apply(f, args)
    }

    /// Every operand number the expression reads.
    pub fn operands(&self, out: &mut Vec<u32>) {
        self.visit(&mut |e| {
            if let Scalar::Load { operand, .. } = e {
                out.push(*operand);
            }
        });
    }

    /// Calls `f` on every node of the expression, parents before children: the
    /// one walk the queries below (and the passes' analyses) are written with.
    pub fn visit(&self, f: &mut dyn FnMut(&Scalar)) {
        f(self);
        match self {
            Scalar::Load { indices, .. } | Scalar::State { indices, .. } => indices.iter().for_each(|i| i.visit(f)),
            Scalar::Apply(_, args) => args.iter().for_each(|a| a.visit(f)),
            Scalar::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
            Scalar::Reduce { body, .. } => body.visit(f),
            Scalar::Const(_) | Scalar::Index(_) | Scalar::Size(_) => {}
        }
    }

    /// Whether any node satisfies `p`.
    pub fn any(&self, p: &dyn Fn(&Scalar) -> bool) -> bool {
        let mut found = false;
        self.visit(&mut |e| found |= p(e));
        found
    }
}

/// The value of a function on constants (the reference semantics).
pub fn apply_fn(f: ScalarFn, x: &[f64]) -> f64 {
    let b = |c: bool| f64::from(u8::from(c));
    match f {
        ScalarFn::Neg => -x[0],
        ScalarFn::Not => b(x[0] == 0.0),
        ScalarFn::Add => x[0] + x[1],
        ScalarFn::Sub => x[0] - x[1],
        ScalarFn::Mul => x[0] * x[1],
        ScalarFn::Div => x[0] / x[1],
        ScalarFn::Lt => b(x[0] < x[1]),
        ScalarFn::Le => b(x[0] <= x[1]),
        ScalarFn::Gt => b(x[0] > x[1]),
        ScalarFn::Ge => b(x[0] >= x[1]),
        ScalarFn::Eq => b(x[0] == x[1]),
        ScalarFn::Ne => b(x[0] != x[1]),
        ScalarFn::And => b(x[0] != 0.0 && x[1] != 0.0),
        ScalarFn::Or => b(x[0] != 0.0 || x[1] != 0.0),
        other => crate::sema::consts::apply(other.name(), x),
    }
}

impl Scalar {
    /// The expression with loop indices, operands and states renumbered.
    pub fn renumbered(
        self,
        var: &dyn Fn(u32) -> u32,
        operand: &dyn Fn(u32) -> u32,
        state: &dyn Fn(u32) -> u32,
    ) -> Scalar {
        let all = |xs: Vec<Scalar>| xs.into_iter().map(|x| x.renumbered(var, operand, state)).collect();
        match self {
            Scalar::Index(i) => Scalar::Index(var(i)),
            Scalar::Load { operand: k, indices } => Scalar::Load { operand: operand(k), indices: all(indices) },
            Scalar::State { state: k, indices } => Scalar::State { state: state(k), indices: all(indices) },
            Scalar::Apply(f, args) => Scalar::Apply(f, all(args)),
            Scalar::Select(c, a, b) => Scalar::Select(
                Box::new(c.renumbered(var, operand, state)),
                Box::new(a.renumbered(var, operand, state)),
                Box::new(b.renumbered(var, operand, state)),
            ),
            Scalar::Reduce { op, vars, body } => Scalar::Reduce {
                op,
                vars: vars.into_iter().map(var).collect(),
                body: Box::new(body.renumbered(var, operand, state)),
            },
            other @ (Scalar::Const(_) | Scalar::Size(_)) => other,
        }
    }

    /// Whether loop index `i` occurs anywhere in the expression.
    pub fn mentions(&self, i: u32) -> bool {
        self.any(&|e| match e {
            Scalar::Index(j) => *j == i,
            Scalar::Reduce { vars, .. } => vars.contains(&i),
            _ => false,
        })
    }

    /// Whether the expression reads any scan state.
    pub fn reads_state(&self) -> bool {
        self.any(&|e| matches!(e, Scalar::State { .. }))
    }
}

impl Scalar {
    /// The expression rebuilt bottom-up: `f` sees each node after its children
    /// have been rebuilt, and what it returns is not visited again.
    pub fn map(self, f: &mut dyn FnMut(Scalar) -> Scalar) -> Scalar {
        let node = match self {
            Scalar::Load { operand, indices } => {
                Scalar::Load { operand, indices: indices.into_iter().map(|i| i.map(f)).collect() }
            }
            Scalar::State { state, indices } => {
                Scalar::State { state, indices: indices.into_iter().map(|i| i.map(f)).collect() }
            }
            Scalar::Apply(op, args) => Scalar::Apply(op, args.into_iter().map(|a| a.map(f)).collect()),
            Scalar::Select(c, a, b) => Scalar::Select(Box::new(c.map(f)), Box::new(a.map(f)), Box::new(b.map(f))),
            Scalar::Reduce { op, vars, body } => Scalar::Reduce { op, vars, body: Box::new(body.map(f)) },
            leaf @ (Scalar::Const(_) | Scalar::Index(_) | Scalar::Size(_)) => leaf,
        };
        f(node)
    }
}
