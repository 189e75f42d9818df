//! The cost model: for each op of the fused graph, its floating-point work and
//! the bytes it moves, as exact expressions in `B` and `L` ([`Count`]); the
//! parallel-mode activation memory from value lifetimes; the step-mode state
//! from the derived layout; and the grouping of ops into the layers they came
//! from. Side tables only: the graph is never changed.
//!
//! What is counted (per element of the op's result unless said):
//! - `linear`: `2 * in` (multiply and add), `+1` with a bias;
//! - `generic`, `attention`, scan statements: each element function or operator
//!   of the body once per distinct value of the indices it reads (what a fused
//!   kernel computes: attention's scores once per query and key, not once per
//!   output element), one per point a reduction accumulates, five per point of a
//!   softmax. Past positions bounded by the query's (`j <= i`) count `tri(L)`
//!   query-key pairs, `win_w(L)` under a window `i - j < w`, not `L^2`;
//! - `rmsnorm` 4, `layernorm` 8, `softmax` 5, `rope` 6, causal `conv1d` `2 * width`,
//!   `fftconv` in parallel mode what the long-convolution call runs (FFTs for
//!   long filters, `conv_t(L)`), else `2 * taps`;
//! - bytes: every operand read once and the result written once, after fusion
//!   (fused intermediates are never stored); reshapes are free.

use super::count::{Count, Series};
use crate::ir::ops::Generic;
use crate::ir::{Graph, Op, Scalar, ScalarFn};
use crate::syntax::ast::ReduceOp;

/// One op's costs.
#[derive(Clone, Debug)]
pub struct OpCost {
    pub node: usize,
    pub flops: Count,
    pub bytes: Count,
}

/// The costs of every op, with `elem` bytes per element.
pub fn costs(g: &Graph, elem: f64) -> Vec<OpCost> {
    g.nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let result = |k: usize| Count::product(&g.ty(node.results[k]).shape);
            let elems = || node.results.iter().fold(Count::zero(), |acc, r| acc.add(&Count::product(&g.ty(*r).shape)));
            let flops = match &node.op {
                Op::Linear { bias } => {
                    let k = Count::dim(&g.ty(node.operands[1]).shape[1]);
                    result(0).mul(&k.scale(2.0).add(&Count::constant(f64::from(u8::from(*bias)))))
                }
                Op::RmsNorm { .. } => result(0).scale(4.0),
                Op::LayerNorm { .. } => result(0).scale(8.0),
                Op::Softmax => result(0).scale(5.0),
                Op::Rope { .. } => result(0).scale(6.0),
                Op::Conv1d { bias } => {
                    let w = Count::dim(&g.ty(node.operands[1]).shape[2]);
                    result(0).mul(&w.scale(2.0).add(&Count::constant(f64::from(u8::from(*bias)))))
                }
                Op::FftConv { .. } => {
                    let (x, taps) = (&g.ty(node.operands[0]).shape, &g.ty(node.operands[1]).shape[0]);
                    match (&x[1], taps) {
                        (crate::sema::Dim::Sym(l), crate::sema::Dim::Known(t)) if &**l == "L" => {
                            let channels = Count::dim(&x[2]);
                            let per_sequence = Count::dim(&x[0]).mul(&Count::term(1.0, 0, 0, Series::Conv(*t)));
                            channels.mul(&per_sequence.add(&Count::term(1.0, 0, 0, Series::ConvFilter(*t))))
                        }
                        _ => result(0).mul(&Count::dim(taps).scale(2.0)),
                    }
                }
                Op::Generic(gen) | Op::Attention(gen) => body_flops(&gen.body, gen),
                Op::Scan(scan) => {
                    let steps = Count::dim(&scan.vars[scan.axis as usize].extent);
                    let per_step = scan.updates.iter().chain(&scan.outputs).fold(Count::zero(), |acc, st| {
                        // Per step: the scan index counts once (the steps multiply below).
                        let mut vars = scan.vars.clone();
                        vars[scan.axis as usize].extent = crate::sema::Dim::Known(1);
                        acc.add(&reduce_free_cost(&st.body, &vars))
                    });
                    steps.mul(&per_step)
                }
                _ => Count::zero(),
            };
            let bytes = match &node.op {
                Op::Input { .. } | Op::Weight { .. } | Op::Const { .. } | Op::StateInput { .. } | Op::Reshape => {
                    Count::zero()
                }
                _ => node.operands.iter().fold(elems(), |acc, v| acc.add(&Count::product(&g.ty(*v).shape))).scale(elem),
            };
            OpCost { node: i, flops, bytes }
        })
        .collect()
}

