//! The element functions (`exp`, `log`, `log1p`, `tanh`, `sigmoid`, `silu`,
//! `softplus`, `gelu`, and the arithmetic around them), written once over
//! [`Lanes`]: the few operations every code generator has, on scalars or on
//! vectors of any width. Cranelift (`f32x4`) and LLVM (the host's full width)
//! implement the trait; the algorithms, their constants and their accuracy are
//! shared, so the backends agree with each other to the rounding of fused
//! multiply-adds. `sin` and `cos` are here too (rope angles); `pow`, rare, is
//! not: backends call the host for it.

use seqc_compiler::ir::kernel::CmpOp;
use seqc_compiler::ir::ScalarFn;

/// A code generator's builder, on `f32` values of one shape (a scalar, or a
/// vector of lanes), the `i32` values of the same shape, and masks.
pub trait Lanes {
    /// `f32` values.
    type F: Copy;
    /// `i32` values, one per lane of an `F`.
    type I: Copy;
    /// Comparison results, one per lane.
    type M: Copy;

    /// `v` in every lane.
    fn c(&mut self, v: f32) -> Self::F;
    /// `v` in every lane.
    fn ci(&mut self, v: i32) -> Self::I;
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, fused where the target fuses multiply-adds.
    fn mul_add(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    fn neg(&mut self, a: Self::F) -> Self::F;
    fn abs(&mut self, a: Self::F) -> Self::F;
    fn sqrt(&mut self, a: Self::F) -> Self::F;
    /// `|mag|` with the sign of `sign` (`mag` is non-negative).
    fn copysign(&mut self, mag: Self::F, sign: Self::F) -> Self::F;
    /// `a op b`, false where either is NaN (except `Ne`, true there).
    fn cmp(&mut self, op: CmpOp, a: Self::F, b: Self::F) -> Self::M;
    /// `a < b` or either is NaN.
    fn lt_or_nan(&mut self, a: Self::F, b: Self::F) -> Self::M;
    /// `m ? yes : no`, lane by lane.
    fn pick(&mut self, m: Self::M, yes: Self::F, no: Self::F) -> Self::F;
    fn bits_of(&mut self, a: Self::F) -> Self::I;
    fn float_of_bits(&mut self, a: Self::I) -> Self::F;
    fn iadd(&mut self, a: Self::I, b: Self::I) -> Self::I;
    fn isub(&mut self, a: Self::I, b: Self::I) -> Self::I;
    fn and(&mut self, a: Self::I, b: Self::I) -> Self::I;
    fn or(&mut self, a: Self::I, b: Self::I) -> Self::I;
    fn shl(&mut self, a: Self::I, bits: u32) -> Self::I;
    /// Arithmetic shift right.
    fn sshr(&mut self, a: Self::I, bits: u32) -> Self::I;
    fn int_to_float(&mut self, a: Self::I) -> Self::F;
    /// Toward zero, saturating (NaN gives 0).
    fn float_to_int(&mut self, a: Self::F) -> Self::I;
}

/// `f` applied to `x` inline; `None` for the functions the host computes
/// (`pow`) and for the non-numeric operators.
pub fn inline<B: Lanes>(b: &mut B, f: ScalarFn, x: &[B::F]) -> Option<B::F> {
    Some(match f {
        ScalarFn::Add => b.add(x[0], x[1]),
        ScalarFn::Sub => b.sub(x[0], x[1]),
        ScalarFn::Mul => b.mul(x[0], x[1]),
        ScalarFn::Div => b.div(x[0], x[1]),
        ScalarFn::Neg => b.neg(x[0]),
        ScalarFn::Abs => b.abs(x[0]),
        ScalarFn::Sqrt => b.sqrt(x[0]),
        ScalarFn::Rsqrt => {
            let s = b.sqrt(x[0]);
            let one = b.c(1.0);
            b.div(one, s)
        }
        ScalarFn::Max => max(b, x[0], x[1]),
        ScalarFn::Min => {
            let lt = b.cmp(CmpOp::Lt, x[0], x[1]);
            b.pick(lt, x[0], x[1])
        }
        ScalarFn::Relu => {
            let zero = b.c(0.0);
            max(b, x[0], zero)
        }
        ScalarFn::Exp => exp(b, x[0]),
        ScalarFn::Log => log(b, x[0]),
        ScalarFn::Log1p => log1p(b, x[0]),
        ScalarFn::Tanh => tanh(b, x[0]),
        ScalarFn::Sigmoid => logistic(b, x[0], None),
        ScalarFn::Silu => logistic(b, x[0], Some(x[0])),
        ScalarFn::Softplus => softplus(b, x[0]),
        ScalarFn::Gelu => gelu(b, x[0]),
        ScalarFn::Sin => sin_octant(b, x[0], Wave::Sin),
        ScalarFn::Cos => sin_octant(b, x[0], Wave::Cos),
        _ => return None,
    })
}

/// `p(x)` by Horner, coefficients from the highest degree.
pub fn poly<B: Lanes>(b: &mut B, x: B::F, coeffs: &[f32]) -> B::F {
    let mut p = b.c(coeffs[0]);
    for v in &coeffs[1..] {
        let cv = b.c(*v);
        p = b.mul_add(p, x, cv);
    }
    p
}

/// `x > y ? x : y`: an accumulator starting at -inf takes the first value, and
/// it is NaN-free like the interpreter's `f64::max` on numbers.
pub fn max<B: Lanes>(b: &mut B, x: B::F, y: B::F) -> B::F {
    let gt = b.cmp(CmpOp::Gt, x, y);
    b.pick(gt, x, y)
}

/// `exp(x)`: `2^k * p(r)` with `k = round(x / ln 2)`, `r = x - k ln 2` (ln 2
/// in two parts, each taken off by a fused multiply-add, so `r` is exact), `p`
/// the Taylor polynomial of degree 7 (error below 6e-9 on |r| <= ln2/2), `2^k`
/// built in the exponent bits. Below -87.3 the result is 0 (it would be
/// subnormal), above 88.7 infinity: those lanes are picked at the end, so the
/// arithmetic before runs on the input unclamped (what it makes of them is
/// discarded) and costs no clamping.
pub fn exp<B: Lanes>(b: &mut B, x: B::F) -> B::F {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let (lo, hi) = (b.c(-87.3), b.c(88.7));
    let below = b.cmp(CmpOp::Lt, x, lo);
    let above = b.cmp(CmpOp::Gt, x, hi);
    let log2e = b.c(std::f32::consts::LOG2_E);
    // Rounding by adding 1.5 * 2^23: the sum's low mantissa bits hold
    // round(x / ln 2) as an integer, and subtracting it again gives it as a
    // float; no rounding or conversion instruction needed.
    let magic = b.c(12_582_912.0);
    let j = b.mul_add(x, log2e, magic);
    let k = b.sub(j, magic);
    let (c_hi, c_lo) = (b.c(-LN2_HI), b.c(-LN2_LO));
    let r = b.mul_add(k, c_hi, x);
    let r = b.mul_add(k, c_lo, r);
    let p = poly(b, r, &[1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]);
    let jb = b.bits_of(j);
    // bits(j) - bits(1.5 * 2^23) is round(x / ln 2); then the exponent bias.
    let bias = b.ci(127 - 0x4b40_0000);
    let biased = b.iadd(jb, bias);
    let bits = b.shl(biased, 23);
    let scale = b.float_of_bits(bits);
    let y = b.mul(p, scale);
    let (zero, inf) = (b.c(0.0), b.c(f32::INFINITY));
    let y = b.pick(below, zero, y);
    b.pick(above, inf, y)
}

/// `log(x)` (Cephes' `logf`): `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`,
/// `log(1 + f)` for `f = m - 1` by a degree-9 polynomial (about 1 ulp), and
/// `e ln 2` added in two parts. 0 gives -inf, negatives NaN, +inf itself;
/// subnormal inputs are read as the smallest normal.
pub fn log<B: Lanes>(b: &mut B, x: B::F) -> B::F {
    let tiny = b.c(f32::MIN_POSITIVE);
    let xc = max(b, x, tiny);
    let bits = b.bits_of(xc);
    let exp_bits = b.sshr(bits, 23);
    let bias = b.ci(126);
    let e = b.isub(exp_bits, bias);
    let mantissa = b.ci(0x007f_ffff);
    let half = b.ci(0x3f00_0000);
    let mb = b.and(bits, mantissa);
    let mb = b.or(mb, half);
    // m in [0.5, 1).
    let m = b.float_of_bits(mb);
    let e = b.int_to_float(e);
    let sqrt_half = b.c(std::f32::consts::FRAC_1_SQRT_2);
    let small = b.cmp(CmpOp::Lt, m, sqrt_half);
    let one = b.c(1.0);
    let e_less = b.sub(e, one);
    let e = b.pick(small, e_less, e);
    let twice = b.add(m, m);
    let m = b.pick(small, twice, m);
    let f = b.sub(m, one);
    let z = b.mul(f, f);
    let p = poly(
        b,
        f,
        &[
            7.037_683_6e-2,
            -1.151_461_1e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_5e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    );
    let y = b.mul(p, f);
    let y = b.mul(y, z);
    let q1 = b.c(-2.121_944_4e-4);
    let t = b.mul(e, q1);
    let y = b.add(y, t);
    let mhalf = b.c(-0.5);
    let t = b.mul(z, mhalf);
    let y = b.add(y, t);
    let r = b.add(f, y);
    let q2 = b.c(0.693_359_4);
    let t = b.mul(e, q2);
    let r = b.add(r, t);
    // The edges: 0, negatives (and NaN), +inf.
    let zero = b.c(0.0);
    let (ninf, pinf, nan) = (b.c(f32::NEG_INFINITY), b.c(f32::INFINITY), b.c(f32::NAN));
    let is_zero = b.cmp(CmpOp::Eq, x, zero);
    let r = b.pick(is_zero, ninf, r);
    let not_positive = b.lt_or_nan(x, zero);
    let r = b.pick(not_positive, nan, r);
    let is_inf = b.cmp(CmpOp::Eq, x, pinf);
    b.pick(is_inf, pinf, r)
}

/// `log(1 + x)` without losing `x` below ulp(1): `log(u) * x / (u - 1)` with
/// `u = 1 + x` rounded (Goldberg), and `x` itself where `u` rounds to 1.
pub fn log1p<B: Lanes>(b: &mut B, x: B::F) -> B::F {
    let one = b.c(1.0);
    let u = b.add(one, x);
    let d = b.sub(u, one);
    let l = log(b, u);
    let ratio = b.div(x, d);
    let r = b.mul(l, ratio);
    let zero = b.c(0.0);
    let exact = b.cmp(CmpOp::Eq, d, zero);
    let r = b.pick(exact, x, r);
    let inf = b.c(f32::INFINITY);
    let is_inf = b.cmp(CmpOp::Eq, u, inf);
    b.pick(is_inf, u, r)
}

/// `tanh(x)`: its odd Taylor polynomial to `x^9` below |x| = 0.25 (error
/// under 1e-8 relative), else `1 - 2 / (exp(2|x|) + 1)` with the sign of `x`.
pub fn tanh<B: Lanes>(b: &mut B, x: B::F) -> B::F {
    let ax = b.abs(x);
    let two = b.c(2.0);
    let e = b.mul(ax, two);
    let e = exp(b, e);
    let one = b.c(1.0);
    let den = b.add(e, one);
    let q = b.div(two, den);
    let t = b.sub(one, q);
    let big = b.copysign(t, x);
    let x2 = b.mul(x, x);
    let p = poly(b, x2, &[62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0]);
    let x3 = b.mul(x, x2);
    let s = b.mul(x3, p);
    let small_value = b.add(x, s);
    let quarter = b.c(0.25);
    let small = b.cmp(CmpOp::Lt, ax, quarter);
    b.pick(small, small_value, big)
}

/// `1 / (1 + exp(-x))`, or `x` over the same (`silu`).
pub fn logistic<B: Lanes>(b: &mut B, x: B::F, num: Option<B::F>) -> B::F {
    let neg = b.neg(x);
    let e = exp(b, neg);
    let one = b.c(1.0);
    let den = b.add(one, e);
    let num = num.unwrap_or(one);
    b.div(num, den)
}

/// `max(x, 0) + log1p(exp(-|x|))`: never overflows.
pub fn softplus<B: Lanes>(b: &mut B, x: B::F) -> B::F {
    let zero = b.c(0.0);
    let pos = max(b, x, zero);
    let ax = b.abs(x);
    let nax = b.neg(ax);
    let e = exp(b, nax);
    let l = log1p(b, e);
    b.add(pos, l)
}

/// `x (1 + erf(x / sqrt 2)) / 2`, `erf` by Abramowitz and Stegun 7.1.26
/// (absolute error below 1.5e-7).
pub fn gelu<B: Lanes>(b: &mut B, x: B::F) -> B::F {
    let inv_sqrt2 = b.c(std::f32::consts::FRAC_1_SQRT_2);
    let z = b.mul(x, inv_sqrt2);
    let az = b.abs(z);
    let p = b.c(0.327_591_1);
    let one = b.c(1.0);
    let pz = b.mul(p, az);
    let den = b.add(one, pz);
    let t = b.div(one, den);
    let s = poly(b, t, &[1.061_405_4, -1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6]);
    let s = b.mul(s, t);
    let z2 = b.mul(az, az);
    let nz2 = b.neg(z2);
    let e = exp(b, nz2);
    let tail = b.mul(s, e);
    let erf = b.sub(one, tail);
    let erf = b.copysign(erf, z);
    let half = b.c(0.5);
    let hx = b.mul(x, half);
    let onep = b.add(one, erf);
    b.mul(hx, onep)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wave {
    Sin,
    Cos,
}

/// `sin(x)` or `cos(x)` (Cephes' `sinf`/`cosf`): `|x| = j pi/4 + z` with `j`
/// even and `|z| <= pi/4`, `pi/4` in three parts (`j pi/4` exact for `|x|` up to
/// about 25,000, rope's angles at 16k positions included), then `sin z` or
/// `cos z` by the octant, each a short polynomial (about 1e-7 absolute).
/// `cos x = sin(x + pi/2)` is the octant two further on, with no rounding of
/// `x + pi/2`.
pub fn sin_octant<B: Lanes>(b: &mut B, x: B::F, wave: Wave) -> B::F {
    const FOPI: f32 = 1.273_239_5; // 4 / pi
    const DP: [f32; 3] = [0.785_156_25, 2.418_756_5e-4, 3.774_895e-8];
    let ax = b.abs(x);
    let fopi = b.c(FOPI);
    let t = b.mul(ax, fopi);
    let j = b.float_to_int(t);
    // Round odd octants up: `z` then lies in [-pi/4, pi/4].
    let one = b.ci(1);
    let odd = b.and(j, one);
    let j = b.iadd(j, odd);
    let y = b.int_to_float(j);
    let mut z = ax;
    for part in DP {
        let p = b.c(-part);
        z = b.mul_add(y, p, z);
    }
    let shift = b.ci(if wave == Wave::Cos { 2 } else { 0 });
    let octant = b.iadd(j, shift);
    let (two, four) = (b.ci(2), b.ci(4));
    let cos_side = b.and(octant, two);
    let negative = b.and(octant, four);
    let zz = b.mul(z, z);
    let sp = poly(b, zz, &[-1.951_529_6e-4, 8.332_161e-3, -1.666_665_5e-1]);
    let sz = b.mul(z, zz);
    let s = b.mul_add(sz, sp, z);
    let cp = poly(b, zz, &[2.443_315_7e-5, -1.388_731_6e-3, 4.166_664_6e-2]);
    let z4 = b.mul(zz, zz);
    let half = b.c(-0.5);
    let c1 = b.c(1.0);
    let c = b.mul_add(zz, half, c1);
    let c = b.mul_add(z4, cp, c);
    // Octant bits as masks, through floats (the trait compares floats only).
    let threshold = b.c(0.5);
    let cos_side = b.int_to_float(cos_side);
    let use_cos = b.cmp(CmpOp::Gt, cos_side, threshold);
    let r = b.pick(use_cos, c, s);
    let negative = b.int_to_float(negative);
    let flip = b.cmp(CmpOp::Gt, negative, threshold);
    let nr = b.neg(r);
    let r = b.pick(flip, nr, r);
    match wave {
        // sin is odd; cos even.
        Wave::Sin => {
            let zero = b.c(0.0);
            let below = b.cmp(CmpOp::Lt, x, zero);
            let nr = b.neg(r);
            b.pick(below, nr, r)
        }
        Wave::Cos => r,
    }
}
