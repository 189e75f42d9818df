//! The packed derivation on every example and every case in `tests/cases/`,
//! from the graph as lowered and after all passes: the packed graph is valid,
//! round-trips through its text form, and, run by the interpreter on sequences
//! of different lengths back to back gives, at every position, what the
//! parallel graph gives for that sequence alone.

use seqc_compiler::init::{init_weights, random_inputs};
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::ir::{parse::parse, print::print, Graph, Op};
use seqc_compiler::passes::packed_derivation::{derive_packed, STARTS};
use seqc_compiler::sema::CheckedModel;
use std::collections::HashMap;

mod common;

/// Positions `at..at + n` (axis 1) of a `[B, L, ...]` tensor.
fn positions(x: &Tensor, at: usize, n: usize) -> Tensor {
    let rows: Vec<Tensor> = (at..at + n).map(|t| x.row(1, t)).collect();
    Tensor::join(&rows.iter().collect::<Vec<_>>(), 1, 0)
}

/// Each position's first position, for sequences of `lengths` back to back.
fn starts(lengths: &[usize]) -> Tensor {
    let mut data = Vec::new();
    let mut at = 0;
    for &n in lengths {
        data.extend(std::iter::repeat_n(at as f64, n));
        at += n;
    }
    Tensor::new(vec![at], data)
}

fn check(name: &str, m: &CheckedModel, g: &Graph) {
    let packed = derive_packed(g).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Decomposed bodies may bind one index name twice, which the text form
    // renames: the packed graph run below is the one read back from its text,
    // and that text reads back to itself.
    let text = print(&packed);
    let packed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    let again = print(&packed);
    assert_eq!(print(&parse(&again).unwrap()), again, "{name}: the packed graph's text form round-trips");

    // A sequence of one position, and others shorter and longer than every
    // ring in the small configs (windows of 2, 3 and 4).
    let lengths = [3, 1, 6, 2];
    let total: usize = lengths.iter().sum();
    let weights = init_weights(m, 5);
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), total)]);
    let mut inputs = random_inputs(m, &dims, 9);
    let want_inputs = inputs.clone();
    inputs.insert(STARTS.to_string(), starts(&lengths));
    let got = interp::run(&packed, &Bindings { dims: &dims, inputs: &inputs, weights: &weights })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut at = 0;
    for &len in &lengths {
        let one = HashMap::from([("B".to_string(), 1), ("L".to_string(), len)]);
        let alone: HashMap<String, Tensor> =
            want_inputs.iter().map(|(k, v)| (k.clone(), positions(v, at, len))).collect();
        let want = interp::run(g, &Bindings { dims: &one, inputs: &alone, weights: &weights }).unwrap();
        for ((n, y), (_, w)) in got.iter().zip(&want) {
            let y = positions(y, at, len);
            assert_eq!(y.shape, w.shape, "{name}: `{n}`");
            let diff = y.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-9, "{name}: `{n}`, the sequence of {len} at {at}, differs from its own run by {diff:e}");
        }
        at += len;
    }
}

#[test]
fn packed_graphs_match_separate_runs() {
    for (name, m) in common::all_models() {
        check(&format!("{name} (lowered)"), &m, &m.graph);
        let mut g = m.graph.clone();
        seqc_compiler::passes::run_until(&mut g, None).unwrap();
        check(&name, &m, &g);
    }
}

/// Every read across positions is confined: the packed graph reads the starts
/// wherever the parallel graph reads another position (here Mamba's
/// convolution and scan, and the transformer's attention and rope).
#[test]
fn packed_graphs_read_the_starts() {
    for (name, m) in common::all_models().into_iter().filter(|(n, _)| n == "mamba.seq" || n == "transformer.seq") {
        let mut g = m.graph.clone();
        seqc_compiler::passes::run_until(&mut g, None).unwrap();
        let packed = derive_packed(&g).unwrap();
        let starts = packed.nodes[0].results[0];
        assert!(matches!(&packed.nodes[0].op, Op::Input { name } if name == STARTS));
        let readers: Vec<&str> =
            packed.nodes.iter().filter(|n| n.operands.contains(&starts)).map(|n| n.op.name()).collect();
        let want: &[&str] = if name == "mamba.seq" { &["generic", "scan"] } else { &["generic", "attention"] };
        for op in want {
            assert!(readers.contains(op), "{name}: a {op} reads the starts ({readers:?})");
        }
    }
}

/// A condition on absolute positions (attention sinks: the first two keys are
/// always attended to) counts from each sequence's start, and one on
/// distances (the window) is left as it is.
#[test]
fn absolute_positions_count_from_each_start() {
    let src = b"model sink {
  config {
    heads = 2
    e = 3
  }
  input x: f32[B, L, heads * e]
  output y: f32[B, L, heads * e]
  forward {
    let v = reshape(x, [B, L, heads, e])
    let s[b, h, i, j] = sum[c] v[b, i, h, c] * v[b, j, h, c] where j <= i && (j < 2 || i - j < 2)
    let p[b, h, i, j] = softmax[j] s[b, h, i, j]
    let o[b, i, h, c] = sum[j] p[b, h, i, j] * v[b, j, h, c]
    y = reshape(o, [B, L, heads * e])
  }
}
";
    let (_, checked) = seqc_compiler::driver::check_bytes("sink.seq", src, "");
    let Ok(seqc_compiler::sema::Checked::Model(m)) = checked else { panic!("the model checks") };
    check("sink.seq (lowered)", &m, &m.graph);
    let mut g = m.graph.clone();
    seqc_compiler::passes::run_until(&mut g, None).unwrap();
    check("sink.seq", &m, &g);
    // Compiled: the condition reads the starts in the generated kernel.
    use seqc_runtime::{Model, Tensor as F32s};
    let model = Model::compile_source("sink.seq", src, &Default::default()).unwrap();
    let lengths = [9usize, 1, 7];
    let total: usize = lengths.iter().sum();
    let x: Vec<f32> = (0..total * 6).map(|i| ((i * 29 % 13) as f32 - 6.0) / 6.0).collect();
    let got = model.forward_packed(&[("x", F32s::new(vec![1, total, 6], x.clone()))], &lengths).unwrap();
    let mut at = 0;
    for &len in &lengths {
        let want = model.forward(&[("x", F32s::new(vec![1, len, 6], x[at * 6..(at + len) * 6].to_vec()))]).unwrap();
        let part = &got[0].1.data[at * 6..(at + len) * 6];
        let err = part.iter().zip(&want[0].1.data).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "compiled: the sequence of {len} at {at} differs by {err:e}");
        at += len;
    }
}
