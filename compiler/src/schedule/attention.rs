//! Recognises the standard form of an `attention` op, which then runs as a
//! library call ([`Launch::Attention`](crate::ir::kernel::Launch)) instead of
//! a generated kernel:
//!
//! ```text
//! attention [b, i, h, e] (v, q, k) = sum[j] (softmax[j] sum[e1] q[b, i, h, e1] * k[b, j, h / g, e1] * s) * v[b, j, h / g, e]
//!                                    where <bounds on j, each `j <= i + x`, `j >= i + x`, `j <= x`, `j >= x`
//!                                           or `j >= s[i]` (a packed batch's starts)>
//! ```
//!
//! (the scale `s` as `/ c`, `* c` or absent; `h / g` as `h` when `g` is 1).
//! Anything else (another score, a mask that is not an interval of keys per
//! query) is left to the generated kernel, which handles every form.

use crate::ir::ops::Generic;
use crate::ir::{Scalar, ScalarFn};
use crate::syntax::ast::ReduceOp;

/// A recognised attention, in the op's terms.
#[derive(Debug, PartialEq)]
pub struct Form {
    /// Operand numbers.
    pub q: u32,
    pub k: u32,
    pub v: u32,
    /// Query heads per key head.
    pub group: i64,
    pub scale: f64,
    /// The loop indices of the keys and of the dot product.
    pub j: u32,
    pub e1: u32,
    pub keys: Bounds,
}

/// Bounds on the key index, each an integer affine form of sizes: `j <= i + x`
/// (`hi_rel`), `j >= i + x` (`lo_rel`), `j <= x` (`hi_abs`), `j >= x` (`lo_abs`).
#[derive(Debug, Default, PartialEq)]
pub struct Bounds {
    pub lo_rel: Vec<Sizes>,
    pub hi_rel: Vec<Sizes>,
    pub lo_abs: Vec<Sizes>,
    pub hi_abs: Vec<Sizes>,
    /// `j >= s[i]`: the operand `s`.
    pub lo_from: Option<u32>,
}

/// `constant + sum(coefficient * size)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sizes {
    pub constant: i64,
    pub terms: Vec<(i64, String)>,
}

/// The form of `gen`, if it is the standard one. Result indices: `b, i, h, e`.
pub fn recognise(gen: &Generic) -> Option<Form> {
    if gen.rank != 4 {
        return None;
    }
    let (b, i, h, e) = (0u32, 1u32, 2u32, 3u32);
    let Scalar::Reduce { op: ReduceOp::Sum, vars, body } = &gen.body else { return None };
    let [j] = vars[..] else { return None };
    let Scalar::Apply(ScalarFn::Mul, f) = &**body else { return None };
    let (p, v_load) = match (&f[0], &f[1]) {
        (p @ Scalar::Reduce { op: ReduceOp::Softmax, .. }, v)
        | (v, p @ Scalar::Reduce { op: ReduceOp::Softmax, .. }) => (p, v),
        _ => return None,
    };
    let Scalar::Reduce { vars: softmax_vars, body: scores, .. } = p else { return None };
    if softmax_vars[..] != [j] {
        return None;
    }
    // The scale outside the dot product or inside it.
    let (dot, outer) = scaled(scores)?;
    let Scalar::Reduce { op: ReduceOp::Sum, vars: dot_vars, body: product } = dot else { return None };
    let [e1] = dot_vars[..] else { return None };
    let (product, inner) = scaled(product)?;
    let scale = outer * inner;
    let Scalar::Apply(ScalarFn::Mul, qk) = product else { return None };
    let index = |x: u32| Scalar::Index(x);
    let q_at = [index(b), index(i), index(h), index(e1)];
    let ((q, _), (k, k_at)) = [(&qk[0], &qk[1]), (&qk[1], &qk[0])]
        .into_iter()
        .find_map(|(x, y)| Some((load(x).filter(|(_, at)| **at == q_at)?, load(y)?)))?;
    let [kb, kj, kh, ke] = &k_at[..] else { return None };
    let group = head_group(kh, h)?;
    if (kb, kj, ke) != (&index(b), &index(j), &index(e1)) {
        return None;
    }
    let (v, v_at) = load(v_load)?;
    if v_at[..] != [index(b), index(j), kh.clone(), index(e)] {
        return None;
    }
    let keys = match &gen.cond {
        None => Bounds::default(),
        Some(c) => bounds(c, i, j)?,
    };
    Some(Form { q, k, v, group, scale, j, e1, keys })
}

fn load(x: &Scalar) -> Option<(u32, &Vec<Scalar>)> {
    match x {
        Scalar::Load { operand, indices } => Some((*operand, indices)),
        _ => None,
    }
}

/// `h` (group 1) or `h / g`.
fn head_group(x: &Scalar, h: u32) -> Option<i64> {
    match x {
        Scalar::Index(v) if *v == h => Some(1),
        Scalar::Apply(ScalarFn::Div, a) if a[0] == Scalar::Index(h) => match a[1] {
            Scalar::Const(g) if g >= 1.0 && g.fract() == 0.0 => Some(g as i64),
            _ => None,
        },
        _ => None,
    }
}

