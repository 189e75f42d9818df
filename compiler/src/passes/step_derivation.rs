//! Step derivation: from the parallel graph, the step graph, which consumes one
//! position and the state and returns the outputs at that position and the next
//! state. It is a graph like any other, so whatever runs graphs (the interpreter,
//! the scheduler and its backends) runs step mode with no code of its own.
//!
//! The state is what `analysis::state` derives. Each scan state becomes a `state`
//! input that starts the scan and a scan output (its value after this position).
//! Each value read at past positions keeps them in a `state` input; `append` joins
//! them and the current row into the window its readers index, and the last kept
//! positions of the window (`tail`) are the next state.
//!
//! Shapes: every position axis (`L`) has one row; a window has `n + 1` rows for a
//! ring of `n`, or `P` for a cache of every past position. `T` is the number of
//! positions before this one and `P = T + 1`; both are bound at run time.
//!
//! The chunk graph ([`derive_chunk`]) is the same derivation for `L` positions at
//! once, after the `T` the state holds: a ring's window has `n + L` rows (the
//! dimension [`ring_window`]`(n)`, `Wn`), a cache's `P = T + L`. Its state inputs
//! and next states are the step graph's, so a state moves between the two.
//!
//! A node that reads the past runs in its window's coordinates: its position index
//! covers the window's last rows only (`i` becomes `i + n`, or `i + T` in a
//! cache), an operand with a shorter window (or none) is read that many rows
//! fewer earlier, and ring slots before position 0, which parallel mode does not
//! have, are excluded by a condition. Bodies are shift-invariant (the state
//! analysis relies on it as well), so only `rope` needs the absolute position:
//! `T` plus the row.

use crate::analysis::state::{position_axis, retention, Positions};
use crate::ir::ops::{Generic, ScanOp, ScanStmt, StateInit};
use crate::ir::{verify::verify, Graph, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::{Dim, TensorTy};
use crate::syntax::ast::DType;

/// Positions consumed before this step (a step graph's dimension).
pub const POSITION: &str = "T";
/// Positions up to and including the last of this run: `T + L` (`T + 1` in a
/// step).
pub const WINDOW: &str = "P";

/// A graph step mode cannot run (yet): where, and why.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("step mode: {origin}: {what}")]
pub struct StepError {
    pub origin: String,
    pub what: String,
}

/// The name of the dimension `n + L`: a ring of `n` past positions and a
/// chunk's `L` (a chunk graph's window).
pub fn ring_window(n: i64) -> String {
    format!("W{n}")
}

/// Every dimension a step or chunk graph reads, by name: `B` sequences, `L`
/// positions in this chunk (1 for a step) after `T` (`position`) the state
/// holds. `None` for a name no derived graph has.
pub fn dim_value(name: &str, batch: usize, position: usize, len: usize) -> Option<usize> {
    match name {
        "B" => Some(batch),
        crate::sema::types::SEQ => Some(len),
        POSITION => Some(position),
        WINDOW => Some(position + len),
        ring => ring.strip_prefix('W')?.parse::<usize>().ok().map(|n| n + len),
    }
}

/// The step graph of a parallel graph: one position.
pub fn derive(g: &Graph) -> Result<Graph, StepError> {
    derive_rows(g, ONE)
}

/// The chunk graph of a parallel graph: `L` positions after those the state
/// holds, from and to the step graph's state.
pub fn derive_chunk(g: &Graph) -> Result<Graph, StepError> {
    derive_rows(g, Dim::Sym(crate::sema::types::SEQ.into()))
}

/// The derivation for `rows` positions at a time.
fn derive_rows(g: &Graph, rows: Dim) -> Result<Graph, StepError> {
    let mut d = Deriver {
        g,
        rows,
        out: Graph::new(g.name.clone()),
        cur: vec![None; g.types.len()],
        window: vec![None; g.types.len()],
        hist: vec![None; g.types.len()],
        number: crate::ir::print::numbering(g),
        origin: String::new(),
    };
    let keep = retention(g);
    for (i, node) in g.nodes.iter().enumerate() {
        d.origin = g.origins.get(i).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| g.name.clone());
        d.out.set_origin(g.origins.get(i).cloned().unwrap_or_default());
        d.node(node)?;
        for r in &node.results {
            if let Some((p, reader)) = keep[r.0 as usize] {
                // Named after the layer that needs it, as `--emit state` lists it.
                let origin = g.origins.get(reader).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| g.name.clone());
                d.keep(*r, p, &origin)?;
            }
        }
    }
    d.out.outputs = g.outputs.iter().map(|(n, v)| (n.clone(), d.cur(*v))).collect();
    verify(&d.out).map_err(|e| d.error(format!("the derived graph is invalid: {e}")))?;
    Ok(d.out)
}

