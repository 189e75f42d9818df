//! The graph's text form, the format of `--emit graph` and of snapshots.
//!
//! ```text
//! %4 = generic [b in B, l in L, e in 64] (%2, %3) = %2[b, l, e] * %3[e] : f32[B, L, 64]
//! ```
//! Bodies are written in `.seq` index notation, operands by their value ids.
//! Nothing printed depends on hash order or on anything outside the graph.

use super::ops::{Generic, LoopVar, Recurrence, ScanOp, StateInit};
use super::{Graph, Op, Scalar, ScalarFn, ValueId};
use crate::sema::types::shape_str;
use std::fmt::Write;

/// Prints the graph; values are numbered in definition order, so a small change to
/// the graph makes a small diff.
pub fn print(g: &Graph) -> String {
    let number = numbering(g);
    let renumbered = |v: &ValueId| ValueId(number[v.0 as usize]);
    let mut out = format!("graph {} {{\n", g.name);
    for node in &g.nodes {
        let types: Vec<String> = node.results.iter().map(|r| g.ty(*r).to_string()).collect();
        let node = &super::Node {
            op: node.op.clone(),
            operands: node.operands.iter().map(renumbered).collect(),
            results: node.results.iter().map(renumbered).collect(),
        };
        let results: Vec<String> = node.results.iter().map(|r| format!("%{}", r.0)).collect();
        let operands: Vec<String> = node.operands.iter().map(|o| format!("%{}", o.0)).collect();
        let head = format!("  {} = {}", results.join(", "), node.op.name());
        let line = match &node.op {
            Op::Input { name } | Op::Weight { name } => format!("{head} {name:?}"),
            Op::Const { value } => format!("{head} {value:?}"),
            Op::StateInput { name, init } => format!("{head} {name:?} init={init:?}"),
            Op::Append { axis } | Op::Tail { axis } => format!("{head} {} axis={axis}", operands.join(", ")),
            Op::Linear { .. }
            | Op::Conv1d { .. }
            | Op::Embed
            | Op::FftConv { .. }
            | Op::Softmax
            | Op::Reshape
            | Op::Concat => {
                format!("{head} {}", operands.join(", "))
            }
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => format!("{head} {} eps={eps:?}", operands.join(", ")),
            Op::Rope { theta } => format!("{head} {} theta={theta:?}", operands.join(", ")),
            Op::Split { sizes } => format!("{head} {} sizes={sizes:?}", operands.join(", ")),
            Op::Generic(gen) | Op::Attention(gen) => format!("{head} {}", generic(gen, &node.operands)),
            Op::Scan(scan) => format!("{head} {}", scan_text(scan, &node.operands, &node.results)),
        };
        let _ = writeln!(out, "{line} : {}", types.join(", "));
    }
    for (name, v) in &g.outputs {
        let _ = writeln!(out, "  output {name} = %{}", renumbered(v).0);
    }
    for (name, v) in &g.next_states {
        let _ = writeln!(out, "  next {name} = %{}", renumbered(v).0);
    }
    out.push_str("}\n");
    out
}

/// The printed number of each value: its rank in definition order.
pub fn numbering(g: &Graph) -> Vec<u32> {
    let mut number = vec![0u32; g.types.len()];
    let mut next = 0;
    for node in &g.nodes {
        for r in &node.results {
            number[r.0 as usize] = next;
            next += 1;
        }
    }
    number
}

/// Loop index names, made unique within an op.
fn names(vars: &[LoopVar]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in vars {
        let mut name = v.name.clone();
        let mut k = 1;
        while out.contains(&name) {
            name = format!("{}{k}", v.name);
            k += 1;
        }
        out.push(name);
    }
    out
}

fn binders(vars: &[LoopVar], names: &[String], ids: impl Iterator<Item = usize>) -> String {
    ids.map(|i| format!("{} in {}", names[i], vars[i].extent)).collect::<Vec<_>>().join(", ")
}

fn generic(g: &Generic, operands: &[ValueId]) -> String {
    let n = names(&g.vars);
    let ops: Vec<String> = operands.iter().map(|o| format!("%{}", o.0)).collect();
    let mut s = format!(
        "[{}] ({}) = {}",
        binders(&g.vars, &n, 0..g.rank),
        ops.join(", "),
        scalar(&g.body, &n, &g.vars, operands, &[])
    );
    if let Some(c) = &g.cond {
        let _ = write!(s, " where {}", scalar(c, &n, &g.vars, operands, &[]));
    }
    s
}

