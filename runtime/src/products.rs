//! Dense products, `c = a * b^T (+ bias)`: through `gemm` for many rows, and
//! through a streaming kernel of our own for the few rows of decode, which is
//! bound by reading the weights once. Weights may be held in bf16 (half the
//! bytes to read); they are widened to f32 as they are read, and every sum is
//! accumulated in f32.

use half::bf16;

/// The right-hand side of a product as the runtime holds it.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    /// `[n, k]` row-major, as the checkpoint stores a linear weight.
    F32(&'a [f32]),
    /// Held transposed, in f32.
    F32T(&'a Held<f32>),
    /// Held transposed, in bf16.
    Bf16T(&'a Held<bf16>),
}

/// A linear weight `[n, k]` held transposed, `[k, n]`: the layout both product
/// kernels stream fastest. Its rows lie `stride` elements apart, an odd number
/// of cache lines: at a stride of a multiple of 4 KiB (`n` = 3072), the rows a
/// kernel reads together would fall into one set of the first-level cache and
/// evict each other.
pub struct Held<T> {
    data: Vec<T>,
    n: usize,
    k: usize,
    /// The elements it was made from (`n * k` unless the caller erred, which
    /// the run then reports).
    given: usize,
}

impl<T: Copy + Default> Held<T> {
    /// `w[n, k]` row-major, each element converted by `convert`.
    pub fn new(w: &[f32], n: usize, k: usize, convert: impl Fn(f32) -> T) -> Held<T> {
        let ld = stride(n);
        let mut data = vec![T::default(); k * ld];
        for (j, row) in w.chunks(k.max(1)).enumerate().take(n) {
            for (kk, &x) in row.iter().enumerate() {
                data[kk * ld + j] = convert(x);
            }
        }
        Held { data, n, k, given: w.len() }
    }

    /// Back to `[n, k]` row-major.
    pub fn rows(&self) -> Vec<f32>
    where
        f32: From<T>,
    {
        let ld = self.stride();
        let mut w = vec![0f32; self.n * self.k];
        for j in 0..self.n {
            for kk in 0..self.k {
                w[j * self.k + kk] = f32::from(self.data[kk * ld + j]);
            }
        }
        w
    }

    /// The elements it was made from (`n * k`, without the padding).
    pub fn len(&self) -> usize {
        self.given
    }
}

impl<T> Held<T> {
    /// The distance between its rows.
    fn stride(&self) -> usize {
        stride(self.n)
    }
}

/// The row stride of a held weight of `n` columns: whole 64-byte lines, an odd
/// number of them.
fn stride(n: usize) -> usize {
    let lines = n.div_ceil(16);
    16 * (lines | 1)
}

/// Rows up to which a product streams the weights itself instead of calling
/// `gemm`: decode batches. `gemm` packs its right-hand side on every call,
/// which for a handful of rows costs more than the product.
pub const SMALL_M: usize = 16;

/// `c[m, n] = a[m, k] * b^T (+ bias[n])`, all row-major.
///
/// # Safety
/// `a` holds `m * k` elements, `bias` `n`, `c` `m * n`; `b` holds `n * k`; `c`
/// overlaps none of the others.
pub unsafe fn gemm_nt(m: usize, n: usize, k: usize, a: *const f32, b: Rhs, bias: Option<*const f32>, c: *mut f32) {
    if m == 0 || n == 0 {
        return;
    }
    let read_dst = match bias {
        Some(bias) => {
            for row in 0..m {
                std::ptr::copy_nonoverlapping(bias, c.add(row * n), n);
            }
            true
        }
        None => false,
    };
    if !read_dst {
        std::ptr::write_bytes(c, 0, m * n);
    }
    let a = std::slice::from_raw_parts(a, m * k);
    let c = std::slice::from_raw_parts_mut(c, m * n);
    match b {
        Rhs::F32T(w) if m <= SMALL_M => few_rows(m, n, k, a, w, c),
        Rhs::Bf16T(w) if m <= SMALL_M => few_rows(m, n, k, a, w, c),
        Rhs::F32(w) if m <= SMALL_M => few_rows_by_dots(m, n, k, a, w, c),
        Rhs::F32(w) => call_gemm(m, n, k, a, w, None, c),
        Rhs::F32T(w) => call_gemm(m, n, k, a, &w.data, Some(w.stride()), c),
        Rhs::Bf16T(w) => {
            // Many rows: widen once per call; the product then costs far more
            // than the conversion (`m` rows against one pass over `b`).
            let wide: Vec<f32> = w.data.iter().map(|x| x.to_f32()).collect();
            call_gemm(m, n, k, a, &wide, Some(w.stride()), c)
        }
    }
}

/// `c += a * b^T` through `gemm`; `b` is `[n, k]` row-major, or with
/// `held_stride` held `[k, n]` with rows that far apart.
fn call_gemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], held_stride: Option<usize>, c: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let par = if m * n * k < 64 * 64 * 64 {
        gemm::Parallelism::None
    } else {
        crate::team::rest();
        gemm::Parallelism::Rayon(threads)
    };
    // rhs[kk, j] = b[j, kk]: column stride k, row stride 1; or held[kk, j].
    let (rhs_cs, rhs_rs) = match held_stride {
        Some(ld) => (1, ld as isize),
        None => (k as isize, 1),
    };
    // SAFETY: the slices hold the sizes the strides describe; `c` is separate.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    };
}

