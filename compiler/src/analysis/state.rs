//! The step-mode state layout: what a model must keep between positions to run one
//! position at a time. It is computed from the graph, never written by hand:
//!
//! - every scan state;
//! - for every value read at an earlier position than the reader's own: the last
//!   `k` positions for a shifted read (`x[l - k]`), the last `width - 1` inputs of a
//!   causal convolution, the last `taps - 1` of a long convolution, and, for a read
//!   through an index bounded by the position (attention's keys and values), every
//!   past position, or the last `window - 1` when the condition bounds `i - j`.
//!
//! A value's position axis is its first `L` axis; a read at the reader's position
//! needs no state. This is what `seqc compile --emit state` prints and what
//! `seqc analyze` reports as step-mode memory.

use crate::ir::ops::{Generic, ScanOp};
use crate::ir::{Graph, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::{Dim, TensorTy};
use std::fmt::Write;

/// How many positions of a value are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Positions {
    /// The last `n` (a ring buffer).
    Last(i64),
    /// Every past position: grows with the sequence (a key/value cache).
    All,
}

/// One piece of step state.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The layer it belongs to (checkpoint path), or the model's name.
    pub origin: String,
    /// What it is: `scan state h`, `history of %15 (reshape)`.
    pub what: String,
    /// Its shape; for a history the position axis is `positions` long.
    pub ty: TensorTy,
    /// `None` for a scan state, the kept positions for a history.
    pub positions: Option<Positions>,
}

impl Entry {
    /// Elements per sequence (batch row): fixed, and per position of the sequence.
    pub fn elements(&self) -> (i64, i64) {
        let per_row: i64 = self
            .ty
            .shape
            .iter()
            .skip(1) // the batch axis
            .map(|d| match d {
                Dim::Known(v) => *v,
                Dim::Sym(_) => 1,
            })
            .product();
        match self.positions {
            None => (per_row, 0),
            Some(Positions::Last(n)) => (per_row * n, 0),
            Some(Positions::All) => (0, per_row),
        }
    }
}

/// How many past positions of each value step mode keeps (`None`: only the
/// current one), and the node that needs them.
pub fn retention(g: &Graph) -> Vec<Option<(Positions, usize)>> {
    let mut history: Vec<Option<(Positions, usize)>> = vec![None; g.types.len()];
    // For values with a history axis (attention scores): its window, when masked.
    let mut windows: Vec<Option<(usize, i64)>> = vec![None; g.types.len()];
    for node in &g.nodes {
        if let Op::Generic(gen) | Op::Attention(gen) = &node.op {
            let seq: Vec<usize> = (0..gen.rank).filter(|&a| gen.vars[a].extent.is_seq()).collect();
            if let [pos, hist, ..] = seq[..] {
                let own = gen.cond.as_ref().and_then(|c| window_of(c, pos as u32, hist as u32));
                let inherited = || masked_window(&gen.body, hist as u32, &node.operands, &windows);
                windows[node.results[0].0 as usize] = own.or_else(inherited).map(|w| (hist, w));
            }
        }
    }
    let mut need = |v: ValueId, p: Positions, reader: usize| {
        let slot = &mut history[v.0 as usize];
        match slot {
            Some((q, _)) if *q >= p => {}
            _ => *slot = Some((p, reader)),
        }
    };
    for (i, node) in g.nodes.iter().enumerate() {
        match &node.op {
            Op::Scan(scan) => {
                for (k, p) in scan_reads(scan) {
                    need(node.operands[k as usize], p, i);
                }
            }
            Op::Generic(gen) | Op::Attention(gen) => {
                for (k, p) in generic_reads(g, gen, &node.operands, &windows) {
                    need(node.operands[k as usize], p, i);
                }
            }
            Op::Conv1d { .. } => {
                let width = g.ty(node.operands[1]).shape.get(2).and_then(|d| d.known()).unwrap_or(1);
                if width > 1 {
                    need(node.operands[0], Positions::Last(width - 1), i);
                }
            }
            Op::FftConv { .. } => {
                let taps = g.ty(node.operands[1]).shape.first().and_then(|d| d.known()).unwrap_or(1);
                if taps > 1 {
                    need(node.operands[0], Positions::Last(taps - 1), i);
                }
            }
            _ => {}
        }
    }
    history
}

