//! seqc against candle-transformers in the same process, on the same random
//! weights (each `.seq` file's `init`, rounded to f32): Mamba prefill and decode
//! (`dsl-examples/mamba.seq`, d_model 768, 2 layers, vocab 1024: the first row of
//! the performance issue) and Llama prefill (`dsl-examples/transformer.seq`,
//! d_model 768, 12 heads, 1 layer). candle's Mamba has only a step form, so its
//! prefill is one token at a time. Prints times and ratios (higher is better for
//! seqc). Run: `cargo bench --bench vs_candle`.

use candle_core::{DType, Device, Tensor as CTensor};
use candle_nn::VarBuilder;
use seqc_compiler::driver;
use seqc_compiler::init::init_weights;
use seqc_compiler::sema::{Checked, CheckedModel};
use seqc_runtime::{Codegen, Model, Tensor};
use std::collections::HashMap;
use std::time::Instant;

fn checked(file: &str, config: &str) -> CheckedModel {
    let path = format!("{}/dsl-examples/{file}", env!("CARGO_MANIFEST_DIR"));
    match driver::check_bytes(file, &std::fs::read(path).unwrap(), config).1 {
        Ok(Checked::Model(m)) => m,
        _ => panic!("{file} checks"),
    }
}

/// The same f32 weights for both: seqc's by name, candle's as a VarBuilder.
fn shared(m: &CheckedModel) -> (HashMap<String, Vec<f32>>, HashMap<String, CTensor>) {
    let mut ours = HashMap::new();
    let mut theirs = HashMap::new();
    for (name, t) in init_weights(m, 5) {
        let data: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
        theirs.insert(name.clone(), CTensor::from_vec(data.clone(), t.shape.clone(), &Device::Cpu).unwrap());
        ours.insert(name, data);
    }
    (ours, theirs)
}

/// Seconds per call, the best of `runs` (after one warm-up).
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The model compiled by each code generator, on the same weights.
fn compiled(m: &CheckedModel, weights: &HashMap<String, Vec<f32>>) -> Vec<(&'static str, Model)> {
    [Codegen::Cranelift, Codegen::Llvm]
        .into_iter()
        .map(|c| (c.name(), Model::from_checked_with(m.clone(), c).unwrap().with_weights(weights.clone())))
        .collect()
}

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

fn main() {
    println!("{:<40} {:>12} {:>12} {:>8}", "", "seqc", "candle", "ratio");

    // Mamba.
    let (d_model, n_layer, vocab) = (768, 2, 1024);
    let m = checked("mamba.seq", &format!("d_model={d_model},n_layer={n_layer},vocab={vocab}"));
    let (ours, theirs) = shared(&m);
    let models = compiled(&m, &ours);
    let model = &models[0].1; // decode is products: one code generator suffices
    use candle_transformers::models::mamba::{Config, Model as CMamba, State};
    let cfg = Config { d_model, n_layer, vocab_size: vocab, pad_vocab_size_multiple: 8 };
    let candle = CMamba::new(&cfg, VarBuilder::from_tensors(theirs, DType::F32, &Device::Cpu).pp("backbone")).unwrap();
    for len in [256, 1024] {
        let ids = tokens(len, vocab);
        let theirs = best(1, || {
            let mut state = State::new(1, &cfg, DType::F32, &Device::Cpu).unwrap();
            for &t in &ids {
                candle.forward(&CTensor::new(&[t], &Device::Cpu).unwrap(), &mut state).unwrap();
            }
        });
        for (codegen, model) in &models {
            let ours = best(3, || {
                model.forward(&[("tokens", Tensor::from_ids(vec![1, len], &ids))]).unwrap();
            });
            let (a, b) = (len as f64 / ours, len as f64 / theirs);
            let what = format!("mamba prefill L={len} ({codegen})");
            println!("{what:<40} {a:>8.0} t/s {b:>8.0} t/s {:>7.1}x", a / b);
        }
    }
    let steps = 64;
    let ids = tokens(steps, vocab);
    let ours = best(3, || {
        let mut state = model.new_state(1).unwrap();
        for &t in &ids {
            model.step(&mut state, &[("tokens", Tensor::from_ids(vec![1, 1], &[t]))]).unwrap();
        }
    }) / steps as f64;
    let theirs = best(3, || {
        let mut state = State::new(1, &cfg, DType::F32, &Device::Cpu).unwrap();
        for &t in &ids {
            candle.forward(&CTensor::new(&[t], &Device::Cpu).unwrap(), &mut state).unwrap();
        }
    }) / steps as f64;
    println!("{:<40} {:>9.3} ms {:>9.3} ms {:>7.1}x", "mamba decode B=1", ours * 1e3, theirs * 1e3, theirs / ours);

    // Llama (attention).
    let (d_model, n_heads, d_ff, vocab) = (768, 12, 2048, 1000);
    let config =
        format!("d_model={d_model},n_layer=1,n_heads={n_heads},n_kv_heads={n_heads},d_ff={d_ff},vocab={vocab}");
    let m = checked("transformer.seq", &config);
    let (ours, theirs) = shared(&m);
    let models = compiled(&m, &ours);
    use candle_transformers::models::llama::{Cache, Config as LConfig, Llama};
    for len in [1024, 8192] {
        let cfg = LConfig {
            hidden_size: d_model,
            intermediate_size: d_ff,
            vocab_size: vocab,
            num_hidden_layers: 1,
            num_attention_heads: n_heads,
            num_key_value_heads: n_heads,
            use_flash_attn: false,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            bos_token_id: None,
            eos_token_id: None,
            rope_scaling: None,
            max_position_embeddings: len,
            tie_word_embeddings: false,
        };
        let vb = VarBuilder::from_tensors(theirs.clone(), DType::F32, &Device::Cpu);
        let candle = Llama::load(vb, &cfg).unwrap();
        let ids = tokens(len, vocab);
        let theirs = best(2, || {
            let mut cache = Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
            let x = CTensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            candle.forward(&x, 0, &mut cache).unwrap();
        });
        for (codegen, model) in &models {
            let ours = best(2, || {
                model.forward(&[("tokens", Tensor::from_ids(vec![1, len], &ids))]).unwrap();
            });
            let (a, b) = (len as f64 / ours, len as f64 / theirs);
            let what = format!("llama prefill L={len} (1 layer, {codegen})");
            println!("{what:<40} {a:>8.0} t/s {b:>8.0} t/s {:>7.1}x", a / b);
        }
    }
    println!("(candle's Llama returns the last position's logits; seqc computes them at every position)");
}
