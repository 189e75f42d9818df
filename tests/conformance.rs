//! The shared conformance suite for the compiled CPU path: for every example and
//! every case in `tests/cases/`, the runtime's outputs (Cranelift's code and
//! LLVM's, `gemm`, f32) match the reference interpreter (f64) to 1e-4 of each output's largest
//! element, in parallel mode for several `B` and `L` (1, and lengths no tile or
//! chunk size divides) and in step mode position by position; `forward_from`
//! over chunks equals one `forward`.

use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings};
use seqc_compiler::sema::CheckedModel;
use seqc_runtime::{Codegen, Model, Precision, Tensor};
use std::collections::HashMap;

mod common;

fn models() -> Vec<(String, CheckedModel)> {
    common::all_models()
}

fn f32s(t: &interp::Tensor) -> Tensor {
    Tensor::new(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
}

/// Max error over the reference's largest magnitude.
fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
    got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max) / scale
}

/// `model`'s outputs on `inputs` match the interpreter's (`want`) to 1e-4 of
/// each output's largest element: in parallel mode, then in step mode over the
/// first `steps` positions.
fn assert_both_modes_match(
    name: &str,
    model: &Model,
    inputs: &HashMap<String, interp::Tensor>,
    want: &[(String, interp::Tensor)],
    steps: usize,
) {
    let batch = inputs.values().next().map_or(1, |t| t.shape[0]);
    let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
    let got = model.forward(&ins).unwrap_or_else(|e| panic!("{name}: {e}"));
    for ((n, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.shape, w.shape, "{name}: `{n}`");
        let e = rel_error(&g.data, &w.data);
        assert!(e < 1e-4, "{name} B={batch}: `{n}` differs by {e:e} (relative to its largest element)");
    }
    let mut state = model.new_state(batch).unwrap();
    for t in 0..steps {
        let at: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(&v.row(1, t)))).collect();
        let got = model.step(&mut state, &at).unwrap_or_else(|e| panic!("{name}: {e}"));
        for ((n, g), (_, w)) in got.iter().zip(want) {
            let e = rel_error(&g.data, &w.row(1, t).data);
            assert!(e < 1e-4, "{name} B={batch} step {t}: `{n}` differs by {e:e}");
        }
    }
}

#[test]
fn compiled_cpu_matches_the_interpreter() {
    matches_the_interpreter(Codegen::Cranelift);
}

#[cfg(feature = "llvm")]
#[test]
fn llvm_code_matches_the_interpreter() {
    matches_the_interpreter(Codegen::Llvm);
}

