//! LLVM values of either shape, scalar or vector: the few operations code
//! generation needs on both, and [`seqc_codegen::math::Lanes`] over them, so
//! the element functions are [`seqc_codegen::math`]'s at any width.

use inkwell::builder::{Builder, BuilderError};
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
use inkwell::types::{BasicTypeEnum, VectorType};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, VectorValue};
use inkwell::FloatPredicate;
use seqc_codegen::math::Lanes;
use seqc_compiler::ir::kernel::CmpOp;

/// A builder call's result: it fails only when unpositioned, which code
/// generation never leaves it.
pub(crate) fn ok<T>(r: Result<T, BuilderError>) -> T {
    r.expect("the builder is positioned")
}

/// Either variant of a float operation, on two scalars or two vectors.
macro_rules! float2 {
    ($b:expr, $method:ident, $x:expr, $y:expr) => {
        match ($x, $y) {
            (BasicValueEnum::FloatValue(x), BasicValueEnum::FloatValue(y)) => ok($b.$method(x, y, "")).into(),
            (BasicValueEnum::VectorValue(x), BasicValueEnum::VectorValue(y)) => ok($b.$method(x, y, "")).into(),
            (x, y) => unreachable!("float operands of two shapes: {x}, {y}"),
        }
    };
}

/// Either variant of an integer operation.
macro_rules! int2 {
    ($b:expr, $method:ident, $x:expr, $y:expr $(, $extra:expr)?) => {
        match ($x, $y) {
            (BasicValueEnum::IntValue(x), BasicValueEnum::IntValue(y)) => ok($b.$method(x, y, $($extra,)? "")).into(),
            (BasicValueEnum::VectorValue(x), BasicValueEnum::VectorValue(y)) => {
                ok($b.$method(x, y, $($extra,)? "")).into()
            }
            (x, y) => unreachable!("integer operands of two shapes: {x}, {y}"),
        }
    };
}

/// The shape of the values being generated: scalars, or vectors of `n` lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Scalar,
    Lanes(u32),
}

/// Code for values of one shape.
pub(crate) struct Values<'a, 'c> {
    pub ctx: &'c Context,
    pub b: &'a Builder<'c>,
    pub module: &'a Module<'c>,
    pub shape: Shape,
    /// The target fuses multiply-adds.
    pub fma: bool,
}

impl<'c> Values<'_, 'c> {
    fn vector_of(&self, t: BasicTypeEnum<'c>) -> BasicTypeEnum<'c> {
        match (self.shape, t) {
            (Shape::Scalar, t) => t,
            (Shape::Lanes(n), BasicTypeEnum::FloatType(f)) => f.vec_type(n).into(),
            (Shape::Lanes(n), BasicTypeEnum::IntType(i)) => i.vec_type(n).into(),
            (_, t) => unreachable!("no vector of {t}"),
        }
    }

    /// `x` in every lane (itself for scalars).
    pub fn splat(&self, x: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        let Shape::Lanes(n) = self.shape else { return x };
        if x.is_vector_value() {
            return x;
        }
        let ty = self.vector_of(x.get_type()).into_vector_type();
        let i32t = self.ctx.i32_type();
        let one = ok(self.b.build_insert_element(ty.get_poison(), x, i32t.const_zero(), ""));
        let zeros = VectorType::const_vector(&vec![i32t.const_zero(); n as usize]);
        ok(self.b.build_shuffle_vector(one, ty.get_poison(), zeros, "")).into()
    }

    /// A constant in every lane.
    fn constant(&self, x: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        match self.shape {
            Shape::Scalar => x,
            Shape::Lanes(n) => VectorType::const_vector(&vec![x; n as usize]).into(),
        }
    }

    /// A call of the overloaded intrinsic `name` at the arguments' type.
    pub fn intrinsic(&self, name: &str, args: &[BasicValueEnum<'c>]) -> BasicValueEnum<'c> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[args[0].get_type()]))
            .unwrap_or_else(|| panic!("LLVM 19 has {name}"));
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        ok(self.b.build_direct_call(f, &args, "")).try_as_basic_value().basic().expect("intrinsics here return a value")
    }

    /// `m ? yes : no`, lane by lane (`m` an `i1` or a vector of them).
    pub fn select(&self, m: BasicValueEnum<'c>, yes: BasicValueEnum<'c>, no: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        match m {
            BasicValueEnum::IntValue(c) => ok(self.b.build_select(c, yes, no, "")),
            BasicValueEnum::VectorValue(c) => ok(self.b.build_select(c, yes, no, "")),
            m => unreachable!("a condition {m}"),
        }
    }

    pub fn fcmp(&self, p: FloatPredicate, x: BasicValueEnum<'c>, y: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        match (x, y) {
            (BasicValueEnum::FloatValue(x), BasicValueEnum::FloatValue(y)) => {
                ok(self.b.build_float_compare(p, x, y, "")).into()
            }
            (BasicValueEnum::VectorValue(x), BasicValueEnum::VectorValue(y)) => {
                ok(self.b.build_float_compare(p, x, y, "")).into()
            }
            (x, y) => unreachable!("float operands of two shapes: {x}, {y}"),
        }
    }

    pub fn and(&self, x: BasicValueEnum<'c>, y: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        int2!(self.b, build_and, x, y)
    }

    pub fn or(&self, x: BasicValueEnum<'c>, y: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        int2!(self.b, build_or, x, y)
    }

    pub fn not(&self, x: BasicValueEnum<'c>) -> BasicValueEnum<'c> {
        match x {
            BasicValueEnum::IntValue(v) => ok(self.b.build_not(v, "")).into(),
            BasicValueEnum::VectorValue(v) => ok(self.b.build_not(v, "")).into(),
            x => unreachable!("a condition {x}"),
        }
    }

    pub fn f32(&self, v: f32) -> BasicValueEnum<'c> {
        self.constant(self.ctx.f32_type().const_float(f64::from(v)).into())
    }
}

