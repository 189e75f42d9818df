//! The reference interpreter on every example: outputs are finite, and causal by
//! construction checked numerically (a prefix of the input gives the prefix of the
//! output); and on small programs whose results are known independently.

use seqc_compiler::diag::{render_text, ColorChoice};
use seqc_compiler::driver;
use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::ir::verify::verify;
use seqc_compiler::sema::{Checked, CheckedModel};
use std::collections::HashMap;

mod common;
use common::SMALL;

fn model(file: &str, src: &[u8], config: &str) -> CheckedModel {
    let (session, result) = driver::check_bytes(file, src, config);
    match result {
        Ok(Checked::Model(m)) => m,
        Ok(_) => panic!("{file}: no model"),
        Err(d) => panic!("{}", render_text(&session.sources, &d, ColorChoice::Never)),
    }
}

fn example(name: &str, config: &str) -> CheckedModel {
    let path = format!("{}/dsl-examples/{name}", env!("CARGO_MANIFEST_DIR"));
    model(name, &std::fs::read(&path).unwrap(), config)
}

fn run(
    m: &CheckedModel,
    dims: &HashMap<String, usize>,
    inputs: &HashMap<String, Tensor>,
    weights: &HashMap<String, Tensor>,
) -> Vec<(String, Tensor)> {
    interp::run(&m.graph, &Bindings { dims, inputs, weights }).expect("runs")
}

/// The first `len` positions (axis 1) of a `[B, L, ...]` tensor.
fn prefix(t: &Tensor, len: usize) -> Tensor {
    let (b, l) = (t.shape[0], t.shape[1]);
    let inner: usize = t.shape[2..].iter().product();
    let mut data = Vec::new();
    for bi in 0..b {
        data.extend_from_slice(&t.data[(bi * l) * inner..(bi * l + len) * inner]);
    }
    let mut shape = t.shape.clone();
    shape[1] = len;
    Tensor::new(shape, data)
}

#[test]
fn every_example_is_covered() {
    let n = std::fs::read_dir(format!("{}/dsl-examples", env!("CARGO_MANIFEST_DIR"))).unwrap().count();
    assert_eq!(n, SMALL.len(), "add the new example to SMALL");
}

#[test]
fn examples_run_finite_and_causal() {
    for (name, config) in SMALL {
        let m = example(name, config);
        verify(&m.graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let weights = init_weights(&m, 7);
        let (full, short) = (6, 4);
        let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), full)]);
        let inputs = random_inputs(&m, &dims, 11);
        let out = run(&m, &dims, &inputs, &weights);
        let short_dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), short)]);
        let short_inputs: HashMap<String, Tensor> = inputs.iter().map(|(k, v)| (k.clone(), prefix(v, short))).collect();
        let out_short = run(&m, &short_dims, &short_inputs, &weights);
        for ((n, y), (_, ys)) in out.iter().zip(&out_short) {
            assert!(y.data.iter().all(|v| v.is_finite()), "{name}: `{n}` has a non-finite value");
            assert!(y.data.iter().any(|v| *v != 0.0), "{name}: `{n}` is all zeros");
            let yp = prefix(y, short);
            let diff = yp.data.iter().zip(&ys.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-9, "{name}: output `{n}` at early positions depends on later inputs ({diff:e})");
        }
    }
}

fn tiny(src: &str) -> CheckedModel {
    model("tiny.seq", src.as_bytes(), "")
}

fn input(shape: Vec<usize>, f: impl Fn(usize) -> f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape, (0..n).map(f).collect())
}

