//! LLVM's code at every vector width it may choose (4, 8 and 16 `f32` lanes;
//! 16 runs here as two 8-lane halves where the CPU has no AVX-512) computes
//! what Cranelift's does, for every example and case, in parallel and step
//! mode: the vector loops' chunking, accumulator sets and tails at each width.
//! Cranelift's code is itself checked against the interpreter (conformance.rs).
//!
//! One test in its own binary: it sets `SEQC_LLVM_LANES` for the process.
#![cfg(feature = "llvm")]

use seqc_compiler::init::random_inputs;
use seqc_runtime::{Codegen, Model, Tensor};
use std::collections::HashMap;

mod common;

fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs() as f64)).max(1e-30);
    got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn llvm_code_at_every_width_matches_cranelift() {
    let models = common::all_models();
    for lanes in ["4", "8", "16"] {
        // SAFETY (of the environment): this binary's only test, so no other
        // thread reads the environment meanwhile.
        std::env::set_var("SEQC_LLVM_LANES", lanes);
        for (name, m) in &models {
            let compile = |codegen| Model::from_checked_with(m.clone(), codegen).unwrap().init_weights(3);
            let (reference, llvm) = (compile(Codegen::Cranelift), compile(Codegen::Llvm));
            let (batch, len) = (2, 19);
            let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
            let inputs: Vec<(String, Tensor)> = random_inputs(m, &dims, 4)
                .into_iter()
                .map(|(k, t)| (k, Tensor::new(t.shape, t.data.iter().map(|&x| x as f32).collect())))
                .collect();
            let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, t)| (k.as_str(), t.clone())).collect();
            let want = reference.forward(&ins).unwrap();
            let got = llvm.forward(&ins).unwrap_or_else(|e| panic!("{name} at {lanes} lanes: {e}"));
            for ((n, g), (_, w)) in got.iter().zip(&want) {
                let e = rel_error(&g.data, &w.data);
                assert!(e < 1e-5, "{name} at {lanes} lanes: `{n}` differs from Cranelift's by {e:e}");
            }
            // Step and chunk mode over the same positions, where the model has them.
            type Run = fn(
                &Model,
                &mut seqc_runtime::State,
                &[(&str, Tensor)],
            ) -> Result<Vec<(String, Tensor)>, seqc_runtime::Error>;
            for (mode, run) in [("step", Model::forward_steps as Run), ("chunk", Model::forward_from as Run)] {
                let (Ok(mut s1), Ok(mut s2)) = (reference.new_state(batch), llvm.new_state(batch)) else { continue };
                let want = run(&reference, &mut s1, &ins).unwrap();
                let got = run(&llvm, &mut s2, &ins).unwrap();
                for ((n, g), (_, w)) in got.iter().zip(&want) {
                    let e = rel_error(&g.data, &w.data);
                    assert!(e < 1e-5, "{name} at {lanes} lanes, {mode} mode: `{n}` differs from Cranelift's by {e:e}");
                }
            }
        }
    }
    std::env::remove_var("SEQC_LLVM_LANES");
}
