//! Packed derivation: from the parallel graph, the graph of a packed batch.
//! Sequences of different lengths lie back to back along `L` in one row
//! (`B = 1`), and an input [`STARTS`] (`[L]`) gives each position the first
//! position of its sequence. At every position the graph computes what the
//! parallel graph computes for that sequence alone, with no padding run:
//!
//! - a read of another position (`x[l - k]`, a convolution's taps) reads 0
//!   before the reader's start, as the parallel graph reads 0 before position 0;
//! - an index that walks positions (attention's keys, a scores tensor's history
//!   axis) is bounded below by the start, so those points are masked, as a
//!   causal mask masks later keys;
//! - a scan restarts from its initial state at each start: the previous state's
//!   coefficient is 0 there, so a linear scan stays linear (and may still be
//!   chunked along `L`);
//! - a position used as a value (`rope`'s angle), or compared with a
//!   constant (`j < 4`: attention sinks), counts from the start;
//! - a long convolution (`fftconv`) takes the starts as an operand and
//!   convolves each sequence on its own (an FFT per sequence).
//!
//! The other builtins that read across positions (`conv1d`, `rope`) are
//! decomposed first, so only generics and scans are rewritten.
//!
//! Nothing bounds reads from above: the model is causal (its step form exists),
//! so no position reads a later one, in its sequence or the next.

use crate::analysis::state::position_axis;
use crate::ir::ops::{Generic, LoopVar, ScanOp, StateInit};
use crate::ir::{verify::verify, Graph, Node, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::{Dim, TensorTy};
use crate::syntax::ast::DType;

/// The input giving each position of a packed batch the first position of its
/// sequence: `[L]`, non-decreasing, `start[l] <= l`.
pub const STARTS: &str = "@start";

/// A graph the packed form does not cover (yet): where, and why.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("packed batch: {origin}: {what}")]
pub struct PackError {
    pub origin: String,
    pub what: String,
}

/// The packed graph of a parallel graph.
pub fn derive_packed(g: &Graph) -> Result<Graph, PackError> {
    let mut p = g.clone();
    crate::schedule::decompose::decompose(&mut p);
    let starts = ValueId(p.types.len() as u32);
    p.types.push(TensorTy { dtype: DType::I64, shape: vec![Dim::Sym(crate::sema::types::SEQ.into())] });
    p.nodes.insert(0, Node { op: Op::Input { name: STARTS.into() }, operands: vec![], results: vec![starts] });
    p.origins.insert(0, String::new());
    for (i, node) in p.nodes.iter_mut().enumerate() {
        let origin = || p.origins.get(i).filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| g.name.clone());
        let fail = |what: String| PackError { origin: origin(), what };
        let tys: Vec<&TensorTy> = node.operands.iter().map(|v| &p.types[v.0 as usize]).collect();
        let axes: Vec<Option<usize>> = tys.iter().map(|t| position_axis(t)).collect();
        let start_operand = node.operands.len() as u32;
        let used = match &mut node.op {
            Op::Generic(gen) | Op::Attention(gen) => confine_generic(gen, &axes, start_operand).map_err(fail)?,
            // (A graph packed already reads its starts: not twice.)
            Op::FftConv { starts } => !std::mem::replace(starts, true),
            Op::Scan(scan) => {
                let shapes: Vec<Vec<Dim>> = tys.iter().map(|t| t.shape.clone()).collect();
                confine_scan(scan, &axes, &shapes, start_operand).map_err(fail)?
            }
            Op::Reshape => {
                let from = position_axis(tys[0]);
                let to = position_axis(&p.types[node.results[0].0 as usize]);
                if from != to {
                    return Err(fail(format!("a reshape moves the position axis ({from:?} to {to:?})")));
                }
                false
            }
            _ => false,
        };
        if used {
            node.operands.push(starts);
        }
    }
    crate::passes::linear_recurrence::run(&mut p);
    verify(&p).map_err(|e| PackError { origin: g.name.clone(), what: format!("the derived graph is invalid: {e}") })?;
    Ok(p)
}

/// Where a body's reads are confined: its position index, the other indices over
/// positions, the operand holding the starts and each operand's position axis.
struct Confine<'a> {
    row: u32,
    walkers: Vec<u32>,
    start: u32,
    axes: &'a [Option<usize>],
    used: bool,
}