#[test]
fn a_scan_accumulates() {
    let m = tiny(
        "model m {\n  input x: f32[B, L, 3]\n  output y: f32[B, L, 3]\n  forward {\n    scan l in L {\n      state h[b, e] = 0\n      h[b, e] = 0.5 * h[b, e] + x[b, l, e]\n      o[b, l, e] = h[b, e]\n    }\n    y = o\n  }\n}\n",
    );
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), 5)]);
    let x = input(vec![1, 5, 3], |i| (i % 7) as f64 - 2.0);
    let out = run(&m, &dims, &HashMap::from([("x".to_string(), x.clone())]), &HashMap::new());
    let y = &out[0].1;
    for e in 0..3 {
        let mut h = 0.0;
        for l in 0..5 {
            h = 0.5 * h + x.data[l * 3 + e];
            assert!((y.data[l * 3 + e] - h).abs() < 1e-12);
        }
    }
}

#[test]
fn masked_attention_matches_a_direct_computation() {
    let m = tiny(
        "model m {\n  input q: f32[B, L, 4]\n  input v: f32[B, L, 4]\n  output y: f32[B, L, 4]\n  forward {\n    let s[b, i, j] = sum[e] q[b, i, e] * q[b, j, e] / 2 where j <= i && i - j < 3\n    let p[b, i, j] = softmax[j] s[b, i, j]\n    let o[b, i, e] = sum[j] p[b, i, j] * v[b, j, e]\n    y = o\n  }\n}\n",
    );
    let len = 6;
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
    let q = input(vec![1, len, 4], |i| ((i * 37 % 11) as f64 - 5.0) / 4.0);
    let v = input(vec![1, len, 4], |i| ((i * 13 % 7) as f64 - 3.0) / 2.0);
    let inputs = HashMap::from([("q".to_string(), q.clone()), ("v".to_string(), v.clone())]);
    let y = &run(&m, &dims, &inputs, &HashMap::new())[0].1;
    for i in 0..len {
        let allowed: Vec<usize> = (0..=i).filter(|j| i - j < 3).collect();
        let scores: Vec<f64> =
            allowed.iter().map(|&j| (0..4).map(|e| q.data[i * 4 + e] * q.data[j * 4 + e]).sum::<f64>() / 2.0).collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
        for e in 0..4 {
            let want: f64 = allowed.iter().zip(&scores).map(|(&j, s)| (s - max).exp() / z * v.data[j * 4 + e]).sum();
            assert!((y.data[i * 4 + e] - want).abs() < 1e-12, "position {i}: {} vs {want}", y.data[i * 4 + e]);
        }
    }
}

#[test]
fn builtin_layers_match_their_definitions() {
    let m = tiny(
        "model m {\n  input x: f32[B, L, 2]\n  output y: f32[B, L, 2]\n  weights {\n    conv: conv1d(2, width = 3)\n    norm: rmsnorm(2, eps = 0.5)\n  }\n  forward {\n    y = norm(conv(x))\n  }\n}\n",
    );
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), 4)]);
    let x = input(vec![1, 4, 2], |i| i as f64 + 1.0);
    let weights = HashMap::from([
        ("conv.weight".to_string(), input(vec![2, 1, 3], |i| [1.0, 2.0, 3.0, -1.0, 0.5, 2.0][i])),
        ("conv.bias".to_string(), input(vec![2], |i| [0.25, -0.5][i])),
        ("norm.weight".to_string(), input(vec![2], |i| [2.0, 3.0][i])),
    ]);
    let y = &run(&m, &dims, &HashMap::from([("x".to_string(), x.clone())]), &weights)[0].1;
    for l in 0..4 {
        // causal: taps at l-2, l-1, l with weights w[c, 0, 0..3]
        let conv = |c: usize| {
            let w = &weights["conv.weight"].data[c * 3..c * 3 + 3];
            let mut acc = weights["conv.bias"].data[c];
            for (k, wk) in w.iter().enumerate() {
                let src = l as i64 - 2 + k as i64;
                if src >= 0 {
                    acc += wk * x.data[src as usize * 2 + c];
                }
            }
            acc
        };
        let (a, b) = (conv(0), conv(1));
        let scale = 1.0 / ((a * a + b * b) / 2.0 + 0.5_f64).sqrt();
        assert!((y.data[l * 2] - a * scale * 2.0).abs() < 1e-12);
        assert!((y.data[l * 2 + 1] - b * scale * 3.0).abs() < 1e-12);
    }
}

