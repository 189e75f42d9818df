//! The kernel IR's text form: what `seqc compile --emit kernel` prints and the
//! kernel snapshots hold.

use super::{Buffer, CmpOp, Expr, IntOp, Kernel, KernelModule, Launch, LoopKind, Role, Stmt};
use std::fmt::Write;

pub fn print(m: &KernelModule) -> String {
    let mut out = format!("module {} ({})\n", m.name, m.dims.join(", "));
    let dims = &m.dims;
    for (i, b) in m.buffers.iter().enumerate() {
        let _ = writeln!(out, "  b{i} = {} [{}]  // {}", role(b), expr(&b.size, dims), b.name);
    }
    for (i, k) in m.kernels.iter().enumerate() {
        let _ =
            writeln!(out, "  kernel k{i} {} (p0..p{}) grid g{} {{", k.name, k.params.saturating_sub(1), k.grid_var.0);
        block(&mut out, &k.body, dims, 2);
        out.push_str("  }\n");
    }
    out.push_str("  launches {\n");
    for l in &m.launches {
        let line = match l {
            Launch::Kernel { kernel, grid, args } => {
                let args: Vec<String> = args.iter().map(|b| format!("b{}", b.0)).collect();
                format!("k{kernel} grid {} ({})", expr(grid, dims), args.join(", "))
            }
            Launch::Gemm { m: rows, n, k, a, b, bias, c } => {
                let bias = bias.map(|x| format!(" + b{}", x.0)).unwrap_or_default();
                format!(
                    "b{} = gemm b{}[{}, {}] * b{}[{}, {}]^T{bias}",
                    c.0,
                    a.0,
                    expr(rows, dims),
                    expr(k, dims),
                    b.0,
                    expr(n, dims),
                    expr(k, dims)
                )
            }
            Launch::Fill { buf, value } => format!("b{} = fill {value:?}", buf.0),
            Launch::CausalConv { batch, len, channels, taps, x, k, starts, y } => format!(
                "b{} = causal_conv b{}[{}, {}, {}] * b{}[{}, {}]{}",
                y.0,
                x.0,
                expr(batch, dims),
                expr(len, dims),
                expr(channels, dims),
                k.0,
                expr(taps, dims),
                expr(channels, dims),
                starts.map_or(String::new(), |b| format!(" from b{}", b.0))
            ),
            Launch::Attention(a) => {
                let e = |x: &Expr| expr(x, dims);
                let bound = |x: &Option<Expr>| x.as_ref().map_or("-".to_string(), e);
                format!(
                    "b{} = attention q b{}[{}, {}, {}, {}] k b{}[{}, {}, {} / {}, {}] v b{}[.., {}] scale {:?} keys i+[{}, {}] abs [{}, {}]",
                    a.out.0,
                    a.q.0,
                    e(&a.batch),
                    e(&a.q_len),
                    e(&a.heads),
                    e(&a.dim),
                    a.k.0,
                    e(&a.batch),
                    e(&a.kv_len),
                    e(&a.heads),
                    e(&a.group),
                    e(&a.dim),
                    a.v.0,
                    e(&a.dim_v),
                    a.scale,
                    bound(&a.keys.lo_rel),
                    bound(&a.keys.hi_rel),
                    bound(&a.keys.lo_abs),
                    bound(&a.keys.hi_abs),
                ) + &a.keys.lo_from.map_or(String::new(), |b| format!(" from b{}", b.0))
            }
        };
        let _ = writeln!(out, "    {line}");
    }
    out.push_str("  }\n");
    for (name, b) in &m.outputs {
        let _ = writeln!(out, "  output {name} = b{}", b.0);
    }
    for (name, b) in &m.next_states {
        let _ = writeln!(out, "  next {name} = b{}", b.0);
    }
    out
}

fn role(b: &Buffer) -> String {
    match &b.role {
        Role::Input(n) => format!("input {n:?}"),
        Role::Weight(n) => format!("weight {n:?}"),
        Role::State { name, init } => format!("state {name:?} init={init:?}"),
        Role::Temp => "temp".into(),
        Role::Alias(a) => format!("alias b{}", a.0),
    }
}

/// Prints one kernel (for snapshots of a single kernel).
pub fn kernel(k: &Kernel, dims: &[String]) -> String {
    let mut out = String::new();
    block(&mut out, &k.body, dims, 0);
    out
}

