//! Attention as a library call ([`Launch::Attention`](super::Launch)): its
//! operands and shapes, the key interval of each query, and a direct reference
//! implementation (the kernel evaluator's, and the runtime tests' oracle).

use super::eval::int;
use super::{BufId, Expr};

/// `q [batch, q_len, heads, dim]`, `k [batch, kv_len, heads / group, dim]`,
/// `v [batch, kv_len, heads / group, dim_v]`, `out [batch, q_len, heads,
/// dim_v]`, row-major:
/// `out[b, i, h, :] = sum_j softmax_j(scale * q[b, i, h, :] . k[b, j, h / group, :]) * v[b, j, h / group, :]`
/// over the keys `j` of `keys` for query `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub batch: Expr,
    pub q_len: Expr,
    pub kv_len: Expr,
    pub heads: Expr,
    pub group: Expr,
    pub dim: Expr,
    pub dim_v: Expr,
    pub scale: f64,
    pub keys: KeyRange,
    pub q: BufId,
    pub k: BufId,
    pub v: BufId,
    pub out: BufId,
}

/// The keys query `i` attends to: the `j` in `0..kv_len` with `i + lo_rel <= j
/// <= i + hi_rel`, `lo_abs <= j <= hi_abs` and `from[i] <= j` (an absent bound
/// does not bound). An interval for every query: causal masks, sliding
/// windows, ring-buffer caches and packed batches (`from` holds each query's
/// first position) all have this form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyRange {
    pub lo_rel: Option<Expr>,
    pub hi_rel: Option<Expr>,
    pub lo_abs: Option<Expr>,
    pub hi_abs: Option<Expr>,
    /// A buffer of `q_len` lower bounds, one per query.
    pub lo_from: Option<BufId>,
}

/// An attention call's sizes, evaluated for a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sizes {
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub heads: usize,
    pub group: usize,
    pub dim: usize,
    pub dim_v: usize,
    pub scale: f32,
    rel: (Option<i64>, Option<i64>),
    abs: (Option<i64>, Option<i64>),
}

impl Attention {
    pub fn sizes(&self, dims: &[i64]) -> Sizes {
        let n = |e: &Expr| int(e, dims).max(0) as usize;
        let bound = |e: &Option<Expr>| e.as_ref().map(|e| int(e, dims));
        Sizes {
            batch: n(&self.batch),
            q_len: n(&self.q_len),
            kv_len: n(&self.kv_len),
            heads: n(&self.heads),
            group: n(&self.group).max(1),
            dim: n(&self.dim),
            dim_v: n(&self.dim_v),
            scale: self.scale as f32,
            rel: (bound(&self.keys.lo_rel), bound(&self.keys.hi_rel)),
            abs: (bound(&self.keys.lo_abs), bound(&self.keys.hi_abs)),
        }
    }
}

impl Sizes {
    /// The keys `lo..hi` of query `i` (empty when `lo == hi`).
    pub fn keys(&self, i: usize) -> (usize, usize) {
        let i = i as i64;
        let mut lo = 0i64;
        let mut hi = self.kv_len as i64; // exclusive
        if let Some(r) = self.rel.0 {
            lo = lo.max(i + r);
        }
        if let Some(r) = self.rel.1 {
            hi = hi.min(i + r + 1);
        }
        if let Some(a) = self.abs.0 {
            lo = lo.max(a);
        }
        if let Some(a) = self.abs.1 {
            hi = hi.min(a + 1);
        }
        (lo.max(0) as usize, hi.max(lo).max(0) as usize)
    }

    /// [`Sizes::keys`], bounded below by `from[i]` where a buffer bounds them.
    pub fn keys_from(&self, i: usize, from: Option<&[f32]>) -> (usize, usize) {
        let (lo, hi) = self.keys(i);
        match from {
            Some(from) => {
                let lo = lo.max(from[i] as usize);
                (lo, hi.max(lo))
            }
            None => (lo, hi),
        }
    }

    /// Where the row of query `i` of head `h` starts in `q` (and, with `dim_v`
    /// columns, in `out`); rows of one head are `heads * dim` apart.
    pub fn q_row(&self, b: usize, i: usize, h: usize, width: usize) -> usize {
        ((b * self.q_len + i) * self.heads + h) * width
    }

    /// Where key (or value) row `j` of head `h`'s group starts.
    pub fn kv_row(&self, b: usize, j: usize, h: usize, width: usize) -> usize {
        let kv_heads = self.heads / self.group;
        ((b * self.kv_len + j) * kv_heads + h / self.group) * width
    }
}

/// The definition, one query at a time, with f64 sums: the oracle. A query
/// with no keys gets zeros (the graph IR's masked result).
pub fn direct(s: &Sizes, from: Option<&[f32]>, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    for b in 0..s.batch {
        for i in 0..s.q_len {
            let (lo, hi) = s.keys_from(i, from);
            for h in 0..s.heads {
                let qr = &q[s.q_row(b, i, h, s.dim)..][..s.dim];
                let scores: Vec<f64> = (lo..hi)
                    .map(|j| {
                        let kr = &k[s.kv_row(b, j, h, s.dim)..][..s.dim];
                        qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * s.scale as f64
                    })
                    .collect();
                let top = scores.iter().fold(f64::NEG_INFINITY, |m, x| m.max(*x));
                let weights: Vec<f64> = scores.iter().map(|x| (x - top).exp()).collect();
                let total: f64 = weights.iter().sum();
                let o = &mut out[s.q_row(b, i, h, s.dim_v)..][..s.dim_v];
                for (c, y) in o.iter_mut().enumerate() {
                    let acc: f64 =
                        (lo..hi).zip(&weights).map(|(j, w)| w * v[s.kv_row(b, j, h, s.dim_v) + c] as f64).sum();
                    *y = if hi > lo { (acc / total) as f32 } else { 0.0 };
                }
            }
        }
    }
}