/// The work of a scan statement body, over all its points but the steps.
fn reduce_free_cost(e: &Scalar, vars: &[crate::ir::ops::LoopVar]) -> Count {
    let gen = Generic { vars: vars.to_vec(), rank: 0, body: e.clone(), cond: None };
    body_flops(&gen.body, &gen)
}

/// The work of a body over the whole loop nest, each operation counted once
/// per distinct value of the indices it reads (as a fused kernel computes it:
/// attention's scores once per query and key, not once per output element).
fn body_flops(e: &Scalar, gen: &Generic) -> Count {
    let mut total = Count::zero();
    let mut visit = |x: &Scalar| {
        let (weight, over) = match x {
            Scalar::Apply(..) | Scalar::Select(..) => (1.0, free_vars(x)),
            // A softmax: max, subtract, exp, sum, divide per point.
            Scalar::Reduce { op: ReduceOp::Softmax, .. } => (5.0, free_vars(x)),
            // The accumulation at each point reached.
            Scalar::Reduce { body, .. } => (1.0, free_vars(body)),
            _ => return,
        };
        total = total.add(&multiplicity(gen, &over).scale(weight));
    };
    walk(e, &mut visit);
    total
}

/// Calls `f` on every node of a body, not descending into load indices (index
/// arithmetic is address computation, not floating-point work).
fn walk(e: &Scalar, f: &mut dyn FnMut(&Scalar)) {
    f(e);
    match e {
        Scalar::Apply(_, args) => args.iter().for_each(|a| walk(a, f)),
        Scalar::Select(c, a, b) => [c, a, b].into_iter().for_each(|x| walk(x, f)),
        Scalar::Reduce { body, .. } => walk(body, f),
        _ => {}
    }
}

/// Loop indices an expression depends on (a softmax depends on its own index).
fn free_vars(e: &Scalar) -> std::collections::BTreeSet<u32> {
    let mut out = std::collections::BTreeSet::new();
    let mut bound = std::collections::BTreeSet::new();
    fn go(e: &Scalar, out: &mut std::collections::BTreeSet<u32>, bound: &mut std::collections::BTreeSet<u32>) {
        match e {
            Scalar::Index(v) if !bound.contains(v) => {
                out.insert(*v);
            }
            Scalar::Reduce { op, vars, body } => {
                let fresh: Vec<u32> = vars.iter().copied().filter(|v| bound.insert(*v)).collect();
                go(body, out, bound);
                for v in &fresh {
                    bound.remove(v);
                }
                if *op == ReduceOp::Softmax {
                    out.extend(vars.iter().copied());
                }
            }
            Scalar::Load { indices, .. } | Scalar::State { indices, .. } => {
                indices.iter().for_each(|i| go(i, out, bound))
            }
            Scalar::Apply(_, a) => a.iter().for_each(|x| go(x, out, bound)),
            Scalar::Select(c, a, b) => [c, a, b].into_iter().for_each(|x| go(x, out, bound)),
            _ => {}
        }
    }
    go(e, &mut out, &mut bound);
    out
}