impl Confine<'_> {
    /// `start[row]`.
    fn start(&mut self) -> Scalar {
        self.used = true;
        Scalar::Load { operand: self.start, indices: vec![Scalar::Index(self.row)] }
    }

    /// `walker >= start[row]` for each index that walks positions.
    fn bounds(&mut self) -> Option<Scalar> {
        let walkers = self.walkers.clone();
        walkers
            .into_iter()
            .map(|j| Scalar::apply(ScalarFn::Ge, vec![Scalar::Index(j), self.start()]))
            .reduce(|a, b| Scalar::apply(ScalarFn::And, vec![a, b]))
    }

    /// A condition whose comparisons of positions count from the start where
    /// that changes them: `j < 4` (the first keys, attention sinks) does,
    /// `j <= i` and `i - j < w` do not, and stay as they are for the loop
    /// bounds and the attention form that read them.
    fn cond(&mut self, e: Scalar) -> Scalar {
        match e {
            Scalar::Apply(f @ (ScalarFn::And | ScalarFn::Or | ScalarFn::Not), args) => {
                Scalar::Apply(f, args.into_iter().map(|a| self.cond(a)).collect())
            }
            Scalar::Apply(f, args) if args.len() == 2 && self.shift(&args[0]) != self.shift(&args[1]) => {
                Scalar::Apply(f, args.into_iter().map(|a| self.body(a)).collect())
            }
            other => other,
        }
    }

    /// How much `e` grows when every position index grows by one (`None`:
    /// not by a constant).
    fn shift(&self, e: &Scalar) -> Option<f64> {
        let positional = |v: &u32| *v == self.row || self.walkers.contains(v);
        Some(match e {
            Scalar::Index(v) => f64::from(u8::from(positional(v))),
            Scalar::Const(_) | Scalar::Size(_) | Scalar::Load { .. } => 0.0,
            Scalar::Apply(ScalarFn::Add, a) => self.shift(&a[0])? + self.shift(&a[1])?,
            Scalar::Apply(ScalarFn::Sub, a) => self.shift(&a[0])? - self.shift(&a[1])?,
            Scalar::Apply(ScalarFn::Neg, a) => -self.shift(&a[0])?,
            Scalar::Apply(ScalarFn::Mul, a) => match (&a[0], &a[1]) {
                (Scalar::Const(c), x) | (x, Scalar::Const(c)) => c * self.shift(x)?,
                (x, y) if self.shift(x)? == 0.0 && self.shift(y)? == 0.0 => 0.0,
                _ => return None,
            },
            other if other.any(&|x| matches!(x, Scalar::Index(v) if positional(v))) => return None,
            _ => 0.0,
        })
    }

    /// A body with its reads confined and its positions counted from the start.
    fn body(&mut self, e: Scalar) -> Scalar {
        match e {
            Scalar::Index(v) if v == self.row || self.walkers.contains(&v) => {
                Scalar::apply(ScalarFn::Sub, vec![Scalar::Index(v), self.start()])
            }
            Scalar::Load { operand, indices } => {
                let at = self.axes.get(operand as usize).copied().flatten().map(|a| indices[a].clone());
                let load = Scalar::Load { operand, indices };
                match at {
                    Some(Scalar::Index(v)) if v == self.row || self.walkers.contains(&v) => load,
                    Some(at) => Scalar::Select(
                        Box::new(Scalar::apply(ScalarFn::Ge, vec![at, self.start()])),
                        Box::new(load),
                        Box::new(Scalar::Const(0.0)),
                    ),
                    None => load,
                }
            }
            Scalar::Apply(f, args) => Scalar::Apply(f, args.into_iter().map(|a| self.body(a)).collect()),
            Scalar::Select(c, a, b) => {
                Scalar::Select(Box::new(self.body(*c)), Box::new(self.body(*a)), Box::new(self.body(*b)))
            }
            Scalar::Reduce { op, vars, body } => Scalar::Reduce { op, vars, body: Box::new(self.body(*body)) },
            other @ (Scalar::Index(_) | Scalar::Const(_) | Scalar::Size(_) | Scalar::State { .. }) => other,
        }
    }
}

fn and(cond: Option<Scalar>, more: Option<Scalar>) -> Option<Scalar> {
    match (cond, more) {
        (Some(a), Some(b)) => Some(Scalar::apply(ScalarFn::And, vec![a, b])),
        (a, b) => a.or(b),
    }
}

/// The indices over positions of a loop nest that `used` says are read: the
/// first of `result` (the position), then the others.
fn over_positions(
    vars: &[LoopVar],
    result: usize,
    used: &dyn Fn(u32) -> bool,
) -> Result<Option<(u32, Vec<u32>)>, String> {
    let over = |v: u32| vars[v as usize].extent.is_seq() && (used(v) || (v as usize) < result);
    let seq: Vec<u32> = (0..vars.len() as u32).filter(|&v| over(v)).collect();
    if seq.is_empty() {
        return Ok(None);
    }
    let Some(&row) = seq.iter().find(|&&v| (v as usize) < result) else {
        return Err("a reduction over positions with no position of its own".into());
    };
    Ok(Some((row, seq.into_iter().filter(|&v| v != row).collect())))
}

/// Confines a generic; whether it now reads the starts.
fn confine_generic(gen: &mut Generic, axes: &[Option<usize>], start: u32) -> Result<bool, String> {
    let used = |v: u32| gen.body.mentions(v) || gen.cond.as_ref().is_some_and(|c| c.mentions(v));
    let Some((row, walkers)) = over_positions(&gen.vars, gen.rank, &used)? else { return Ok(false) };
    let mut cx = Confine { row, walkers, start, axes, used: false };
    gen.body = cx.body(std::mem::replace(&mut gen.body, Scalar::Const(0.0)));
    let cond = gen.cond.take().map(|c| cx.cond(c));
    gen.cond = and(cond, cx.bounds());
    Ok(cx.used)
}