/// A weight element the streaming kernel widens to f32 as it reads it.
trait Element: Copy + Send + Sync {
    fn widen(self) -> f32;

    /// Eight consecutive elements, widened.
    ///
    /// # Safety
    /// `p` points at eight readable elements; AVX2 is present.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Element for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl Element for bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        // bf16 is the top half of an f32: exact, and a shift the compiler
        // vectorises.
        f32::from_bits((self.to_bits() as u32) << 16)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const bf16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let half = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(half)))
    }
}

/// `c[m, n] += a[m, k] * b[n, k]^T` for a few rows `m`, with `b` as stored
/// (a weight that kernels read too, such as a tied embedding): each row of `b`
/// read once, in order, and dotted with every row of `a`.
fn few_rows_by_dots(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    by_columns(m, n, k, c, |j0, j1, out| dotted(m, k, a, b, j0, j1, out))
}

/// Columns `j0..j1` of `c += a * b^T`, `b` as stored, with `out` holding them
/// packed `[m, j1 - j0]`. Dispatches to an AVX2 + FMA build where the CPU has
/// one.
fn dotted(m: usize, k: usize, a: &[f32], b: &[f32], j0: usize, j1: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features are present.
        return unsafe { dots_avx2(m, k, a, b, j0, j1, out) };
    }
    dotted_portable(m, k, a, b, j0, j1, out)
}