/// The number of distinct points of the indices `over`: the product of their
/// extents, except that a key index bounded by the query's (`j <= i`) and the
/// query index together reach `tri(L)` pairs (`win_w(L)` under a window).
fn multiplicity(gen: &Generic, over: &std::collections::BTreeSet<u32>) -> Count {
    let pos = gen.vars[..gen.rank].iter().position(|v| v.extent.is_seq()).map(|p| p as u32);
    over.iter().fold(Count::constant(1.0), |acc, &v| {
        let extent = &gen.vars[v as usize].extent;
        let bounded = match (pos, gen.cond.as_ref()) {
            (Some(i), Some(c)) if v != i && extent.is_seq() && over.contains(&i) && causal(c, v, i) => {
                Some(match crate::analysis::state::window_of(c, i, v) {
                    Some(w) => Series::Win(w),
                    None => Series::Tri,
                })
            }
            _ => None,
        };
        match bounded {
            // The query's own factor L is in the product already.
            Some(series) => acc.mul(&Count::term(1.0, 0, -1, series)),
            None => acc.mul(&Count::dim(extent)),
        }
    })
}

/// `j <= i` (or `j < i + 1`, `i >= j`) among a condition's conjuncts.
fn causal(cond: &Scalar, j: u32, i: u32) -> bool {
    let is = |e: &Scalar, v: u32| matches!(e, Scalar::Index(x) if *x == v);
    match cond {
        Scalar::Apply(ScalarFn::And, a) => causal(&a[0], j, i) || causal(&a[1], j, i),
        Scalar::Apply(ScalarFn::Le, a) => is(&a[0], j) && is(&a[1], i),
        Scalar::Apply(ScalarFn::Ge, a) => is(&a[0], i) && is(&a[1], j),
        Scalar::Apply(ScalarFn::Lt, a) => {
            is(&a[0], j)
                && matches!(&a[1], Scalar::Apply(ScalarFn::Add, b) if is(&b[0], i) && b[1] == Scalar::Const(1.0))
        }
        _ => false,
    }
}

/// Parallel-mode activation memory: the most bytes live at once over the
/// graph's order (every value but weights lives from its definition to its last
/// use; outputs to the end; a scan's states while it runs), at `B = b`,
/// `L = l`; and that peak's expression.
pub fn activation_peak(g: &Graph, elem: f64, b: f64, l: f64) -> (f64, Count) {
    let n = g.nodes.len();
    let mut last = vec![0usize; g.types.len()];
    let mut def = vec![usize::MAX; g.types.len()];
    let mut stored = vec![false; g.types.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for r in &node.results {
            def[r.0 as usize] = i;
            last[r.0 as usize] = i;
            stored[r.0 as usize] = !matches!(node.op, Op::Weight { .. } | Op::Reshape | Op::Const { .. });
        }
        for v in &node.operands {
            last[v.0 as usize] = last[v.0 as usize].max(i);
        }
    }
    for (_, v) in &g.outputs {
        last[v.0 as usize] = n;
    }
    let (mut best, mut best_count) = (0.0, Count::zero());
    for (i, node) in g.nodes.iter().enumerate() {
        let mut live = Count::zero();
        for v in 0..g.types.len() {
            if stored[v] && def[v] <= i && last[v] >= i {
                live = live.add(&Count::product(&g.types[v].shape));
            }
        }
        if let Op::Scan(scan) = &node.op {
            for s in &scan.states {
                live = live.add(&Count::product(&s.shape));
            }
        }
        let live = live.scale(elem);
        let bytes = live.eval(b, l);
        if bytes > best {
            (best, best_count) = (bytes, live);
        }
    }
    (best, best_count)
}

/// What kind of mixing a layer does, from the ops it lowered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Reads every past position (or a window of them) by content.
    Attention,
    /// A recurrence along the sequence: SSMs, linear RNNs.
    Recurrent,
    /// A long convolution along the sequence.
    LongConv,
    /// Position-wise work: projections, MLPs, norms, embeddings.
    Dense,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Attention => "attention",
            Category::Recurrent => "recurrent",
            Category::LongConv => "long conv",
            Category::Dense => "dense",
        }
    }
}

