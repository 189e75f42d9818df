//! Element functions, generated inline for scalars and `f32x4` alike (one
//! implementation, parameterised by the lane count): arithmetic, `exp`, `log`,
//! `log1p`, `tanh`, `sigmoid`, `silu`, `softplus` and `gelu`. `sin`, `cos` and
//! `pow` (rope angles, rare elsewhere) call into the host.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use seqc_compiler::ir::ScalarFn;

/// Code for one element function, on scalars (`lanes = false`) or `f32x4`.
struct Math<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    lanes: bool,
    /// The CPU fuses multiply-adds (polynomials use them).
    fma: bool,
}

fn lane_order() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl Math<'_, '_> {
    fn c(&mut self, v: f32) -> Value {
        if self.lanes {
            self.lanes_const(types::F32X4, v.to_bits())
        } else {
            self.b.ins().f32const(v)
        }
    }

    fn ci(&mut self, v: i64) -> Value {
        if self.lanes {
            self.lanes_const(types::I32X4, v as i32 as u32)
        } else {
            self.b.ins().iconst(types::I32, v)
        }
    }

    /// Four equal lanes from the constant pool: one load, where a scalar
    /// constant splatted takes a move and a shuffle at every use.
    fn lanes_const(&mut self, ty: types::Type, bits: u32) -> Value {
        let bytes: Vec<u8> = (0..4).flat_map(|_| bits.to_le_bytes()).collect();
        let handle = self.b.func.dfg.constants.insert(bytes.into());
        self.b.ins().vconst(ty, handle)
    }

    /// A comparison, as a mask `pick` takes.
    fn cmp(&mut self, cc: FloatCC, x: Value, y: Value) -> Value {
        let m = self.b.ins().fcmp(cc, x, y);
        if self.lanes {
            self.b.ins().bitcast(types::F32X4, lane_order(), m)
        } else {
            m
        }
    }

    fn pick(&mut self, m: Value, yes: Value, no: Value) -> Value {
        if self.lanes {
            self.b.ins().bitselect(m, yes, no)
        } else {
            self.b.ins().select(m, yes, no)
        }
    }

    fn int_ty(&self) -> types::Type {
        if self.lanes {
            types::I32X4
        } else {
            types::I32
        }
    }

    fn float_ty(&self) -> types::Type {
        if self.lanes {
            types::F32X4
        } else {
            types::F32
        }
    }

    fn flags(&self) -> MemFlagsData {
        if self.lanes {
            lane_order()
        } else {
            MemFlagsData::new()
        }
    }

    /// `|mag|` with the sign of `sign` (`mag` is non-negative here).
    fn copysign(&mut self, mag: Value, sign: Value) -> Value {
        if self.lanes {
            // x86-64 has no vector `fcopysign` in Cranelift: select the sign bit.
            let bit = self.c(f32::from_bits(0x8000_0000));
            self.b.ins().bitselect(bit, sign, mag)
        } else {
            self.b.ins().fcopysign(mag, sign)
        }
    }

    fn bits_to_float(&mut self, bits: Value) -> Value {
        let (fty, flags) = (self.float_ty(), self.flags());
        self.b.ins().bitcast(fty, flags, bits)
    }

    /// `p(x)` by Horner, coefficients from the highest degree.
    fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        let mut p = self.c(coeffs[0]);
        for v in &coeffs[1..] {
            let cv = self.c(*v);
            p = if self.fma {
                self.b.ins().fma(p, x, cv)
            } else {
                let m = self.b.ins().fmul(p, x);
                self.b.ins().fadd(m, cv)
            };
        }
        p
    }

    fn max(&mut self, x: Value, y: Value) -> Value {
        let gt = self.cmp(FloatCC::GreaterThan, x, y);
        self.pick(gt, x, y)
    }

    /// `exp(x)`: `2^k * p(r)` with `k = round(x / ln 2)`, `r = x - k ln 2` (ln 2
    /// in two parts, so `r` is exact), `p` the Taylor polynomial of degree 7
    /// (error below 6e-9 on |r| <= ln2/2), `2^k` built in the exponent bits.
    /// Below -87.3 the result is 0 (it would be subnormal), above 88.7 infinity.
    fn exp(&mut self, x: Value) -> Value {
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        let (lo, hi) = (self.c(-87.3), self.c(88.7));
        let below = self.cmp(FloatCC::LessThan, x, lo);
        let above = self.cmp(FloatCC::GreaterThan, x, hi);
        let xc = self.pick(below, lo, x);
        let xc = self.pick(above, hi, xc);
        let log2e = self.c(std::f32::consts::LOG2_E);
        let t = self.b.ins().fmul(xc, log2e);
        // Rounding by adding 1.5 * 2^23: the sum's low mantissa bits hold
        // round(t) as an integer, and subtracting it again gives round(t) as a
        // float; no rounding or conversion instruction needed.
        let magic = self.c(12_582_912.0);
        let j = self.b.ins().fadd(t, magic);
        let k = self.b.ins().fsub(j, magic);
        let (c_hi, c_lo) = (self.c(LN2_HI), self.c(LN2_LO));
        let kh = self.b.ins().fmul(k, c_hi);
        let r = self.b.ins().fsub(xc, kh);
        let kl = self.b.ins().fmul(k, c_lo);
        let r = self.b.ins().fsub(r, kl);
        let p = self.poly(r, &[1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]);
        let (ity, flags) = (self.int_ty(), self.flags());
        let jb = self.b.ins().bitcast(ity, flags, j);
        // bits(j) - bits(1.5 * 2^23) is round(t); then the exponent bias.
        let bias = self.ci(127 - 0x4b40_0000);
        let biased = self.b.ins().iadd(jb, bias);
        let bits = self.b.ins().ishl_imm_s(biased, 23);
        let scale = self.bits_to_float(bits);
        let y = self.b.ins().fmul(p, scale);
        let (zero, inf) = (self.c(0.0), self.c(f32::INFINITY));
        let y = self.pick(below, zero, y);
        self.pick(above, inf, y)
    }

    /// `log(x)` (Cephes' `logf`): `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`,
    /// `log(1 + f)` for `f = m - 1` by a degree-9 polynomial (about 1 ulp), and
    /// `e ln 2` added in two parts. 0 gives -inf, negatives NaN, +inf itself;
    /// subnormal inputs are read as the smallest normal.
    fn log(&mut self, x: Value) -> Value {
        let tiny = self.c(f32::MIN_POSITIVE);
        let xc = self.max(x, tiny);
        let (ity, flags) = (self.int_ty(), self.flags());
        let bits = self.b.ins().bitcast(ity, flags, xc);
        let exp_bits = self.b.ins().sshr_imm_s(bits, 23);
        let bias = self.ci(126);
        let e = self.b.ins().isub(exp_bits, bias);
        let mantissa = self.ci(0x007f_ffff);
        let half = self.ci(0x3f00_0000);
        let mb = self.b.ins().band(bits, mantissa);
        let mb = self.b.ins().bor(mb, half);
        // m in [0.5, 1).
        let m = self.bits_to_float(mb);
        let fty = self.float_ty();
        let e = self.b.ins().fcvt_from_sint(fty, e);
        let sqrt_half = self.c(std::f32::consts::FRAC_1_SQRT_2);
        let small = self.cmp(FloatCC::LessThan, m, sqrt_half);
        let one = self.c(1.0);
        let e_less = self.b.ins().fsub(e, one);
        let e = self.pick(small, e_less, e);
        let twice = self.b.ins().fadd(m, m);
        let m = self.pick(small, twice, m);
        let f = self.b.ins().fsub(m, one);
        let z = self.b.ins().fmul(f, f);
        let p = self.poly(
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
                3.333_333_1e-1,
            ],
        );
        let y = self.b.ins().fmul(p, f);
        let y = self.b.ins().fmul(y, z);
        let q1 = self.c(-2.121_944_4e-4);
        let t = self.b.ins().fmul(e, q1);
        let y = self.b.ins().fadd(y, t);
        let mhalf = self.c(-0.5);
        let t = self.b.ins().fmul(z, mhalf);
        let y = self.b.ins().fadd(y, t);
        let r = self.b.ins().fadd(f, y);
        let q2 = self.c(0.693_359_4);
        let t = self.b.ins().fmul(e, q2);
        let r = self.b.ins().fadd(r, t);
        // The edges: 0, negatives (and NaN), +inf.
        let zero = self.c(0.0);
        let (ninf, pinf, nan) = (self.c(f32::NEG_INFINITY), self.c(f32::INFINITY), self.c(f32::NAN));
        let is_zero = self.cmp(FloatCC::Equal, x, zero);
        let r = self.pick(is_zero, ninf, r);
        let not_positive = self.cmp(FloatCC::UnorderedOrLessThan, x, zero);
        let r = self.pick(not_positive, nan, r);
        let is_inf = self.cmp(FloatCC::Equal, x, pinf);
        self.pick(is_inf, pinf, r)
    }

    /// `log(1 + x)` without losing `x` below ulp(1): `log(u) * x / (u - 1)` with
    /// `u = 1 + x` rounded (Goldberg), and `x` itself where `u` rounds to 1.
    fn log1p(&mut self, x: Value) -> Value {
        let one = self.c(1.0);
        let u = self.b.ins().fadd(one, x);
        let d = self.b.ins().fsub(u, one);
        let l = self.log(u);
        let ratio = self.b.ins().fdiv(x, d);
        let r = self.b.ins().fmul(l, ratio);
        let zero = self.c(0.0);
        let exact = self.cmp(FloatCC::Equal, d, zero);
        let r = self.pick(exact, x, r);
        let inf = self.c(f32::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, u, inf);
        self.pick(is_inf, u, r)
    }

    /// `tanh(x)`: its odd Taylor polynomial to `x^9` below |x| = 0.25 (error
    /// under 1e-8 relative), else `1 - 2 / (exp(2|x|) + 1)` with the sign of `x`.
    fn tanh(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let two = self.c(2.0);
        let e = self.b.ins().fmul(ax, two);
        let e = self.exp(e);
        let one = self.c(1.0);
        let den = self.b.ins().fadd(e, one);
        let q = self.b.ins().fdiv(two, den);
        let t = self.b.ins().fsub(one, q);
        let big = self.copysign(t, x);
        let x2 = self.b.ins().fmul(x, x);
        let p = self.poly(x2, &[62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0]);
        let x3 = self.b.ins().fmul(x, x2);
        let s = self.b.ins().fmul(x3, p);
        let small_value = self.b.ins().fadd(x, s);
        let quarter = self.c(0.25);
        let small = self.cmp(FloatCC::LessThan, ax, quarter);
        self.pick(small, small_value, big)
    }

    /// `1 / (1 + exp(-x))`, or `x` over the same (`silu`).
    fn logistic(&mut self, x: Value, num: Option<Value>) -> Value {
        let neg = self.b.ins().fneg(x);
        let e = self.exp(neg);
        let one = self.c(1.0);
        let den = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(num.unwrap_or(one), den)
    }

    /// `max(x, 0) + log1p(exp(-|x|))`: never overflows.
    fn softplus(&mut self, x: Value) -> Value {
        let zero = self.c(0.0);
        let pos = self.max(x, zero);
        let ax = self.b.ins().fabs(x);
        let nax = self.b.ins().fneg(ax);
        let e = self.exp(nax);
        let l = self.log1p(e);
        self.b.ins().fadd(pos, l)
    }

    /// `x (1 + erf(x / sqrt 2)) / 2`, `erf` by Abramowitz and Stegun 7.1.26
    /// (absolute error below 1.5e-7).
    fn gelu(&mut self, x: Value) -> Value {
        let inv_sqrt2 = self.c(std::f32::consts::FRAC_1_SQRT_2);
        let z = self.b.ins().fmul(x, inv_sqrt2);
        let az = self.b.ins().fabs(z);
        let p = self.c(0.327_591_1);
        let one = self.c(1.0);
        let pz = self.b.ins().fmul(p, az);
        let den = self.b.ins().fadd(one, pz);
        let t = self.b.ins().fdiv(one, den);
        let s = self.poly(t, &[1.061_405_4, -1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6]);
        let s = self.b.ins().fmul(s, t);
        let z2 = self.b.ins().fmul(az, az);
        let nz2 = self.b.ins().fneg(z2);
        let e = self.exp(nz2);
        let tail = self.b.ins().fmul(s, e);
        let erf = self.b.ins().fsub(one, tail);
        let erf = self.copysign(erf, z);
        let half = self.c(0.5);
        let hx = self.b.ins().fmul(x, half);
        let onep = self.b.ins().fadd(one, erf);
        self.b.ins().fmul(hx, onep)
    }
}

