//! Cross-checks against implementations we did not write: candle-transformers'
//! Mamba (state-spaces layout, one token at a time) and Llama (Hugging Face
//! layout), on the same weights, against `dsl-examples/mamba.seq` and
//! `dsl-examples/transformer.seq` run by the reference interpreter and by the
//! compiled CPU path (the runtime, parallel and step mode).

use candle_core::{DType, Device, Tensor as CTensor};
use candle_nn::VarBuilder;
use seqc_compiler::driver;
use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::sema::{Checked, CheckedModel};
use std::collections::HashMap;

fn model(file: &str, config: &str) -> CheckedModel {
    let path = format!("{}/dsl-examples/{file}", env!("CARGO_MANIFEST_DIR"));
    match driver::check_bytes(file, &std::fs::read(path).unwrap(), config).1 {
        Ok(Checked::Model(m)) => m,
        _ => panic!("{file} checks"),
    }
}

/// Weights rounded to f32, as candle holds them, so both sides see the same values.
fn shared_weights(m: &CheckedModel, seed: u64) -> (HashMap<String, Tensor>, HashMap<String, CTensor>) {
    let mut ours = init_weights(m, seed);
    let mut theirs = HashMap::new();
    for (name, t) in ours.iter_mut() {
        let data: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
        t.data = data.iter().map(|&v| v as f64).collect();
        theirs.insert(name.clone(), CTensor::from_vec(data, t.shape.clone(), &Device::Cpu).unwrap());
    }
    (ours, theirs)
}

/// The compiled CPU path's logits on the same weights: whole sequence, one
/// position at a time, and the positions from a state in two chunks.
fn compiled(m: &CheckedModel, weights: &HashMap<String, Tensor>, inputs: &HashMap<String, Tensor>) -> [Vec<f64>; 3] {
    let model = seqc_runtime::Model::from_checked(m.clone())
        .unwrap()
        .with_weights(weights.iter().map(|(k, t)| (k.clone(), t.data.iter().map(|&x| x as f32).collect())).collect());
    let tokens = &inputs["tokens"];
    let t = seqc_runtime::Tensor::new(tokens.shape.clone(), tokens.data.iter().map(|&x| x as f32).collect());
    let parallel = model.forward(&[("tokens", t.clone())]).unwrap().remove(0).1;
    let mut state = model.new_state(1).unwrap();
    let step = model.forward_steps(&mut state, &[("tokens", t.clone())]).unwrap().remove(0).1;
    let mut state = model.new_state(1).unwrap();
    let len = t.shape[1];
    let mut chunks = Vec::new();
    for (lo, hi) in [(0, len / 2), (len / 2, len)] {
        let part = seqc_runtime::Tensor::new(vec![1, hi - lo], t.data[lo..hi].to_vec());
        chunks.extend(model.forward_from(&mut state, &[("tokens", part)]).unwrap().remove(0).1.data);
    }
    let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
    [wide(parallel.data), wide(step.data), wide(chunks)]
}

fn relative_error(ours: &[f64], theirs: &[f32]) -> f64 {
    let scale = ours.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-12);
    ours.iter().zip(theirs).map(|(a, b)| (a - *b as f64).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn mamba_matches_candle() {
    let (d_model, n_layer, vocab, len) = (32, 2, 64, 7);
    let m = model("mamba.seq", &format!("d_model={d_model},n_layer={n_layer},vocab={vocab}"));
    let (ours_w, theirs_w) = shared_weights(&m, 21);
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
    let inputs = random_inputs(&m, &dims, 22);
    let ours = &interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &ours_w }).unwrap()[0].1;

    use candle_transformers::models::mamba::{Config, Model, State};
    let cfg = Config { d_model, n_layer, vocab_size: vocab, pad_vocab_size_multiple: 8 };
    let vb = VarBuilder::from_tensors(theirs_w, DType::F32, &Device::Cpu);
    let candle = Model::new(&cfg, vb.pp("backbone")).unwrap();
    let mut state = State::new(1, &cfg, DType::F32, &Device::Cpu).unwrap();
    let [parallel, step, chunks] = compiled(&m, &ours_w, &inputs);
    let (mut worst, mut worst_compiled): (f64, f64) = (0.0, 0.0);
    for t in 0..len {
        let token = inputs["tokens"].data[t] as u32;
        let logits = candle.forward(&CTensor::new(&[token], &Device::Cpu).unwrap(), &mut state).unwrap();
        let theirs: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let row = &ours.data[t * vocab..(t + 1) * vocab];
        worst = worst.max(relative_error(row, &theirs));
        for logits in [&parallel, &step, &chunks] {
            let e = relative_error(&logits[t * vocab..(t + 1) * vocab], &theirs);
            worst_compiled = worst_compiled.max(e);
        }
    }
    eprintln!("mamba: max relative difference to candle-transformers over {len} positions: {worst:e} (interpreter), {worst_compiled:e} (compiled)");
    assert!(worst < 1e-4, "mamba differs from candle-transformers by {worst:e}");
    assert!(worst_compiled < 1e-4, "compiled mamba differs from candle-transformers by {worst_compiled:e}");
}

#[test]
fn llama_matches_candle() {
    let (d_model, n_layer, n_heads, n_kv_heads, d_ff, vocab, len) = (32, 2, 4, 2, 64, 64, 6);
    let m = model(
        "transformer.seq",
        &format!(
            "d_model={d_model},n_layer={n_layer},n_heads={n_heads},n_kv_heads={n_kv_heads},d_ff={d_ff},vocab={vocab}"
        ),
    );
    let (ours_w, theirs_w) = shared_weights(&m, 31);
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
    let inputs = random_inputs(&m, &dims, 32);
    let ours = &interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &ours_w }).unwrap()[0].1;

    use candle_transformers::models::llama::{Cache, Config, Llama};
    let cfg = Config {
        hidden_size: d_model,
        intermediate_size: d_ff,
        vocab_size: vocab,
        num_hidden_layers: n_layer,
        num_attention_heads: n_heads,
        num_key_value_heads: n_kv_heads,
        use_flash_attn: false,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
    };
    let vb = VarBuilder::from_tensors(theirs_w, DType::F32, &Device::Cpu);
    let candle = Llama::load(vb, &cfg).unwrap();
    let tokens: Vec<u32> = inputs["tokens"].data.iter().map(|&v| v as u32).collect();
    let [parallel, step, chunks] = compiled(&m, &ours_w, &inputs);
    let (mut worst, mut worst_compiled): (f64, f64) = (0.0, 0.0);
    // candle returns the last position's logits: run each prefix.
    for t in 0..len {
        let mut cache = Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
        let prefix = CTensor::new(&tokens[..=t], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits = candle.forward(&prefix, 0, &mut cache).unwrap();
        let theirs: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let row = &ours.data[t * vocab..(t + 1) * vocab];
        worst = worst.max(relative_error(row, &theirs));
        for logits in [&parallel, &step, &chunks] {
            worst_compiled = worst_compiled.max(relative_error(&logits[t * vocab..(t + 1) * vocab], &theirs));
        }
    }
    eprintln!("llama: max relative difference to candle-transformers over {len} positions: {worst:e} (interpreter), {worst_compiled:e} (compiled)");
    assert!(worst < 1e-4, "llama differs from candle-transformers by {worst:e}");
    assert!(worst_compiled < 1e-4, "compiled llama differs from candle-transformers by {worst_compiled:e}");
}