/// Ops grouped by the outermost layer instance they came from.
#[derive(Clone, Debug)]
pub struct Group {
    /// The layer's name (`mamba`, `attention`), or `model` for the model's own forward.
    pub kind: String,
    pub category: Category,
    /// Instance paths, in graph order.
    pub instances: Vec<String>,
    /// Nodes of the graph.
    pub nodes: Vec<usize>,
    /// Attention that reads every past position (no window).
    pub global: bool,
}

/// The outermost layer instance of an origin path.
pub fn outermost<'a>(origin: &str, layers: &'a [(String, String)]) -> Option<&'a (String, String)> {
    layers.iter().filter(|(p, _)| origin == p || origin.starts_with(&format!("{p}."))).min_by_key(|(p, _)| p.len())
}

/// Groups the nodes of `g` by layer kind, in order of first appearance.
pub fn groups(g: &Graph, layers: &[(String, String)]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input { .. } | Op::Weight { .. } | Op::Const { .. }) {
            continue;
        }
        let origin = g.origins.get(i).map(String::as_str).unwrap_or("");
        let (path, kind) = match outermost(origin, layers) {
            Some((p, k)) => (p.clone(), k.clone()),
            None => (String::new(), "model".to_string()),
        };
        let at = match out.iter().position(|gr| gr.kind == kind) {
            Some(k) => k,
            None => {
                out.push(Group {
                    kind,
                    category: Category::Dense,
                    instances: Vec::new(),
                    nodes: Vec::new(),
                    global: false,
                });
                out.len() - 1
            }
        };
        let gr = &mut out[at];
        if !path.is_empty() && !gr.instances.contains(&path) {
            gr.instances.push(path);
        }
        gr.nodes.push(i);
        let category = match &node.op {
            Op::Attention(_) => Category::Attention,
            Op::Generic(gen) if gen.vars.iter().filter(|v| v.extent.is_seq()).count() >= 2 => Category::Attention,
            Op::Scan(_) => Category::Recurrent,
            Op::FftConv { .. } => Category::LongConv,
            _ => Category::Dense,
        };
        gr.category = gr.category.min(category);
        if let Op::Attention(gen) | Op::Generic(gen) = &node.op {
            if category == Category::Attention {
                gr.global |= !windowed(gen);
            }
        }
    }
    out
}

/// Whether every past-position index of an attention is bounded by a window.
fn windowed(gen: &Generic) -> bool {
    let Some(i) = gen.vars[..gen.rank].iter().position(|v| v.extent.is_seq()) else { return true };
    let past: Vec<u32> =
        (0..gen.vars.len() as u32).filter(|&v| v as usize != i && gen.vars[v as usize].extent.is_seq()).collect();
    past.iter().all(|&j| gen.cond.as_ref().and_then(|c| crate::analysis::state::window_of(c, i as u32, j)).is_some())
}

/// Step-mode state bytes per group: fixed per sequence and per position of a
/// sequence (key/value caches without a window), from the derived layout.
pub fn state_bytes(g: &Graph, groups: &[Group], layers: &[(String, String)], elem: f64) -> Vec<(Count, Count)> {
    let mut out = vec![(Count::zero(), Count::zero()); groups.len()];
    for e in crate::analysis::state::layout(g) {
        let kind = outermost(&e.origin, layers).map_or("model".to_string(), |(_, k)| k.clone());
        let Some(k) = groups.iter().position(|gr| gr.kind == kind) else { continue };
        let (fixed, per_pos) = e.elements();
        out[k].0 = out[k].0.add(&Count::term(fixed as f64 * elem, 1, 0, Series::One));
        out[k].1 = out[k].1.add(&Count::term(per_pos as f64 * elem, 1, 1, Series::One));
    }
    out
}

/// Bytes of the model's weights.
pub fn weight_bytes(g: &Graph, elem: f64) -> f64 {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Weight { .. }))
        .map(|n| Count::product(&g.ty(n.results[0]).shape).eval(1.0, 1.0) * elem)
        .sum()
}