/// The state layout of a graph, in the order of the nodes that need it.
pub fn layout(g: &Graph) -> Vec<Entry> {
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let origin = g.origins.get(i).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| g.name.clone());
        if let Op::Scan(scan) = &node.op {
            for st in &scan.states {
                entries.push((
                    i,
                    Entry {
                        origin: origin.clone(),
                        what: format!("scan state {}", st.name),
                        ty: TensorTy { dtype: crate::syntax::ast::DType::F32, shape: st.shape.clone() },
                        positions: None,
                    },
                ));
            }
        }
    }
    let number = crate::ir::print::numbering(g);
    for (v, h) in retention(g).iter().enumerate() {
        let Some((p, reader)) = h else { continue };
        let ty = g.types[v].clone();
        let producer = g.nodes.iter().position(|n| n.results.iter().any(|r| r.0 as usize == v));
        let what = match producer {
            Some(p) => format!("history of %{} ({})", number[v], g.nodes[p].op.name()),
            None => format!("history of %{}", number[v]),
        };
        let origin = g.origins.get(*reader).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| g.name.clone());
        entries.push((*reader, Entry { origin, what, ty, positions: Some(*p) }));
    }
    entries.sort_by_key(|(node, _)| *node);
    entries.into_iter().map(|(_, e)| e).collect()
}

/// The first sequence axis of a type: the value's position axis.
pub fn position_axis(ty: &TensorTy) -> Option<usize> {
    ty.shape.iter().position(|d| d.is_seq())
}

/// For a generic: which operands it reads at past positions, and how far back.
fn generic_reads(
    g: &Graph,
    gen: &Generic,
    operands: &[ValueId],
    windows: &[Option<(usize, i64)>],
) -> Vec<(u32, Positions)> {
    // The reader's position: its first result index over `L`.
    let Some(pos) = gen.vars[..gen.rank].iter().position(|v| v.extent.is_seq()) else { return Vec::new() };
    // The window of each loop index that walks the past: from the condition, or
    // from a masked read it multiplies (`sum[j] p[b, i, j] * v[b, j, e]`).
    let window_of_var = |v: u32| -> Option<i64> {
        gen.cond
            .as_ref()
            .and_then(|c| window_of(c, pos as u32, v))
            .or_else(|| masked_window(&gen.body, v, operands, windows))
    };
    let mut out = Vec::new();
    let mut visit = |e: &Scalar| {
        loads(e, &mut |k, idx| {
            let ty = g.ty(operands[k as usize]);
            let Some(axis) = position_axis(ty) else { return };
            let window = match &idx[axis] {
                Scalar::Index(v) => window_of_var(*v),
                Scalar::Apply(ScalarFn::Sub, a) => match &a[..] {
                    [Scalar::Index(v), Scalar::Const(_)] => window_of_var(*v),
                    _ => None,
                },
                _ => None,
            };
            if let Some(p) = how_far(&idx[axis], pos as u32, window) {
                out.push((k, p));
            }
        })
    };
    visit(&gen.body);
    if let Some(c) = &gen.cond {
        visit(c);
    }
    out
}

/// The window of index `v` implied by a masked read: a load, at `v`, of a value
/// whose history axis is windowed, standing where masks flow (the whole body of a
/// reduction, or a factor of a product).
fn masked_window(e: &Scalar, v: u32, operands: &[ValueId], windows: &[Option<(usize, i64)>]) -> Option<i64> {
    match e {
        Scalar::Reduce { body, .. } => masked_window(body, v, operands, windows),
        Scalar::Apply(ScalarFn::Mul, a) => {
            masked_window(&a[0], v, operands, windows).or_else(|| masked_window(&a[1], v, operands, windows))
        }
        Scalar::Apply(ScalarFn::Div, a) => masked_window(&a[0], v, operands, windows),
        Scalar::Load { operand, indices } => {
            let (axis, w) = windows[operands[*operand as usize].0 as usize]?;
            matches!(indices.get(axis), Some(Scalar::Index(i)) if *i == v).then_some(w)
        }
        _ => None,
    }
}

