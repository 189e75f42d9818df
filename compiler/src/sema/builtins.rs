//! The builtin layers: their parameters, the weights they declare, and how their
//! forwards transform a tensor type. Everything else in the prelude is `.seq`.

use super::types::{Const, Dim};
use crate::syntax::ast::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Linear,
    Embed,
    RmsNorm,
    LayerNorm,
    Conv1d,
}

/// A parameter: name, type (`int`, `float`, `bool`) and default.
pub struct BuiltinParam {
    pub name: &'static str,
    pub ty: &'static str,
    pub default: Option<Const>,
}

/// How `seqc init` fills a weight by default.
#[derive(Clone, Debug, PartialEq)]
pub enum DefaultInit {
    /// uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's linear and conv default
    FanIn(i64),
    Normal(f64),
    Ones,
    Zeros,
}

impl Builtin {
    pub fn lookup(name: &str) -> Option<Builtin> {
        Some(match name {
            "linear" => Builtin::Linear,
            "embed" => Builtin::Embed,
            "rmsnorm" => Builtin::RmsNorm,
            "layernorm" => Builtin::LayerNorm,
            "conv1d" => Builtin::Conv1d,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Linear => "linear",
            Builtin::Embed => "embed",
            Builtin::RmsNorm => "rmsnorm",
            Builtin::LayerNorm => "layernorm",
            Builtin::Conv1d => "conv1d",
        }
    }

    pub fn params(self) -> Vec<BuiltinParam> {
        let p = |name, ty, default| BuiltinParam { name, ty, default };
        match self {
            Builtin::Linear => {
                vec![p("d_in", "int", None), p("d_out", "int", None), p("bias", "bool", Some(Const::Bool(true)))]
            }
            Builtin::Embed => vec![p("n", "int", None), p("d", "int", None)],
            Builtin::RmsNorm => vec![p("d", "int", None), p("eps", "float", Some(Const::Float(1e-6)))],
            Builtin::LayerNorm => vec![p("d", "int", None), p("eps", "float", Some(Const::Float(1e-5)))],
            Builtin::Conv1d => {
                vec![p("channels", "int", None), p("width", "int", None), p("bias", "bool", Some(Const::Bool(true)))]
            }
        }
    }

    /// The weights of an instance with these parameter values: name, shape, init.
    pub fn weights(self, args: &dyn Fn(&str) -> Const) -> Vec<(&'static str, Vec<i64>, DefaultInit)> {
        let int = |n: &str| match args(n) {
            Const::Int(v) => v,
            _ => 0,
        };
        let flag = |n: &str| matches!(args(n), Const::Bool(true));
        match self {
            Builtin::Linear => {
                let (i, o) = (int("d_in"), int("d_out"));
                let mut w = vec![("weight", vec![o, i], DefaultInit::FanIn(i))];
                if flag("bias") {
                    w.push(("bias", vec![o], DefaultInit::FanIn(i)));
                }
                w
            }
            Builtin::Embed => vec![("weight", vec![int("n"), int("d")], DefaultInit::Normal(1.0))],
            Builtin::RmsNorm => vec![("weight", vec![int("d")], DefaultInit::Ones)],
            Builtin::LayerNorm => {
                vec![("weight", vec![int("d")], DefaultInit::Ones), ("bias", vec![int("d")], DefaultInit::Zeros)]
            }
            Builtin::Conv1d => {
                let (c, w) = (int("channels"), int("width"));
                let mut ws = vec![("weight", vec![c, 1, w], DefaultInit::FanIn(w))];
                if flag("bias") {
                    ws.push(("bias", vec![c], DefaultInit::FanIn(w)));
                }
                ws
            }
        }
    }

    /// What the forward needs of its input's last axis, and the dtype it wants.
    pub fn input_features(self, args: &dyn Fn(&str) -> Const) -> (Option<i64>, bool) {
        let int = |n: &str| match args(n) {
            Const::Int(v) => Some(v),
            _ => None,
        };
        match self {
            Builtin::Linear => (int("d_in"), true),
            Builtin::Embed => (None, false),
            Builtin::RmsNorm | Builtin::LayerNorm => (int("d"), true),
            Builtin::Conv1d => (int("channels"), true),
        }
    }

    /// The output's last axis (or the appended one, for `embed`).
    pub fn output_features(self, args: &dyn Fn(&str) -> Const) -> Option<Dim> {
        let int = |n: &str| match args(n) {
            Const::Int(v) => Some(Dim::Known(v)),
            _ => None,
        };
        match self {
            Builtin::Linear => int("d_out"),
            Builtin::Embed => int("d"),
            Builtin::RmsNorm | Builtin::LayerNorm => int("d"),
            Builtin::Conv1d => int("channels"),
        }
    }

    /// Whether the layer normalises over its input's last axis (a reduction there).
    pub fn reduces_last_axis(self) -> bool {
        matches!(self, Builtin::Linear | Builtin::RmsNorm | Builtin::LayerNorm)
    }
}

pub const WEIGHT_DTYPE: DType = DType::F32;

/// Tensor functions callable in a forward, with their positional arity.
pub const TENSOR_FUNCTIONS: &[&str] = &["split", "concat", "reshape", "linear", "softmax", "rope", "fftconv"];
