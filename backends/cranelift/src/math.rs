//! Element functions on scalars and `f32x4` alike: Cranelift's side of
//! [`seqc_codegen::math::Lanes`], over which the functions themselves (`exp`, `log`,
//! `tanh`, ...) are written once. `pow` calls into the host.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use seqc_codegen::math::Lanes;
use seqc_compiler::ir::kernel::CmpOp;
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
    /// Four equal lanes from the constant pool: one load, where a scalar
    /// constant splatted takes a move and a shuffle at every use.
    fn lanes_const(&mut self, ty: types::Type, bits: u32) -> Value {
        let bytes: Vec<u8> = (0..4).flat_map(|_| bits.to_le_bytes()).collect();
        let handle = self.b.func.dfg.constants.insert(bytes.into());
        self.b.ins().vconst(ty, handle)
    }

    /// `a cc b` as a mask `pick` takes.
    fn mask(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        if self.lanes {
            self.b.ins().bitcast(types::F32X4, lane_order(), m)
        } else {
            m
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
}

impl Lanes for Math<'_, '_> {
    type F = Value;
    type I = Value;
    type M = Value;

    fn c(&mut self, v: f32) -> Value {
        if self.lanes {
            self.lanes_const(types::F32X4, v.to_bits())
        } else {
            self.b.ins().f32const(v)
        }
    }
    fn ci(&mut self, v: i32) -> Value {
        if self.lanes {
            self.lanes_const(types::I32X4, v as u32)
        } else {
            self.b.ins().iconst(types::I32, i64::from(v))
        }
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }
    fn neg(&mut self, a: Value) -> Value {
        self.b.ins().fneg(a)
    }
    fn abs(&mut self, a: Value) -> Value {
        self.b.ins().fabs(a)
    }
    fn sqrt(&mut self, a: Value) -> Value {
        self.b.ins().sqrt(a)
    }
    fn copysign(&mut self, mag: Value, sign: Value) -> Value {
        if self.lanes {
            // x86-64 has no vector `fcopysign` in Cranelift: select the sign bit.
            let bit = self.c(f32::from_bits(0x8000_0000));
            self.b.ins().bitselect(bit, sign, mag)
        } else {
            self.b.ins().fcopysign(mag, sign)
        }
    }
    fn cmp(&mut self, op: CmpOp, a: Value, b: Value) -> Value {
        self.mask(crate::float_cc(op), a, b)
    }
    fn lt_or_nan(&mut self, a: Value, b: Value) -> Value {
        self.mask(FloatCC::UnorderedOrLessThan, a, b)
    }
    fn pick(&mut self, m: Value, yes: Value, no: Value) -> Value {
        if self.lanes {
            self.b.ins().bitselect(m, yes, no)
        } else {
            self.b.ins().select(m, yes, no)
        }
    }
    fn bits_of(&mut self, a: Value) -> Value {
        let (ity, flags) = (self.int_ty(), self.flags());
        self.b.ins().bitcast(ity, flags, a)
    }
    fn float_of_bits(&mut self, a: Value) -> Value {
        let (fty, flags) = (self.float_ty(), self.flags());
        self.b.ins().bitcast(fty, flags, a)
    }
    fn iadd(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }
    fn isub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().isub(a, b)
    }
    fn and(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().band(a, b)
    }
    fn or(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bor(a, b)
    }
    fn shl(&mut self, a: Value, bits: u32) -> Value {
        self.b.ins().ishl_imm_s(a, i64::from(bits))
    }
    fn sshr(&mut self, a: Value, bits: u32) -> Value {
        self.b.ins().sshr_imm_s(a, i64::from(bits))
    }
    fn float_to_int(&mut self, a: Value) -> Value {
        let ity = self.int_ty();
        self.b.ins().fcvt_to_sint_sat(ity, a)
    }
    fn int_to_float(&mut self, a: Value) -> Value {
        let fty = self.float_ty();
        self.b.ins().fcvt_from_sint(fty, a)
    }
}

/// `f` applied to `x` inline, on scalars or `f32x4` (`lanes`); `None` for the
/// functions the host computes.
pub fn inline(b: &mut FunctionBuilder, f: ScalarFn, x: &[Value], lanes: bool, fma: bool) -> Option<Value> {
    seqc_codegen::math::inline(&mut Math { b, lanes, fma }, f, x)
}
