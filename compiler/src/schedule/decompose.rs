//! Builtin ops as `generic`s, before scheduling: norms, convolutions, softmax,
//! rope, split, concat, embedding and the step graph's `append` and `tail` become
//! loop nests over scalar bodies, so the scheduler and every backend handle one
//! op kind for all of them (plus `linear`, a GEMM call, `scan`, and `reshape`, an
//! alias). A new builtin needs one arm here, not one per backend. The exception
//! is a parallel-mode `fftconv`, which stays whole for the scheduler to make a
//! library call.
//!
//! Out-of-range reads are 0 (the generic op's semantics), which the bodies use:
//! a causal convolution reads before position 0 as 0, `concat` sums its parts
//! each read where it lies, `rope` reads its partner half from both sides.
//!
//! Invariant (tested on every example and case, parallel and step graphs): the
//! interpreter gives the same outputs before and after.

use crate::ir::ops::{Generic, LoopVar};
use crate::ir::{Graph, Op, Scalar, ScalarFn};
use crate::passes::step_derivation::POSITION;
use crate::sema::types::Dim;
use crate::syntax::ast::ReduceOp;

fn ld(operand: u32, indices: Vec<Scalar>) -> Scalar {
    Scalar::Load { operand, indices }
}
fn ix(v: u32) -> Scalar {
    Scalar::Index(v)
}
fn c(v: f64) -> Scalar {
    Scalar::Const(v)
}
fn ap(f: ScalarFn, args: Vec<Scalar>) -> Scalar {
    Scalar::Apply(f, args)
}
fn reduce(op: ReduceOp, var: u32, body: Scalar) -> Scalar {
    Scalar::Reduce { op, vars: vec![var], body: Box::new(body) }
}
fn dim(d: &Dim) -> Scalar {
    match d {
        Dim::Known(v) => c(*v as f64),
        Dim::Sym(s) => Scalar::Size(s.to_string()),
    }
}

/// A loop nest over a result's axes, plus extra (reduction) indices.
struct Nest {
    vars: Vec<LoopVar>,
    rank: usize,
}

impl Nest {
    fn over(shape: &[Dim]) -> Nest {
        let vars =
            shape.iter().enumerate().map(|(a, d)| LoopVar { name: format!("i{a}"), extent: d.clone() }).collect();
        Nest { vars, rank: shape.len() }
    }
    /// A new index of extent `d`.
    fn var(&mut self, name: &str, d: Dim) -> u32 {
        self.vars.push(LoopVar { name: name.into(), extent: d });
        self.vars.len() as u32 - 1
    }
    /// The result indices, with the last replaced by `last`.
    fn with_last(&self, last: Scalar) -> Vec<Scalar> {
        let mut v: Vec<Scalar> = (0..self.rank as u32).map(ix).collect();
        *v.last_mut().expect("rank >= 1") = last;
        v
    }
    fn result(&self) -> Vec<Scalar> {
        (0..self.rank as u32).map(ix).collect()
    }
    fn generic(self, body: Scalar) -> Op {
        Op::Generic(Box::new(Generic { vars: self.vars, rank: self.rank, body, cond: None }))
    }
}

/// A causal convolution (`conv1d` or a step graph's `fftconv`) as a generic over
/// `out`, with output position `l` computed as the input's position `l + skip`
/// (a step graph reads only the window's last rows: `skip` is the rows before).
fn convolution(op: &Op, out: &[Dim], weight: &[Dim], skip: Option<Scalar>) -> Op {
    let mut nest = Nest::over(out);
    let pos = match skip {
        Some(s) => ap(ScalarFn::Add, vec![ix(1), s]),
        None => ix(1),
    };
    match op {
        Op::Conv1d { bias } => {
            // y[b, l, ch] = bias[ch] + sum[k] w[ch, 0, k] * x[b, l - (W - 1) + k, ch]
            let width = weight[2].clone();
            let k = nest.var("k", width.clone());
            let src = ap(
                ScalarFn::Add,
                vec![ap(ScalarFn::Sub, vec![pos, ap(ScalarFn::Sub, vec![dim(&width), c(1.0)])]), ix(k)],
            );
            let tap = ap(ScalarFn::Mul, vec![ld(1, vec![ix(2), c(0.0), ix(k)]), ld(0, vec![ix(0), src, ix(2)])]);
            let mut body = reduce(ReduceOp::Sum, k, tap);
            if *bias {
                body = ap(ScalarFn::Add, vec![body, ld(2, vec![ix(2)])]);
            }
            nest.generic(body)
        }
        _ => {
            // y[b, l, d] = sum[t] k[t, d] * x[b, l - t, d]
            let t = nest.var("t", weight[0].clone());
            let src = ap(ScalarFn::Sub, vec![pos, ix(t)]);
            let tap = ap(ScalarFn::Mul, vec![ld(1, vec![ix(t), ix(2)]), ld(0, vec![ix(0), src, ix(2)])]);
            nest.generic(reduce(ReduceOp::Sum, t, tap))
        }
    }
}

