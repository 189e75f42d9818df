//! Generates tokens one at a time from a Mamba model with a constant-size state:
//! the prompt is consumed by `forward_from`, then each new token by `step`, and
//! the state never grows.
//!
//! `cargo run --release -p seqc-runtime --example stream_mamba [-- WEIGHTS.safetensors]`
//! (random weights from the file's `init` when none are given; a small config).

use seqc_runtime::{Model, Options, Tensor};

fn main() -> Result<(), seqc_runtime::Error> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../dsl-examples/mamba.seq");
    let options = Options { config: "d_model=256,n_layer=4,vocab=1000".into(), ..Default::default() };
    let model = Model::compile_file(file, &options)?;
    let model = match std::env::args().nth(1) {
        Some(weights) => model.load_weights(weights)?,
        None => model.init_weights(0),
    };
    let prompt = [1u32, 17, 42, 7];
    let mut state = model.new_state(1)?;
    let out = model.forward_from(&mut state, &[("tokens", Tensor::from_ids(vec![1, prompt.len()], &prompt))])?;
    let logits = &out[0].1;
    let vocab = *logits.shape.last().expect("logits have a vocabulary axis");
    let mut next = argmax(&logits.data[logits.data.len() - vocab..]);
    let bytes = state.bytes();
    let mut generated = Vec::new();
    for _ in 0..16 {
        generated.push(next);
        let out = model.step(&mut state, &[("tokens", Tensor::from_ids(vec![1, 1], &[next]))])?;
        next = argmax(&out[0].1.data);
        assert_eq!(state.bytes(), bytes, "a Mamba state does not grow");
    }
    println!("prompt {prompt:?} -> {generated:?}");
    println!("state: {} bytes at position {}, the same as after the prompt", state.bytes(), state.position());
    Ok(())
}

fn argmax(xs: &[f32]) -> u32 {
    xs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}
