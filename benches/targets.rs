//! The CPU performance targets of the runtime's issue, rerun in one command:
//! `cargo bench --bench targets`. Each row runs `seqc bench --json` (the
//! command a user runs, in its own process, so peak memory is per row) and
//! prints what it measured next to the target and to this machine's own
//! bounds, measured here: `gemm`'s f32 rate, the read bandwidth of two
//! threads, and the throughput of the `exp` the generated code uses.
//!
//! Every kernel-bound row runs once per CPU code generator (Cranelift, then
//! LLVM). The llama.cpp and candle figures are the issue's, measured on another
//! machine (2 cores with AVX-512, 44 GB/s); `cargo bench --bench vs_candle`
//! runs candle itself, and `scripts/vs-llama-cpp.sh` llama.cpp, on the same
//! weights. Rows are informative: nothing here asserts a time.

use serde_json::Value;
use std::process::Command;
use std::time::Instant;

fn seqc_bench(codegen: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_seqc"))
        .arg("bench")
        .args(args)
        .args(["--json", "--codegen", codegen])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("seqc runs");
    assert!(out.status.success(), "seqc bench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// Best time of `runs` calls of `f`, in seconds.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// `gemm`'s f32 rate on this machine, FLOP/s, on the Mamba block's largest
/// product (2048 x 3072 x 768), with the runtime's thread pool.
fn gemm_rate() -> f64 {
    let (m, n, k) = (2048usize, 3072usize, 768usize);
    let (a, b) = (vec![0.5f32; m * k], vec![0.25f32; k * n]);
    let mut c = vec![0f32; m * n];
    let threads = rayon::current_num_threads();
    let secs = best(3, || unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        )
    });
    2.0 * (m * n * k) as f64 / secs
}

/// Bytes per second two threads read from memory (a sum over 1 GiB).
fn read_bandwidth() -> f64 {
    use rayon::prelude::*;
    let data = vec![1u64; 1 << 27];
    let secs = best(3, || {
        let s: u64 = data.par_chunks(1 << 16).map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x))).sum();
        std::hint::black_box(s);
    });
    (data.len() * 8) as f64 / secs
}

/// `exp` evaluations per second of the generated code: eight independent
/// `exp`s per element over a buffer that stays in cache, so arithmetic bounds
/// it.
fn exp_rate(codegen: seqc_runtime::Codegen) -> f64 {
    let source = r#"
model exps {
  input x: f32[B, L, 4096]
  output y: f32[B, L, 4096]
  forward {
    let e[b, l, d] = exp(x[b, l, d]) + exp(x[b, l, d] * 0.5) + exp(x[b, l, d] * 0.25) + exp(x[b, l, d] * 0.125) + exp(x[b, l, d] * 2.0) + exp(x[b, l, d] * 3.0) + exp(x[b, l, d] * 5.0) + exp(x[b, l, d] * 7.0)
    y = e
  }
}
"#;
    let options = seqc_runtime::Options { codegen, ..Default::default() };
    let model =
        seqc_runtime::Model::compile_source("exps.seq", source.as_bytes(), &options).expect("the exp model compiles");
    let (b, l) = (1usize, 64usize);
    let x = seqc_runtime::Tensor::new(vec![b, l, 4096], vec![0.5; b * l * 4096]);
    let reps = 50;
    let secs = best(3, || {
        for _ in 0..reps {
            std::hint::black_box(model.forward(&[("x", x.clone())]).unwrap());
        }
    });
    (8 * reps * b * l * 4096) as f64 / secs
}

/// Tokens per second of a `len`-token prompt of the 130M Mamba (random
/// weights) through `forward_from`, `forward` and steps: the second of two
/// runs each (the first compiles), steps over the first 32 positions.
fn prompt_rates(codegen: seqc_runtime::Codegen, len: usize) -> (f64, f64, f64) {
    use seqc_runtime::{Model, Options, Tensor};
    let options = Options { codegen, ..Default::default() };
    let model = Model::compile_file("dsl-examples/mamba.seq", &options).expect("mamba compiles").init_weights(0);
    let ids: Vec<u32> = (0..len as u32).map(|i| i * 7919 % 50000).collect();
    let prompt = [("tokens", Tensor::from_ids(vec![1, len], &ids))];
    let rate = |run: &dyn Fn()| {
        run();
        len as f64 / best(1, run)
    };
    let from = rate(&|| {
        let mut state = model.new_state(1).expect("a state");
        model.forward_from(&mut state, &prompt).expect("forward_from runs");
    });
    let whole = rate(&|| {
        model.forward(&prompt).expect("forward runs");
    });
    let steps = 32;
    let mut state = model.new_state(1).expect("a state");
    let one = |t: usize| [("tokens", Tensor::from_ids(vec![1, 1], &ids[t..t + 1]))];
    model.step(&mut state, &one(0)).expect("a step");
    let secs = best(1, || {
        for t in 1..=steps {
            model.step(&mut state, &one(t)).expect("a step");
        }
    });
    (from, whole, steps as f64 / secs)
}

