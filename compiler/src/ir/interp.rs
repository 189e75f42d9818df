//! The reference interpreter: runs a graph on the CPU in f64, written for clarity,
//! not speed. It is the oracle every pass and every backend is checked against.
//!
//! Masks (LANGUAGE.md, Masks) are explicit: a tensor may carry a mask, a read of
//! a masked element is 0 and masked, products and quotients keep masks, every
//! other operation reads masked elements as 0 and its result is not masked, and
//! reductions skip masked points.

use super::ops::{Generic, LoopVar, ScanOp, StateInit};
use super::{Graph, Op, Scalar, ScalarFn};
use crate::sema::types::Dim;
use crate::syntax::ast::ReduceOp;
use std::collections::HashMap;

/// A dense tensor of f64 in row-major order, with an optional mask.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    /// `true` where an element is masked.
    pub mask: Option<Vec<bool>>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data, mask: None }
    }

    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape, vec![0.0; n])
    }

    fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.shape.len()];
        for i in (0..self.shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.shape[i + 1];
        }
        s
    }

    /// The flat offset of an index, `None` when out of range.
    fn offset(&self, idx: &[i64]) -> Option<usize> {
        let mut off = 0;
        for ((&i, &n), s) in idx.iter().zip(&self.shape).zip(self.strides()) {
            if i < 0 || i as usize >= n {
                return None;
            }
            off += i as usize * s;
        }
        Some(off)
    }

    fn masked(&self, off: usize) -> bool {
        self.mask.as_ref().is_some_and(|m| m[off])
    }

    /// Index `at` of `axis`, keeping the axis (of length 1).
    pub fn row(&self, axis: usize, at: usize) -> Tensor {
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        let n = self.shape[axis];
        let mut data = Vec::with_capacity(outer * inner);
        let mut mask = self.mask.as_ref().map(|_| Vec::with_capacity(outer * inner));
        for o in 0..outer {
            let start = (o * n + at) * inner;
            data.extend_from_slice(&self.data[start..start + inner]);
            if let (Some(m), Some(src)) = (mask.as_mut(), self.mask.as_ref()) {
                m.extend_from_slice(&src[start..start + inner]);
            }
        }
        let mut shape = self.shape.clone();
        shape[axis] = 1;
        Tensor { shape, data, mask }
    }

    /// Tensors joined along `axis`, after `pad` slices of zeros.
    pub fn join(parts: &[&Tensor], axis: usize, pad: usize) -> Tensor {
        let first = parts[0];
        let outer: usize = first.shape[..axis].iter().product();
        let inner: usize = first.shape[axis + 1..].iter().product();
        let n = pad + parts.iter().map(|p| p.shape[axis]).sum::<usize>();
        let mut data = vec![0.0; outer * n * inner];
        let mut mask = parts.iter().any(|p| p.mask.is_some()).then(|| vec![false; outer * n * inner]);
        let mut at = pad;
        for p in parts {
            let len = p.shape[axis];
            for o in 0..outer {
                let (dst, src) = ((o * n + at) * inner, o * len * inner);
                data[dst..dst + len * inner].copy_from_slice(&p.data[src..src + len * inner]);
                if let (Some(m), Some(pm)) = (mask.as_mut(), p.mask.as_ref()) {
                    m[dst..dst + len * inner].copy_from_slice(&pm[src..src + len * inner]);
                }
            }
            at += len;
        }
        let mut shape = first.shape.clone();
        shape[axis] = n;
        Tensor { shape, data, mask }
    }
}

