//! Property tests on random shapes: the interpreter's generic op, scan and fused
//! attention against naive loops written here, independently of the compiler.

use proptest::prelude::*;
use seqc_compiler::driver;
use seqc_compiler::ir::interp::{self, Bindings, Tensor};
use seqc_compiler::sema::Checked;
use std::collections::HashMap;

fn run(src: &str, dims: &[(&str, usize)], inputs: Vec<(&str, Tensor)>, fused: bool) -> Tensor {
    let Ok(Checked::Model(mut m)) = driver::check_bytes("p.seq", src.as_bytes(), "").1 else {
        panic!("checks:\n{src}")
    };
    if fused {
        seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
    }
    let dims: HashMap<String, usize> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let inputs: HashMap<String, Tensor> = inputs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let out = interp::run(&m.graph, &Bindings { dims: &dims, inputs: &inputs, weights: &HashMap::new() }).unwrap();
    out.into_iter().next().unwrap().1
}

fn tensor(shape: Vec<usize>, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let data = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    Tensor::new(shape, data)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-10 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// y[b, l, e] = sum[d] x[b, l, d] * w[d, e] + max[d] x[b, l, d]
    #[test]
    fn generic_matches_loops(b in 1usize..3, l in 1usize..6, d in 1usize..5, e in 1usize..4, seed in 0u64..1000) {
        let src = format!(
            "model m {{\n  input x: f32[B, L, {d}]\n  input w: f32[{d}, {e}]\n  output y: f32[B, L, {e}]\n  forward {{\n    let y[b, l, j] = (sum[i] x[b, l, i] * w[i, j]) + max[i] x[b, l, i]\n    y = y\n  }}\n}}\n"
        );
        let x = tensor(vec![b, l, d], seed);
        let w = tensor(vec![d, e], seed + 1);
        let y = run(&src, &[("B", b), ("L", l)], vec![("x", x.clone()), ("w", w.clone())], false);
        for bi in 0..b { for li in 0..l { for j in 0..e {
            let row = &x.data[(bi * l + li) * d..(bi * l + li + 1) * d];
            let dot: f64 = (0..d).map(|i| row[i] * w.data[i * e + j]).sum();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(close(y.data[(bi * l + li) * e + j], dot + max));
        }}}
    }

    /// h[b, i] = sigmoid(a[i]) * h[b, i] + x[b, l, i] + sum[j] m[i, j] * h[b, j] / 4; y = h
    #[test]
    fn scan_matches_loops(b in 1usize..3, l in 1usize..7, d in 1usize..4, seed in 0u64..1000) {
        let src = format!(
            "model m {{\n  input x: f32[B, L, {d}]\n  input a: f32[{d}]\n  input m: f32[{d}, {d}]\n  output y: f32[B, L, {d}]\n  forward {{\n    scan l in L {{\n      state h[b, i] = 0\n      h[b, i] = sigmoid(a[i]) * h[b, i] + x[b, l, i] + (sum[j] m[i, j] * h[b, j]) / 4\n      o[b, l, i] = h[b, i]\n    }}\n    y = o\n  }}\n}}\n"
        );
        let (x, a, m) = (tensor(vec![b, l, d], seed), tensor(vec![d], seed + 1), tensor(vec![d, d], seed + 2));
        let y = run(&src, &[("B", b), ("L", l)], vec![("x", x.clone()), ("a", a.clone()), ("m", m.clone())], true);
        for bi in 0..b {
            let mut h = vec![0.0; d];
            for li in 0..l {
                let prev = h.clone();
                for i in 0..d {
                    let mix: f64 = (0..d).map(|j| m.data[i * d + j] * prev[j]).sum();
                    h[i] = 1.0 / (1.0 + (-a.data[i]).exp()) * prev[i] + x.data[(bi * l + li) * d + i] + mix / 4.0;
                    prop_assert!(close(y.data[(bi * l + li) * d + i], h[i]));
                }
            }
        }
    }

    /// Causal attention with grouped heads and a window, fused, against loops.
    #[test]
    fn attention_matches_loops(l in 1usize..7, kv in 1usize..3, group in 1usize..3, e in 1usize..4, window in 0usize..4, seed in 0u64..1000) {
        let h = kv * group;
        let src = format!(
            "model m {{\n  input q: f32[B, L, {h}, {e}]\n  input k: f32[B, L, {kv}, {e}]\n  input v: f32[B, L, {kv}, {e}]\n  output y: f32[B, L, {h}, {e}]\n  forward {{\n    let s[b, hh, i, j] = sum[c] q[b, i, hh, c] * k[b, j, hh / {group}, c] where j <= i && ({window} == 0 || i - j < {window})\n    let p[b, hh, i, j] = softmax[j] s[b, hh, i, j]\n    let o[b, i, hh, c] = sum[j] p[b, hh, i, j] * v[b, j, hh / {group}, c]\n    y = o\n  }}\n}}\n"
        );
        let (q, k, v) = (tensor(vec![1, l, h, e], seed), tensor(vec![1, l, kv, e], seed + 1), tensor(vec![1, l, kv, e], seed + 2));
        let y = run(&src, &[("B", 1), ("L", l)], vec![("q", q.clone()), ("k", k.clone()), ("v", v.clone())], true);
        for i in 0..l { for hh in 0..h {
            let g = hh / group;
            let js: Vec<usize> = (0..=i).filter(|j| window == 0 || i - j < window).collect();
            let s: Vec<f64> = js.iter().map(|&j| (0..e).map(|c| q.data[(i * h + hh) * e + c] * k.data[(j * kv + g) * e + c]).sum()).collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
            for c in 0..e {
                let want: f64 = js.iter().zip(&s).map(|(&j, x)| (x - max).exp() / z * v.data[(j * kv + g) * e + c]).sum();
                prop_assert!(close(y.data[(i * h + hh) * e + c], want), "i={} h={} c={}", i, hh, c);
            }
        }}
    }
}