/// Every model compiled by `codegen` matches the interpreter in both modes,
/// and over chunks.
fn matches_the_interpreter(codegen: Codegen) {
    for (name, m) in models() {
        let weights = init_weights(&m, 7);
        let mut graph = m.graph.clone();
        seqc_compiler::passes::run_until(&mut graph, None).unwrap();
        let model =
            Model::from_checked_with(m.clone(), codegen).unwrap_or_else(|e| panic!("{name}: {e}")).init_weights(7);
        for (batch, len) in [(1, 1), (2, 5), (3, 17)] {
            let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
            let inputs = random_inputs(&m, &dims, 8);
            let want = interp::run(&graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
            // Parallel, then step mode position by position; then forward_from
            // over a chunk, one position and the rest.
            assert_both_modes_match(&name, &model, &inputs, &want, len);
            let cut = len / 2;
            let part = |lo: usize, hi: usize| -> Vec<(&str, Tensor)> {
                inputs
                    .iter()
                    .map(|(k, v)| {
                        let rows: Vec<interp::Tensor> = (lo..hi).map(|t| v.row(1, t)).collect();
                        (k.as_str(), f32s(&interp::Tensor::join(&rows.iter().collect::<Vec<_>>(), 1, 0)))
                    })
                    .collect()
            };
            let mut state = model.new_state(batch).unwrap();
            let mut chunks = Vec::new();
            for (lo, hi) in [(0, cut), (cut, cut + 1), (cut + 1, len)] {
                if lo < hi {
                    chunks.push(model.forward_from(&mut state, &part(lo, hi)).unwrap());
                }
            }
            for (k, (n, w)) in want.iter().enumerate() {
                let mut pos = 0;
                for c in &chunks {
                    let g = &c[k].1;
                    for t in 0..g.shape[1] {
                        let got: Vec<f32> = (0..g.shape[0])
                            .flat_map(|b| {
                                let inner = g.data.len() / (g.shape[0] * g.shape[1]);
                                g.data[(b * g.shape[1] + t) * inner..(b * g.shape[1] + t + 1) * inner].to_vec()
                            })
                            .collect();
                        let e = rel_error(&got, &w.row(1, pos).data);
                        assert!(e < 1e-4, "{name}: forward_from chunk, `{n}` at {pos} differs by {e:e}");
                        pos += 1;
                    }
                }
                assert_eq!(pos, len);
            }
        }
    }
}

/// With more threads than a scan has independent slices, diagonal linear scans
/// run in chunks along `L` (three launches: chunk ends, carries, chunks); the
/// compiled code of both code generators still matches the interpreter, for
/// lengths no chunk size divides.
#[test]
fn chunked_scans_match_the_interpreter() {
    // Four workers per slice or more: Mamba's small config has 32 slices.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(128).build().unwrap();
    let mut codegens = vec![Codegen::Cranelift];
    if cfg!(feature = "llvm") {
        codegens.push(Codegen::Llvm);
    }
    for (name, m) in models() {
        let weights = init_weights(&m, 7);
        let mut graph = m.graph.clone();
        seqc_compiler::passes::run_until(&mut graph, None).unwrap();
        for &codegen in &codegens {
            let model =
                Model::from_checked_with(m.clone(), codegen).unwrap_or_else(|e| panic!("{name}: {e}")).init_weights(7);
            if !model.kernels().kernels.iter().any(|k| k.name.ends_with(": chunk ends")) {
                continue;
            }
            for len in [37, 50] {
                let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
                let inputs = random_inputs(&m, &dims, 8);
                let want = interp::run(&graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
                pool.install(|| assert_both_modes_match(&format!("{name} in chunks"), &model, &inputs, &want, 0));
            }
        }
    }
}

/// One compiled model serves several threads at once (`Model` is `Send` and
/// `Sync`): forwards run together from four threads give exactly the outputs
/// of a run alone (each run has its own temp memory).
#[test]
fn one_model_serves_several_threads() {
    let m = models().into_iter().find(|(n, _)| n == "hybrid.seq").map(|(_, m)| m).unwrap();
    let model = Model::from_checked(m.clone()).unwrap().init_weights(3);
    let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), 9)]);
    let inputs = random_inputs(&m, &dims, 4);
    let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
    let alone = model.forward(&ins).unwrap();
    std::thread::scope(|s| {
        let runs: Vec<_> =
            (0..4).map(|_| s.spawn(|| (0..5).map(|_| model.forward(&ins).unwrap()).collect::<Vec<_>>())).collect();
        for run in runs {
            for out in run.join().unwrap() {
                assert!(out == alone, "a concurrent run differs from a run alone");
            }
        }
    });
}