/// The scores as `dot / c`, `dot * c`, `c * dot` or `dot`: the dot and the scale.
fn scaled(s: &Scalar) -> Option<(&Scalar, f64)> {
    Some(match s {
        Scalar::Apply(ScalarFn::Div, a) => match &a[1] {
            Scalar::Const(c) if *c != 0.0 => (&a[0], 1.0 / c),
            _ => return None,
        },
        Scalar::Apply(ScalarFn::Mul, a) => match (&a[0], &a[1]) {
            (Scalar::Const(c), x) | (x, Scalar::Const(c)) => (x, *c),
            _ => return None,
        },
        dot => (dot, 1.0),
    })
}

/// Every conjunct of `c` as a bound on `j`; `None` if one is not.
fn bounds(c: &Scalar, i: u32, j: u32) -> Option<Bounds> {
    let mut out = Bounds::default();
    let mut todo = vec![c];
    while let Some(c) = todo.pop() {
        let Scalar::Apply(f, a) = c else { return None };
        if *f == ScalarFn::And {
            todo.extend(a.iter());
            continue;
        }
        let per_query = |x: &Scalar| match x {
            Scalar::Load { operand, indices } if indices[..] == [Scalar::Index(i)] => Some(*operand),
            _ => None,
        };
        let from = match (f, &a[0], &a[1]) {
            (ScalarFn::Ge, Scalar::Index(v), s) | (ScalarFn::Le, s, Scalar::Index(v)) if *v == j => per_query(s),
            _ => None,
        };
        if let Some(s) = from {
            if out.lo_from.replace(s).is_some() {
                return None;
            }
            continue;
        }
        let (l, r) = (affine(&a[0], i, j)?, affine(&a[1], i, j)?);
        // As `d <= 0` over the integers.
        let d = match f {
            ScalarFn::Le => l.minus(&r),
            ScalarFn::Lt => l.minus(&r).plus_const(1),
            ScalarFn::Ge => r.minus(&l),
            ScalarFn::Gt => r.minus(&l).plus_const(1),
            _ => return None,
        };
        // d = cj j + ci i + rest <= 0.
        match (d.j, d.i) {
            // j <= -rest - ci i
            (1, -1) => out.hi_rel.push(d.rest.negated()),
            (1, 0) => out.hi_abs.push(d.rest.negated()),
            // j >= rest + ci i
            (-1, 1) => out.lo_rel.push(d.rest),
            (-1, 0) => out.lo_abs.push(d.rest),
            _ => return None,
        }
    }
    Some(out)
}

/// `j * j + i * i + rest`.
#[derive(Clone, Debug, Default)]
struct Affine {
    j: i64,
    i: i64,
    rest: Sizes,
}

impl Sizes {
    fn scaled(&self, by: i64) -> Sizes {
        Sizes { constant: self.constant * by, terms: self.terms.iter().map(|(c, s)| (c * by, s.clone())).collect() }
    }

    fn negated(&self) -> Sizes {
        self.scaled(-1)
    }

    fn plus(&self, o: &Sizes) -> Sizes {
        let mut terms = self.terms.clone();
        terms.extend(o.terms.iter().cloned());
        Sizes { constant: self.constant + o.constant, terms }
    }
}

impl Affine {
    fn scaled(&self, by: i64) -> Affine {
        Affine { j: self.j * by, i: self.i * by, rest: self.rest.scaled(by) }
    }

    fn plus(&self, o: &Affine) -> Affine {
        Affine { j: self.j + o.j, i: self.i + o.i, rest: self.rest.plus(&o.rest) }
    }

    fn minus(&self, o: &Affine) -> Affine {
        self.plus(&o.scaled(-1))
    }

    fn plus_const(mut self, c: i64) -> Affine {
        self.rest.constant += c;
        self
    }
}

/// `e` as an affine form of `i`, `j` and sizes with integer coefficients.
fn affine(e: &Scalar, i: u32, j: u32) -> Option<Affine> {
    let int = |c: f64| (c.fract() == 0.0 && c.abs() < 1e15).then_some(c as i64);
    Some(match e {
        Scalar::Const(c) => Affine { rest: Sizes { constant: int(*c)?, terms: vec![] }, ..Affine::default() },
        Scalar::Index(v) if *v == i => Affine { i: 1, ..Affine::default() },
        Scalar::Index(v) if *v == j => Affine { j: 1, ..Affine::default() },
        Scalar::Size(s) => Affine { rest: Sizes { constant: 0, terms: vec![(1, s.clone())] }, ..Affine::default() },
        Scalar::Apply(ScalarFn::Add, a) => affine(&a[0], i, j)?.plus(&affine(&a[1], i, j)?),
        Scalar::Apply(ScalarFn::Sub, a) => affine(&a[0], i, j)?.minus(&affine(&a[1], i, j)?),
        Scalar::Apply(ScalarFn::Neg, a) => affine(&a[0], i, j)?.scaled(-1),
        Scalar::Apply(ScalarFn::Mul, a) => match (&a[0], &a[1]) {
            (Scalar::Const(c), x) | (x, Scalar::Const(c)) => affine(x, i, j)?.scaled(int(*c)?),
            _ => return None,
        },
        _ => return None,
    })
}
