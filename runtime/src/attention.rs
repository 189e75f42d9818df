//! Attention on the CPU ([`Launch::Attention`]): for each batch row, head and
//! tile of queries, the scores against the tile's keys through `gemm`, a masked
//! softmax in place, then the weighted values through `gemm`, normalised at
//! the end. Tiles run on separate threads; each holds one tile of scores,
//! `TILE x keys`, so memory grows linearly with the sequence, and keys no query
//! of the tile attends to (beyond a causal diagonal, outside a window) are
//! neither multiplied nor stored.
//!
//! [`Launch::Attention`]: seqc_compiler::ir::kernel::Launch::Attention

use seqc_compiler::ir::kernel::attention::Sizes;

/// Queries per tile: the rows of one pair of products.
const TILE: usize = 64;

/// `out` of the attention `s` over `q`, `k`, `v` (layouts as [`Sizes`] says).
pub fn attention(s: &Sizes, from: Option<&[f32]>, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    let tiles = s.q_len.div_ceil(TILE);
    let tasks = s.batch * s.heads * tiles;
    let out_ptr = OutPtr(out.as_mut_ptr());
    let run = |t: usize| {
        let (b, rest) = (t / (s.heads * tiles), t % (s.heads * tiles));
        let (h, tile) = (rest / tiles, rest % tiles);
        let i0 = tile * TILE;
        let i1 = (i0 + TILE).min(s.q_len);
        // SAFETY: each task writes only rows `i0..i1` of head `h` in batch row
        // `b`, which no other task writes.
        unsafe { tile_attention(s, from, q, k, v, out_ptr, b, h, i0, i1) };
    };
    use rayon::prelude::*;
    if tasks <= 1 {
        (0..tasks).for_each(run);
    } else {
        crate::team::rest();
        (0..tasks).into_par_iter().for_each(run);
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Queries `i0..i1` of head `h` in batch row `b`.
///
/// # Safety
/// `out` holds the whole output; no other thread writes these rows.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_attention(
    s: &Sizes,
    from: Option<&[f32]>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: OutPtr,
    b: usize,
    h: usize,
    i0: usize,
    i1: usize,
) {
    let rows = i1 - i0;
    let ranges: Vec<(usize, usize)> = (i0..i1).map(|i| s.keys_from(i, from)).collect();
    let lo = ranges.iter().filter(|r| r.1 > r.0).map(|r| r.0).min().unwrap_or(0);
    let hi = ranges.iter().map(|r| r.1).max().unwrap_or(0).max(lo);
    let keys = hi - lo;
    let kv_heads = s.heads / s.group;
    let (q_stride, k_stride, v_stride, o_stride) =
        (s.heads * s.dim, kv_heads * s.dim, kv_heads * s.dim_v, s.heads * s.dim_v);
    let o = out.0.add(s.q_row(b, i0, h, s.dim_v));
    if keys == 0 {
        for r in 0..rows {
            std::ptr::write_bytes(o.add(r * o_stride), 0, s.dim_v);
        }
        return;
    }
    // scores[r, j] = scale * q[i0 + r] . k[lo + j]
    let mut scores = vec![0f32; rows * keys];
    gemm::gemm(
        rows,
        keys,
        s.dim,
        scores.as_mut_ptr(),
        1,
        keys as isize,
        false,
        q.as_ptr().add(s.q_row(b, i0, h, s.dim)),
        1,
        q_stride as isize,
        k.as_ptr().add(s.kv_row(b, lo, h, s.dim)),
        k_stride as isize,
        1,
        0.0,
        s.scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    let mut totals = vec![0f32; rows];
    for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
        let (from, to) = ranges[r];
        if to <= from {
            row.fill(0.0);
            continue;
        }
        let (from, to) = (from - lo, to - lo);
        row[..from].fill(0.0);
        row[to..].fill(0.0);
        totals[r] = softmax_numerators(&mut row[from..to]);
    }
    // out[i0 + r] = (scores[r] . v[lo..hi]) / totals[r]
    gemm::gemm(
        rows,
        s.dim_v,
        keys,
        o,
        1,
        o_stride as isize,
        false,
        scores.as_ptr(),
        1,
        keys as isize,
        v.as_ptr().add(s.kv_row(b, lo, h, s.dim_v)),
        1,
        v_stride as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    for (r, total) in totals.iter().enumerate() {
        let row = std::slice::from_raw_parts_mut(o.add(r * o_stride), s.dim_v);
        let inv = if *total > 0.0 { 1.0 / total } else { 0.0 };
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `x[j] = exp(x[j] - max x)` in place; returns their sum.
fn softmax_numerators(x: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features are present.
        return unsafe { softmax_numerators_avx2(x) };
    }
    softmax_numerators_body(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_numerators_avx2(x: &mut [f32]) -> f32 {
    softmax_numerators_body(x)
}

#[inline(always)]
fn softmax_numerators_body(x: &mut [f32]) -> f32 {
    let top = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    x.iter_mut().for_each(|v| *v = exp(*v - top));
    // Eight partial sums, so the compiler vectorises the sum.
    let mut parts = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (p, v) in parts.iter_mut().zip(c) {
            *p += v;
        }
    }
    parts.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `e^x` for `x <= 0` (a softmax's shifted scores), to about one ulp: `x = n
/// ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor series to `r^7`
/// (truncation below 1e-8 relative), times `2^n` built in the exponent bits.
/// Straight-line code, so loops over it vectorise. Below -87, zero.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * scale;
    if x <= -87.0 {
        0.0
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seqc_compiler::ir::kernel::attention::{direct, Attention, KeyRange};
    use seqc_compiler::ir::kernel::{BufId, Expr};

    /// The tiled products against the definition, on scores large enough that
    /// the scale and the mask matter: causal, windowed, offset (a decode step
    /// over a cache), a ring-buffer bound, a packed batch's starts, grouped
    /// heads, query counts no tile divides, and queries with no keys.
    #[test]
    fn tiles_match_the_definition() {
        let int = |x: i64| Some(Expr::Int(x));
        // A packed batch: sequences of 20, 1, 49 positions, so tiles of 64
        // queries span sequences.
        let packed: Vec<f32> =
            (0..70).map(|i: usize| [0, 20, 21][(i >= 20) as usize + (i >= 21) as usize] as f32).collect();
        let cases = [
            ("causal", 2, 70, 70, 4, 2, KeyRange { hi_rel: int(0), ..Default::default() }, None),
            ("window", 1, 130, 130, 2, 1, KeyRange { lo_rel: int(-5), hi_rel: int(0), ..Default::default() }, None),
            ("decode", 3, 1, 40, 4, 4, KeyRange { hi_rel: int(39), ..Default::default() }, None),
            (
                "ring",
                1,
                1,
                16,
                2,
                2,
                KeyRange { lo_rel: int(0), hi_rel: int(15), lo_abs: int(9), ..Default::default() },
                None,
            ),
            ("none", 1, 5, 9, 1, 1, KeyRange { lo_rel: int(0), hi_rel: int(-1), ..Default::default() }, None),
            ("full", 2, 65, 33, 3, 1, KeyRange::default(), None),
            (
                "packed",
                1,
                70,
                70,
                4,
                2,
                KeyRange { hi_rel: int(0), lo_from: Some(BufId(4)), ..Default::default() },
                Some(&packed),
            ),
        ];
        let mut seed = 5u32;
        let mut noise = |n: usize| -> Vec<f32> {
            seed += 1;
            crate::testing::noise(seed, n).into_iter().map(|x| x * 4.0).collect()
        };
        for (what, batch, q_len, kv_len, heads, group, keys, from) in cases {
            let (dim, dim_v) = (16usize, 8usize);
            let call = Attention {
                batch: Expr::Int(batch),
                q_len: Expr::Int(q_len),
                kv_len: Expr::Int(kv_len),
                heads: Expr::Int(heads),
                group: Expr::Int(group),
                dim: Expr::Int(dim as i64),
                dim_v: Expr::Int(dim_v as i64),
                scale: 0.37,
                keys,
                q: BufId(0),
                k: BufId(1),
                v: BufId(2),
                out: BufId(3),
            };
            let s = call.sizes(&[]);
            let kv_heads = s.heads / s.group;
            let q = noise(s.batch * s.q_len * s.heads * dim);
            let k = noise(s.batch * s.kv_len * kv_heads * dim);
            let v = noise(s.batch * s.kv_len * kv_heads * dim_v);
            let mut want = vec![0f32; s.batch * s.q_len * s.heads * dim_v];
            direct(&s, from.map(|f| f.as_slice()), &q, &k, &v, &mut want);
            let mut got = vec![f32::NAN; want.len()];
            attention(&s, from.map(|f| f.as_slice()), &q, &k, &v, &mut got);
            for (n, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what}: element {n}: {g} against {w}");
            }
        }
    }

    #[test]
    fn exp_is_accurate_to_an_ulp_or_two() {
        let mut worst = 0f64;
        let mut x = -86.9f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let ulp = (want as f32).to_bits().abs_diff(exp(x).to_bits());
            worst = worst.max(ulp as f64);
            x += 0.000_37;
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }
}
