//! Element functions: `exp` inline, the rest as calls into the host.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use seqc_compiler::ir::ScalarFn;

/// `exp(x)` in f32: `2^k * p(r)` with `k = round(x / ln 2)`, `r = x - k ln 2`
/// (ln 2 in two parts, so `r` is exact), `p` the Taylor polynomial of degree 7
/// (error below 6e-9 on |r| <= ln2/2), `2^k` built in the exponent bits. Below
/// -87.3 the result is 0 (it would be subnormal), above 88.7 infinity.
pub fn exp(b: &mut FunctionBuilder, x: Value) -> Value {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let lo = b.ins().f32const(-87.3);
    let hi = b.ins().f32const(88.7);
    let below = b.ins().fcmp(FloatCC::LessThan, x, lo);
    let above = b.ins().fcmp(FloatCC::GreaterThan, x, hi);
    let xc = b.ins().select(below, lo, x);
    let xc = b.ins().select(above, hi, xc);
    let log2e = b.ins().f32const(std::f32::consts::LOG2_E);
    let t = b.ins().fmul(xc, log2e);
    let k = b.ins().nearest(t);
    let c_hi = b.ins().f32const(LN2_HI);
    let c_lo = b.ins().f32const(LN2_LO);
    let kh = b.ins().fmul(k, c_hi);
    let r = b.ins().fsub(xc, kh);
    let kl = b.ins().fmul(k, c_lo);
    let r = b.ins().fsub(r, kl);
    // Horner from the highest coefficient.
    let coeffs = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0f32];
    let mut p = b.ins().f32const(coeffs[0]);
    for c in &coeffs[1..] {
        let m = b.ins().fmul(p, r);
        let cv = b.ins().f32const(*c);
        p = b.ins().fadd(m, cv);
    }
    let ki = b.ins().fcvt_to_sint_sat(types::I32, k);
    let biased = b.ins().iadd_imm_s(ki, 127);
    let bits = b.ins().ishl_imm_s(biased, 23);
    let scale = b.ins().bitcast(types::F32, MemFlagsData::new(), bits);
    let y = b.ins().fmul(p, scale);
    let zero = b.ins().f32const(0.0);
    let inf = b.ins().f32const(f32::INFINITY);
    let y = b.ins().select(below, zero, y);
    b.ins().select(above, inf, y)
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