/// Rewrites every builtin op of `g` (a parallel or a step graph) as a generic.
pub fn decompose(g: &mut Graph) {
    let step = g.nodes.iter().any(|n| matches!(n.op, Op::StateInput { .. }));
    let mut nodes = std::mem::take(&mut g.nodes);
    // A convolution read only through a tail (a step graph convolves its window
    // and keeps the last row) computes just the tail's rows: the rest would be
    // thrown away, and for a long filter it is most of the work.
    let mut dead = vec![false; nodes.len()];
    if step {
        let mut uses = vec![0usize; g.types.len()];
        nodes.iter().flat_map(|n| &n.operands).for_each(|o| uses[o.0 as usize] += 1);
        g.outputs.iter().chain(&g.next_states).for_each(|(_, v)| uses[v.0 as usize] += 1);
        for i in 0..nodes.len() {
            let Op::Tail { axis: 1 } = nodes[i].op else { continue };
            let v = nodes[i].operands[0];
            let Some(j) = nodes.iter().position(|n| n.results.contains(&v)) else { continue };
            if uses[v.0 as usize] != 1 || !matches!(nodes[j].op, Op::Conv1d { .. } | Op::FftConv { .. }) {
                continue;
            }
            let full = g.types[v.0 as usize].shape.clone();
            let out = g.types[nodes[i].results[0].0 as usize].shape.clone();
            let weight = g.types[nodes[j].operands[1].0 as usize].shape.clone();
            let skip = ap(ScalarFn::Sub, vec![dim(&full[1]), dim(&out[1])]);
            nodes[i].op = convolution(&nodes[j].op, &out, &weight, Some(skip));
            nodes[i].operands = nodes[j].operands.clone();
            dead[j] = true;
        }
    }
    for node in &mut nodes {
        let shape = |k: usize| g.types[node.results[k].0 as usize].shape.clone();
        let operand_shape = |k: usize| g.types[node.operands[k].0 as usize].shape.clone();
        let out = shape(0);
        let last = out.last().cloned().unwrap_or(Dim::Known(1));
        let mut nest = Nest::over(&out);
        let r = nest.rank as u32;
        let op = match &node.op {
            Op::RmsNorm { eps } => {
                let k = nest.var("k", last);
                let ms = reduce(ReduceOp::Mean, k, ap(ScalarFn::Mul, vec![ld(0, nest.with_last(ix(k))); 2]));
                let scale = ap(ScalarFn::Rsqrt, vec![ap(ScalarFn::Add, vec![ms, c(*eps)])]);
                let body = ap(
                    ScalarFn::Mul,
                    vec![ap(ScalarFn::Mul, vec![ld(0, nest.result()), scale]), ld(1, vec![ix(r - 1)])],
                );
                nest.generic(body)
            }
            Op::LayerNorm { eps } => {
                let (k, k2, k3) = (nest.var("k", last.clone()), nest.var("k", last.clone()), nest.var("k", last));
                let mean = |nest: &Nest, k| reduce(ReduceOp::Mean, k, ld(0, nest.with_last(ix(k))));
                let dev = ap(ScalarFn::Sub, vec![ld(0, nest.with_last(ix(k2))), mean(&nest, k3)]);
                let var = reduce(ReduceOp::Mean, k2, ap(ScalarFn::Mul, vec![dev.clone(), dev]));
                let scale = ap(ScalarFn::Rsqrt, vec![ap(ScalarFn::Add, vec![var, c(*eps)])]);
                let centred = ap(ScalarFn::Sub, vec![ld(0, nest.result()), mean(&nest, k)]);
                let scaled = ap(ScalarFn::Mul, vec![ap(ScalarFn::Mul, vec![centred, scale]), ld(1, vec![ix(r - 1)])]);
                nest.generic(ap(ScalarFn::Add, vec![scaled, ld(2, vec![ix(r - 1)])]))
            }
            Op::Conv1d { .. } => convolution(&node.op, &out, &operand_shape(1), None),
            // In parallel mode a library call (`Launch::CausalConv`): an FFT for
            // long filters. A step graph convolves its short window directly.
            Op::FftConv { .. } if !step => continue,
            Op::FftConv { .. } => convolution(&node.op, &out, &operand_shape(1), None),
            Op::Softmax => {
                let (k, k2, k3) = (nest.var("k", last.clone()), nest.var("k", last.clone()), nest.var("k", last));
                let max = |nest: &Nest, k| reduce(ReduceOp::Max, k, ld(0, nest.with_last(ix(k))));
                let exp = |x: Scalar, m: Scalar| ap(ScalarFn::Exp, vec![ap(ScalarFn::Sub, vec![x, m])]);
                let num = exp(ld(0, nest.result()), max(&nest, k));
                let den = reduce(ReduceOp::Sum, k2, exp(ld(0, nest.with_last(ix(k2))), max(&nest, k3)));
                nest.generic(ap(ScalarFn::Div, vec![num, den]))
            }
            Op::Rope { theta } => {
                // Hugging Face's half rotation: element i pairs with i +- E/2.
                let e = out[3].known().expect("rope's head size is known") as f64;
                let half = e / 2.0;
                let i = ix(3);
                let m = Scalar::Select(
                    Box::new(ap(ScalarFn::Lt, vec![i.clone(), c(half)])),
                    Box::new(i.clone()),
                    Box::new(ap(ScalarFn::Sub, vec![i.clone(), c(half)])),
                );
                let freq = ap(ScalarFn::Exp, vec![ap(ScalarFn::Mul, vec![m, c(-2.0 * theta.ln() / e)])]);
                let position = if step { ap(ScalarFn::Add, vec![ix(1), Scalar::Size(POSITION.into())]) } else { ix(1) };
                let angle = ap(ScalarFn::Mul, vec![position, freq]);
                let (cos, sin) = (ap(ScalarFn::Cos, vec![angle.clone()]), ap(ScalarFn::Sin, vec![angle]));
                let at = |i: Scalar| ld(0, vec![ix(0), ix(1), ix(2), i]);
                let partner = ap(
                    ScalarFn::Sub,
                    vec![at(ap(ScalarFn::Sub, vec![ix(3), c(half)])), at(ap(ScalarFn::Add, vec![ix(3), c(half)]))],
                );
                let body = ap(
                    ScalarFn::Add,
                    vec![ap(ScalarFn::Mul, vec![at(ix(3)), cos]), ap(ScalarFn::Mul, vec![partner, sin])],
                );
                nest.generic(body)
            }
            Op::Concat => {
                let mut offset = 0i64;
                let mut parts = Vec::new();
                for k in 0..node.operands.len() {
                    parts.push(ld(k as u32, nest.with_last(ap(ScalarFn::Sub, vec![ix(r - 1), c(offset as f64)]))));
                    offset += operand_shape(k).last().and_then(|d| d.known()).expect("concat of known sizes");
                }
                let body = parts.into_iter().reduce(|a, b| ap(ScalarFn::Add, vec![a, b])).expect("concat has operands");
                nest.generic(body)
            }
            Op::Embed => {
                let ids: Vec<Scalar> = (0..r - 1).map(ix).collect();
                nest.generic(ld(1, vec![ld(0, ids), ix(r - 1)]))
            }
            Op::Append { axis } => {
                let past = operand_shape(0)[*axis].clone();
                let mut cur = nest.result();
                cur[*axis] = ap(ScalarFn::Sub, vec![ix(*axis as u32), dim(&past)]);
                let body = ap(ScalarFn::Add, vec![ld(0, nest.result()), ld(1, cur)]);
                nest.generic(body)
            }
            Op::Tail { axis } => {
                let skip = ap(ScalarFn::Sub, vec![dim(&operand_shape(0)[*axis]), dim(&out[*axis])]);
                let mut at = nest.result();
                at[*axis] = ap(ScalarFn::Add, vec![ix(*axis as u32), skip]);
                nest.generic(ld(0, at))
            }
            _ => continue,
        };
        node.op = op;
    }
    // A split becomes one generic per result.
    let origins = std::mem::take(&mut g.origins);
    for ((node, origin), dead) in nodes.into_iter().zip(origins).zip(dead) {
        if dead {
            continue;
        }
        let Op::Split { sizes } = &node.op else {
            g.nodes.push(node);
            g.origins.push(origin);
            continue;
        };
        let mut offset = 0.0;
        for (k, &r) in node.results.iter().enumerate() {
            let nest = Nest::over(&g.types[r.0 as usize].shape);
            let at = nest.with_last(ap(ScalarFn::Add, vec![ix(nest.rank as u32 - 1), c(offset)]));
            g.nodes.push(crate::ir::Node {
                op: nest.generic(ld(0, at)),
                operands: node.operands.clone(),
                results: vec![r],
            });
            g.origins.push(origin.clone());
            offset += sizes[k] as f64;
        }
    }
}