#[test]
fn weights_are_checked_by_name_and_shape() {
    let m = example("mamba.seq", "d_model=16,n_layer=1,vocab=50,d_state=4");
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), 2)]);
    let inputs = random_inputs(&m, &dims, 1);
    let mut weights = init_weights(&m, 1);
    weights.remove("backbone.norm_f.weight");
    let err = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap_err();
    assert_eq!(err.to_string(), "missing weight `backbone.norm_f.weight`");
    weights.insert("backbone.norm_f.weight".into(), Tensor::zeros(vec![17]));
    let err = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap_err();
    assert_eq!(err.to_string(), "weight `backbone.norm_f.weight` has shape [17], expected [16]");
}

#[test]
fn init_is_deterministic_and_follows_declarations() {
    let m = example("mamba.seq", "d_model=16,n_layer=1,vocab=50,d_state=4");
    let a = init_weights(&m, 3);
    let b = init_weights(&m, 3);
    let c = init_weights(&m, 4);
    assert_eq!(a, b);
    assert_ne!(a["backbone.embedding.weight"], c["backbone.embedding.weight"]);
    // A_log[d, n] = log(n + 1); D = 1; norms are ones.
    let a_log = &a["backbone.layers.0.mixer.A_log"];
    assert_eq!(a_log.shape, vec![32, 4]);
    for (i, v) in a_log.data.iter().enumerate() {
        assert!((v - ((i % 4) as f64 + 1.0).ln()).abs() < 1e-15);
    }
    assert!(a["backbone.layers.0.mixer.D"].data.iter().all(|&v| v == 1.0));
    assert!(a["backbone.norm_f.weight"].data.iter().all(|&v| v == 1.0));
    // linear: uniform within +-1/sqrt(fan_in)
    let w = &a["backbone.layers.0.mixer.in_proj.weight"];
    assert!(w.data.iter().all(|v| v.abs() <= 0.25));
}

/// Step mode, keeping only the derived state, gives the parallel outputs position
/// by position, on every example after all passes (Griffin's window of 2 is
/// shorter than the sequence, so its rings evict).
#[test]
fn step_mode_equals_parallel_mode() {
    use seqc_compiler::ir::step::{step, StepState};
    use seqc_compiler::passes::step_derivation::derive;
    for (name, config) in SMALL {
        let mut m = example(name, config);
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
        let weights = init_weights(&m, 5);
        let (batch, len) = (2, 6);
        let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
        let inputs = random_inputs(&m, &dims, 9);
        let parallel = run(&m, &dims, &inputs, &weights);
        let step_graph = derive(&m.graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut state = StepState::new(&step_graph, batch).unwrap();
        for t in 0..len {
            let at_t: HashMap<String, Tensor> = inputs.iter().map(|(k, v)| (k.clone(), position(v, t))).collect();
            let outs = step(&step_graph, &mut state, &at_t, &weights, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            for ((n, y), (_, p)) in outs.iter().zip(&parallel) {
                let want = position(p, t);
                assert_eq!(y.shape, want.shape, "{name}: `{n}`");
                let diff = y.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(diff < 1e-9, "{name}: `{n}` at position {t} differs from parallel mode by {diff:e}");
            }
        }
    }
}

/// Position `t` (axis 1) of a `[B, L, ...]` tensor, keeping the axis.
fn position(x: &Tensor, t: usize) -> Tensor {
    let (b, l) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let mut data = Vec::new();
    for bi in 0..b {
        data.extend_from_slice(&x.data[(bi * l + t) * inner..(bi * l + t + 1) * inner]);
    }
    let mut shape = x.shape.clone();
    shape[1] = 1;
    Tensor::new(shape, data)
}