impl<'c> Lanes for Values<'_, 'c> {
    type F = BasicValueEnum<'c>;
    type I = BasicValueEnum<'c>;
    type M = BasicValueEnum<'c>;

    fn c(&mut self, v: f32) -> Self::F {
        self.f32(v)
    }
    fn ci(&mut self, v: i32) -> Self::I {
        self.constant(self.ctx.i32_type().const_int(v as i64 as u64, true).into())
    }
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F {
        float2!(self.b, build_float_add, a, b)
    }
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F {
        float2!(self.b, build_float_sub, a, b)
    }
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F {
        float2!(self.b, build_float_mul, a, b)
    }
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F {
        float2!(self.b, build_float_div, a, b)
    }
    fn mul_add(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        if self.fma {
            self.intrinsic("llvm.fma", &[a, b, c])
        } else {
            let m = self.mul(a, b);
            self.add(m, c)
        }
    }
    fn neg(&mut self, a: Self::F) -> Self::F {
        match a {
            BasicValueEnum::FloatValue(x) => ok(self.b.build_float_neg(x, "")).into(),
            BasicValueEnum::VectorValue(x) => ok(self.b.build_float_neg(x, "")).into(),
            x => unreachable!("a float {x}"),
        }
    }
    fn abs(&mut self, a: Self::F) -> Self::F {
        self.intrinsic("llvm.fabs", &[a])
    }
    fn sqrt(&mut self, a: Self::F) -> Self::F {
        self.intrinsic("llvm.sqrt", &[a])
    }
    fn copysign(&mut self, mag: Self::F, sign: Self::F) -> Self::F {
        self.intrinsic("llvm.copysign", &[mag, sign])
    }
    fn cmp(&mut self, op: CmpOp, a: Self::F, b: Self::F) -> Self::M {
        self.fcmp(predicate(op), a, b)
    }
    fn lt_or_nan(&mut self, a: Self::F, b: Self::F) -> Self::M {
        self.fcmp(FloatPredicate::ULT, a, b)
    }
    fn pick(&mut self, m: Self::M, yes: Self::F, no: Self::F) -> Self::F {
        self.select(m, yes, no)
    }
    fn bits_of(&mut self, a: Self::F) -> Self::I {
        let ty = self.vector_of(self.ctx.i32_type().into());
        ok(self.b.build_bit_cast(a, ty, ""))
    }
    fn float_of_bits(&mut self, a: Self::I) -> Self::F {
        let ty = self.vector_of(self.ctx.f32_type().into());
        ok(self.b.build_bit_cast(a, ty, ""))
    }
    fn iadd(&mut self, a: Self::I, b: Self::I) -> Self::I {
        int2!(self.b, build_int_add, a, b)
    }
    fn isub(&mut self, a: Self::I, b: Self::I) -> Self::I {
        int2!(self.b, build_int_sub, a, b)
    }
    fn and(&mut self, a: Self::I, b: Self::I) -> Self::I {
        Values::and(self, a, b)
    }
    fn or(&mut self, a: Self::I, b: Self::I) -> Self::I {
        Values::or(self, a, b)
    }
    fn shl(&mut self, a: Self::I, bits: u32) -> Self::I {
        let n = self.ci(bits as i32);
        int2!(self.b, build_left_shift, a, n)
    }
    fn sshr(&mut self, a: Self::I, bits: u32) -> Self::I {
        let n = self.ci(bits as i32);
        int2!(self.b, build_right_shift, a, n, true)
    }
    fn float_to_int(&mut self, a: Self::F) -> Self::I {
        let ty = self.vector_of(self.ctx.i32_type().into());
        let f = Intrinsic::find("llvm.fptosi.sat")
            .and_then(|i| i.get_declaration(self.module, &[ty, a.get_type()]))
            .expect("LLVM 19 has llvm.fptosi.sat");
        ok(self.b.build_direct_call(f, &[a.into()], "")).try_as_basic_value().basic().expect("a value")
    }
    fn int_to_float(&mut self, a: Self::I) -> Self::F {
        let ty = self.vector_of(self.ctx.f32_type().into());
        match (a, ty) {
            (BasicValueEnum::IntValue(x), BasicTypeEnum::FloatType(t)) => {
                ok(self.b.build_signed_int_to_float(x, t, "")).into()
            }
            (BasicValueEnum::VectorValue(x), BasicTypeEnum::VectorType(t)) => {
                ok(self.b.build_signed_int_to_float(x, t, "")).into()
            }
            (x, _) => unreachable!("an integer {x}"),
        }
    }
}

/// The LLVM predicate of a float comparison: ordered, except `Ne` (true for
/// NaN, as Cranelift's and the interpreter's `!=`).
pub(crate) fn predicate(op: CmpOp) -> FloatPredicate {
    match op {
        CmpOp::Lt => FloatPredicate::OLT,
        CmpOp::Le => FloatPredicate::OLE,
        CmpOp::Gt => FloatPredicate::OGT,
        CmpOp::Ge => FloatPredicate::OGE,
        CmpOp::Eq => FloatPredicate::OEQ,
        CmpOp::Ne => FloatPredicate::UNE,
    }
}

/// A vector value's lane `i`.
pub(crate) fn lane<'c>(b: &Builder<'c>, ctx: &'c Context, v: VectorValue<'c>, i: u32) -> BasicValueEnum<'c> {
    ok(b.build_extract_element(v, ctx.i32_type().const_int(u64::from(i), false), ""))
}