/// A state saved mid-sequence and loaded again, or cloned, continues exactly as
/// the original (prefix caching, rollback), for a model with every kind of state:
/// scan states, convolution windows and key/value caches. A state of another
/// batch size or another model is refused, and no positions change nothing.
#[test]
fn states_clone_save_and_restore() {
    let m = models().into_iter().find(|(n, _)| n == "hybrid.seq").map(|(_, m)| m).unwrap();
    let model = Model::from_checked(m.clone()).unwrap().init_weights(3);
    let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), 6)]);
    let inputs = random_inputs(&m, &dims, 4);
    let at =
        |t: usize| -> Vec<(&str, Tensor)> { inputs.iter().map(|(k, v)| (k.as_str(), f32s(&v.row(1, t)))).collect() };
    let mut state = model.new_state(2).unwrap();
    for t in 0..3 {
        model.step(&mut state, &at(t)).unwrap();
    }
    let path = std::env::temp_dir().join(format!("seqc-state-{}.safetensors", std::process::id()));
    state.save(&path).unwrap();
    let mut restored = seqc_runtime::State::load(&path, &model.new_state(2).unwrap()).unwrap();
    let mut cloned = state.clone();
    assert_eq!(restored, state, "a loaded state equals the saved one");
    for t in 3..6 {
        let want = model.step(&mut state, &at(t)).unwrap();
        for other in [&mut restored, &mut cloned] {
            let got = model.step(other, &at(t)).unwrap();
            assert_eq!(got, want, "position {t}");
        }
    }
    assert!(state.tensors().count() >= 4, "scan states, windows and caches are all in the state");
    // A state of another batch size is refused, not misread.
    let mut small = model.new_state(1).unwrap();
    assert!(model.step(&mut small, &at(0)).is_err());
    // No positions: empty outputs, the state as it was.
    let before = state.clone();
    let none: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(k, v)| {
            let mut shape = v.shape.clone();
            shape[1] = 0;
            (k.as_str(), Tensor::new(shape, Vec::new()))
        })
        .collect();
    let outs = model.forward_from(&mut state, &none).unwrap();
    assert_eq!(outs.len(), m.outputs.len(), "every output, empty");
    assert!(outs.iter().all(|(_, t)| t.shape[..2] == [2, 0] && t.data.is_empty()));
    assert_eq!(state, before, "no positions leave the state");
    // Another model's state is refused, by the piece it lacks, and not changed.
    let other = models().into_iter().find(|(n, _)| n == "mamba.seq").map(|(_, m)| m).unwrap();
    let other = Model::from_checked(other).unwrap().init_weights(3);
    let mut foreign = other.new_state(2).unwrap();
    let untouched = foreign.clone();
    let whole: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
    for what in [&at(0), &whole] {
        let e = model.forward_from(&mut foreign, what).unwrap_err().to_string();
        assert!(e.contains("another model's"), "{e}");
        assert_eq!(foreign, untouched);
    }
}

/// Long filters take the FFT path of the convolution call (the small configs
/// above stay under its threshold): Hyena with 96 taps, at lengths below and
/// above the filter's, matches the interpreter's direct convolution.
#[test]
fn long_convolutions_through_the_fft_match_the_interpreter() {
    use seqc_compiler::ir::kernel::{longconv, Launch};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dsl-examples/hyena.seq");
    let (_, r) = seqc_compiler::driver::check_bytes(
        "hyena.seq",
        &std::fs::read(path).unwrap(),
        "d_model=8,n_layer=1,vocab=30,l_max=96",
    );
    let Ok(seqc_compiler::sema::Checked::Model(m)) = r else { panic!("hyena checks") };
    let model = Model::from_checked(m.clone()).unwrap().init_weights(5);
    assert!(model.kernels().launches.iter().any(|l| matches!(l, Launch::CausalConv { .. })));
    let weights = init_weights(&m, 5);
    let mut graph = m.graph.clone();
    seqc_compiler::passes::run_until(&mut graph, None).unwrap();
    for len in [60, 130] {
        assert!(longconv::fft_size(len, 96).is_some(), "L={len} runs through the FFT");
        let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), len)]);
        let inputs = random_inputs(&m, &dims, 9);
        let want = interp::run(&graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
        let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
        let got = model.forward(&ins).unwrap();
        let e = rel_error(&got[0].1.data, &want[0].1.data);
        assert!(e < 1e-4, "L={len}: logits differ by {e:e}");
    }
}