/// Why a run failed: inputs that do not fit the graph.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("missing {kind} `{name}`")]
    Missing { kind: &'static str, name: String },
    #[error("{kind} `{name}` has shape {found:?}, expected {expected:?}")]
    Shape { kind: &'static str, name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("dimension `{0}` is not given")]
    UnknownDim(String),
    #[error("token id {id} is out of range for an embedding of {rows} rows")]
    TokenOutOfRange { id: i64, rows: usize },
    #[error("%{value} = {op} (in `{origin}`) computes {what} at {index:?}")]
    NonFinite { value: u32, op: &'static str, origin: String, what: &'static str, index: Vec<usize> },
}

/// What a run reads: symbolic dimension sizes, inputs and weights by name.
pub struct Bindings<'a> {
    pub dims: &'a HashMap<String, usize>,
    pub inputs: &'a HashMap<String, Tensor>,
    pub weights: &'a HashMap<String, Tensor>,
}

/// Runs the graph; returns its outputs by name, in declaration order, then (for a
/// step graph) its next states. A step graph's `state` inputs are bound like
/// inputs, by name, and `T` (positions before this one) is among the dims.
pub fn run(g: &Graph, b: &Bindings) -> Result<Vec<(String, Tensor)>, InterpError> {
    run_with(g, b, false)
}

/// Runs the graph; with `check_finite`, stops at the first node that computes a
/// NaN or an infinity and names it.
pub fn run_with(g: &Graph, b: &Bindings, check_finite: bool) -> Result<Vec<(String, Tensor)>, InterpError> {
    let mut values: Vec<Option<Tensor>> = vec![None; g.types.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        let args: Vec<&Tensor> = node
            .operands
            .iter()
            .map(|o| values[o.0 as usize].as_ref().expect("verified: defined before use"))
            .collect();
        let shapes: Vec<Vec<usize>> =
            node.results.iter().map(|r| extents(&g.ty(*r).shape, b.dims)).collect::<Result<_, _>>()?;
        let first_position = b.dims.get(crate::passes::step_derivation::POSITION).copied().unwrap_or(0);
        let results = eval_node(&node.op, &args, &shapes, b, first_position)?;
        if check_finite {
            for (r, t) in node.results.iter().zip(&results) {
                if let Some(k) = t.data.iter().position(|v| !v.is_finite()) {
                    let mut index = vec![0; t.shape.len()];
                    let mut rest = k;
                    for (a, n) in t.shape.iter().enumerate().rev() {
                        index[a] = rest % n;
                        rest /= n;
                    }
                    let origin = g.origins.get(i).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| g.name.clone());
                    let what = if t.data[k].is_nan() { "NaN" } else { "an infinity" };
                    return Err(InterpError::NonFinite { value: r.0, op: node.op.name(), origin, what, index });
                }
            }
        }
        for (r, t) in node.results.iter().zip(results) {
            values[r.0 as usize] = Some(t);
        }
    }
    Ok(g.outputs
        .iter()
        .chain(&g.next_states)
        .map(|(n, v)| (n.clone(), values[v.0 as usize].clone().expect("verified")))
        .collect())
}

fn extent(d: &Dim, dims: &HashMap<String, usize>) -> Result<usize, InterpError> {
    match d {
        Dim::Known(v) => Ok(*v as usize),
        Dim::Sym(s) => dims.get(&**s).copied().ok_or_else(|| InterpError::UnknownDim(s.to_string())),
    }
}

fn extents(ds: &[Dim], dims: &HashMap<String, usize>) -> Result<Vec<usize>, InterpError> {
    ds.iter().map(|d| extent(d, dims)).collect()
}

fn fetch(
    kind: &'static str,
    name: &str,
    from: &HashMap<String, Tensor>,
    shape: &[usize],
) -> Result<Tensor, InterpError> {
    let t = from.get(name).ok_or_else(|| InterpError::Missing { kind, name: name.to_string() })?;
    if t.shape != shape {
        return Err(InterpError::Shape {
            kind,
            name: name.to_string(),
            expected: shape.to_vec(),
            found: t.shape.clone(),
        });
    }
    Ok(t.clone())
}

