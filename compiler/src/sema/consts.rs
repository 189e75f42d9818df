//! Constant evaluation: config entries, layer parameters, `let` constants, dims.
//! Integer arithmetic is checked (overflow, inexact division, division by zero).

use super::types::Const;
use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::ast::{BinOp, Expr, ExprKind, UnOp};

/// Looks a name up among the constants in scope.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<Const>;

pub fn eval(e: &Expr, env: Lookup) -> Result<Const, Diagnostic> {
    match &e.kind {
        ExprKind::Int(v) => Ok(Const::Int(*v)),
        ExprKind::Float(v) => Ok(Const::Float(*v)),
        ExprKind::Bool(v) => Ok(Const::Bool(*v)),
        ExprKind::Str(v) => Ok(Const::Str(v.clone())),
        ExprKind::Name(n) => env(n).ok_or_else(|| {
            Diagnostic::error(Code::UnknownName, format!("unknown constant `{n}`"), e.span, "not a constant in scope")
        }),
        ExprKind::Unary(op, x) => unary(*op, eval(x, env)?, e.span),
        ExprKind::Binary(op, a, b) => binary(*op, eval(a, env)?, eval(b, env)?, e.span, b.span),
        ExprKind::If { cond, then, otherwise } => match eval(cond, env)? {
            Const::Bool(true) => eval(then, env),
            Const::Bool(false) => eval(otherwise, env),
            v => Err(type_error(cond.span, "bool", &v)),
        },
        ExprKind::Call { callee, args } => {
            let Some(name) = callee.as_name() else {
                return Err(not_constant(e.span));
            };
            if args.iter().any(|a| a.name.is_some()) {
                return Err(not_constant(e.span));
            }
            let vals: Vec<Const> = args.iter().map(|a| eval(&a.value, env)).collect::<Result<_, _>>()?;
            call(name, &vals, e.span)
        }
        _ => Err(not_constant(e.span)),
    }
}

/// `-c` or `!c`.
pub(crate) fn unary(op: UnOp, v: Const, span: Span) -> Result<Const, Diagnostic> {
    match (op, v) {
        (UnOp::Neg, Const::Int(i)) => i.checked_neg().map(Const::Int).ok_or_else(|| overflow(span)),
        (UnOp::Neg, Const::Float(f)) => Ok(Const::Float(-f)),
        (UnOp::Not, Const::Bool(b)) => Ok(Const::Bool(!b)),
        (op, v) => Err(type_error(span, if op == UnOp::Not { "bool" } else { "number" }, &v)),
    }
}

fn not_constant(span: Span) -> Diagnostic {
    Diagnostic::error(Code::KindMismatch, "expected a constant", span, "not a compile-time constant")
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error(Code::ConstantOverflow, "constant arithmetic overflows", span, "outside the 64-bit range")
}

pub fn type_error(span: Span, expected: &str, found: &Const) -> Diagnostic {
    Diagnostic::error(
        Code::DtypeMismatch,
        format!("expected {expected}, found {}", found.kind()),
        span,
        format!("this is {} `{found}`", found.kind()),
    )
}

