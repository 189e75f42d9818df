//! Builtins as generics (`schedule::decompose`; a parallel `fftconv` stays a
//! library call) keep the interpreter's outputs,
//! on every example and case, for the parallel graph after all passes and for its
//! step graph run position by position.

use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::ir::step::{step, StepState};
use seqc_compiler::ir::{verify::verify, Graph, Op};
use seqc_compiler::passes::step_derivation::derive;
use seqc_compiler::schedule::decompose::decompose;
use seqc_compiler::sema::CheckedModel;
use std::collections::HashMap;

mod common;

fn models() -> Vec<(String, CheckedModel)> {
    common::all_models()
}

fn close(name: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape, b.shape, "{name}");
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x - y).abs() <= 1e-10 * x.abs().max(1.0), "{name}: {x} vs {y}");
    }
}

/// Only what the scheduler takes: generics, scans, products, reshapes, and in
/// parallel graphs the long-convolution call.
fn only_core_ops(name: &str, g: &Graph, parallel: bool) {
    for n in &g.nodes {
        let core = (parallel && matches!(n.op, Op::FftConv { .. }))
            || matches!(
                n.op,
                Op::Input { .. }
                    | Op::Weight { .. }
                    | Op::Const { .. }
                    | Op::StateInput { .. }
                    | Op::Linear { .. }
                    | Op::Reshape
                    | Op::Generic(_)
                    | Op::Attention(_)
                    | Op::Scan(_)
            );
        assert!(core, "{name}: `{}` is left", n.op.name());
    }
}

#[test]
fn decomposed_graphs_compute_the_same() {
    for (name, m) in models() {
        let mut fused = m.graph.clone();
        seqc_compiler::passes::run_until(&mut fused, None).unwrap();
        let mut dec = fused.clone();
        decompose(&mut dec);
        verify(&dec).unwrap_or_else(|e| panic!("{name}: {e}"));
        only_core_ops(&name, &dec, true);
        let (batch, len) = (2, 6);
        let weights = init_weights(&m, 1);
        let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
        let inputs = random_inputs(&m, &dims, 2);
        let b = Bindings { dims: &dims, inputs: &inputs, weights: &weights };
        let want = interp::run(&fused, &b).unwrap();
        for ((n, x), (_, y)) in interp::run(&dec, &b).unwrap().iter().zip(&want) {
            close(&format!("{name} `{n}`"), x, y);
        }

        let step_graph = derive(&fused).unwrap();
        let mut step_dec = step_graph.clone();
        decompose(&mut step_dec);
        verify(&step_dec).unwrap_or_else(|e| panic!("{name} (step): {e}"));
        only_core_ops(&name, &step_dec, false);
        let (mut s1, mut s2) = (StepState::new(&step_graph, batch).unwrap(), StepState::new(&step_dec, batch).unwrap());
        for t in 0..len {
            let at: HashMap<String, Tensor> = inputs.iter().map(|(k, v)| (k.clone(), v.row(1, t))).collect();
            let a = step(&step_graph, &mut s1, &at, &weights, false).unwrap();
            let b = step(&step_dec, &mut s2, &at, &weights, false).unwrap();
            for ((n, x), (_, y)) in a.iter().zip(&b) {
                close(&format!("{name} step {t} `{n}`"), x, y);
            }
        }
    }
}