fn block(out: &mut String, stmts: &[Stmt], dims: &[String], depth: usize) {
    let pad = "  ".repeat(depth + 1);
    for s in stmts {
        match s {
            Stmt::For { var, extent, kind, body } => {
                let kind = match kind {
                    LoopKind::Serial => String::new(),
                    LoopKind::Vector(w) => format!(" vector({w})"),
                    LoopKind::Unroll(f) => format!(" unroll({f})"),
                };
                let _ = writeln!(out, "{pad}for v{} in 0..{}{kind} {{", var.0, expr(extent, dims));
                block(out, body, dims, depth + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Let { var, value } => {
                let _ = writeln!(out, "{pad}v{} = {}", var.0, expr(value, dims));
            }
            Stmt::Set { reg, value } => {
                let _ = writeln!(out, "{pad}r{} = {}", reg.0, expr(value, dims));
            }
            Stmt::Store { param, index, value } => {
                let _ = writeln!(out, "{pad}p{param}[{}] = {}", expr(index, dims), expr(value, dims));
            }
            Stmt::If { cond, then } => {
                let _ = writeln!(out, "{pad}if {} {{", expr(cond, dims));
                block(out, then, dims, depth + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Barrier => {
                let _ = writeln!(out, "{pad}barrier");
            }
        }
    }
}

/// An expression, fully parenthesised except at the top.
/// Binding strength of an infix element function (higher binds tighter).
fn precedence(f: crate::ir::ScalarFn) -> u8 {
    use crate::ir::ScalarFn::*;
    match f {
        Or => 1,
        And => 2,
        Lt | Le | Gt | Ge | Eq | Ne => 3,
        Add | Sub => 4,
        _ => 5,
    }
}

pub fn expr(e: &Expr, dims: &[String]) -> String {
    let sub = |x: &Expr| match x {
        Expr::Int(_)
        | Expr::Float(_)
        | Expr::Var(_)
        | Expr::Dim(_)
        | Expr::Reg(_)
        | Expr::Load { .. }
        | Expr::Call(..) => expr(x, dims),
        _ => format!("({})", expr(x, dims)),
    };
    match e {
        Expr::Int(v) => v.to_string(),
        Expr::Float(v) => format!("{v:?}"),
        Expr::Var(v) => format!("v{}", v.0),
        Expr::Dim(d) => dims.get(*d as usize).cloned().unwrap_or_else(|| format!("dim{d}")),
        Expr::Reg(r) => format!("r{}", r.0),
        Expr::Load { param, index } => format!("p{param}[{}]", expr(index, dims)),
        Expr::Int2(op, a, b) => {
            let op = match op {
                IntOp::Add => "+",
                IntOp::Sub => "-",
                IntOp::Mul => "*",
                IntOp::Div => "/",
                IntOp::Rem => "%",
                IntOp::Min => return format!("min({}, {})", expr(a, dims), expr(b, dims)),
                IntOp::Max => return format!("max({}, {})", expr(a, dims), expr(b, dims)),
            };
            format!("{} {op} {}", sub(a), sub(b))
        }
        Expr::Call(f, args) if f.is_infix() && args.len() == 2 => {
            // Parenthesised where the tree is not what precedence and left
            // association would read: a looser operand, or an equal one on the right.
            let operand = |x: &Expr, right: bool| match x {
                Expr::Call(g, a) if g.is_infix() && a.len() == 2 => {
                    let (inner, outer) = (precedence(*g), precedence(*f));
                    if inner < outer || (right && inner == outer) {
                        format!("({})", expr(x, dims))
                    } else {
                        expr(x, dims)
                    }
                }
                _ => sub(x),
            };
            format!("{} {} {}", operand(&args[0], false), f.name(), operand(&args[1], true))
        }
        Expr::Call(f, args) => {
            let args: Vec<String> = args.iter().map(|a| expr(a, dims)).collect();
            format!("{}({})", f.name(), args.join(", "))
        }
        Expr::Cmp(op, a, b) => {
            let op = match op {
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
            };
            format!("{} {op} {}", sub(a), sub(b))
        }
        Expr::And(a, b) => format!("{} && {}", sub(a), sub(b)),
        Expr::Or(a, b) => format!("{} || {}", sub(a), sub(b)),
        Expr::Not(a) => format!("!{}", sub(a)),
        Expr::Select(c, a, b) => format!("select({}, {}, {})", expr(c, dims), expr(a, dims), expr(b, dims)),
        Expr::ToFloat(a) => format!("f32({})", expr(a, dims)),
        Expr::ToInt(a) => format!("i64({})", expr(a, dims)),
    }
}