struct Deriver<'g> {
    g: &'g Graph,
    /// Positions per run: one, or `L`.
    rows: Dim,
    out: Graph,
    /// Each parallel value's current rows in the derived graph.
    cur: Vec<Option<ValueId>>,
    /// The window of each value whose past is kept, and the past it holds.
    window: Vec<Option<(ValueId, Past)>>,
    /// The extent of a value's later `L` axes (a window's, as attention scores').
    hist: Vec<Option<Dim>>,
    /// Printed value numbers of the parallel graph, for state names.
    number: Vec<u32>,
    origin: String,
}

const ONE: Dim = Dim::Known(1);

/// A generic in window coordinates, its operands, and the extent of its
/// results' later `L` axes.
type InWindow = (Box<Generic>, Vec<ValueId>, Option<Dim>);

/// The past positions a window holds before the current rows.
#[derive(Clone, Debug, PartialEq)]
enum Past {
    /// The last `n` (none: no window).
    Ring(i64),
    /// Every one, `T`.
    All,
}

const NONE: Past = Past::Ring(0);

/// The longer of two pasts.
fn longer(a: Past, b: &Past) -> Past {
    match (&a, b) {
        (Past::Ring(x), Past::Ring(y)) => Past::Ring(*x.max(y)),
        (Past::All, _) => a,
        _ => b.clone(),
    }
}

/// `a - b` rows, as an index expression; `None` when equal.
fn rows_between(a: &Past, b: &Past) -> Option<Scalar> {
    let t = || Scalar::Size(POSITION.into());
    match (a, b) {
        _ if a == b => None,
        (Past::Ring(x), Past::Ring(y)) => Some(Scalar::Const((x - y) as f64)),
        (Past::All, Past::Ring(0)) => Some(t()),
        (Past::All, Past::Ring(y)) => Some(Scalar::apply(ScalarFn::Sub, vec![t(), Scalar::Const(*y as f64)])),
        _ => unreachable!("a node's window is the longest of its operands'"),
    }
}