/// With the linear layers' weights held in bf16, every example and case matches
/// the interpreter run on those weights rounded to bf16 (the products widen
/// them exactly and sum in f32), in parallel mode (few rows: the streaming
/// kernel; many: `gemm`) and step mode.
#[test]
fn bf16_weights_match_the_interpreter_on_rounded_weights() {
    // As the runtime rounds: the f64 weights to f32, then to bf16.
    let round = |x: f64| half::bf16::from_f32(x as f32).to_f64();
    for (name, m) in models() {
        let mut weights = init_weights(&m, 7);
        let model = Model::from_checked(m.clone()).unwrap().with_precision(Precision::Bf16).init_weights(7);
        let mut held = 0;
        for (w, t) in weights.iter_mut() {
            if model.weight_precision(w) == Some(Precision::Bf16) {
                t.data.iter_mut().for_each(|x| *x = round(*x));
                held += 1;
            }
        }
        let has_linear = m.graph.nodes.iter().any(|n| matches!(n.op, seqc_compiler::ir::Op::Linear { .. }));
        assert!(!has_linear || held > 0, "{name}: no weight is held in bf16");
        let mut graph = m.graph.clone();
        seqc_compiler::passes::run_until(&mut graph, None).unwrap();
        for (batch, len) in [(1, 3), (3, 17)] {
            let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
            let inputs = random_inputs(&m, &dims, 8);
            let want = interp::run(&graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
            assert_both_modes_match(&name, &model, &inputs, &want, len.min(4));
        }
    }
}

/// A packed batch of sequences of different lengths (one of length 1, one
/// longer than the rest) gives each sequence exactly what running it alone
/// gives, for every example and case.
#[test]
fn packed_batches_match_separate_runs() {
    let mut codegens = vec![Codegen::Cranelift];
    if cfg!(feature = "llvm") {
        codegens.push(Codegen::Llvm);
    }
    // With many workers a packed batch's scans split along `L` (its one row has
    // few independent slices), so chunks start inside sequences and across them.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(128).build().unwrap();
    for codegen in codegens {
        pool.install(|| packed_batch(codegen));
    }
}

fn packed_batch(codegen: Codegen) {
    let lengths = [5usize, 1, 9, 3];
    for (name, m) in models() {
        let name = format!("{name} ({})", codegen.name());
        let model = Model::from_checked_with(m.clone(), codegen).unwrap().init_weights(11);
        let mut alone: Vec<Vec<(String, Tensor)>> = Vec::new();
        let mut packed: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        for (i, &len) in lengths.iter().enumerate() {
            let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
            let inputs = random_inputs(&m, &dims, 20 + i as u64);
            let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
            alone.push(model.forward(&ins).unwrap_or_else(|e| panic!("{name}: {e}")));
            for (k, t) in ins {
                let entry = packed.entry(k.to_string()).or_insert_with(|| (t.shape.clone(), Vec::new()));
                entry.1.extend(t.data);
            }
        }
        let total: usize = lengths.iter().sum();
        let inputs: Vec<(String, Tensor)> = packed
            .into_iter()
            .map(|(k, (mut shape, data))| {
                shape[1] = total;
                (k, Tensor::new(shape, data))
            })
            .collect();
        let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, t)| (k.as_str(), t.clone())).collect();
        // Every example and case runs the packed graph, not the padded batch.
        model.packed_form().unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = model.forward_packed(&ins, &lengths).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (k, (n, g)) in got.iter().enumerate() {
            assert_eq!(g.shape[1], total, "{name}: `{n}` is packed");
            let inner: usize = g.shape[2..].iter().product();
            let mut at = 0;
            for (i, &len) in lengths.iter().enumerate() {
                let want = &alone[i][k].1.data;
                let part = &g.data[at * inner..(at + len) * inner];
                let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
                let err = part.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                assert!(err < 1e-5, "{name}: sequence {i} (length {len}) of `{n}` differs by {err:e}");
                at += len;
            }
        }
    }
}

/// Packed shapes that do not add up are refused.
#[test]
fn packed_batches_check_their_lengths() {
    let (name, m) = models().into_iter().next().unwrap();
    let model = Model::from_checked(m).unwrap().init_weights(1);
    let tokens = Tensor::new(vec![1, 4], vec![1.0; 4]);
    assert!(model.forward_packed(&[("tokens", tokens.clone())], &[2, 3]).is_err(), "{name}: lengths sum to 5, not 4");
    // Empty requests take no positions: the others get what they get alone.
    let with_empty = model.forward_packed(&[("tokens", tokens.clone())], &[0, 2, 0, 2, 0]).unwrap();
    let without = model.forward_packed(&[("tokens", tokens)], &[2, 2]).unwrap();
    assert_eq!(with_empty[0].1.data, without[0].1.data, "{name}: empty requests change nothing");
    let none = model.forward_packed(&[("tokens", Tensor::new(vec![1, 0], vec![]))], &[0]).unwrap();
    assert_eq!(none[0].1.shape[..2], [1, 0], "{name}: no positions, no outputs");
}

/// Requests of 4, 1 and 6 positions of a model with one input `x` `[B, L, 3]`,
/// packed, against each run alone; both through compiled code.
fn packed_against_alone(model: &Model) {
    let lengths = [4usize, 1, 6];
    let total: usize = lengths.iter().sum();
    let x: Vec<f32> = (0..total * 3).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
    let got = model.forward_packed(&[("x", Tensor::new(vec![1, total, 3], x.clone()))], &lengths).unwrap();
    let mut at = 0;
    for &len in &lengths {
        let part = Tensor::new(vec![1, len, 3], x[at * 3..(at + len) * 3].to_vec());
        let want = model.forward(&[("x", part)]).unwrap();
        let err = got[0].1.data[at * 3..(at + len) * 3]
            .iter()
            .zip(&want[0].1.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "the request of {len} at {at} differs by {err:e}");
        at += len;
    }
}

