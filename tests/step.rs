//! Step derivation on every example and every case in `tests/cases/`, from the
//! graph as lowered and after all passes: the step graph is valid and round-trips
//! through its text form, running it one position at a time (carrying its next
//! states) gives the parallel outputs, and the state it carries is exactly the
//! derived layout. So does the chunk graph, several positions at a time, from
//! and to the same state. The step graph after all passes is snapshotted.

use seqc_compiler::analysis::state::layout;
use seqc_compiler::diag::{render_text, ColorChoice};
use seqc_compiler::driver;
use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::ir::step::{chunk, step, StepState};
use seqc_compiler::ir::{parse::parse, print::print, verify::verify, Graph};
use seqc_compiler::passes::step_derivation::{derive, derive_chunk};
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

/// Position `t` (axis 1) of a `[B, L, ...]` tensor, keeping the axis.
fn position(x: &Tensor, t: usize) -> Tensor {
    x.row(1, t)
}

/// Checks the step graph of `g` against `g` in parallel mode; returns its text.
fn check(name: &str, m: &CheckedModel, g: &Graph) -> String {
    let step_graph = derive(g).unwrap_or_else(|e| panic!("{name}: {e}"));
    verify(&step_graph).unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = print(&step_graph);
    let reparsed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    assert_eq!(print(&reparsed), text, "{name}: the step graph's text form round-trips");

    // Seven positions: longer than every ring in the small configs (Griffin's
    // window of 2, conv windows of 3, the case's ring of 4), so rings evict.
    let (batch, len) = (2, 7);
    let weights = init_weights(m, 5);
    let dims = HashMap::from([("B".to_string(), batch), ("L".to_string(), len)]);
    let inputs = random_inputs(m, &dims, 9);
    let parallel = interp::run(g, &Bindings { dims: &dims, inputs: &inputs, weights: &weights }).unwrap();
    let entries = layout(g);
    let (fixed, per_pos) = entries.iter().map(|e| e.elements()).fold((0, 0), |(a, b), (f, p)| (a + f, b + p));
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
        let held = batch as i64 * (fixed + per_pos * (t as i64 + 1));
        assert_eq!(state.elements() as i64, held, "{name}: the state is the layout's, after {} positions", t + 1);
    }

    // The chunk graph, from one state in chunks of 2, 1, a step and 3 (shorter
    // and longer than the rings): parallel mode's outputs at every position, and
    // the step graph's state after each chunk.
    let chunk_graph = derive_chunk(g).unwrap_or_else(|e| panic!("{name}: {e}"));
    verify(&chunk_graph).unwrap_or_else(|e| panic!("{name}: {e}"));
    let chunk_text = print(&chunk_graph);
    let reparsed = parse(&chunk_text).unwrap_or_else(|e| panic!("{name}: {e}\n{chunk_text}"));
    assert_eq!(print(&reparsed), chunk_text, "{name}: the chunk graph's text form round-trips");
    let mut state = StepState::new(&step_graph, batch).unwrap();
    let mut at = 0;
    for (part, graph) in [(2, &chunk_graph), (1, &chunk_graph), (1, &step_graph), (3, &chunk_graph)] {
        let span: HashMap<String, Tensor> = inputs.iter().map(|(k, v)| (k.clone(), positions(v, at, part))).collect();
        let outs = chunk(graph, &mut state, &span, part, &weights, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        for ((n, y), (_, p)) in outs.iter().zip(&parallel) {
            let want = positions(p, at, part);
            assert_eq!(y.shape, want.shape, "{name}: `{n}` in a chunk at {at}");
            let diff = y.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-9, "{name}: `{n}`, chunk of {part} at {at}, differs from parallel mode by {diff:e}");
        }
        at += part;
        let held = batch as i64 * (fixed + per_pos * at as i64);
        assert_eq!(state.elements() as i64, held, "{name}: the state is the layout's after a chunk, at {at}");
    }
    assert_eq!(at, len);
    text
}

/// Positions `at..at + n` (axis 1) of a `[B, L, ...]` tensor.
fn positions(x: &Tensor, at: usize, n: usize) -> Tensor {
    let rows: Vec<Tensor> = (at..at + n).map(|t| x.row(1, t)).collect();
    Tensor::join(&rows.iter().collect::<Vec<_>>(), 1, 0)
}

fn both_forms(name: &str, m: &CheckedModel) -> String {
    check(&format!("{name} (lowered)"), m, &m.graph);
    let mut g = m.graph.clone();
    seqc_compiler::passes::run_until(&mut g, None).unwrap();
    check(name, m, &g)
}

#[test]
fn examples_step_graphs() {
    insta::glob!("../dsl-examples", "*.seq", |path| {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = model(&file, &std::fs::read(path).unwrap(), common::small_config(&file));
        insta::assert_snapshot!(both_forms(&file, &m));
    });
}

#[test]
fn cases_step_graphs() {
    insta::glob!("cases/*.seq", |path| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = model(&name, &std::fs::read(path).unwrap(), "");
        insta::assert_snapshot!(both_forms(&name, &m));
    });
}

/// A step graph is not derived twice, and the error says so instead of panicking.
#[test]
fn a_step_graph_is_not_derived_again() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples/mamba.seq");
    let m = model("mamba.seq", &std::fs::read(path).unwrap(), common::small_config("mamba.seq"));
    let once = derive(&m.graph).unwrap();
    let err = derive(&once).unwrap_err();
    assert!(err.to_string().contains("already a step graph"), "{err}");
}
