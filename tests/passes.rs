//! The passes on every example and every case in `tests/cases/`: the graph stays
//! valid after each pass, and the reference interpreter's outputs do not change.
//! Cases also snapshot the graph after each pass.

use seqc_compiler::diag::{render_text, ColorChoice};
use seqc_compiler::driver;
use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::ir::print::print;
use seqc_compiler::ir::verify::verify;
use seqc_compiler::ir::{Graph, Op};
use seqc_compiler::passes::PASSES;
use seqc_compiler::sema::{Checked, CheckedModel};
use std::collections::HashMap;
use std::path::Path;

mod common;

fn model(name: &str, src: &[u8], config: &str) -> CheckedModel {
    let (session, result) = driver::check_bytes(name, src, config);
    match result {
        Ok(Checked::Model(m)) => m,
        Ok(_) => panic!("{name}: no model"),
        Err(d) => panic!("{}", render_text(&session.sources, &d, ColorChoice::Never)),
    }
}

fn outputs(g: &Graph, m: &CheckedModel) -> Vec<(String, Tensor)> {
    let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), 5)]);
    let weights = init_weights(m, 3);
    let inputs = random_inputs(m, &dims, 4);
    interp::run(g, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).expect("runs")
}

fn assert_close(name: &str, pass: &str, a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    for ((n, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.shape, y.shape);
        for (u, v) in x.data.iter().zip(&y.data) {
            let tol = 1e-12 * u.abs().max(1.0);
            assert!((u - v).abs() <= tol, "{name}: pass `{pass}` changed output `{n}`: {u} vs {v}");
        }
    }
}

/// Runs every pass, checking validity and outputs after each; returns the text
/// of the graph after each pass.
fn run_passes(name: &str, m: &CheckedModel) -> String {
    let mut g = m.graph.clone();
    verify(&g).unwrap_or_else(|e| panic!("{name}: lowered graph: {e}"));
    let reference = outputs(&g, m);
    let mut text = format!("=== lower\n{}", print(&g));
    for pass in PASSES {
        (pass.run)(&mut g);
        verify(&g).unwrap_or_else(|e| panic!("{name}: after `{}`: {e}", pass.name));
        assert_close(name, pass.name, &reference, &outputs(&g, m));
        text.push_str(&format!("=== after {}\n{}", pass.name, print(&g)));
    }
    text
}

#[test]
fn examples_after_each_pass() {
    insta::glob!("../dsl-examples", "*.seq", |path| {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = model(&file, &std::fs::read(path).unwrap(), common::small_config(&file));
        insta::assert_snapshot!(run_passes(&file, &m));
    });
}

#[test]
fn cases_after_each_pass() {
    insta::glob!("cases/*.seq", |path| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = model(&name, &std::fs::read(path).unwrap(), "");
        insta::assert_snapshot!(run_passes(&name, &m));
    });
}

fn after_all(file: &str) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(file);
    let mut m = model(file, &std::fs::read(&path).unwrap(), "");
    seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
    m.graph
}

#[test]
fn scan_fusion_leaves_no_wide_tensor() {
    let g = after_all("scan_fusion_materialized.seq");
    for (i, t) in g.types.iter().enumerate() {
        let defined = g.nodes.iter().any(|n| n.results.iter().any(|r| r.0 as usize == i));
        assert!(!(defined && t.shape.len() == 4), "a [B, L, D, N] value remains: {t}\n{}", print(&g));
    }
}

#[test]
fn recurrences_are_classified() {
    use seqc_compiler::ir::ops::Recurrence;
    let g = after_all("recurrences.seq");
    let scan = g.nodes.iter().find_map(|n| if let Op::Scan(s) = &n.op { Some(s) } else { None }).unwrap();
    assert_eq!(
        scan.recurrence,
        vec![
            Recurrence::Linear { time_invariant: false },
            Recurrence::Linear { time_invariant: true },
            Recurrence::Nonlinear
        ]
    );
    let mamba = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples/s4d.seq");
    let mut m = model("s4d.seq", &std::fs::read(mamba).unwrap(), common::small_config("s4d.seq"));
    seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
    let kinds: Vec<Recurrence> = m
        .graph
        .nodes
        .iter()
        .filter_map(|n| if let Op::Scan(s) = &n.op { Some(s.recurrence.clone()) } else { None })
        .flatten()
        .collect();
    assert!(kinds.iter().all(|k| *k == Recurrence::Linear { time_invariant: true }), "S4D is LTI: {kinds:?}");
}

/// After attention fusion, no value with two sequence axes (the `[B, H, L, L]`
/// scores) remains, and each attention layer is one `attention` op.
#[test]
fn attention_is_fused() {
    for (file, layers) in [("transformer.seq", 1), ("hybrid.seq", 1), ("griffin.seq", 1)] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples").join(file);
        let mut m = model(file, &std::fs::read(&path).unwrap(), common::small_config(file));
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
        let g = &m.graph;
        let fused = g.nodes.iter().filter(|n| matches!(n.op, Op::Attention(_))).count();
        assert_eq!(fused, layers, "{file}:\n{}", print(g));
        for n in &g.nodes {
            for r in &n.results {
                let seq_axes = g.ty(*r).shape.iter().filter(|d| d.is_seq()).count();
                assert!(seq_axes <= 1, "{file}: {} stores {}\n{}", n.op.name(), g.ty(*r), print(g));
            }
        }
    }
}