fn dotted_portable(m: usize, k: usize, a: &[f32], b: &[f32], j0: usize, j1: usize, out: &mut [f32]) {
    let width = j1 - j0;
    for j in j0..j1 {
        let w = &b[j * k..(j + 1) * k];
        for r in 0..m {
            let x = &a[r * k..(r + 1) * k];
            out[r * width + j - j0] += x.iter().zip(w).map(|(x, w)| x * w).sum::<f32>();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(m: usize, k: usize, a: &[f32], b: &[f32], j0: usize, j1: usize, out: &mut [f32]) {
    dots::rows(m, k, a, b, j0, j1, out)
}

/// Dot products of a few rows of `a` with every row of `b`, eight lanes at a
/// time: each call holds `W` rows of `b` against `X` rows of `a` in `W * X`
/// sums, so `W + X` loads feed `W * X` multiply-adds, with enough independent
/// sums to cover the multiply-add's latency.
#[cfg(target_arch = "x86_64")]
mod dots {
    use super::lanes_sum;
    use std::arch::x86_64::*;

    /// Rows of `b` every group of rows of `a` passes over before the next (12
    /// rows of 768: 36 KiB, read from memory once and then from the cache).
    const BLOCK: usize = 12;

    /// # Safety
    /// AVX2 and FMA are present; `a` holds `m` rows of `k`, `b` rows `j0..j1`
    /// of `k`, `out` `m` rows of `j1 - j0`.
    #[inline(always)]
    pub unsafe fn rows(m: usize, k: usize, a: &[f32], b: &[f32], j0: usize, j1: usize, out: &mut [f32]) {
        assert!(a.len() >= m * k && b.len() >= j1 * k && out.len() >= m * (j1 - j0));
        let width = j1 - j0;
        let (pa, pb, po) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut j = j0;
        while j < j1 {
            let hi = (j + BLOCK).min(j1);
            let mut r = 0;
            while r < m {
                let (x, y) = (pa.add(r * k), po.add(r * width + j - j0));
                // At most 12 sums: with the `W` rows of `b` and one of `a`,
                // all 16 vector registers.
                let taken = match m - r {
                    1 => pass::<4, 1>(x, pb.add(j * k), k, hi - j, y, width),
                    2 => pass::<4, 2>(x, pb.add(j * k), k, hi - j, y, width),
                    3 => pass::<3, 3>(x, pb.add(j * k), k, hi - j, y, width),
                    _ => pass::<3, 4>(x, pb.add(j * k), k, hi - j, y, width),
                };
                r += taken;
            }
            j = hi;
        }
    }

    /// `X` rows of `a` against `rows` rows of `b`, `W` at a time; returns `X`.
    #[inline(always)]
    unsafe fn pass<const W: usize, const X: usize>(
        a: *const f32,
        b: *const f32,
        k: usize,
        rows: usize,
        out: *mut f32,
        ldo: usize,
    ) -> usize {
        let mut j = 0;
        while j + W <= rows {
            dots::<W, X>(a, b.add(j * k), k, out.add(j), ldo);
            j += W;
        }
        while j < rows {
            dots::<1, X>(a, b.add(j * k), k, out.add(j), ldo);
            j += 1;
        }
        X
    }

    /// `out[x * ldo + w] += a[x] . b[w]` for `X` rows of `a` and `W` of `b`.
    #[inline(always)]
    unsafe fn dots<const W: usize, const X: usize>(a: *const f32, b: *const f32, k: usize, out: *mut f32, ldo: usize) {
        let mut acc = [[_mm256_setzero_ps(); W]; X];
        let mut t = 0;
        while t + 8 <= k {
            // The same line of the next block's rows, once per line: with
            // eight rows of `a` the sums take as long as the reads, and the
            // prefetcher alone does not run far enough ahead to overlap them
            // (8 x 50280 x 768 logits: 12.5 -> 10-11 ms).
            if t % 16 == 0 {
                for w in 0..W {
                    _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((w + BLOCK) * k + t) as *const i8);
                }
            }
            let ws: [__m256; W] = std::array::from_fn(|w| _mm256_loadu_ps(b.add(w * k + t)));
            for (x, sums) in acc.iter_mut().enumerate() {
                let v = _mm256_loadu_ps(a.add(x * k + t));
                for (sum, w) in sums.iter_mut().zip(&ws) {
                    *sum = _mm256_fmadd_ps(v, *w, *sum);
                }
            }
            t += 8;
        }
        for (x, sums) in acc.iter().enumerate() {
            for (w, sum) in sums.iter().enumerate() {
                let mut s = lanes_sum(*sum);
                for tt in t..k {
                    s += *a.add(x * k + tt) * *b.add(w * k + tt);
                }
                *out.add(x * ldo + w) += s;
            }
        }
    }
}

/// The sum of a vector's eight lanes, in registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes_sum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
}

/// The operands of one product, for the few-row kernels: `a[m, k]` and `b`
/// held `[k, n]`.
#[derive(Clone, Copy)]
struct Operands<'a, W> {
    m: usize,
    k: usize,
    a: &'a [f32],
    b: &'a [W],
    /// The distance between rows of `b`.
    ld: usize,
    /// The rows of `b` (and columns of `a`) to add, `k0..k1`.
    k0: usize,
    k1: usize,
}

/// `c[m, n] += a[m, k] * b[k, n]` for a few rows `m`, with `b` held `[k, n]`:
/// one pass over `b`, each thread reading one contiguous part of it. Wide
/// products (a vocabulary's logits) split columns; the rest split `b`'s rows
/// and add the threads' partial sums (short rows of `b` split by columns would
/// be read in runs too short for full bandwidth).
fn few_rows<W: Element>(m: usize, n: usize, k: usize, a: &[f32], b: &Held<W>, c: &mut [f32]) {
    let p = Operands { m, k, a, b: &b.data, ld: b.stride(), k0: 0, k1: k };
    let pieces = crate::team::size();
    if n >= WIDE || pieces <= 1 || m * n * k < 1 << 16 || k < 64 {
        return by_columns(m, n, k, c, |j0, j1, out| columns(p, j0, j1, out));
    }
    let parts = crate::team::map(|t| {
        let mut own = vec![0f32; m * n];
        columns(Operands { k0: k * t / pieces, k1: k * (t + 1) / pieces, ..p }, 0, n, &mut own);
        own
    });
    for part in parts {
        for (y, v) in c.iter_mut().zip(part) {
            *y += v;
        }
    }
}