/// `a op b` on constants; `rhs` is where a zero divisor is reported.
pub(crate) fn binary(op: BinOp, a: Const, b: Const, span: Span, rhs: Span) -> Result<Const, Diagnostic> {
    use Const::*;
    Ok(match (op, a, b) {
        (BinOp::And, Bool(x), Bool(y)) => Bool(x && y),
        (BinOp::Or, Bool(x), Bool(y)) => Bool(x || y),
        (BinOp::Eq, Bool(x), Bool(y)) => Bool(x == y),
        (BinOp::Ne, Bool(x), Bool(y)) => Bool(x != y),
        (BinOp::Add, Int(x), Int(y)) => Int(x.checked_add(y).ok_or_else(|| overflow(span))?),
        (BinOp::Sub, Int(x), Int(y)) => Int(x.checked_sub(y).ok_or_else(|| overflow(span))?),
        (BinOp::Mul, Int(x), Int(y)) => Int(x.checked_mul(y).ok_or_else(|| overflow(span))?),
        (BinOp::Div, Int(_), Int(0)) => {
            return Err(Diagnostic::error(Code::DivisionByZero, "division by zero", rhs, "this is 0"))
        }
        (BinOp::Div, Int(x), Int(y)) => {
            if x.checked_rem(y) != Some(0) {
                return Err(Diagnostic::error(
                    Code::InexactDivision,
                    format!("{x} / {y} is not exact"),
                    span,
                    format!("leaves a remainder of {}", x.wrapping_rem(y)),
                )
                .with_help("use `ceil_div(a, b)` or `floor_div(a, b)` to round"));
            }
            Int(x.checked_div(y).ok_or_else(|| overflow(span))?)
        }
        (op, Int(x), Int(y)) if op.is_comparison() => Bool(compare(op, x as f64, y as f64)),
        (op, x, y) => {
            let (Some(fx), Some(fy)) = (x.as_f64(), y.as_f64()) else {
                let bad = if x.as_f64().is_none() { x } else { y };
                let expected = if op.is_logical() { "bool" } else { "number" };
                return Err(type_error(span, expected, &bad));
            };
            if op.is_logical() {
                return Err(type_error(span, "bool", &Float(fx)));
            }
            if op.is_comparison() {
                return Ok(Bool(compare(op, fx, fy)));
            }
            let v = match op {
                BinOp::Add => fx + fy,
                BinOp::Sub => fx - fy,
                BinOp::Mul => fx * fy,
                BinOp::Div => {
                    if fy == 0.0 {
                        return Err(Diagnostic::error(Code::DivisionByZero, "division by zero", rhs, "this is 0"));
                    }
                    fx / fy
                }
                _ => unreachable!("comparison and logic handled above"),
            };
            finite(v, span)?
        }
    })
}

fn finite(v: f64, span: Span) -> Result<Const, Diagnostic> {
    if v.is_finite() {
        Ok(Const::Float(v))
    } else {
        Err(Diagnostic::error(
            Code::ConstantOverflow,
            "constant is not a finite number",
            span,
            "evaluates to inf or NaN",
        ))
    }
}

fn compare(op: BinOp, x: f64, y: f64) -> bool {
    match op {
        BinOp::Lt => x < y,
        BinOp::Le => x <= y,
        BinOp::Gt => x > y,
        BinOp::Ge => x >= y,
        BinOp::Eq => x == y,
        BinOp::Ne => x != y,
        _ => false,
    }
}

/// The scalar element functions, shared by constant evaluation and index notation.
pub const ELEMENT_FUNCTIONS: &[(&str, usize)] = &[
    ("exp", 1),
    ("log", 1),
    ("log1p", 1),
    ("sqrt", 1),
    ("rsqrt", 1),
    ("abs", 1),
    ("tanh", 1),
    ("sigmoid", 1),
    ("silu", 1),
    ("gelu", 1),
    ("relu", 1),
    ("softplus", 1),
    ("cos", 1),
    ("sin", 1),
    ("max", 2),
    ("min", 2),
    ("pow", 2),
];