/// Requests of `lengths` tokens through `forward_packed` (the packed graph:
/// sequences back to back, no padding) and through `forward` on the same
/// requests right-padded to the longest: tokens per second of requests, each.
fn packed_rates(codegen: seqc_runtime::Codegen, file: &str, config: &str, lengths: &[usize]) -> (f64, f64) {
    use seqc_runtime::{Model, Options, Tensor};
    let options = Options { codegen, config: config.into(), ..Default::default() };
    let model = Model::compile_file(file, &options).expect("the model compiles").init_weights(0);
    let (total, longest) = (lengths.iter().sum::<usize>(), *lengths.iter().max().expect("requests"));
    let id = |i: usize| (i * 7919 % 1000) as u32;
    let packed = [("tokens", Tensor::from_ids(vec![1, total], &(0..total).map(id).collect::<Vec<_>>()))];
    let padded_ids: Vec<u32> =
        lengths.iter().flat_map(|&n| (0..longest).map(move |t| if t < n { id(t) } else { 0 })).collect();
    let padded = [("tokens", Tensor::from_ids(vec![lengths.len(), longest], &padded_ids))];
    model.forward_packed(&packed, lengths).expect("forward_packed runs");
    let packed_s = best(2, || {
        model.forward_packed(&packed, lengths).expect("forward_packed runs");
    });
    model.forward(&padded).expect("forward runs");
    let padded_s = best(2, || {
        model.forward(&padded).expect("forward runs");
    });
    (total as f64 / packed_s, total as f64 / padded_s)
}

fn row(what: &str, measured: String, target: String, note: String) {
    println!("{what:<46} {measured:>18} {target:>22}   {note}");
}

fn main() {
    println!("machine bounds (measured here):");
    let (flops, bandwidth) = (gemm_rate(), read_bandwidth());
    println!("  gemm f32 {:.0} GFLOP/s, read bandwidth {:.1} GB/s (2 threads)", flops / 1e9, bandwidth / 1e9);
    let bounds = Bounds { flops, bandwidth };
    for codegen in [seqc_runtime::Codegen::Cranelift, seqc_runtime::Codegen::Llvm] {
        println!();
        rows(codegen, &bounds);
    }
}

/// This machine's rates, measured once.
struct Bounds {
    flops: f64,
    bandwidth: f64,
}