/// Columns from which a few-row product splits its columns over threads.
const WIDE: usize = 8192;

/// Runs `part(j0, j1, out)` over column ranges of `c[m, n]` (on whole vectors),
/// one per thread, `out` holding the range's columns of every row packed
/// `[m, j1 - j0]`: threads write apart, with no partial sums to merge.
fn by_columns(m: usize, n: usize, k: usize, c: &mut [f32], part: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let pieces = crate::team::size();
    // Below about 128K multiply-adds (Mamba's `dt_proj` in a decode step,
    // 1536 x 48) handing columns to the team costs more than it saves.
    if pieces <= 1 || m * n * k < 1 << 17 || n < 128 {
        part(0, n, c);
        return;
    }
    let cut = |t: usize| if t == pieces { n } else { (n * t / pieces) & !15 };
    let c_in: &[f32] = c;
    let results = crate::team::map(|t| {
        let (j0, j1) = (cut(t), cut(t + 1));
        let w = j1 - j0;
        let mut own = vec![0f32; m * w];
        for r in 0..m {
            own[r * w..(r + 1) * w].copy_from_slice(&c_in[r * n + j0..r * n + j1]);
        }
        part(j0, j1, &mut own);
        own
    });
    for (t, own) in results.into_iter().enumerate() {
        let (j0, j1) = (cut(t), cut(t + 1));
        let w = j1 - j0;
        for r in 0..m {
            c[r * n + j0..r * n + j1].copy_from_slice(&own[r * w..(r + 1) * w]);
        }
    }
}