pub fn element_arity(name: &str) -> Option<usize> {
    ELEMENT_FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// A function of constants (`ceil_div`, element functions).
pub(crate) fn call(name: &str, args: &[Const], span: Span) -> Result<Const, Diagnostic> {
    let arity = match name {
        "ceil_div" | "floor_div" => 2,
        _ => element_arity(name).ok_or_else(|| {
            Diagnostic::error(Code::NotCallable, format!("`{name}` is not a constant function"), span, "not a constant")
        })?,
    };
    if args.len() != arity {
        return Err(Diagnostic::error(
            Code::BadArguments,
            format!("`{name}` takes {arity} argument{}, found {}", if arity == 1 { "" } else { "s" }, args.len()),
            span,
            "wrong number of arguments",
        ));
    }
    if let ("ceil_div" | "floor_div", [a, b]) = (name, args) {
        let (Const::Int(x), Const::Int(y)) = (a, b) else {
            let bad = if matches!(a, Const::Int(_)) { b } else { a };
            return Err(type_error(span, "int", bad));
        };
        if *y == 0 {
            return Err(Diagnostic::error(Code::DivisionByZero, "division by zero", span, "divisor is 0"));
        }
        let q = x.checked_div_euclid(*y).ok_or_else(|| overflow(span))?;
        let r = x.rem_euclid(*y);
        return Ok(Const::Int(if name == "ceil_div" && r != 0 { q + 1 } else { q }));
    }
    if let ("max" | "min", [Const::Int(x), Const::Int(y)]) = (name, args) {
        return Ok(Const::Int(if name == "max" { *x.max(y) } else { *x.min(y) }));
    }
    let xs: Vec<f64> =
        args.iter().map(|a| a.as_f64().ok_or_else(|| type_error(span, "number", a))).collect::<Result<_, _>>()?;
    finite(apply(name, &xs), span)
}

/// The value of an element function, in f64 (the reference semantics).
pub fn apply(name: &str, x: &[f64]) -> f64 {
    let a = x[0];
    match name {
        "exp" => a.exp(),
        "log" => a.ln(),
        "log1p" => a.ln_1p(),
        "sqrt" => a.sqrt(),
        "rsqrt" => 1.0 / a.sqrt(),
        "abs" => a.abs(),
        "tanh" => a.tanh(),
        "sigmoid" => 1.0 / (1.0 + (-a).exp()),
        "silu" => a / (1.0 + (-a).exp()),
        "gelu" => 0.5 * a * (1.0 + erf(a / std::f64::consts::SQRT_2)),
        "relu" => a.max(0.0),
        // Stable form: never overflows for large a.
        "softplus" => a.max(0.0) + (-a.abs()).exp().ln_1p(),
        "cos" => a.cos(),
        "sin" => a.sin(),
        "max" => a.max(x[1]),
        "min" => a.min(x[1]),
        "pow" => a.powf(x[1]),
        _ => f64::NAN,
    }
}

/// erf to double precision (W. J. Cody's rational approximations via erfc).
pub fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is only 1e-7; use the series / continued fraction.
    if x.abs() < 2.5 {
        // Maclaurin series, converges fast for |x| < 2.5.
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc, Lentz's method.
        let ax = x.abs();
        let mut f = ax;
        let mut c = ax;
        let mut d = 0.0;
        for k in 1..200 {
            let an = k as f64 / 2.0;
            d = ax + an * d;
            d = 1.0 / d;
            c = ax + an / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        let erfc = (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt());
        (1.0 - erfc).copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::FileId;

    #[test]
    fn erf_terminates_at_zero_and_is_odd() {
        // The series once looped forever at 0 (its stopping test was relative).
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(-0.0), 0.0);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
        assert_eq!(erf(-1.3), -erf(1.3));
    }

    fn eval_str(src: &str) -> Result<Const, Code> {
        let e = crate::syntax::parse_expr(FileId(0), src).map_err(|d| d[0].code)?;
        eval(&e, &|n| (n == "d").then_some(Const::Int(768))).map_err(|d| d.code)
    }

    #[test]
    fn integer_arithmetic_is_checked() {
        assert_eq!(eval_str("ceil_div(d, 16)"), Ok(Const::Int(48)));
        assert_eq!(eval_str("ceil_div(770, 16)"), Ok(Const::Int(49)));
        assert_eq!(eval_str("floor_div(770, 16)"), Ok(Const::Int(48)));
        assert_eq!(eval_str("d / 12"), Ok(Const::Int(64)));
        assert_eq!(eval_str("d / 7"), Err(Code::InexactDivision));
        assert_eq!(eval_str("d / (d - 768)"), Err(Code::DivisionByZero));
        assert_eq!(eval_str("9223372036854775807 + 1"), Err(Code::ConstantOverflow));
        assert_eq!(eval_str("-9223372036854775807 - 2"), Err(Code::ConstantOverflow));
        assert_eq!(eval_str("2 * d + 1"), Ok(Const::Int(1537)));
        assert_eq!(eval_str("d > 512 && !false"), Ok(Const::Bool(true)));
        assert_eq!(eval_str("if d == 768 then 1.5 else 2"), Ok(Const::Float(1.5)));
        assert_eq!(eval_str("true + 1"), Err(Code::DtypeMismatch));
        assert_eq!(eval_str("e"), Err(Code::UnknownName));
    }

    #[test]
    fn element_functions_match_known_values() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b.abs().max(1.0);
        // erf reference values (Abramowitz and Stegun, Table 7.1, extended).
        for (x, want) in
            [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.0, 0.9953222650189527), (3.0, 0.9999779095030014)]
        {
            assert!(close(erf(x), want), "erf({x}) = {}", erf(x));
            assert!(close(erf(-x), -want));
        }
        // Stable softplus: no overflow for large arguments.
        assert_eq!(apply("softplus", &[1000.0]), 1000.0);
        assert!(close(apply("softplus", &[0.0]), std::f64::consts::LN_2));
        assert!(apply("softplus", &[-1000.0]) >= 0.0);
        assert!(close(apply("gelu", &[1.0]), 0.8413447460685429));
    }
}
