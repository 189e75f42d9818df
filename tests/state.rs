//! The step-mode state layout, derived from the graph: snapshots for every example
//! and hand-derived sizes for the hybrid (Mamba states, convolution windows,
//! key/value caches) and for Griffin's windowed attention.

use seqc_compiler::analysis::state::{layout, print, Positions};
use seqc_compiler::driver;
use seqc_compiler::ir::Graph;
use seqc_compiler::sema::Checked;
use std::path::Path;

mod common;

fn graph(file: &str, config: &str) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples").join(file);
    let (_, result) = driver::check_bytes(file, &std::fs::read(path).unwrap(), config);
    let Ok(Checked::Model(mut m)) = result else { panic!("{file} checks") };
    seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
    m.graph
}

#[test]
fn example_state_layouts() {
    insta::glob!("../dsl-examples", "*.seq", |path| {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let g = graph(&file, common::small_config(&file));
        insta::assert_snapshot!(print(&g, &layout(&g)));
    });
}

/// Per sequence, f32: each Mamba layer keeps h [d_inner, d_state] and its causal
/// conv's last d_conv - 1 inputs [3, d_inner]; each attention layer keeps K and V,
/// n_kv_heads * head_dim each, for every past position.
#[test]
fn hybrid_state_matches_hand_derivation() {
    let (d_model, n_group, n_heads, n_kv_heads, d_state) = (512i64, 2i64, 8i64, 2i64, 16i64);
    let g = graph("hybrid.seq", "");
    let entries = layout(&g);
    let (fixed, per_pos) = entries.iter().fold((0, 0), |(f, p), e| {
        let (a, b) = e.elements();
        (f + a, p + b)
    });
    let d_inner = 2 * d_model;
    let mamba_layers = 3 * n_group;
    assert_eq!(fixed, mamba_layers * (d_inner * d_state + 3 * d_inner));
    assert_eq!(per_pos, n_group * 2 * n_kv_heads * (d_model / n_heads));
    assert_eq!(entries.len() as i64, mamba_layers * 2 + n_group * 2);
}

#[test]
fn windowed_attention_keeps_the_window() {
    let g = graph("griffin.seq", "n_group=1,window=64");
    let caches: Vec<_> = layout(&g).into_iter().filter(|e| e.origin.ends_with(".attn")).collect();
    assert_eq!(caches.len(), 2, "keys and values");
    for c in caches {
        assert_eq!(c.positions, Some(Positions::Last(63)));
    }
}