/// Columns `j0..j1` of `c += a * b`, with `out` holding them packed
/// `[m, j1 - j0]`. Dispatches to an AVX2 + FMA build where the CPU has one.
fn columns<W: Element>(p: Operands<W>, j0: usize, j1: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features are present.
        unsafe { columns_avx2(p, j0, j1, out) };
        return;
    }
    streamed(p, j0, j1, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_avx2<W: Element>(p: Operands<W>, j0: usize, j1: usize, out: &mut [f32]) {
    avx2::streamed(p, j0, j1, out)
}

/// The few-row product with its sums in registers: each block of 16 columns of
/// four rows of `c` stays in eight vector registers while 16 rows of `b` are
/// added into it, so a weight read feeds four multiply-adds and `c` is loaded
/// and stored once per 16 rows instead of once per four.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{stream_block, Element, Operands, TILE};
    use std::arch::x86_64::*;

    /// Rows of `b` added into a block of `c` between its loads and stores (16
    /// rows of a 256-column tile: 16 KiB of f32 weights, in the first-level
    /// cache while every row of `c` passes over them).
    const CHUNK: usize = 16;

    /// `out[r, 0..16] += sum over kk < chunk of a[r, kk] * w[kk, 0..16]` for
    /// `R` rows, the sums in registers.
    ///
    /// # Safety
    /// `a` holds `R` rows of `chunk` at stride `lda`, `w` `chunk` rows of 16 at
    /// stride `ldw`, `out` `R` rows of 16 at stride `ldo`; AVX2 and FMA are
    /// present.
    #[inline(always)]
    unsafe fn block<W: Element, const R: usize>(
        a: *const f32,
        lda: usize,
        w: *const W,
        ldw: usize,
        chunk: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (r, sums) in acc.iter_mut().enumerate() {
            *sums = [_mm256_loadu_ps(out.add(r * ldo)), _mm256_loadu_ps(out.add(r * ldo + 8))];
        }
        for kk in 0..chunk {
            // Four blocks ahead in this row of `b`: its rows are far apart,
            // and without this each load of a row waits for memory.
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(kk * ldw + 64) as *const i8);
            let (w0, w1) = (W::load8(w.add(kk * ldw)), W::load8(w.add(kk * ldw + 8)));
            for (r, sums) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(r * lda + kk));
                sums[0] = _mm256_fmadd_ps(x, w0, sums[0]);
                sums[1] = _mm256_fmadd_ps(x, w1, sums[1]);
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(r * ldo), sums[0]);
            _mm256_storeu_ps(out.add(r * ldo + 8), sums[1]);
        }
    }

    /// The widest row of `c` that [`narrow`] holds in registers.
    pub const NARROW: usize = 96;

    /// One row of `c`, at most [`NARROW`] columns wide (Mamba's `x_proj`: 80),
    /// all in registers while `b`'s rows stream past in order: the blocked
    /// kernel would read 16 rows 64 bytes at a time, which is no stream a
    /// prefetcher follows when rows are this short.
    ///
    /// # Safety
    /// AVX2 and FMA are present; `m` = 1.
    #[inline(always)]
    unsafe fn narrow<W: Element>(p: Operands<W>, j0: usize, j1: usize, out: &mut [f32]) {
        let Operands { a, b, ld, k0, k1, .. } = p;
        let width = j1 - j0;
        let whole = width / 8;
        let (pb, po) = (b.as_ptr(), out.as_mut_ptr());
        let mut acc = [_mm256_setzero_ps(); NARROW / 8];
        for (v, sum) in acc.iter_mut().enumerate().take(whole) {
            *sum = _mm256_loadu_ps(po.add(8 * v));
        }
        for (kk, ak) in a.iter().enumerate().take(k1).skip(k0) {
            let x = _mm256_broadcast_ss(ak);
            let row = pb.add(kk * ld + j0);
            for (v, sum) in acc.iter_mut().enumerate().take(whole) {
                *sum = _mm256_fmadd_ps(x, W::load8(row.add(8 * v)), *sum);
            }
        }
        for (v, sum) in acc.iter().enumerate().take(whole) {
            _mm256_storeu_ps(po.add(8 * v), *sum);
        }
        for j in 8 * whole..width {
            let y = &mut out[j];
            for kk in k0..k1 {
                *y = a[kk].mul_add(b[kk * ld + j0 + j].widen(), *y);
            }
        }
    }

    /// `b` streamed `CHUNK` rows at a time into a block of `c`, as the portable
    /// `streamed` does, with the sums of each 16 columns of four rows held in
    /// registers.
    ///
    /// # Safety
    /// AVX2 and FMA are present.
    #[inline(always)]
    pub unsafe fn streamed<W: Element>(p: Operands<W>, j0: usize, j1: usize, out: &mut [f32]) {
        let Operands { m, k, a, b, ld, k0, k1, .. } = p;
        if m == 1 && j1 - j0 <= NARROW {
            return narrow(p, j0, j1, out);
        }
        let (width, size) = (j1 - j0, stream_block(m));
        let (pa, pb, po) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut lo = j0;
        while lo < j1 {
            let hi = (lo + size).min(j1);
            let mut kk = k0;
            while kk < k1 {
                let chunk = CHUNK.min(k1 - kk);
                let mut t0 = lo;
                while t0 < hi {
                    let t1 = (t0 + TILE).min(hi);
                    let whole = t0 + (t1 - t0) / 16 * 16;
                    let mut j = t0;
                    while j < whole {
                        let w = pb.add(kk * ld + j);
                        let mut r = 0;
                        while r < m {
                            let (x, y) = (pa.add(r * k + kk), po.add(r * width + j - j0));
                            match m - r {
                                1 => block::<W, 1>(x, k, w, ld, chunk, y, width),
                                2 => block::<W, 2>(x, k, w, ld, chunk, y, width),
                                3 => block::<W, 3>(x, k, w, ld, chunk, y, width),
                                _ => block::<W, 4>(x, k, w, ld, chunk, y, width),
                            }
                            r += 4;
                        }
                        j += 16;
                    }
                    // The last columns of a tile that are not a whole block.
                    for j in whole..t1 {
                        for r in 0..m {
                            let y = &mut out[r * width + j - j0];
                            for t in kk..kk + chunk {
                                *y = a[r * k + t].mul_add(b[t * ld + j].widen(), *y);
                            }
                        }
                    }
                    t0 = t1;
                }
                kk += chunk;
            }
            lo = hi;
        }
    }
}

/// Columns of `c` one streamed block covers for `m` rows: the block of every
/// row of `c` (up to 64 KiB) stays cached while all of `b`'s rows stream
/// through it, in runs long enough to read at full bandwidth.
fn stream_block(m: usize) -> usize {
    (16384 / m.max(1)).clamp(1024, 8192)
}

