//! Runs a hybrid model (Mamba layers and attention layers) on a packed batch of
//! requests of different lengths, as a server would: one call for all of them,
//! inputs and outputs packed back to back (`[1, sum(lengths)]`), then checks each
//! request against running it alone.
//!
//! `cargo run --release -p seqc-runtime --example packed_hybrid [-- WEIGHTS.safetensors]`
//! (random weights from the file's `init` when none are given; a small config).

use seqc_runtime::{Model, Options, Tensor};
use std::time::Instant;

fn main() -> Result<(), seqc_runtime::Error> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../dsl-examples/hybrid.seq");
    let options = Options { config: "d_model=128,n_group=2,vocab=1000".into(), ..Default::default() };
    let model = Model::compile_file(file, &options)?;
    let model = match std::env::args().nth(1) {
        Some(weights) => model.load_weights(weights)?,
        None => model.init_weights(0),
    };
    // Three requests, packed back to back.
    let requests: Vec<Vec<u32>> = [37usize, 5, 120]
        .iter()
        .enumerate()
        .map(|(r, &n)| (0..n).map(|i| ((i * 31 + r * 7) % 1000) as u32).collect())
        .collect();
    let lengths: Vec<usize> = requests.iter().map(Vec::len).collect();
    let packed: Vec<u32> = requests.concat();
    let tokens = Tensor::from_ids(vec![1, packed.len()], &packed);

    let t0 = Instant::now();
    let out = model.forward_packed(&[("tokens", tokens)], &lengths)?;
    let batched = t0.elapsed();
    let logits = &out[0].1;
    let vocab = *logits.shape.last().expect("logits have a vocabulary axis");

    let mut at = 0;
    for (r, request) in requests.iter().enumerate() {
        let alone = model.forward(&[("tokens", Tensor::from_ids(vec![1, request.len()], request))])?;
        let mine = &logits.data[at * vocab..(at + request.len()) * vocab];
        let diff = mine.iter().zip(&alone[0].1.data).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let last = &mine[(request.len() - 1) * vocab..];
        println!(
            "request {r}: {} tokens, next token {}, largest difference from running alone {diff:.1e}",
            request.len(),
            argmax(last)
        );
        at += request.len();
    }
    println!(
        "{} tokens in {} requests, one packed call: {:.1} ms",
        packed.len(),
        requests.len(),
        batched.as_secs_f64() * 1e3
    );
    Ok(())
}

fn argmax(xs: &[f32]) -> u32 {
    xs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}
