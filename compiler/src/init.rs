//! `seqc init`: initial weights from each declaration's `init`, deterministic for
//! a seed. Each tensor draws from its own stream (seeded by the seed and the
//! tensor's name), so adding a weight does not change the others.

use crate::ir::interp::Tensor;
use crate::sema::{consts, CheckedModel, Const, DefaultInit, InitSpec};
use crate::syntax::ast::{BinOp, Expr, ExprKind, UnOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use std::collections::HashMap;

/// Every weight of the model, by checkpoint name.
pub fn init_weights(model: &CheckedModel, seed: u64) -> HashMap<String, Tensor> {
    model.weights.iter().map(|w| (w.name.clone(), init_one(&w.name, &w.shape, &w.init, seed))).collect()
}

fn stream(name: &str, seed: u64) -> ChaCha8Rng {
    // FNV-1a of the name, mixed with the seed.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    ChaCha8Rng::seed_from_u64(h ^ seed.wrapping_mul(0x9E3779B97F4A7C15))
}

fn normal(rng: &mut ChaCha8Rng, std: f64) -> f64 {
    Normal::new(0.0, std).map(|d| d.sample(rng)).unwrap_or(0.0)
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if lo >= hi {
        return lo;
    }
    Uniform::new(lo, hi).map(|d| d.sample(rng)).unwrap_or(lo)
}

fn init_one(name: &str, shape: &[i64], spec: &InitSpec, seed: u64) -> Tensor {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    let mut rng = stream(name, seed);
    let data: Vec<f64> = match spec {
        InitSpec::Default(DefaultInit::FanIn(fan_in)) => {
            let b = 1.0 / (*fan_in as f64).sqrt();
            (0..n).map(|_| uniform(&mut rng, -b, b)).collect()
        }
        InitSpec::Default(DefaultInit::Normal(s)) | InitSpec::Normal(s) => {
            (0..n).map(|_| normal(&mut rng, *s)).collect()
        }
        InitSpec::Default(DefaultInit::Ones) => vec![1.0; n],
        InitSpec::Default(DefaultInit::Zeros) => vec![0.0; n],
        InitSpec::Const(v) => vec![*v; n],
        InitSpec::Uniform(a, b) => (0..n).map(|_| uniform(&mut rng, *a, *b)).collect(),
        InitSpec::Indexed { indices, expr, consts } => {
            let env: HashMap<&str, Const> = consts.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let mut data = Vec::with_capacity(n);
            let mut idx = vec![0usize; shape.len()];
            for _ in 0..n {
                let vars: HashMap<&str, f64> =
                    indices.iter().map(|s| s.as_str()).zip(idx.iter().map(|&i| i as f64)).collect();
                data.push(eval(expr, &vars, &env, &mut rng));
                for k in (0..idx.len()).rev() {
                    idx[k] += 1;
                    if idx[k] < shape[k] {
                        break;
                    }
                    idx[k] = 0;
                }
            }
            data
        }
    };
    Tensor::new(shape, data)
}

/// An `init[...] = expr` body at one element (checked by sema, so total).
fn eval(e: &Expr, vars: &HashMap<&str, f64>, env: &HashMap<&str, Const>, rng: &mut ChaCha8Rng) -> f64 {
    let mut go = |x: &Expr| eval(x, vars, env, rng);
    match &e.kind {
        ExprKind::Int(v) => *v as f64,
        ExprKind::Float(v) => *v,
        ExprKind::Bool(b) => f64::from(u8::from(*b)),
        ExprKind::Name(n) => match vars.get(n.as_str()) {
            Some(v) => *v,
            None => match env.get(n.as_str()) {
                Some(Const::Bool(b)) => f64::from(u8::from(*b)),
                Some(c) => c.as_f64().unwrap_or(0.0),
                None => 0.0,
            },
        },
        ExprKind::Unary(UnOp::Neg, x) => -go(x),
        ExprKind::Unary(UnOp::Not, x) => f64::from(u8::from(go(x) == 0.0)),
        ExprKind::Binary(op, a, b) => {
            let (x, y) = (go(a), go(b));
            let t = |c: bool| f64::from(u8::from(c));
            match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Lt => t(x < y),
                BinOp::Le => t(x <= y),
                BinOp::Gt => t(x > y),
                BinOp::Ge => t(x >= y),
                BinOp::Eq => t(x == y),
                BinOp::Ne => t(x != y),
                BinOp::And => t(x != 0.0 && y != 0.0),
                BinOp::Or => t(x != 0.0 || y != 0.0),
            }
        }
        ExprKind::If { cond, then, otherwise } => {
            if go(cond) != 0.0 {
                go(then)
            } else {
                go(otherwise)
            }
        }
        ExprKind::Call { callee, args } => {
            let xs: Vec<f64> = args.iter().map(|a| eval(&a.value, vars, env, rng)).collect();
            match callee.as_name().unwrap_or("") {
                "normal" => normal(rng, xs[0]),
                "uniform" => uniform(rng, xs[0], xs[1]),
                name => consts::apply(name, &xs),
            }
        }
        _ => 0.0,
    }
}

/// Random inputs for a model: token ids below the embedding's rows, floats from
/// a unit normal.
pub fn random_inputs(model: &CheckedModel, dims: &HashMap<String, usize>, seed: u64) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for io in &model.inputs {
        let shape: Vec<usize> = io
            .ty
            .shape
            .iter()
            .map(|d| match d {
                crate::sema::Dim::Known(v) => *v as usize,
                crate::sema::Dim::Sym(s) => dims.get(&**s).copied().unwrap_or(1),
            })
            .collect();
        let n = shape.iter().product();
        let mut rng = stream(&io.name, seed);
        let data = if io.ty.dtype.is_float() {
            (0..n).map(|_| normal(&mut rng, 1.0)).collect()
        } else {
            // Token ids index the embedding that reads this input.
            let rows = embedding_rows(model, &io.name).unwrap_or(2);
            (0..n).map(|_| rng.random_range(0..rows.max(1)) as f64).collect()
        };
        out.insert(io.name.clone(), Tensor::new(shape, data));
    }
    out
}

/// The rows of the embedding table that reads input `name`, from the graph.
fn embedding_rows(model: &CheckedModel, name: &str) -> Option<usize> {
    let g = &model.graph;
    let input = g.nodes.iter().find(|n| matches!(&n.op, crate::ir::Op::Input { name: m } if m == name))?.results[0];
    let embed = g.nodes.iter().find(|n| matches!(n.op, crate::ir::Op::Embed) && n.operands[0] == input)?;
    g.ty(embed.operands[1]).shape.first().and_then(|d| d.known()).map(|v| v as usize)
}