/// Columns of four rows of `b` added into every row of `c` before the next
/// (4 KiB of f32 weights, which stay in the first-level cache).
const TILE: usize = 256;

/// `b` streamed row by row, four rows at a time, into a block of `c`: the
/// portable kernel, for CPUs without AVX2 and FMA.
fn streamed<W: Element>(p: Operands<W>, j0: usize, j1: usize, out: &mut [f32]) {
    let Operands { m, k, a, b, ld, k0, k1, .. } = p;
    let (width, size) = (j1 - j0, stream_block(m));
    let mut lo = j0;
    while lo < j1 {
        let hi = (lo + size).min(j1);
        let span = hi - lo;
        let row = |kk: usize| &b[kk * ld + lo..kk * ld + hi];
        let mut kk = k0;
        while kk + 4 <= k1 {
            let mut t0 = 0;
            while t0 < span {
                let t1 = (t0 + TILE).min(span);
                let tile = |kk: usize| &row(kk)[t0..t1];
                let (w0, w1, w2, w3) = (tile(kk), tile(kk + 1), tile(kk + 2), tile(kk + 3));
                for r in 0..m {
                    let x = &a[r * k + kk..r * k + kk + 4];
                    let at = r * width + lo - j0;
                    let y = &mut out[at + t0..at + t1];
                    for j in 0..t1 - t0 {
                        let mut v = y[j];
                        v += x[0] * w0[j].widen();
                        v += x[1] * w1[j].widen();
                        v += x[2] * w2[j].widen();
                        v += x[3] * w3[j].widen();
                        y[j] = v;
                    }
                }
                t0 = t1;
            }
            kk += 4;
        }
        while kk < k1 {
            let w0 = row(kk);
            for r in 0..m {
                let x = a[r * k + kk];
                let at = r * width + lo - j0;
                for (v, w) in out[at..at + span].iter_mut().zip(w0) {
                    *v += x * w.widen();
                }
            }
            kk += 1;
        }
        lo = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::noise;

    /// The portable few-row kernel (what a CPU without AVX2 and FMA runs; this
    /// machine runs the AVX2 one through `gemm_nt`), and the AVX2 one where
    /// present, called directly on column and row ranges of a held weight:
    /// each adds exactly its part, in f32 and in bf16.
    #[test]
    fn few_row_kernels_add_their_part() {
        for (m, n, k, (j0, j1), (k0, k1)) in [
            (1, 300, 40, (0, 300), (0, 40)),
            (3, 1100, 19, (16, 1043), (5, 19)),
            (5, 70, 33, (3, 70), (0, 32)),
            (16, 40, 8, (0, 17), (1, 7)),
            (1, 80, 50, (0, 80), (3, 50)),
            (1, 90, 20, (5, 90), (0, 20)),
        ] {
            let (a, b) = (noise(4, m * k), noise(5, n * k));
            let (held, half) = (Held::new(&b, n, k, |x| x), Held::new(&b, n, k, bf16::from_f32));
            let start = noise(6, m * (j1 - j0));
            let want = |read: &dyn Fn(usize, usize) -> f32| -> Vec<f64> {
                let mut out: Vec<f64> = start.iter().map(|&x| x as f64).collect();
                for r in 0..m {
                    for j in j0..j1 {
                        for t in k0..k1 {
                            out[r * (j1 - j0) + j - j0] += a[r * k + t] as f64 * read(t, j) as f64;
                        }
                    }
                }
                out
            };
            let exact = want(&|t, j| b[j * k + t]);
            let rounded = want(&|t, j| bf16::from_f32(b[j * k + t]).to_f32());
            let check = |what: &str, got: &[f32], want: &[f64]| {
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!((*g as f64 - w).abs() < 1e-4, "{what} {m}x{n}x{k} at {i}: {g} vs {w}");
                }
            };
            let p32 = Operands { m, k, a: &a, b: &held.data, ld: held.stride(), k0, k1 };
            let p16 = Operands { m, k, a: &a, b: &half.data, ld: half.stride(), k0, k1 };
            // Each kernel adds into a copy of `start`.
            let added = |kernel: &dyn Fn(&mut [f32])| {
                let mut out = start.clone();
                kernel(&mut out);
                out
            };
            check("portable f32", &added(&|o| streamed(p32, j0, j1, o)), &exact);
            check("portable bf16", &added(&|o| streamed(p16, j0, j1, o)), &rounded);
            check("dispatched f32", &added(&|o| columns(p32, j0, j1, o)), &exact);
            check("dispatched bf16", &added(&|o| columns(p16, j0, j1, o)), &rounded);
        }
    }

    /// The by-dots kernels (a weight as stored), portable and dispatched, on
    /// column ranges: every count of rows of `a` up to 8 (each takes its own
    /// register blocking), rows of `b` that are no whole block, and `k` with
    /// and without a tail.
    #[test]
    fn dot_kernels_add_their_part() {
        for (m, n, k, (j0, j1)) in [
            (1, 30, 40, (0, 30)),
            (2, 29, 19, (3, 29)),
            (3, 14, 33, (1, 14)),
            (4, 25, 8, (0, 25)),
            (5, 13, 50, (0, 13)),
            (6, 40, 7, (11, 40)),
            (7, 26, 24, (2, 26)),
            (8, 37, 45, (0, 37)),
        ] {
            let (a, b) = (noise(7, m * k), noise(8, n * k));
            let start = noise(9, m * (j1 - j0));
            let mut want: Vec<f64> = start.iter().map(|&x| x as f64).collect();
            for r in 0..m {
                for j in j0..j1 {
                    want[r * (j1 - j0) + j - j0] +=
                        (0..k).map(|t| a[r * k + t] as f64 * b[j * k + t] as f64).sum::<f64>();
                }
            }
            type Kernel = fn(usize, usize, &[f32], &[f32], usize, usize, &mut [f32]);
            for (what, kernel) in [("portable", dotted_portable as Kernel), ("dispatched", dotted as Kernel)] {
                let mut got = start.clone();
                kernel(m, k, &a, &b, j0, j1, &mut got);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((*g as f64 - w).abs() < 1e-4, "{what} {m}x{n}x{k} at {i}: {g} vs {w}");
                }
            }
        }
    }

    /// Every path (`gemm` in both layouts, the streaming kernel in f32 and bf16,
    /// one thread and several, with and without a bias) against an f64 sum over
    /// the very values the product reads.
    #[test]
    fn products_match_a_reference() {
        let shapes = [
            (1, 3072, 768, true),
            (1, 5000, 17, false),
            (1, 80, 16, true),
            (1, 5, 3, false),
            (3, 300, 40, false),
            (8, 2100, 70, true),
            (5, 100, 33, false),
            (6, 48, 1536, true),
            (7, 1040, 17, false),
            (2, 131, 24, true),
            (SMALL_M + 1, 130, 33, true),
        ];
        for (m, n, k, with_bias) in shapes {
            let (a, b) = (noise(1, m * k), noise(2, n * k));
            let bias = if with_bias { noise(3, n) } else { vec![0.0; n] };
            let mut bt = vec![0f32; n * k];
            for j in 0..n {
                for kk in 0..k {
                    bt[kk * n + j] = b[j * k + kk];
                }
            }
            let rounded: Vec<f32> = bt.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
            let (held, half) = (Held::new(&b, n, k, |x| x), Held::new(&b, n, k, bf16::from_f32));
            assert_eq!(held.rows(), b, "a held weight gives back its rows");
            let cases: [(&str, Rhs, &[f32]); 3] = [
                ("f32", Rhs::F32(&b), &bt),
                ("f32 held [k, n]", Rhs::F32T(&held), &bt),
                ("bf16", Rhs::Bf16T(&half), &rounded),
            ];
            for (what, rhs, read) in cases {
                // Garbage where the output goes, as a reused temp block holds.
                let mut got = vec![f32::NAN; m * n];
                let bias_ptr = with_bias.then_some(bias.as_ptr());
                // SAFETY: sizes as declared; `got` is separate.
                unsafe { gemm_nt(m, n, k, a.as_ptr(), rhs, bias_ptr, got.as_mut_ptr()) };
                for r in 0..m {
                    for j in 0..n {
                        let want: f64 =
                            bias[j] as f64 + (0..k).map(|t| a[r * k + t] as f64 * read[t * n + j] as f64).sum::<f64>();
                        let e = (got[r * n + j] as f64 - want).abs();
                        assert!(e < 1e-4, "{what} {m}x{n}x{k} at ({r}, {j}): {} vs {want}", got[r * n + j]);
                    }
                }
            }
        }
    }
}