fn scan_text(scan: &ScanOp, operands: &[ValueId], results: &[ValueId]) -> String {
    let n = names(&scan.vars);
    let ops: Vec<String> = operands.iter().map(|o| format!("%{}", o.0)).collect();
    let states: Vec<String> = scan.states.iter().map(|s| s.name.clone()).collect();
    let mut s = format!("[{}] ({}) {{\n", binders(&scan.vars, &n, [scan.axis as usize].into_iter()), ops.join(", "));
    for st in &scan.states {
        let init = match st.init {
            StateInit::Const(v) => format!("{v:?}"),
            StateInit::Operand(k) => format!("%{}", operands[k as usize].0),
        };
        let _ = write!(s, "    state {}{} = {init}", st.name, shape_str(&st.shape));
        let i = scan.states.iter().position(|x| x.name == st.name).unwrap_or(0);
        match scan.recurrence.get(i) {
            Some(Recurrence::Linear { time_invariant: true }) => s.push_str(" linear time-invariant"),
            Some(Recurrence::Linear { time_invariant: false }) => s.push_str(" linear"),
            Some(Recurrence::Nonlinear) => s.push_str(" nonlinear"),
            _ => {}
        }
        s.push('\n');
    }
    for (stmts, is_update) in [(&scan.updates, true), (&scan.outputs, false)] {
        for st in stmts {
            let target = if is_update {
                states[st.target as usize].clone()
            } else {
                format!("%{}", results[st.target as usize].0)
            };
            let left = binders(&scan.vars, &n, st.left.iter().map(|&v| v as usize));
            let _ = write!(s, "    {target}[{left}] = {}", scalar(&st.body, &n, &scan.vars, operands, &states));
            if let Some(c) = &st.cond {
                let _ = write!(s, " where {}", scalar(c, &n, &scan.vars, operands, &states));
            }
            s.push('\n');
        }
    }
    s.push_str("  }");
    s
}

/// Precedence, as in `.seq` (higher binds tighter).
fn level(e: &Scalar) -> u8 {
    match e {
        Scalar::Apply(f, _) if f.is_infix() => match f {
            ScalarFn::Or => 1,
            ScalarFn::And => 2,
            ScalarFn::Add | ScalarFn::Sub => 4,
            ScalarFn::Mul | ScalarFn::Div => 5,
            _ => 3,
        },
        Scalar::Apply(ScalarFn::Neg | ScalarFn::Not, _) => 6,
        Scalar::Reduce { .. } | Scalar::Select(..) => 0,
        _ => 8,
    }
}

fn scalar(e: &Scalar, n: &[String], vars: &[LoopVar], operands: &[ValueId], states: &[String]) -> String {
    let sub = |x: &Scalar, min: u8| {
        let t = scalar(x, n, vars, operands, states);
        if level(x) < min {
            format!("({t})")
        } else {
            t
        }
    };
    let list = |xs: &[Scalar]| xs.iter().map(|x| scalar(x, n, vars, operands, states)).collect::<Vec<_>>().join(", ");
    match e {
        Scalar::Const(v) => {
            // Integral constants print as integers (they are often indices).
            let text = if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", *v as i64) } else { format!("{v:?}") };
            if *v < 0.0 {
                format!("({text})")
            } else {
                text
            }
        }
        Scalar::Index(i) => n[*i as usize].clone(),
        Scalar::Size(d) => d.clone(),
        Scalar::Load { operand, indices } => format!("%{}[{}]", operands[*operand as usize].0, list(indices)),
        Scalar::State { state, indices } => format!("{}[{}]", states[*state as usize], list(indices)),
        Scalar::Apply(ScalarFn::Neg, a) => format!("-{}", sub(&a[0], 6)),
        Scalar::Apply(ScalarFn::Not, a) => format!("!{}", sub(&a[0], 6)),
        Scalar::Apply(f, a) if f.is_infix() => {
            let p = level(e);
            // Left-associative, except that comparisons do not chain.
            let right = p + 1;
            let left = if p == 3 { p + 1 } else { p };
            // Reductions and selects extend right: wrap them on the left.
            let l = if level(&a[0]) == 0 {
                format!("({})", scalar(&a[0], n, vars, operands, states))
            } else {
                sub(&a[0], left)
            };
            let r = if level(&a[1]) == 0 {
                format!("({})", scalar(&a[1], n, vars, operands, states))
            } else {
                sub(&a[1], right)
            };
            format!("{l} {} {r}", f.name())
        }
        Scalar::Apply(f, a) => format!("{}({})", f.name(), list(a)),
        Scalar::Select(c, a, b) => format!(
            "if {} then {} else {}",
            scalar(c, n, vars, operands, states),
            scalar(a, n, vars, operands, states),
            scalar(b, n, vars, operands, states)
        ),
        Scalar::Reduce { op, vars: rv, body } => {
            let b = rv
                .iter()
                .map(|&v| format!("{} in {}", n[v as usize], vars[v as usize].extent))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{}[{b}] {}", op.name(), scalar(body, n, vars, operands, states))
        }
    }
}