fn scan_reads(scan: &ScanOp) -> Vec<(u32, Positions)> {
    let mut out = Vec::new();
    for st in scan.updates.iter().chain(&scan.outputs) {
        loads(&st.body, &mut |k, idx| {
            for ix in idx {
                if ix.mentions(scan.axis) {
                    if let Some(p) = how_far(ix, scan.axis, None) {
                        out.push((k, p));
                    }
                }
            }
        });
    }
    out
}

/// How many past positions an index at the position axis reaches: `None` for the
/// reader's own position.
fn how_far(ix: &Scalar, pos: u32, window: Option<i64>) -> Option<Positions> {
    match ix {
        Scalar::Index(v) if *v == pos => None,
        Scalar::Apply(ScalarFn::Sub, a) => match (&a[0], &a[1]) {
            (Scalar::Index(v), Scalar::Const(c)) if *v == pos && *c >= 0.0 => Some(Positions::Last(*c as i64)),
            // `x[j - c]` for `j` in a window of `w` reaches `w - 1 + c` back.
            (Scalar::Index(_), Scalar::Const(c)) if *c >= 0.0 => Some(match window {
                Some(w) => Positions::Last((w - 1).max(0) + *c as i64),
                None => Positions::All,
            }),
            _ => Some(Positions::All),
        },
        Scalar::Const(_) => Some(Positions::All),
        _ => Some(match window {
            Some(w) => Positions::Last((w - 1).max(0)),
            None => Positions::All,
        }),
    }
}

/// `pos - j < w` (or `pos - j <= w - 1`) among a condition's conjuncts.
pub(crate) fn window_of(cond: &Scalar, pos: u32, j: u32) -> Option<i64> {
    match cond {
        Scalar::Apply(ScalarFn::And, a) => window_of(&a[0], pos, j).or_else(|| window_of(&a[1], pos, j)),
        Scalar::Apply(op @ (ScalarFn::Lt | ScalarFn::Le), a) => match (&a[0], &a[1]) {
            (Scalar::Apply(ScalarFn::Sub, d), Scalar::Const(w))
                if matches!(d[0], Scalar::Index(p) if p == pos) && matches!(d[1], Scalar::Index(x) if x == j) =>
            {
                Some(if *op == ScalarFn::Lt { *w as i64 } else { *w as i64 + 1 })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Calls `f` on every load: its operand and its indices.
fn loads(e: &Scalar, f: &mut dyn FnMut(u32, &[Scalar])) {
    e.visit(&mut |x| {
        if let Scalar::Load { operand, indices } = x {
            f(*operand, indices);
        }
    });
}

/// The layout as `--emit state` prints it.
pub fn print(g: &Graph, entries: &[Entry]) -> String {
    let mut out = format!("state of {} (step mode, per sequence)\n", g.name);
    let (mut fixed, mut per_pos) = (0i64, 0i64);
    let rows: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| {
            let (f, p) = e.elements();
            fixed += f * 4;
            per_pos += p * 4;
            let shape: Vec<String> =
                e.ty.shape
                    .iter()
                    .enumerate()
                    .map(|(a, d)| match (e.positions, Some(a) == position_axis(&e.ty)) {
                        (Some(Positions::Last(n)), true) => format!("last {n}"),
                        (Some(Positions::All), true) => "all L".to_string(),
                        _ => d.to_string(),
                    })
                    .collect();
            let size = if p > 0 { format!("{} B per position", p * 4) } else { format!("{} B", f * 4) };
            (e.origin.clone(), e.what.clone(), format!("f32[{}]", shape.join(", ")), size)
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    for (a, b, c, d) in &rows {
        let _ = writeln!(out, "  {a:w0$}  {b:w1$}  {c:w2$}  {d}");
    }
    let _ = writeln!(out, "total: {fixed} B per sequence, plus {per_pos} B per position (f32)");
    out
}