/// A scan that starts from a weight (broadcast over the batch): compiled
/// parallel mode matches the interpreter, and a packed batch restarts each
/// request from the weight.
#[test]
fn scans_from_a_weight_run_compiled_and_packed() {
    let src = b"model learned_start {
  config { d = 3 }
  input x: f32[B, L, d]
  output y: f32[B, L, d]
  weights {
    h0: f32[d] init normal(1.0)
    decay: f32[d] init uniform(0.5, 0.9)
  }
  forward {
    scan l in L {
      state h[b, e] = h0[e]
      h[b, e] = decay[e] * h[b, e] + x[b, l, e]
      z[b, l, e] = h[b, e]
    }
    y = z
  }
}
";
    let (_, checked) = seqc_compiler::driver::check_bytes("learned_start.seq", src, "");
    let Ok(seqc_compiler::sema::Checked::Model(m)) = checked else { panic!("the model checks") };
    let weights = init_weights(&m, 3);
    let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), 5)]);
    let inputs = random_inputs(&m, &dims, 4);
    let want = interp::run(&m.graph, &interp::Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
    let model =
        Model::from_checked(m).unwrap().with_weights(weights.iter().map(|(k, t)| (k.clone(), f32s(t).data)).collect());
    let got = model.forward(&[("x", f32s(&inputs["x"]))]).unwrap();
    let err = rel_error(&got[0].1.data, &want[0].1.data);
    assert!(err < 1e-5, "compiled parallel mode differs from the interpreter by {err:e}");
    model.packed_form().unwrap();
    packed_against_alone(&model);
}

/// A model outside the packed form (here a scan whose update sums over past
/// positions) runs a packed batch padded instead, and says why; each request
/// still gets what running it alone gives.
#[test]
fn packed_batches_outside_the_packed_form_are_padded() {
    let src = b"model walk {
  config { d = 3 }
  input x: f32[B, L, d]
  output y: f32[B, L, d]
  weights {
    decay: f32[d] init uniform(0.5, 0.9)
  }
  forward {
    scan l in L {
      state h[b, e] = 0
      h[b, e] = decay[e] * h[b, e] + sum[j] x[b, j, e] where j <= l
      z[b, l, e] = h[b, e]
    }
    y = z
  }
}
";
    let model = Model::compile_source("walk.seq", src, &Default::default()).unwrap().init_weights(3);
    let why = model.packed_form().unwrap_err();
    assert!(matches!(why, seqc_runtime::Error::Unsupported(_)), "{why:?}");
    let why = why.to_string();
    assert!(why.contains("a scan that walks positions besides its own"), "{why}");
    packed_against_alone(&model);
}

/// Hyena's long convolutions in a packed batch: an FFT per sequence (long
/// enough that the FFT path runs), each sequence what it gives alone.
#[test]
fn packed_long_convolutions_run_per_sequence() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples/hyena.seq");
    let options =
        seqc_runtime::Options { config: "d_model=8,n_layer=1,vocab=30,l_max=128".into(), ..Default::default() };
    let model = Model::compile_file(path, &options).unwrap().init_weights(5);
    let lengths = [70usize, 1, 100];
    assert!(lengths.iter().any(|&n| seqc_compiler::ir::kernel::longconv::fft_size(n, 128).is_some()));
    let total: usize = lengths.iter().sum();
    let ids: Vec<u32> = (0..total as u32).map(|i| i * 7 % 30).collect();
    let got = model.forward_packed(&[("tokens", Tensor::from_ids(vec![1, total], &ids))], &lengths).unwrap();
    let inner: usize = got[0].1.shape[2..].iter().product();
    let mut at = 0;
    for &len in &lengths {
        let want = model.forward(&[("tokens", Tensor::from_ids(vec![1, len], &ids[at..at + len]))]).unwrap();
        let part = &got[0].1.data[at * inner..(at + len) * inner];
        let scale = want[0].1.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = part.iter().zip(&want[0].1.data).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-5, "the sequence of {len} at {at} differs by {err:e}");
        at += len;
    }
}