/// Confines a scan and restarts its states at each start; whether it now reads
/// the starts.
fn confine_scan(scan: &mut ScanOp, axes: &[Option<usize>], shapes: &[Vec<Dim>], start: u32) -> Result<bool, String> {
    let stmts = || scan.updates.iter().chain(&scan.outputs);
    let used = |v: u32| stmts().any(|st| st.body.mentions(v) || st.left.contains(&v));
    let (row, walkers) = if scan.vars[scan.axis as usize].extent.is_seq() {
        let walkers =
            (0..scan.vars.len() as u32).filter(|&v| v != scan.axis && scan.vars[v as usize].extent.is_seq() && used(v));
        (scan.axis, walkers.collect())
    } else {
        // A scan along another axis: an element-wise body as far as positions go.
        match over_positions(&scan.vars, scan.vars.len(), &used)? {
            Some(found) => found,
            None => return Ok(false),
        }
    };
    if !walkers.is_empty() {
        return Err("a scan that walks positions besides its own".into());
    }
    let mut cx = Confine { row, walkers, start, axes, used: false };
    for st in scan.updates.iter_mut().chain(scan.outputs.iter_mut()) {
        st.body = cx.body(std::mem::replace(&mut st.body, Scalar::Const(0.0)));
        st.cond = st.cond.take().map(|c| cx.cond(c));
    }
    if row == scan.axis {
        let inits: Vec<Init> = scan
            .states
            .iter()
            .map(|st| match st.init {
                StateInit::Const(c) => Init::Const(c),
                StateInit::Operand(k) => Init::Operand(k, shapes[k as usize].clone()),
            })
            .collect();
        // `row == start[row]`: the first position of a sequence.
        let first = Scalar::apply(ScalarFn::Eq, vec![Scalar::Index(row), cx.start()]);
        for u in &mut scan.updates {
            u.body = restart(std::mem::replace(&mut u.body, Scalar::Const(0.0)), &first, &inits);
        }
    }
    Ok(cx.used)
}

/// A state's initial value: a constant, or an operand that broadcasts to the
/// state from the right.
enum Init {
    Const(f64),
    Operand(u32, Vec<Dim>),
}

impl Init {
    /// The initial value of the state's element at `indices`.
    fn at(&self, indices: &[Scalar]) -> Scalar {
        match self {
            Init::Const(c) => Scalar::Const(*c),
            Init::Operand(k, shape) => {
                let skip = indices.len() - shape.len();
                let at = shape
                    .iter()
                    .zip(&indices[skip..])
                    .map(|(d, i)| if d.known() == Some(1) { Scalar::Const(0.0) } else { i.clone() })
                    .collect();
                Scalar::Load { operand: *k, indices: at }
            }
        }
    }
}

/// An update whose previous states read as their initial values where `first`
/// holds. A term `a * h` of a state that starts at 0 becomes `(a * keep) * h`,
/// `keep` being 0 at a first position, so the update keeps the form the
/// linear-recurrence pass recognises; any other read of a state `h` becomes
/// `first ? init : h`.
fn restart(e: Scalar, first: &Scalar, inits: &[Init]) -> Scalar {
    let keep = || Scalar::Select(Box::new(first.clone()), Box::new(Scalar::Const(0.0)), Box::new(Scalar::Const(1.0)));
    let zero_state =
        |e: &Scalar| matches!(e, Scalar::State { state, .. } if matches!(inits[*state as usize], Init::Const(0.0)));
    match e {
        Scalar::Apply(f @ (ScalarFn::Add | ScalarFn::Sub), a) => {
            Scalar::Apply(f, a.into_iter().map(|x| restart(x, first, inits)).collect())
        }
        Scalar::Apply(ScalarFn::Neg, a) => Scalar::Apply(ScalarFn::Neg, vec![restart(a[0].clone(), first, inits)]),
        Scalar::Reduce { op: crate::syntax::ast::ReduceOp::Sum, vars, body } => {
            Scalar::Reduce { op: crate::syntax::ast::ReduceOp::Sum, vars, body: Box::new(restart(*body, first, inits)) }
        }
        h if zero_state(&h) => Scalar::apply(ScalarFn::Mul, vec![keep(), h]),
        Scalar::Apply(ScalarFn::Mul, a) if zero_state(&a[1]) && !a[0].reads_state() => {
            let [x, h] = <[Scalar; 2]>::try_from(a).expect("a product has two factors");
            Scalar::apply(ScalarFn::Mul, vec![Scalar::apply(ScalarFn::Mul, vec![x, keep()]), h])
        }
        Scalar::Apply(ScalarFn::Mul, a) if zero_state(&a[0]) && !a[1].reads_state() => {
            let [h, x] = <[Scalar; 2]>::try_from(a).expect("a product has two factors");
            Scalar::apply(ScalarFn::Mul, vec![h, Scalar::apply(ScalarFn::Mul, vec![x, keep()])])
        }
        other => other.map(&mut |x| match x {
            Scalar::State { state, ref indices } => {
                let init = inits[state as usize].at(indices);
                Scalar::Select(Box::new(first.clone()), Box::new(init), Box::new(x))
            }
            x => x,
        }),
    }
}
