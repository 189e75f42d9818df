//! canonicalize: folds constants in scalar bodies (`sqrt(4)`, `window == 0 || ...`,
//! `if true then a else b`, `x * 1`) and inlines scalar `const` operands.
//!
//! Additive identities are not folded: `x + 0` reads a masked `x` as 0 and is not
//! masked, while `x` would be.
//! Invariant: no body applies a function to constants alone.

use super::inline::compact;
use crate::ir::scalar::apply_fn;
use crate::ir::{Graph, Op, Scalar, ScalarFn, ValueId};

pub fn run(g: &mut Graph) {
    let consts: Vec<Option<f64>> = {
        let mut c = vec![None; g.types.len()];
        for n in &g.nodes {
            if let Op::Const { value } = n.op {
                c[n.results[0].0 as usize] = Some(value);
            }
        }
        c
    };
    for node in &mut g.nodes {
        let operand_consts: Vec<Option<f64>> = node.operands.iter().map(|v: &ValueId| consts[v.0 as usize]).collect();
        let mut operands = node.operands.clone();
        match &mut node.op {
            Op::Generic(gen) => {
                gen.body = fold(std::mem::replace(&mut gen.body, Scalar::Const(0.0)), &operand_consts);
                gen.cond = gen.cond.take().map(|c| fold(c, &operand_consts));
                if gen.cond == Some(Scalar::Const(1.0)) {
                    gen.cond = None;
                }
                let gen = &mut **gen;
                let mut bodies = vec![&mut gen.body];
                if let Some(c) = gen.cond.as_mut() {
                    bodies.push(c);
                }
                compact(&mut bodies, &mut operands, &[]);
            }
            Op::Scan(scan) => {
                for st in scan.updates.iter_mut().chain(scan.outputs.iter_mut()) {
                    st.body = fold(std::mem::replace(&mut st.body, Scalar::Const(0.0)), &operand_consts);
                    st.cond = st.cond.take().map(|c| fold(c, &operand_consts));
                    if st.cond == Some(Scalar::Const(1.0)) {
                        st.cond = None;
                    }
                }
                // Operands (initial values included) are kept: the renumbering of
                // state inits is scan-fusion's concern, not worth repeating here.
                continue;
            }
            _ => continue,
        }
        node.operands = operands;
    }
}

fn fold(e: Scalar, consts: &[Option<f64>]) -> Scalar {
    let c = |x: &Scalar| if let Scalar::Const(v) = x { Some(*v) } else { None };
    match e {
        Scalar::Load { operand, indices } if indices.is_empty() && consts[operand as usize].is_some() => {
            Scalar::Const(consts[operand as usize].unwrap_or(0.0))
        }
        Scalar::Load { operand, indices } => {
            Scalar::Load { operand, indices: indices.into_iter().map(|i| fold(i, consts)).collect() }
        }
        Scalar::State { state, indices } => {
            Scalar::State { state, indices: indices.into_iter().map(|i| fold(i, consts)).collect() }
        }
        Scalar::Apply(f, args) => {
            let args: Vec<Scalar> = args.into_iter().map(|a| fold(a, consts)).collect();
            if let Some(vals) = args.iter().map(c).collect::<Option<Vec<f64>>>() {
                return Scalar::Const(apply_fn(f, &vals));
            }
            match (f, c(&args[0]), args.get(1).and_then(c)) {
                (ScalarFn::And, Some(0.0), _) | (ScalarFn::And, _, Some(0.0)) => Scalar::Const(0.0),
                (ScalarFn::Or, Some(x), _) | (ScalarFn::Or, _, Some(x)) if x != 0.0 => Scalar::Const(1.0),
                (ScalarFn::And, Some(_), _) | (ScalarFn::Or, Some(_), _) => args.into_iter().nth(1).expect("binary"),
                (ScalarFn::And, _, Some(_)) | (ScalarFn::Or, _, Some(_)) => args.into_iter().next().expect("binary"),
                (ScalarFn::Mul, Some(1.0), _) => args.into_iter().nth(1).expect("binary"),
                (ScalarFn::Mul, _, Some(1.0)) | (ScalarFn::Div, _, Some(1.0)) => {
                    args.into_iter().next().expect("binary")
                }
                _ => Scalar::Apply(f, args),
            }
        }
        Scalar::Select(cond, a, b) => match fold(*cond, consts) {
            Scalar::Const(v) if v != 0.0 => fold(*a, consts),
            Scalar::Const(_) => fold(*b, consts),
            cond => Scalar::Select(Box::new(cond), Box::new(fold(*a, consts)), Box::new(fold(*b, consts))),
        },
        Scalar::Reduce { op, vars, body } => Scalar::Reduce { op, vars, body: Box::new(fold(*body, consts)) },
        other => other,
    }
}