/// One node's results. `first_position` is the sequence position of index 0 along
/// `L` (not 0 in step mode, where operands are a window of the sequence).
pub(crate) fn eval_node(
    op: &Op,
    args: &[&Tensor],
    shapes: &[Vec<usize>],
    b: &Bindings,
    first_position: usize,
) -> Result<Vec<Tensor>, InterpError> {
    let out = &shapes[0];
    Ok(vec![match op {
        Op::Input { name } => fetch("input", name, b.inputs, out)?,
        Op::Weight { name } => fetch("weight", name, b.weights, out)?,
        Op::Const { value } => Tensor::new(Vec::new(), vec![*value]),
        Op::StateInput { name, .. } => fetch("state", name, b.inputs, out)?,
        Op::Append { axis } => Tensor::join(args, *axis, 0),
        Op::Tail { axis } => {
            let x = args[0];
            let rows: Vec<Tensor> = (x.shape[*axis] - out[*axis]..x.shape[*axis]).map(|r| x.row(*axis, r)).collect();
            Tensor::join(&rows.iter().collect::<Vec<_>>(), *axis, 0)
        }
        Op::Linear { bias } => {
            let (x, w) = (args[0], args[1]);
            let (n_out, n_in) = (w.shape[0], w.shape[1]);
            let rows = x.data.len() / n_in;
            let mut y = vec![0.0; rows * n_out];
            for r in 0..rows {
                for o in 0..n_out {
                    let mut acc = if *bias { args[2].data[o] } else { 0.0 };
                    for i in 0..n_in {
                        acc += x.data[r * n_in + i] * w.data[o * n_in + i];
                    }
                    y[r * n_out + o] = acc;
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::Embed => {
            let (ids, table) = (args[0], args[1]);
            let (rows, d) = (table.shape[0], table.shape[1]);
            let mut y = Vec::with_capacity(ids.data.len() * d);
            for &id in &ids.data {
                let i = id as i64;
                if i < 0 || i as usize >= rows {
                    return Err(InterpError::TokenOutOfRange { id: i, rows });
                }
                y.extend_from_slice(&table.data[i as usize * d..(i as usize + 1) * d]);
            }
            Tensor::new(out.clone(), y)
        }
        Op::RmsNorm { eps } => {
            let (x, w) = (args[0], args[1]);
            let d = w.data.len();
            let mut y = x.data.clone();
            for row in y.chunks_mut(d) {
                let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
                let scale = 1.0 / (ms + eps).sqrt();
                for (v, g) in row.iter_mut().zip(&w.data) {
                    *v *= scale * g;
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::LayerNorm { eps } => {
            let (x, w, bias) = (args[0], args[1], args[2]);
            let d = w.data.len();
            let mut y = x.data.clone();
            for row in y.chunks_mut(d) {
                let mean = row.iter().sum::<f64>() / d as f64;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
                let scale = 1.0 / (var + eps).sqrt();
                for ((v, g), c) in row.iter_mut().zip(&w.data).zip(&bias.data) {
                    *v = (*v - mean) * scale * g + c;
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::Conv1d { bias } => {
            // y[b, l, c] = bias[c] + sum_k w[c, 0, k] * x[b, l - (W - 1) + k, c]
            let (x, w) = (args[0], args[1]);
            let (bs, len, ch) = (x.shape[0], x.shape[1], x.shape[2]);
            let width = w.shape[2];
            let mut y = vec![0.0; x.data.len()];
            for bi in 0..bs {
                for l in 0..len {
                    for c in 0..ch {
                        let mut acc = if *bias { args[2].data[c] } else { 0.0 };
                        for k in 0..width {
                            let src = l as i64 - (width as i64 - 1) + k as i64;
                            if src >= 0 {
                                acc += w.data[c * width + k] * x.data[(bi * len + src as usize) * ch + c];
                            }
                        }
                        y[(bi * len + l) * ch + c] = acc;
                    }
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::FftConv { starts } => {
            // y[b, l, d] = sum_{t <= l - first(l)} k[t, d] * x[b, l - t, d]
            let (x, k) = (args[0], args[1]);
            let (bs, len, d) = (x.shape[0], x.shape[1], x.shape[2]);
            let taps = k.shape[0];
            let first = |l: usize| if *starts { args[2].data[l] as usize } else { 0 };
            let mut y = vec![0.0; x.data.len()];
            for bi in 0..bs {
                for l in 0..len {
                    for c in 0..d {
                        let mut acc = 0.0;
                        for t in 0..=(l - first(l)).min(taps - 1) {
                            acc += k.data[t * d + c] * x.data[(bi * len + l - t) * d + c];
                        }
                        y[(bi * len + l) * d + c] = acc;
                    }
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::Softmax => {
            let x = args[0];
            let d = *x.shape.last().unwrap_or(&1);
            let mut y = vec![0.0; x.data.len()];
            for (r, row) in x.data.chunks(d).enumerate() {
                let live = |i: usize| !x.masked(r * d + i);
                let max = (0..d).filter(|&i| live(i)).map(|i| row[i]).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..d).filter(|&i| live(i)).map(|i| (row[i] - max).exp()).sum();
                for i in (0..d).filter(|&i| live(i)) {
                    y[r * d + i] = (row[i] - max).exp() / sum;
                }
            }
            Tensor { shape: out.clone(), data: y, mask: x.mask.clone() }
        }
        Op::Rope { theta } => {
            // Hugging Face Llama: rotate the two halves of each head by position.
            let x = args[0];
            let (bs, len, heads, e) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            let half = e / 2;
            let mut y = x.data.clone();
            for bi in 0..bs {
                for l in 0..len {
                    for h in 0..heads {
                        let base = ((bi * len + l) * heads + h) * e;
                        for i in 0..half {
                            let freq = theta.powf(-2.0 * i as f64 / e as f64);
                            let (sin, cos) = ((first_position + l) as f64 * freq).sin_cos();
                            let (a, c) = (x.data[base + i], x.data[base + half + i]);
                            y[base + i] = a * cos - c * sin;
                            y[base + half + i] = c * cos + a * sin;
                        }
                    }
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::Reshape => Tensor { shape: out.clone(), data: args[0].data.clone(), mask: args[0].mask.clone() },
        Op::Split { sizes } => {
            let x = args[0];
            let d = *x.shape.last().unwrap_or(&1);
            let mut parts: Vec<Vec<f64>> = sizes.iter().map(|_| Vec::new()).collect();
            for row in x.data.chunks(d) {
                let mut at = 0;
                for (p, &s) in parts.iter_mut().zip(sizes) {
                    p.extend_from_slice(&row[at..at + s as usize]);
                    at += s as usize;
                }
            }
            return Ok(parts.into_iter().zip(shapes).map(|(p, s)| Tensor::new(s.clone(), p)).collect());
        }
        Op::Concat => {
            let rows = out.iter().rev().skip(1).product::<usize>();
            let mut y = Vec::with_capacity(out.iter().product());
            for r in 0..rows {
                for a in args {
                    let d = *a.shape.last().unwrap_or(&1);
                    y.extend_from_slice(&a.data[r * d..(r + 1) * d]);
                }
            }
            Tensor::new(out.clone(), y)
        }
        Op::Generic(gen) | Op::Attention(gen) => generic(gen, args, out, b.dims)?,
        Op::Scan(scan) => {
            let states = initial_states(scan, args, b.dims)?;
            return Ok(scan_run(scan, args, shapes, b.dims, states, 0)?.0);
        }
    }])
}

/// Loop indices' extents and current values while a body is evaluated.
struct Frame<'a> {
    extents: Vec<usize>,
    env: Vec<Option<i64>>,
    operands: &'a [&'a Tensor],
    states: &'a [Tensor],
    dims: &'a HashMap<String, usize>,
    cond: Option<&'a Scalar>,
}

fn var_extents(vars: &[LoopVar], dims: &HashMap<String, usize>) -> Result<Vec<usize>, InterpError> {
    vars.iter().map(|v| extent(&v.extent, dims)).collect()
}

/// Visits every point of `shape` in row-major order.
fn for_each_point(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0; shape.len()];
    loop {
        f(&idx);
        let mut k = shape.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

fn generic(
    gen: &Generic,
    args: &[&Tensor],
    out: &[usize],
    dims: &HashMap<String, usize>,
) -> Result<Tensor, InterpError> {
    let extents = var_extents(&gen.vars, dims)?;
    let mut frame =
        Frame { extents, env: vec![None; gen.vars.len()], operands: args, states: &[], dims, cond: gen.cond.as_ref() };
    let n = out.iter().product();
    let mut data = Vec::with_capacity(n);
    let mut mask = Vec::with_capacity(n);
    for_each_point(out, |idx| {
        for (k, &i) in idx.iter().enumerate() {
            frame.env[k] = Some(i as i64);
        }
        let (v, m) = frame.eval(&gen.body);
        let excluded = frame.cond_false();
        data.push(if excluded { 0.0 } else { v });
        mask.push(m || excluded);
    });
    let mask = mask.iter().any(|&m| m).then_some(mask);
    Ok(Tensor { shape: out.to_vec(), data, mask })
}

/// The states of a scan before its first step.
pub(crate) fn initial_states(
    scan: &ScanOp,
    args: &[&Tensor],
    dims: &HashMap<String, usize>,
) -> Result<Vec<Tensor>, InterpError> {
    let mut states: Vec<Tensor> = Vec::new();
    for st in &scan.states {
        let shape = extents_of(&st.shape, dims)?;
        let mut t = Tensor::zeros(shape.clone());
        match st.init {
            StateInit::Const(v) => t.data.iter_mut().for_each(|x| *x = v),
            StateInit::Operand(k) => {
                let src = args[k as usize];
                let mut i = 0;
                for_each_point(&shape, |idx| {
                    // Broadcast from the right.
                    let off = src.shape.len();
                    let sidx: Vec<i64> = (0..off)
                        .map(|a| {
                            let ax = idx.len() - off + a;
                            if src.shape[a] == 1 {
                                0
                            } else {
                                idx[ax] as i64
                            }
                        })
                        .collect();
                    t.data[i] = src.offset(&sidx).map(|o| src.data[o]).unwrap_or(0.0);
                    i += 1;
                });
            }
        }
        states.push(t);
    }
    Ok(states)
}

/// Runs a scan from position `from` to the end of its axis, starting from
/// `states`; returns the outputs (rows before `from` left 0) and the final states.
pub(crate) fn scan_run(
    scan: &ScanOp,
    args: &[&Tensor],
    shapes: &[Vec<usize>],
    dims: &HashMap<String, usize>,
    mut states: Vec<Tensor>,
    from: usize,
) -> Result<(Vec<Tensor>, Vec<Tensor>), InterpError> {
    let extents = var_extents(&scan.vars, dims)?;
    let mut outputs: Vec<Tensor> = shapes.iter().map(|s| Tensor::zeros(s.clone())).collect();
    for l in from..extents[scan.axis as usize] {
        // Every update reads the previous step's states.
        let mut next = states.clone();
        for st in &scan.updates {
            let target = &mut next[st.target as usize];
            let values = stmt_values(st, &extents, l, args, &states, dims, &target.shape.clone());
            target.data = values;
        }
        states = next;
        for st in &scan.outputs {
            let out = &mut outputs[st.target as usize];
            let shape: Vec<usize> = st.left.iter().map(|&v| extents[v as usize]).collect();
            let mut frame = Frame {
                extents: extents.clone(),
                env: vec![None; extents.len()],
                operands: args,
                states: &states,
                dims,
                cond: st.cond.as_ref(),
            };
            frame.env[scan.axis as usize] = Some(l as i64);
            // An output without the scan axis holds the last step's value (a step
            // graph's next state).
            let axis_pos = st.left.iter().position(|&v| v == scan.axis);
            let strides = out.strides();
            let mut sub = shape.clone();
            if let Some(a) = axis_pos {
                sub[a] = 1;
            }
            for_each_point(&sub, |idx| {
                let mut full: Vec<usize> = idx.to_vec();
                if let Some(a) = axis_pos {
                    full[a] = l;
                }
                for (k, &v) in st.left.iter().enumerate() {
                    frame.env[v as usize] = Some(full[k] as i64);
                }
                let (v, _) = frame.eval(&st.body);
                let v = if frame.cond_false() { 0.0 } else { v };
                let off: usize = full.iter().zip(&strides).map(|(i, s)| i * s).sum();
                out.data[off] = v;
            });
        }
    }
    Ok((outputs, states))
}

fn extents_of(ds: &[Dim], dims: &HashMap<String, usize>) -> Result<Vec<usize>, InterpError> {
    extents(ds, dims)
}

/// The new values of one state, every element, at step `l`.
fn stmt_values(
    st: &super::ops::ScanStmt,
    extents: &[usize],
    l: usize,
    args: &[&Tensor],
    states: &[Tensor],
    dims: &HashMap<String, usize>,
    shape: &[usize],
) -> Vec<f64> {
    let mut frame = Frame {
        extents: extents.to_vec(),
        env: vec![None; extents.len()],
        operands: args,
        states,
        dims,
        cond: st.cond.as_ref(),
    };
    frame.env[0] = Some(l as i64);
    let mut out = Vec::with_capacity(shape.iter().product());
    for_each_point(shape, |idx| {
        for (k, &v) in st.left.iter().enumerate() {
            frame.env[v as usize] = Some(idx[k] as i64);
        }
        let (v, _) = frame.eval(&st.body);
        out.push(if frame.cond_false() { states[st.target as usize].data[out.len()] } else { v });
    });
    out
}

impl Frame<'_> {
    /// Whether the op's condition is false at the current point (only when every
    /// index it reads is bound).
    fn cond_false(&mut self) -> bool {
        let Some(c) = self.cond else { return false };
        if !self.bound(c) {
            return false;
        }
        self.eval(c).0 == 0.0
    }

    fn bound(&self, e: &Scalar) -> bool {
        match e {
            Scalar::Index(i) => self.env[*i as usize].is_some(),
            Scalar::Load { indices, .. } | Scalar::State { indices, .. } => indices.iter().all(|i| self.bound(i)),
            Scalar::Apply(_, a) => a.iter().all(|x| self.bound(x)),
            Scalar::Select(c, a, b) => self.bound(c) && self.bound(a) && self.bound(b),
            Scalar::Reduce { .. } | Scalar::Const(_) | Scalar::Size(_) => true,
        }
    }

    /// An index expression, in integer arithmetic (`/` floors).
    fn index(&self, e: &Scalar) -> i64 {
        match e {
            Scalar::Const(v) => *v as i64,
            Scalar::Index(i) => self.env[*i as usize].unwrap_or(0),
            Scalar::Size(d) => self.dims.get(d).copied().unwrap_or(0) as i64,
            // A gathered index (`table[ids[b, l], e]`).
            Scalar::Load { operand, indices } => {
                let idx: Vec<i64> = indices.iter().map(|i| self.index(i)).collect();
                let t = self.operands[*operand as usize];
                t.offset(&idx).map_or(0, |o| t.data[o] as i64)
            }
            Scalar::Apply(ScalarFn::Neg, a) => -self.index(&a[0]),
            Scalar::Apply(ScalarFn::Add, a) => self.index(&a[0]) + self.index(&a[1]),
            Scalar::Apply(ScalarFn::Sub, a) => self.index(&a[0]) - self.index(&a[1]),
            Scalar::Apply(ScalarFn::Mul, a) => self.index(&a[0]) * self.index(&a[1]),
            Scalar::Apply(ScalarFn::Div, a) => {
                let d = self.index(&a[1]);
                if d == 0 {
                    0
                } else {
                    self.index(&a[0]).div_euclid(d)
                }
            }
            _ => 0,
        }
    }

    /// A value and whether it is masked.
    fn eval(&mut self, e: &Scalar) -> (f64, bool) {
        match e {
            Scalar::Const(v) => (*v, false),
            Scalar::Index(i) => (self.env[*i as usize].unwrap_or(0) as f64, false),
            Scalar::Size(d) => (self.dims.get(d).copied().unwrap_or(0) as f64, false),
            Scalar::Load { operand, indices } => {
                let idx: Vec<i64> = indices.iter().map(|i| self.index(i)).collect();
                let t = self.operands[*operand as usize];
                match t.offset(&idx) {
                    Some(o) if t.masked(o) => (0.0, true),
                    Some(o) => (t.data[o], false),
                    None => (0.0, false),
                }
            }
            Scalar::State { state, indices } => {
                let idx: Vec<i64> = indices.iter().map(|i| self.index(i)).collect();
                let t = &self.states[*state as usize];
                (t.offset(&idx).map(|o| t.data[o]).unwrap_or(0.0), false)
            }
            Scalar::Select(c, a, b) => {
                let c = self.eval(c).0;
                let v = if c != 0.0 { self.eval(a).0 } else { self.eval(b).0 };
                (v, false)
            }
            Scalar::Apply(f, args) => {
                let vals: Vec<(f64, bool)> = args.iter().map(|a| self.eval(a)).collect();
                let x: Vec<f64> = vals.iter().map(|v| v.0).collect();
                let masked = match f {
                    ScalarFn::Mul => vals.iter().any(|v| v.1),
                    ScalarFn::Div => vals[0].1,
                    _ => false,
                };
                let v = super::scalar::apply_fn(*f, &x);
                (v, masked)
            }
            Scalar::Reduce { op, vars, body } => self.reduce(*op, vars, body),
        }
    }

    fn reduce(&mut self, op: ReduceOp, vars: &[u32], body: &Scalar) -> (f64, bool) {
        let shape: Vec<usize> = vars.iter().map(|&v| self.extents[v as usize]).collect();
        let saved: Vec<Option<i64>> = vars.iter().map(|&v| self.env[v as usize]).collect();
        let mut points: Vec<(Vec<usize>, f64)> = Vec::new();
        for_each_point(&shape.clone(), |idx| {
            for (k, &v) in vars.iter().enumerate() {
                self.env[v as usize] = Some(idx[k] as i64);
            }
            if self.cond_false() {
                return;
            }
            let (v, masked) = self.eval(body);
            if !masked {
                points.push((idx.to_vec(), v));
            }
        });
        for (k, &v) in vars.iter().enumerate() {
            self.env[v as usize] = saved[k];
        }
        let values = points.iter().map(|p| p.1);
        match op {
            ReduceOp::Sum => (values.sum(), false),
            ReduceOp::Mean => {
                let n = points.len();
                (if n == 0 { 0.0 } else { values.sum::<f64>() / n as f64 }, false)
            }
            ReduceOp::Max => (values.fold(f64::NEG_INFINITY, f64::max), false),
            ReduceOp::Min => (values.fold(f64::INFINITY, f64::min), false),
            ReduceOp::Softmax => {
                // Normalised over the kept indices, read at their current values.
                let here: Vec<usize> = saved.iter().map(|v| v.unwrap_or(0) as usize).collect();
                let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = values.map(|v| (v - max).exp()).sum();
                match points.iter().find(|p| p.0 == here) {
                    Some(p) => ((p.1 - max).exp() / sum, false),
                    None => (0.0, true),
                }
            }
        }
    }
}
