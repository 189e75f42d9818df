//! Element functions: `exp` inline, the rest as calls into the host.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use seqc_compiler::ir::ScalarFn;

/// `exp(x)` in f32: `2^k * p(r)` with `k = round(x / ln 2)`, `r = x - k ln 2`
/// (ln 2 in two parts, so `r` is exact), `p` the Taylor polynomial of degree 7
/// (error below 6e-9 on |r| <= ln2/2), `2^k` built in the exponent bits. Below
/// -87.3 the result is 0 (it would be subnormal), above 88.7 infinity.
pub fn exp(b: &mut FunctionBuilder, x: Value) -> Value {
    exp_lanes(b, x, false)
}

/// `exp` of an `f32x4`, lane by lane, with the same steps.
pub fn exp_x4(b: &mut FunctionBuilder, x: Value) -> Value {
    exp_lanes(b, x, true)
}

fn exp_lanes(b: &mut FunctionBuilder, x: Value, lanes: bool) -> Value {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let c = |b: &mut FunctionBuilder, v: f32| {
        let s = b.ins().f32const(v);
        if lanes {
            b.ins().splat(types::F32X4, s)
        } else {
            s
        }
    };
    let pick = |b: &mut FunctionBuilder, m: Value, yes: Value, no: Value| {
        if lanes {
            b.ins().bitselect(m, yes, no)
        } else {
            b.ins().select(m, yes, no)
        }
    };
    let lo = c(b, -87.3);
    let hi = c(b, 88.7);
    let below = b.ins().fcmp(FloatCC::LessThan, x, lo);
    let above = b.ins().fcmp(FloatCC::GreaterThan, x, hi);
    let (below, above) = if lanes {
        // Lane masks as f32x4 for `bitselect`.
        let f = MemFlagsData::new().with_endianness(Endianness::Little);
        (b.ins().bitcast(types::F32X4, f, below), b.ins().bitcast(types::F32X4, f, above))
    } else {
        (below, above)
    };
    let xc = pick(b, below, lo, x);
    let xc = pick(b, above, hi, xc);
    let log2e = c(b, std::f32::consts::LOG2_E);
    let t = b.ins().fmul(xc, log2e);
    let k = b.ins().nearest(t);
    let c_hi = c(b, LN2_HI);
    let c_lo = c(b, LN2_LO);
    let kh = b.ins().fmul(k, c_hi);
    let r = b.ins().fsub(xc, kh);
    let kl = b.ins().fmul(k, c_lo);
    let r = b.ins().fsub(r, kl);
    // Horner from the highest coefficient.
    let coeffs = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0f32];
    let mut p = c(b, coeffs[0]);
    for v in &coeffs[1..] {
        let m = b.ins().fmul(p, r);
        let cv = c(b, *v);
        p = b.ins().fadd(m, cv);
    }
    let (ity, fty) = if lanes { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
    let ki = b.ins().fcvt_to_sint_sat(ity, k);
    let bias = b.ins().iconst(types::I32, 127);
    let bias = if lanes { b.ins().splat(types::I32X4, bias) } else { bias };
    let biased = b.ins().iadd(ki, bias);
    let bits = b.ins().ishl_imm_s(biased, 23);
    let flags = if lanes { MemFlagsData::new().with_endianness(Endianness::Little) } else { MemFlagsData::new() };
    let scale = b.ins().bitcast(fty, flags, bits);
    let y = b.ins().fmul(p, scale);
    let zero = c(b, 0.0);
    let inf = c(b, f32::INFINITY);
    let y = pick(b, below, zero, y);
    pick(b, above, inf, y)
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

fn apply(name: &str, x: &[f64]) -> f64 {
    seqc_compiler::sema::consts::apply(name, x)
}

host! {
    seqc_log(x) = x.ln();
    seqc_log1p(x) = x.ln_1p();
    seqc_tanh(x) = x.tanh();
    seqc_gelu(x) = apply("gelu", &[x]);
    seqc_softplus(x) = apply("softplus", &[x]);
    seqc_cos(x) = x.cos();
    seqc_sin(x) = x.sin();
    seqc_pow(x, y) = x.powf(y);
}

/// The host function computing `f`, for those not generated inline.
pub fn host_name(f: ScalarFn) -> Option<&'static str> {
    Some(match f {
        ScalarFn::Log => "seqc_log",
        ScalarFn::Log1p => "seqc_log1p",
        ScalarFn::Tanh => "seqc_tanh",
        ScalarFn::Gelu => "seqc_gelu",
        ScalarFn::Softplus => "seqc_softplus",
        ScalarFn::Cos => "seqc_cos",
        ScalarFn::Sin => "seqc_sin",
        ScalarFn::Pow => "seqc_pow",
        _ => return None,
    })
}
