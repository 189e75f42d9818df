//! The kernel IR on every example and case: the scheduled module, run by the
//! kernel IR's own evaluator in f32, matches the graph interpreter (f64), in
//! parallel mode for several `B` and `L` (1 included, and lengths no tile divides)
//! in step mode position by position, in chunks from a state, and on packed
//! batches. Kernel IR snapshots for the cases.

use seqc_compiler::driver;
use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::ir::kernel::{eval::run_named, print::print};
use seqc_compiler::passes::packed_derivation::{derive_packed, STARTS};
use seqc_compiler::passes::step_derivation::{derive, derive_chunk, dim_value};
use seqc_compiler::schedule::schedule;
use seqc_compiler::sema::{Checked, CheckedModel};
use std::collections::HashMap;

mod common;

fn models() -> Vec<(String, CheckedModel)> {
    let mut all = common::all_models();
    for (_, m) in &mut all {
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
    }
    all
}

fn flat(t: &HashMap<String, Tensor>) -> HashMap<String, Vec<f32>> {
    t.iter().map(|(k, v)| (k.clone(), v.data.iter().map(|&x| x as f32).collect())).collect()
}

/// Max error over the reference's largest magnitude (normwise relative).
fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
    got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn kernel_modules_match_the_interpreter() {
    for (name, m) in models() {
        let module = schedule(&m.graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let weights = init_weights(&m, 7);
        for (batch, len) in [(1, 1), (2, 5), (3, 17)] {
            let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
            let inputs = random_inputs(&m, &dims, 8);
            let want = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
            let mut tensors = flat(&inputs);
            tensors.extend(flat(&weights));
            let got = run_named(&module, &dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
            for ((n, g), (_, w)) in got.iter().zip(&want) {
                let e = rel_error(g, &w.data);
                assert!(e < 1e-4, "{name} B={batch} L={len}: `{n}` differs by {e:e} (relative to its largest element)");
            }
        }
    }
}

/// Diagonal linear scans (Mamba's, Griffin's, gated linear attention's) split
/// into chunks along `L` when the target has more workers than the scan has
/// independent slices: with as many workers as could be wanted, every such
/// scan runs in `ceil(L / 16)` chunks, the last one shorter, and the outputs
/// still match the interpreter.
#[test]
fn chunked_scans_match_the_interpreter() {
    let mut chunked = Vec::new();
    for (name, m) in models() {
        let module = schedule(&m.graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        if !module.kernels.iter().any(|k| k.name.ends_with(": chunk ends")) {
            continue;
        }
        chunked.push(name.clone());
        let weights = init_weights(&m, 7);
        for (batch, len) in [(1, 37), (2, 16), (1, 50)] {
            let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
            let inputs = random_inputs(&m, &dims, 8);
            let want = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
            let mut tensors = flat(&inputs);
            tensors.extend(flat(&weights));
            let mut run_dims = dims.clone();
            run_dims.insert(seqc_compiler::schedule::WORKERS.to_string(), 1 << 20);
            let got = run_named(&module, &run_dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
            for ((n, g), (_, w)) in got.iter().zip(&want) {
                let e = rel_error(g, &w.data);
                assert!(e < 1e-4, "{name} B={batch} L={len} in chunks: `{n}` differs by {e:e}");
            }
        }
    }
    for expected in ["mamba.seq", "griffin.seq", "hybrid.seq", "gla.seq"] {
        assert!(chunked.iter().any(|n| n == expected), "{expected} has no chunked scan: {chunked:?}");
    }
}

#[test]
fn step_kernel_modules_match_the_interpreter() {
    for (name, m) in models() {
        let step_graph = derive(&m.graph).unwrap();
        let module = schedule(&step_graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let weights = init_weights(&m, 7);
        let (batch, len) = (2, 6);
        let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
        let inputs = random_inputs(&m, &dims, 8);
        let want = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
        let mut state = seqc_compiler::ir::step::StepState::new(&step_graph, batch).unwrap();
        let mut states: HashMap<String, Vec<f32>> = flat(&state.tensors);
        for t in 0..len {
            let mut tensors: HashMap<String, Vec<f32>> =
                inputs.iter().map(|(k, v)| (k.clone(), v.row(1, t).data.iter().map(|&x| x as f32).collect())).collect();
            tensors.extend(flat(&weights));
            tensors.extend(states.clone());
            let step_dims = HashMap::from([("B".to_string(), batch), ("T".to_string(), t), ("P".to_string(), t + 1)]);
            let got = run_named(&module, &step_dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (outs, next) = got.split_at(m.graph.outputs.len());
            for ((n, g), (_, w)) in outs.iter().zip(&want) {
                let e = rel_error(g, &w.row(1, t).data);
                assert!(e < 1e-4, "{name} step {t}: `{n}` differs by {e:e}");
            }
            states = next.iter().cloned().collect();
        }
        state.position = len;
    }
}

/// The chunk graph's kernels over chunks of 2, 1, 3 and 37 positions, each
/// from the state the last left, with as many workers as a scan could want (a
/// scan that returns its last state must not split, even when long).
#[test]
fn chunk_kernel_modules_match_the_interpreter() {
    for (name, m) in models() {
        let graph = derive_chunk(&m.graph).unwrap();
        let module = schedule(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The evaluator runs a launch's grid points in order, so the last
        // chunk's state would win here; threads give no such order.
        let split = module.kernels.iter().find(|k| k.name.ends_with(": chunk ends"));
        assert!(split.is_none(), "{name}: a scan that returns its last state splits: {}", split.unwrap().name);
        let weights = init_weights(&m, 7);
        let (batch, len) = (2, 43);
        let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
        let inputs = random_inputs(&m, &dims, 8);
        let want = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
        let state = seqc_compiler::ir::step::StepState::new(&derive(&m.graph).unwrap(), batch).unwrap();
        let mut states: HashMap<String, Vec<f32>> = flat(&state.tensors);
        let mut at = 0;
        for part in [2, 1, 3, 37] {
            let span = |x: &Tensor| -> Vec<f32> {
                (at..at + part).map(|t| x.row(1, t)).flat_map(|r| r.data).map(|v| v as f32).collect::<Vec<_>>()
            };
            // `[B, part, ...]`: each sequence's rows together.
            let rows = |x: &Tensor| -> Vec<f32> {
                let inner: usize = x.shape[2..].iter().product();
                let by_position = span(x);
                let mut out = Vec::with_capacity(by_position.len());
                for b in 0..batch {
                    for t in 0..part {
                        out.extend_from_slice(&by_position[(t * batch + b) * inner..][..inner]);
                    }
                }
                out
            };
            let mut tensors: HashMap<String, Vec<f32>> = inputs.iter().map(|(k, v)| (k.clone(), rows(v))).collect();
            tensors.extend(flat(&weights));
            tensors.extend(states.clone());
            let mut run_dims: HashMap<String, usize> =
                module.dims.iter().filter_map(|d| dim_value(d, batch, at, part).map(|v| (d.clone(), v))).collect();
            run_dims.insert(seqc_compiler::schedule::WORKERS.to_string(), 1 << 20);
            let got = run_named(&module, &run_dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (outs, next) = got.split_at(m.graph.outputs.len());
            for ((n, g), (_, w)) in outs.iter().zip(&want) {
                let e = rel_error(g, &rows(w).iter().map(|&v| v as f64).collect::<Vec<_>>());
                assert!(e < 1e-4, "{name} chunk of {part} at {at}: `{n}` differs by {e:e}");
            }
            states = next.iter().cloned().collect();
            at += part;
        }
    }
}

/// The packed graph's kernels on sequences of different lengths back to back,
/// with as many workers as a scan could want: a split scan's chunks then start
/// inside sequences and run across their starts. Each sequence's outputs are
/// what the interpreter gives for it alone.
#[test]
fn packed_kernel_modules_match_the_interpreter() {
    let lengths = [7usize, 1, 40, 19];
    let total: usize = lengths.iter().sum();
    let mut split = Vec::new();
    for (name, m) in models() {
        let graph = derive_packed(&m.graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let module = schedule(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        if module.kernels.iter().any(|k| k.name.ends_with(": chunk ends")) {
            split.push(name.clone());
        }
        let weights = init_weights(&m, 7);
        let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), total)]);
        let inputs = random_inputs(&m, &dims, 8);
        let mut tensors = flat(&inputs);
        tensors.extend(flat(&weights));
        let starts = lengths.iter().scan(0, |at, &n| Some(vec![std::mem::replace(at, *at + n) as f32; n]));
        tensors.insert(STARTS.to_string(), starts.flatten().collect());
        let mut run_dims = dims.clone();
        run_dims.insert(seqc_compiler::schedule::WORKERS.to_string(), 1 << 20);
        let got = run_named(&module, &run_dims, &tensors).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut at = 0;
        for &len in &lengths {
            let one = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
            let alone: HashMap<String, Tensor> = inputs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Tensor::join(
                            &(at..at + len).map(|t| v.row(1, t)).collect::<Vec<_>>().iter().collect::<Vec<_>>(),
                            1,
                            0,
                        ),
                    )
                })
                .collect();
            let want = interp::run(&m.graph, &Bindings { dims: &one, inputs: &alone, weights: &weights }).unwrap();
            for ((n, g), (_, w)) in got.iter().zip(&want) {
                let inner = w.data.len() / len;
                let e = rel_error(&g[at * inner..(at + len) * inner], &w.data);
                assert!(e < 1e-4, "{name}: `{n}` of the sequence of {len} at {at} differs by {e:e}");
            }
            at += len;
        }
    }
    assert!(split.iter().any(|n| n == "mamba.seq"), "Mamba's scans split along `L` in a packed batch ({split:?})");
}

#[test]
fn case_kernel_snapshots() {
    insta::glob!("cases/*.seq", |path| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (_, r) = driver::check_bytes(&name, &std::fs::read(path).unwrap(), "");
        let Ok(Checked::Model(mut m)) = r else { panic!("{name} checks") };
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
        insta::assert_snapshot!(print(&schedule(&m.graph).unwrap()));
    });
}

/// The kernel IR of every example at its small config (parallel mode), as
/// `seqc compile FILE --target cpu --emit kernel` prints it.
#[test]
fn example_kernel_snapshots() {
    for (file, config) in common::SMALL {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples").join(file);
        let (_, r) = driver::check_bytes(file, &std::fs::read(path).unwrap(), config);
        let Ok(Checked::Model(mut m)) = r else { panic!("{file} checks") };
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
        insta::assert_snapshot!(format!("example_kernel@{file}"), print(&schedule(&m.graph).unwrap()));
    }
}

/// The Cranelift IR of two small cases (a scan with hoisted invariants, and
/// windowed reductions with shifted reads), as `--emit clif` prints it: what
/// the backend hands Cranelift, before Cranelift compiles it.
#[test]
fn case_clif_snapshots() {
    for case in ["licm.seq", "shifted_reads.seq"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(case);
        let (_, r) = driver::check_bytes(case, &std::fs::read(path).unwrap(), "");
        let Ok(Checked::Model(mut m)) = r else { panic!("{case} checks") };
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
        // With fused multiply-adds, whether or not this machine has them.
        let clif = seqc_cranelift::clif_with(&schedule(&m.graph).unwrap(), true).unwrap();
        insta::assert_snapshot!(format!("clif@{case}"), clif);
    }
}

/// A layer repeated `n` times compiles once: every kernel of Mamba's second
/// layer has the code of its counterpart in the first (all but the name), and
/// kernels that differ in anything else are kept apart.
#[test]
fn repeated_layers_share_their_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples/mamba.seq");
    let (_, r) = driver::check_bytes("mamba.seq", &std::fs::read(path).unwrap(), common::small_config("mamba.seq"));
    let Ok(Checked::Model(mut m)) = r else { panic!("mamba checks") };
    seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
    let module = schedule(&m.graph).unwrap();
    let reps = seqc_cranelift::representatives(&module);
    let code = |k: &seqc_compiler::ir::kernel::Kernel| (k.params, k.body.clone(), k.vars, k.regs, k.scratch.clone());
    for (i, &r) in reps.iter().enumerate() {
        assert!(r <= i && code(&module.kernels[r]) == code(&module.kernels[i]), "k{i} shares k{r}'s code");
        if r == i {
            assert!(module.kernels[..i].iter().all(|k| code(k) != code(&module.kernels[i])), "k{i} is new");
        }
    }
    let layer1: Vec<usize> = (0..reps.len()).filter(|&i| module.kernels[i].name.contains("layers.1.")).collect();
    assert!(!layer1.is_empty() && layer1.iter().all(|&i| reps[i] < i), "layer 1 reuses layer 0's kernels");
}

/// The LLVM IR of the same two cases before LLVM optimises it (8 lanes, fused
/// multiply-adds): what the second code generator hands LLVM.
#[cfg(feature = "llvm")]
#[test]
fn case_llvm_snapshots() {
    for case in ["licm.seq", "shifted_reads.seq"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(case);
        let (_, r) = driver::check_bytes(case, &std::fs::read(path).unwrap(), "");
        let Ok(Checked::Model(mut m)) = r else { panic!("{case} checks") };
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
        let ir = seqc_llvm::ir_with(&schedule(&m.graph).unwrap(), 8, true).unwrap();
        insta::assert_snapshot!(format!("llvm@{case}"), ir);
    }
}