/// Every row, with kernels from `codegen`.
fn rows(codegen: seqc_runtime::Codegen, bounds: &Bounds) {
    let (flops, bandwidth) = (bounds.flops, bounds.bandwidth);
    let exps = exp_rate(codegen);
    let name = codegen.name();
    let seqc_bench = |args: &[&str]| seqc_bench(name, args);
    let mamba_small = "d_model=768,n_layer=2,vocab=1024";
    println!("{name}: generated exp {:.2} G/s", exps / 1e9);
    println!("{:<46} {:>18} {:>22}   note", "row", "measured", "target");

    // Prefill, Mamba 768 x 2 layers, vocab 1024, L = 2048.
    let r = seqc_bench(&[
        "dsl-examples/mamba.seq",
        "--config",
        mamba_small,
        "--seq-len",
        "2048",
        "--iters",
        "3",
        "--profile",
    ]);
    let tps = num(&r, "tokens_per_s");
    // FLOPs per token of its products: in 768x3072, out 1536x768, x 1536x80,
    // dt 48x1536 per layer; the head 768x1024.
    let per_token = 2.0 * (2.0 * (768.0 * 3072.0 + 1536.0 * 768.0 + 1536.0 * 80.0 + 48.0 * 1536.0) + 768.0 * 1024.0);
    row(
        "mamba 768x2 prefill L=2048 (tok/s)",
        format!("{tps:.0}"),
        ">= 14,670 (3x llama.cpp)".into(),
        format!(
            "{:.2}x llama.cpp's 4,890 (the issue's machine; scripts/vs-llama-cpp.sh runs it here); products alone bound this machine at {:.0}",
            tps / 4890.0,
            flops / per_token
        ),
    );
    // The selective scan alone: d_inner x d_state exps per position and layer.
    let scan_ms: f64 = r["profile"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|x| x["what"].as_str().is_some_and(|w| w.starts_with("scan ")))
                .map(|x| num(x, "ms"))
                .sum()
        })
        .unwrap_or(f64::NAN);
    let runs = num(&r, "iters") + 1.0;
    let scan_exps = runs * 2.0 * 2048.0 * 1536.0 * 16.0;
    let scan_rate = scan_exps / (scan_ms / 1e3);
    row(
        "selective scan kernel (exp/s)",
        format!("{:.2} G/s", scan_rate / 1e9),
        "vector exp rate".into(),
        format!("{:.0}% of the generated exp's {:.2} G/s here", 100.0 * scan_rate / exps, exps / 1e9),
    );

    // Prefill, the 130M shape, L = 512, logits everywhere.
    let r = seqc_bench(&["dsl-examples/mamba.seq", "--seq-len", "512", "--iters", "1"]);
    let tps = num(&r, "tokens_per_s");
    row(
        "mamba 130M prefill L=512 (tok/s)",
        format!("{tps:.0}"),
        ">= 1,311 (3x llama.cpp)".into(),
        format!("{:.2}x llama.cpp's 437 (the issue's machine)", tps / 437.0),
    );

    // Decode, the 130M shape.
    let weights_f32 = 129_135_360.0 * 4.0;
    for (dtype, target, bytes) in [("f32", 10.6, weights_f32), ("bf16", 0.6 * 10.6, weights_f32 / 2.0)] {
        let r = seqc_bench(&[
            "dsl-examples/mamba.seq",
            "--seq-len",
            "32",
            "--mode",
            "decode",
            "--iters",
            "2",
            "--weight-dtype",
            dtype,
        ]);
        let ms = num(&r, "ms_per_token");
        row(
            &format!("mamba 130M decode B=1 {dtype} (ms/token)"),
            format!("{ms:.1}"),
            format!("<= {target:.1}"),
            format!(
                "reading the weights once bounds this machine at {:.1} ms; compile {:.0} ms",
                bytes / bandwidth * 1e3,
                num(&r, "compile_ms")
            ),
        );
    }
    let one = num(
        &seqc_bench(&["dsl-examples/mamba.seq", "--seq-len", "16", "--mode", "decode", "--iters", "1"]),
        "ms_per_token",
    );
    let eight = num(
        &seqc_bench(&["dsl-examples/mamba.seq", "--seq-len", "16", "--mode", "decode", "--batch", "8", "--iters", "1"]),
        "ms_per_token",
    );
    row(
        "mamba 130M decode B=8 (ms/step)",
        format!("{eight:.1}"),
        "<= 1.2x B=1".into(),
        format!("{:.2}x B=1's {one:.1}", eight / one),
    );

    // Attention prefill: time, and peak memory against L.
    for len in ["2048", "8192", "16384"] {
        let r = seqc_bench(&[
            "dsl-examples/transformer.seq",
            "--config",
            "n_layer=1,vocab=1000",
            "--seq-len",
            len,
            "--iters",
            "1",
        ]);
        row(
            &format!("transformer d768 12 heads L={len} (tok/s)"),
            format!("{:.0}", num(&r, "tokens_per_s")),
            "3x candle; memory ~ L".into(),
            format!("peak {:.0} MB; ratios to candle: cargo bench --bench vs_candle", num(&r, "peak_bytes") / 1e6),
        );
    }

    // A prompt through `forward_from` (the chunk graph, from and to a state)
    // against `forward` on the same tokens and against steps, in this process.
    let (from, whole, step) = prompt_rates(codegen, 512);
    row(
        "mamba 130M forward_from L=512 (tok/s)",
        format!("{from:.0}"),
        "a prefill's rate".into(),
        format!("forward {whole:.0} tok/s; one step at a time {step:.0} tok/s"),
    );

    // A packed batch of requests of different lengths against the same
    // requests padded to the longest, in this process.
    let lengths = [1024, 256, 64, 16, 4];
    for (file, config) in [
        ("dsl-examples/mamba.seq", "d_model=768,n_layer=2,vocab=1024"),
        ("dsl-examples/transformer.seq", "d_model=768,n_layer=2,vocab=1024"),
        ("dsl-examples/hyena.seq", "d_model=768,n_layer=2,vocab=1024,l_max=1024"),
    ] {
        let (packed, padded) = packed_rates(codegen, file, config, &lengths);
        row(
            &format!("{} 768x2 packed {lengths:?} (tok/s)", &file[13..file.len() - 4]),
            format!("{packed:.0}"),
            "no padding run".into(),
            format!("padded to the longest {padded:.0} tok/s ({:.2}x)", packed / padded),
        );
    }

    // Compile time, source to runnable, both modes of the 24-layer model.
    let r = seqc_bench(&["dsl-examples/mamba.seq", "--seq-len", "1", "--mode", "decode", "--iters", "1"]);
    row("mamba 130M compile, both modes (ms)", format!("{:.0}", num(&r, "compile_ms")), "< 300".into(), String::new());
}