/// `f` applied to `x` inline, on scalars or `f32x4` (`lanes`); `None` for the
/// functions the host computes.
pub fn inline(b: &mut FunctionBuilder, f: ScalarFn, x: &[Value], lanes: bool, fma: bool) -> Option<Value> {
    let mut m = Math { b, lanes, fma };
    Some(match f {
        ScalarFn::Add => m.b.ins().fadd(x[0], x[1]),
        ScalarFn::Sub => m.b.ins().fsub(x[0], x[1]),
        ScalarFn::Mul => m.b.ins().fmul(x[0], x[1]),
        ScalarFn::Div => m.b.ins().fdiv(x[0], x[1]),
        ScalarFn::Neg => m.b.ins().fneg(x[0]),
        ScalarFn::Abs => m.b.ins().fabs(x[0]),
        ScalarFn::Sqrt => m.b.ins().sqrt(x[0]),
        ScalarFn::Rsqrt => {
            let s = m.b.ins().sqrt(x[0]);
            let one = m.c(1.0);
            m.b.ins().fdiv(one, s)
        }
        // `x > y ? x : y` (an accumulator starting at -inf takes the first
        // value), NaN-free like the interpreter's f64::max on numbers.
        ScalarFn::Max => m.max(x[0], x[1]),
        ScalarFn::Min => {
            let lt = m.cmp(FloatCC::LessThan, x[0], x[1]);
            m.pick(lt, x[0], x[1])
        }
        ScalarFn::Relu => {
            let zero = m.c(0.0);
            m.max(x[0], zero)
        }
        ScalarFn::Exp => m.exp(x[0]),
        ScalarFn::Log => m.log(x[0]),
        ScalarFn::Log1p => m.log1p(x[0]),
        ScalarFn::Tanh => m.tanh(x[0]),
        ScalarFn::Sigmoid => m.logistic(x[0], None),
        ScalarFn::Silu => m.logistic(x[0], Some(x[0])),
        ScalarFn::Softplus => m.softplus(x[0]),
        ScalarFn::Gelu => m.gelu(x[0]),
        _ => return None,
    })
}

macro_rules! host {
    ($($name:ident($($a:ident),*) = $body:expr;)*) => {
        $(extern "C" fn $name($($a: f32),*) -> f32 {
            $(let $a = $a as f64;)*
            ($body) as f32
        })*
        /// Functions the generated code calls, by symbol.
        pub const HOST_FUNCTIONS: &[(&str, *const u8)] = &[$((stringify!($name), $name as *const u8)),*];
    };
}

host! {
    seqc_cos(x) = x.cos();
    seqc_sin(x) = x.sin();
    seqc_pow(x, y) = x.powf(y);
}

/// The host function computing `f`, for those not generated inline.
pub fn host_name(f: ScalarFn) -> Option<&'static str> {
    Some(match f {
        ScalarFn::Cos => "seqc_cos",
        ScalarFn::Sin => "seqc_sin",
        ScalarFn::Pow => "seqc_pow",
        _ => return None,
    })
}