impl Deriver<'_> {
    fn error(&self, what: impl Into<String>) -> StepError {
        StepError { origin: self.origin.clone(), what: what.into() }
    }

    fn cur(&self, v: ValueId) -> ValueId {
        self.cur[v.0 as usize].expect("operands come first")
    }

    /// The rows of a window holding `past` before the current rows.
    fn len(&self, past: &Past) -> Dim {
        match (past, &self.rows) {
            (Past::Ring(0), rows) => rows.clone(),
            (Past::Ring(n), Dim::Known(r)) => Dim::Known(n + r),
            (Past::Ring(n), _) => Dim::Sym(ring_window(*n).into()),
            (Past::All, _) => Dim::Sym(WINDOW.into()),
        }
    }

    /// `ty` with its position axis `pos` long and its later `L` axes `hist` long.
    fn ty(&self, ty: &TensorTy, pos: &Dim, hist: Option<&Dim>) -> Result<TensorTy, StepError> {
        let first = position_axis(ty);
        let shape = ty
            .shape
            .iter()
            .enumerate()
            .map(|(a, d)| match (d.is_seq(), Some(a) == first) {
                (false, _) => Ok(d.clone()),
                (true, true) => Ok(pos.clone()),
                (true, false) => hist.cloned().ok_or_else(|| self.error("a value with two sequence axes")),
            })
            .collect::<Result<_, _>>()?;
        Ok(TensorTy { dtype: ty.dtype, shape })
    }

    fn node(&mut self, node: &crate::ir::Node) -> Result<(), StepError> {
        let g = self.g;
        // A generic reads the window of an operand only if it reads its past.
        let windowed: Vec<Option<(ValueId, Past)>> = match &node.op {
            Op::Generic(gen) | Op::Attention(gen) => {
                let past = reads_past(gen, &node.operands, g);
                node.operands
                    .iter()
                    .zip(past)
                    .map(|(v, p)| if p { self.window[v.0 as usize].clone() } else { None })
                    .collect()
            }
            _ => node.operands.iter().map(|v| self.window[v.0 as usize].clone()).collect(),
        };
        let w = windowed.iter().flatten().fold(NONE, |a, (_, d)| longer(a, d));
        let rows = self.rows.clone();
        let operand_hist = node.operands.iter().find_map(|v| self.hist[v.0 as usize].clone());
        let results: Vec<ValueId> = match &node.op {
            Op::Generic(gen) | Op::Attention(gen) => {
                let (gen, operands, hist) = self.generic(gen, &node.operands, &windowed, &w, operand_hist)?;
                let types = node
                    .results
                    .iter()
                    .map(|r| self.ty(g.ty(*r), &rows, hist.as_ref()))
                    .collect::<Result<Vec<_>, _>>()?;
                for r in &node.results {
                    self.hist[r.0 as usize] = hist.clone();
                }
                let op = if matches!(node.op, Op::Generic(_)) { Op::Generic(gen) } else { Op::Attention(gen) };
                self.out.add(op, operands, types)
            }
            Op::Scan(scan) => {
                if w != NONE {
                    return Err(self.error("a scan that reads earlier positions of its operands"));
                }
                return self.scan(scan, node);
            }
            Op::Conv1d { .. } | Op::FftConv { .. } if w != NONE => {
                // Convolve the window; its last rows are these positions'.
                let x = node.operands[0];
                let axis = position_axis(g.ty(x)).expect("a convolution runs along L");
                let mut operands = vec![self.window[x.0 as usize].as_ref().expect("w > 1").0];
                operands.extend(node.operands[1..].iter().map(|v| self.cur(*v)));
                let ty = g.ty(node.results[0]);
                let full = self.out.add1(node.op.clone(), operands, self.ty(ty, &self.len(&w), None)?);
                vec![self.out.add1(Op::Tail { axis }, vec![full], self.ty(ty, &rows, None)?)]
            }
            Op::StateInput { .. } | Op::Append { .. } | Op::Tail { .. } => {
                return Err(self.error("the graph is already a step graph"))
            }
            op => {
                // Reads its operands at the current position only.
                let operands = node.operands.iter().map(|v| self.cur(*v)).collect();
                let types = node
                    .results
                    .iter()
                    .map(|r| self.ty(g.ty(*r), &rows, operand_hist.as_ref()))
                    .collect::<Result<Vec<_>, _>>()?;
                for r in &node.results {
                    self.hist[r.0 as usize] = operand_hist.clone();
                }
                self.out.add(op.clone(), operands, types)
            }
        };
        for (r, n) in node.results.iter().zip(results) {
            self.cur[r.0 as usize] = Some(n);
        }
        Ok(())
    }

    /// A generic in window coordinates: its operands (windows where kept) and the
    /// extent of its results' later `L` axes.
    fn generic(
        &self,
        gen: &Generic,
        operands: &[ValueId],
        windowed: &[Option<(ValueId, Past)>],
        w: &Past,
        operand_hist: Option<Dim>,
    ) -> Result<InWindow, StepError> {
        let pos = gen.vars[..gen.rank].iter().position(|v| v.extent.is_seq());
        // Indices walking the past range over this node's window, or, when it
        // keeps no window, over the history axis of what it reads.
        let hist = if *w != NONE { Some(self.len(w)) } else { operand_hist };
        let mut vars = gen.vars.clone();
        let mut walkers = Vec::new();
        for (k, v) in vars.iter_mut().enumerate() {
            if v.extent.is_seq() {
                if Some(k) == pos {
                    v.extent = self.rows.clone();
                } else {
                    v.extent = hist.clone().ok_or_else(|| self.error("a reduction over positions it does not keep"))?;
                    walkers.push(k as u32);
                }
            }
        }
        let shift = rows_between(w, &NONE);
        let operand_windows: Vec<Past> = windowed.iter().map(|w| w.as_ref().map_or(NONE, |(_, d)| d.clone())).collect();
        let mut bad_size = false;
        let mut rewrite = |e: Scalar| -> Scalar {
            match e {
                Scalar::Index(i) if Some(i as usize) == pos => match &shift {
                    Some(s) => Scalar::apply(ScalarFn::Add, vec![Scalar::Index(i), s.clone()]),
                    None => Scalar::Index(i),
                },
                Scalar::Load { operand, mut indices } => {
                    let ty = self.g.ty(operands[operand as usize]);
                    if let (Some(a), Some(back)) =
                        (position_axis(ty), rows_between(w, &operand_windows[operand as usize]))
                    {
                        let at = std::mem::replace(&mut indices[a], Scalar::Const(0.0));
                        indices[a] = match at {
                            // `(i + s) - s`: the reader's position read at its own row.
                            Scalar::Apply(ScalarFn::Add, args) if args[1] == back => args[0].clone(),
                            at => Scalar::apply(ScalarFn::Sub, vec![at, back]),
                        };
                    }
                    Scalar::Load { operand, indices }
                }
                Scalar::Size(s) if s == crate::sema::types::SEQ => {
                    bad_size = true;
                    Scalar::Size(s)
                }
                other => other,
            }
        };
        let body = gen.body.clone().map(&mut rewrite);
        let mut cond = gen.cond.clone().map(|c| c.map(&mut rewrite));
        if bad_size {
            return Err(self.error("a body that reads the sequence length"));
        }
        // Ring slots before position 0: window row `j` is position `j + T - n`.
        if let Past::Ring(n) = w {
            for j in walkers.iter().filter(|_| *n > 0) {
                let live = Scalar::apply(
                    ScalarFn::Ge,
                    vec![
                        Scalar::apply(ScalarFn::Add, vec![Scalar::Index(*j), Scalar::Size(POSITION.into())]),
                        Scalar::Const(*n as f64),
                    ],
                );
                cond = Some(match cond {
                    Some(c) => Scalar::apply(ScalarFn::And, vec![c, live]),
                    None => live,
                });
            }
        }
        let new_operands = operands
            .iter()
            .zip(windowed)
            .map(|(v, w)| w.as_ref().map_or_else(|| self.cur(*v), |(win, _)| *win))
            .collect();
        Ok((Box::new(Generic { vars, rank: gen.rank, body, cond }), new_operands, hist))
    }

    /// A scan over these positions: each state starts from a `state` input and
    /// is also returned, after the last update, by an extra output.
    fn scan(&mut self, scan: &ScanOp, node: &crate::ir::Node) -> Result<(), StepError> {
        let g = self.g;
        let mut scan = scan.clone();
        for v in &mut scan.vars {
            if v.extent.is_seq() {
                v.extent = self.rows.clone();
            }
        }
        let mut operands: Vec<ValueId> = node.operands.iter().map(|v| self.cur(*v)).collect();
        let mut types =
            node.results.iter().map(|r| self.ty(g.ty(*r), &self.rows, None)).collect::<Result<Vec<_>, _>>()?;
        let mut names = Vec::new();
        for (k, st) in scan.states.iter_mut().enumerate() {
            let StateInit::Const(init) = st.init else {
                return Err(self.error(format!("scan state `{}` starts from a tensor, not a constant", st.name)));
            };
            let name = format!("{}:{}", self.origin, st.name);
            let ty = TensorTy { dtype: DType::F32, shape: st.shape.clone() };
            operands.push(self.out.add1(Op::StateInput { name: name.clone(), init }, Vec::new(), ty.clone()));
            st.init = StateInit::Operand(operands.len() as u32 - 1);
            let left = scan
                .updates
                .iter()
                .find(|u| u.target == k as u32)
                .map(|u| u.left.clone())
                .ok_or_else(|| self.error(format!("scan state `{}` is never updated", st.name)))?;
            let body = Scalar::State { state: k as u32, indices: left.iter().map(|&v| Scalar::Index(v)).collect() };
            scan.outputs.push(ScanStmt { target: types.len() as u32, left, body, cond: None });
            types.push(ty);
            names.push(name);
        }
        let results = self.out.add(Op::Scan(Box::new(scan)), operands, types);
        for (r, n) in node.results.iter().zip(&results) {
            self.cur[r.0 as usize] = Some(*n);
        }
        let finals = &results[node.results.len()..];
        self.out.next_states.extend(names.into_iter().zip(finals.iter().copied()));
        Ok(())
    }

    /// Keeps `p` past positions of `v`: a state input, the window, the next state.
    fn keep(&mut self, v: ValueId, p: Positions, origin: &str) -> Result<(), StepError> {
        let (kept, past) = match p {
            Positions::Last(0) => return Ok(()),
            Positions::Last(n) => (Dim::Known(n), Past::Ring(n)),
            Positions::All => (Dim::Sym(POSITION.into()), Past::All),
        };
        let len = self.len(&past);
        let ty = self.g.ty(v);
        let axis = position_axis(ty).expect("only values along L have a past");
        let hist = self.hist[v.0 as usize].clone();
        let state_ty = self.ty(ty, &kept, hist.as_ref())?;
        let name = format!("{origin}:%{}", self.number[v.0 as usize]);
        let input = self.out.add1(Op::StateInput { name: name.clone(), init: 0.0 }, Vec::new(), state_ty.clone());
        let window = self.out.add1(Op::Append { axis }, vec![input, self.cur(v)], self.ty(ty, &len, hist.as_ref())?);
        let next = match p {
            Positions::Last(_) => self.out.add1(Op::Tail { axis }, vec![window], state_ty),
            Positions::All => window,
        };
        self.out.next_states.push((name, next));
        self.window[v.0 as usize] = Some((window, past));
        Ok(())
    }
}

/// For each operand of a generic: whether it is read anywhere but at the node's
/// own position.
fn reads_past(gen: &Generic, operands: &[ValueId], g: &Graph) -> Vec<bool> {
    let pos = gen.vars[..gen.rank].iter().position(|v| v.extent.is_seq()).map(|p| p as u32);
    let mut past = vec![false; operands.len()];
    let mut visit = |e: &Scalar| {
        if let Scalar::Load { operand, indices } = e {
            if let Some(a) = position_axis(g.ty(operands[*operand as usize])) {
                past[*operand as usize] |= !matches!((&indices[a], pos), (Scalar::Index(i), Some(p)) if *i == p);
            }
        }
    };
    gen.body.visit(&mut visit);
    if let Some(c) = &gen.cond {
        c.visit(&mut visit);
    }
    past
}
