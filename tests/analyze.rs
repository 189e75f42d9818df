//! `seqc analyze`: the counts for `mamba.seq` and `transformer.seq` equal
//! formulas derived by hand from the models' definitions (below), at several
//! lengths and batch sizes; text and JSON reports of every example are
//! snapshotted (on the built-in `h200` profile, so they do not depend on the
//! machine); the SVG plot parses and has its series.

use serde_json::Value;
use std::process::Command;

mod common;

fn seqc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seqc")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn analyze_json(file: &str, config: &str, batch: usize, lens: &str) -> Value {
    let b = batch.to_string();
    let o =
        seqc(&["analyze", file, "--config", config, "--batch", &b, "--seq-len", lens, "--device", "h200", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn tri(l: f64) -> f64 {
    l * (l + 1.0) / 2.0
}

/// Mamba (`dsl-examples/mamba.seq`), `D = d_model`, `E = 2 D`, `N = d_state`,
/// `R = ceil(D / 16)`, `K = d_conv`, `V = vocab`. Per position, one layer:
/// `in_proj` 2·D·2E; the causal conv with bias E·(2K + 1); `silu` E; `x_proj`
/// 2·E·(R + 2N); `dt_proj` with bias E·(2R + 1); `softplus` E; the scan update
/// `h = exp(dt·A)·h + dt·B·x` 6·E·N and its output `sum[n] h·C` 2·E·N; the gate
/// `(y + x·D)·silu(z)` 4·E; `out_proj` 2·E·D; the block's `rmsnorm` 4·D and the
/// residual add D. Once per layer, independent of B and L: `A = -exp(A_log)`,
/// 2·E·N (hoisted by licm). Per position, once: the final norm 4·D and the
/// `lm_head` (tied embedding) 2·D·V. Step state per sequence and layer: `h`,
/// E·N, and the conv window, (K - 1)·E, in f32.
#[test]
fn mamba_counts_match_hand_derivation() {
    let (d, n, k, v, layers) = (768.0, 16.0, 4.0, 1024.0, 2.0);
    let (e, r) = (2.0 * d, (d / 16.0f64).ceil());
    let per_layer = 2.0 * d * 2.0 * e
        + e * (2.0 * k + 1.0)
        + e
        + 2.0 * e * (r + 2.0 * n)
        + e * (2.0 * r + 1.0)
        + e
        + 6.0 * e * n
        + 2.0 * e * n
        + 4.0 * e
        + 2.0 * e * d
        + 4.0 * d
        + d;
    for batch in [1usize, 3] {
        let report = analyze_json("dsl-examples/mamba.seq", "d_model=768,n_layer=2,vocab=1024", batch, "1,100,4096");
        for at in report["lengths"].as_array().unwrap() {
            let (b, l) = (batch as f64, at["seq_len"].as_f64().unwrap());
            let want = layers * (per_layer * b * l + 2.0 * e * n) + b * l * (4.0 * d + 2.0 * d * v);
            assert_eq!(at["flops"].as_f64().unwrap(), want, "FLOPs at B = {b}, L = {l}");
            let state = b * layers * (e * n + (k - 1.0) * e) * 4.0;
            assert_eq!(at["state_bytes"].as_f64().unwrap(), state, "state at B = {b}, L = {l}");
        }
    }
}

/// Llama (`dsl-examples/transformer.seq`), `D = d_model`, `H` heads of `Eh = D / H`,
/// `G` key/value heads, `F = d_ff`. Per position, one layer: projections q, o
/// 2·D·D each, k, v 2·D·G·Eh each; `rope` 6 per element of q and k; residual
/// adds 2·D; two `rmsnorm`s 8·D; SwiGLU gate, up, down 2·D·F each and
/// `silu(g)·u` 2·F. Per query-key pair (`tri(L)` of them, causal) and head: the
/// score `sum[e] q·k / sqrt(Eh)` 3·Eh (multiply, scale, accumulate; the scale is
/// inside the sum as the prelude writes it), the softmax 5, the weighted sum
/// 2·Eh. Once per position: the final norm 4·D and `lm_head` 2·D·V. Step state:
/// keys and values, 2·G·Eh per position per layer, in f32.
#[test]
fn transformer_counts_match_hand_derivation() {
    let (d, h, g, f, v, layers) = (64.0, 4.0, 2.0, 128.0, 100.0, 2.0);
    let eh = d / h;
    let per_pos = 2.0 * d * d * 2.0
        + 2.0 * d * g * eh * 2.0
        + 6.0 * (d + g * eh)
        + 2.0 * d
        + 8.0 * d
        + 3.0 * 2.0 * d * f
        + 2.0 * f;
    let per_pair = h * (3.0 * eh + 5.0 + 2.0 * eh);
    let config = "d_model=64,n_layer=2,n_heads=4,n_kv_heads=2,d_ff=128,vocab=100";
    for batch in [1usize, 2] {
        let report = analyze_json("dsl-examples/transformer.seq", config, batch, "1,7,2048");
        for at in report["lengths"].as_array().unwrap() {
            let (b, l) = (batch as f64, at["seq_len"].as_f64().unwrap());
            let want = layers * b * (per_pos * l + per_pair * tri(l)) + b * l * (4.0 * d + 2.0 * d * v);
            assert_eq!(at["flops"].as_f64().unwrap(), want, "FLOPs at B = {b}, L = {l}");
            assert_eq!(at["state_bytes"].as_f64().unwrap(), b * l * layers * 2.0 * g * eh * 4.0, "KV cache");
        }
    }
}

#[test]
fn reports_of_every_example() {
    for (file, config) in common::SMALL {
        let path = format!("dsl-examples/{file}");
        let args = ["analyze", &path, "--config", config, "--seq-len", "64,1024", "--device", "h200"];
        let text = seqc(&[&args[..], &["--memory-budget", "1GiB", "--symbolic"]].concat());
        assert_eq!(text.status.code(), Some(0), "{}", String::from_utf8_lossy(&text.stderr));
        insta::assert_snapshot!(format!("analyze-{file}"), String::from_utf8_lossy(&text.stdout));
        let json = seqc(&[&args[..], &["--json"]].concat());
        let v: Value = serde_json::from_slice(&json.stdout).unwrap();
        for at in v["lengths"].as_array().unwrap() {
            for key in ["seq_len", "batch", "flops", "bytes_moved", "activation_bytes", "state_bytes"] {
                assert!(at[key].is_number(), "{file}: `{key}`");
            }
            let layers = at["layers"].as_array().unwrap();
            let sum: f64 = layers.iter().map(|x| x["flops"].as_f64().unwrap()).sum();
            assert!((sum - at["flops"].as_f64().unwrap()).abs() <= 1e-9 * sum.max(1.0), "{file}: layers add up");
        }
        insta::assert_snapshot!(format!("analyze-json-{file}"), serde_json::to_string_pretty(&v).unwrap());
    }
}

#[test]
fn plot_is_svg_with_its_series() {
    let out = std::env::temp_dir().join(format!("seqc-plot-{}.svg", std::process::id()));
    let o = seqc(&[
        "analyze",
        "dsl-examples/hybrid.seq",
        "--config",
        common::small_config("hybrid.seq"),
        "--device",
        "h200",
        "--memory-budget",
        "64MiB",
        "--plot",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the plot is XML");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).map(str::trim).collect();
    for series in ["mamba", "attention", "total", "budget"] {
        assert!(texts.contains(&series), "series `{series}` in the legend: {texts:?}");
    }
    let lines = doc.descendants().filter(|n| n.tag_name().name() == "polyline").count();
    assert!(lines >= 2 * 3, "one line per layer kind and the total, in both panels: {lines}");
}

#[test]
fn compare_and_bad_arguments() {
    let o = seqc(&[
        "analyze",
        "--compare",
        "dsl-examples/mamba.seq",
        "dsl-examples/transformer.seq",
        "--seq-len",
        "1024,16384",
        "--device",
        "h200",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("mamba_lm against llama:"), "{text}");
    assert!(text.contains("step-mode state:"), "{text}");
    let bad = seqc(&["analyze", "dsl-examples/mamba.seq", "--memory-budget", "24 parsecs"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown size unit"));
    let bad = seqc(&["analyze", "dsl-examples/mamba.seq", "--device", "/nonexistent.toml"]);
    assert_eq!(bad.status.code(), Some(1));
    let bad = seqc(&["analyze", "dsl-examples/mamba.seq", "dsl-examples/mamba.seq"]);
    assert_eq!(bad.status.code(), Some(2));
}
