//! The `seqc` command as a user runs it: exit statuses, output formats, config
//! overrides, and malformed input of every kind.
//!
//! Malformed inputs must give exit status 1 and a diagnostic; the time limit
//! here only catches hangs (the figures are measured by the benchmarks).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn seqc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("seqc runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn check_examples_succeeds() {
    let mut args = vec!["check"];
    let files: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples"))
        .unwrap()
        .map(|e| format!("dsl-examples/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    args.extend(files.iter().map(|s| s.as_str()));
    let o = seqc(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("checked ").count(), files.len());
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(seqc(&["check"]).status.code(), Some(2));
    assert_eq!(seqc(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(seqc(&["compile", "dsl-examples/mamba.seq", "--emit", "bogus"]).status.code(), Some(2));
}

#[test]
fn missing_file_exits_1() {
    let o = seqc(&["check", "no/such/file.seq"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn diagnostics_as_json() {
    let o = seqc(&["check", "--message-format", "json", "tests/errors/E0301-unknown-scan-axis.seq"]);
    assert_eq!(o.status.code(), Some(1));
    let line = stderr(&o).lines().next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["code"], "E0301");
    assert_eq!(v["labels"][0]["line"], 14);
    assert_eq!(v["labels"][0]["column"], 15);
    assert_eq!(v["labels"][0]["primary"], true);
}

#[test]
fn weights_table_follows_config() {
    let o = seqc(&["check", "--weights", "--config", "d_model=64,n_layer=2,vocab=100", "dsl-examples/mamba.seq"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("backbone.embedding.weight"), "{out}");
    assert!(out.contains("[100, 64]"), "{out}");
    assert!(out.contains("backbone.layers.1.mixer.A_log"), "{out}");
    assert!(!out.contains("backbone.layers.2."), "{out}");
    let json =
        seqc(&["check", "--weights", "--message-format", "json", "--config", "n_layer=1", "dsl-examples/mamba.seq"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 12);
    assert_eq!(rows[0]["shape"], serde_json::json!([50280, 768]));
}

#[test]
fn bad_config_overrides() {
    for (config, code) in
        [("d_modle=8", "E0204"), ("d_model=1.5", "E0216"), ("d_model", "E0216"), ("d_model=abc", "E0216")]
    {
        let o = seqc(&["check", "--config", config, "dsl-examples/mamba.seq"]);
        assert_eq!(o.status.code(), Some(1), "{config}");
        assert!(stderr(&o).contains(code), "{config}: {}", stderr(&o));
    }
}

#[test]
fn emit_ast() {
    let o = seqc(&["compile", "dsl-examples/mamba.seq", "--emit", "ast"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("model mamba_lm  @5:1\n"), "{}", stdout(&o));
}

#[test]
fn fmt_check() {
    assert_eq!(seqc(&["fmt", "--check", "dsl-examples/mamba.seq"]).status.code(), Some(0));
    let ugly = temp_file(
        "ugly.seq",
        b"layer a(d: int) { weight w: linear(d, d) forward(x: f32[B, L, d]) -> f32[B, L, d] { return w(x) } }",
    );
    let o = seqc(&["fmt", "--check", ugly.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = seqc(&["fmt", ugly.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let pretty = temp_file("pretty.seq", &o.stdout);
    assert_eq!(seqc(&["fmt", "--check", pretty.to_str().unwrap()]).status.code(), Some(0));
}

/// Runs `seqc check` on a malformed input: exit 1, the expected code, no hang.
fn malformed(name: &str, bytes: &[u8], code: &str) {
    let path = temp_file(name, bytes);
    let start = Instant::now();
    let o = seqc(&["check", "--color", "never", path.to_str().unwrap()]);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
    assert!(stderr(&o).contains(&format!("error[{code}]")), "{name}: {}", stderr(&o));
    assert!(took < Duration::from_secs(20), "{name} took {took:?}");
    eprintln!("{name}: {took:?}");
}

#[test]
fn malformed_inputs() {
    // Deterministic noise (xorshift), so a failure reproduces.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    malformed("binary.seq", &noise, "E0101");
    malformed("invalid-utf8.seq", b"model m {\xc3\x28 }", "E0101");
    malformed("nul.seq", b"model m {\0}", "E0102");
    malformed("control.seq", b"layer a\x07(d: int) {}", "E0102");
    let parens = format!("model m {{ forward {{ y = {}x{} }} }}", "(".repeat(100_000), ")".repeat(100_000));
    malformed("parens.seq", parens.as_bytes(), "E0501");
    let unary = format!("model m {{ forward {{ y = {}x }} }}", "-".repeat(100_000));
    malformed("unary.seq", unary.as_bytes(), "E0501");
    let sum = format!("model m {{ forward {{ y = x{} }} }}", " + x".repeat(100_000));
    malformed("sum.seq", sum.as_bytes(), "E0501");
    malformed(
        "group.seq",
        b"model m {\n  config {\n    n = 1000000000\n  }\n  weights {\n    layers[n] {\n      w: rmsnorm(8)\n    }\n  }\n}\n",
        "E0502",
    );
    malformed(
        "dim.seq",
        b"model m {\n  input x: f32[B, L, 1000000000000000]\n  output y: f32[B, L, 8]\n  forward {\n    y = x\n  }\n}\n",
        "E0503",
    );
    // 5 MB: many valid layers, then a model that breaks off.
    let layer = "layer l{}(d: int) {\n  weight w: linear(d, d)\n  forward(x: f32[B, L, d]) -> f32[B, L, d] {\n    return w(x) + x\n  }\n}\n";
    let mut big = String::new();
    let mut i = 0;
    while big.len() < 5_000_000 {
        big.push_str(&layer.replace("{}", &i.to_string()));
        i += 1;
    }
    big.push_str("model m {\n  forward {\n");
    malformed("five-megabytes.seq", big.as_bytes(), "E0111");
    // Many errors stop at the cap instead of flooding.
    let many = "model m { forward { y = @ } }\n".repeat(10_000);
    let path = temp_file("many.seq", many.as_bytes());
    let o = seqc(&["check", "--color", "never", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).matches("error[").count() <= 100, "diagnostics are capped");
}

#[test]
fn init_then_run() {
    let dir = std::env::temp_dir().join(format!("seqc-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let config = "d_model=32,n_layer=2,vocab=64";
    let o = seqc(&[
        "init",
        "dsl-examples/mamba.seq",
        "--config",
        config,
        "--seed",
        "5",
        "-o",
        &p("w.safetensors"),
        "--random-input",
        &p("in.safetensors"),
        "--batch",
        "2",
        "--seq-len",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["run", "dsl-examples/mamba.seq", "--config", config, "--weights"];
        let (w, i, o) = (p("w.safetensors"), p("in.safetensors"), p(out));
        args.extend([w.as_str(), "--input", i.as_str(), "-o", o.as_str()]);
        args.extend(extra);
        seqc(&args)
    };
    let o = run("out1.safetensors", &["--check-finite"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run("out2.safetensors", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (a, b) = (std::fs::read(p("out1.safetensors")).unwrap(), std::fs::read(p("out2.safetensors")).unwrap());
    assert_eq!(a, b, "runs are deterministic");
    let tensors = seqc_compiler::checkpoint::read(Path::new(&p("out1.safetensors"))).unwrap();
    assert_eq!(tensors.len(), 1);
    assert_eq!(tensors[0].0, "logits");
    assert_eq!(tensors[0].1.tensor.shape, vec![2, 5, 64]);
    assert!(tensors[0].1.tensor.data.iter().all(|v| v.is_finite()));

    // Mismatches name the tensor and both shapes, and change nothing.
    let o = seqc(&[
        "run",
        "dsl-examples/mamba.seq",
        "--config",
        "d_model=16,n_layer=2,vocab=64",
        "--weights",
        &p("w.safetensors"),
        "--input",
        &p("in.safetensors"),
        "-o",
        &p("bad.safetensors"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("weight `backbone.embedding.weight` has shape [64, 32], expected [64, 16]"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&p("bad.safetensors")).exists());
    let o = seqc(&[
        "run",
        "dsl-examples/mamba.seq",
        "--config",
        config,
        "--weights",
        &p("w.safetensors"),
        "--input",
        &p("w.safetensors"),
        "-o",
        &p("bad.safetensors"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing input `tokens` (expected [B, L])"), "{}", stderr(&o));
    // Step, chunk and packed mode and the interpreter, in every mode, write the same
    // outputs to float rounding (the compiled engine is f32 inside, the
    // interpreter f64).
    let scale = tensors[0].1.tensor.data.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (out, extra) in [
        ("step.safetensors", &["--mode", "step"][..]),
        ("llvm.safetensors", &["--codegen", "llvm"][..]),
        ("llvm-step.safetensors", &["--codegen", "llvm", "--mode", "step"][..]),
        ("chunk.safetensors", &["--mode", "chunk"][..]),
        ("interp.safetensors", &["--engine", "interp"][..]),
        ("interp-step.safetensors", &["--engine", "interp", "--mode", "step"][..]),
        ("interp-chunk.safetensors", &["--engine", "interp", "--mode", "chunk"][..]),
        ("packed.safetensors", &["--mode", "packed"][..]),
        ("llvm-packed.safetensors", &["--codegen", "llvm", "--mode", "packed"][..]),
        ("interp-packed.safetensors", &["--engine", "interp", "--mode", "packed"][..]),
    ] {
        let o = run(out, extra);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let other = seqc_compiler::checkpoint::read(Path::new(&p(out))).unwrap();
        let diff = other[0]
            .1
            .tensor
            .data
            .iter()
            .zip(&tensors[0].1.tensor.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-4 * scale, "{extra:?} differs from the compiled parallel run by {diff}");
    }
}

/// `seqc bench --json` prints one object with the documented fields, measured.
#[test]
fn bench_json() {
    for mode in ["prefill", "decode"] {
        let o = seqc(&[
            "bench",
            "dsl-examples/mamba.seq",
            "--config",
            "d_model=32,n_layer=1,vocab=64",
            "--seq-len",
            "8",
            "--batch",
            "2",
            "--iters",
            "1",
            "--mode",
            mode,
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        for key in ["tokens_per_s", "ms_per_token", "peak_bytes", "compile_ms"] {
            assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{mode}: `{key}` in {v}");
        }
        assert_eq!(v["mode"], mode);
        assert_eq!(v["batch"], 2);
    }
    let o = seqc(&["bench", "dsl-examples/mamba.seq", "--seq-len", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// The kernel IR, the Cranelift IR and LLVM's IR print for every mode.
#[test]
fn emit_kernel_clif_and_llvm() {
    let small = "d_model=16,n_layer=1,vocab=50,d_state=4";
    for (emit, mode, needle) in [
        ("kernel", "parallel", "launches {"),
        ("kernel", "step", "state \""),
        ("kernel", "chunk", "W3"),
        ("kernel", "packed", "input \"@start\" [L]"),
        ("clif", "parallel", "function"),
        ("llvm", "step", "define void @seqc_k_k0(ptr"),
    ] {
        let o = seqc(&["compile", "dsl-examples/mamba.seq", "--config", small, "--emit", emit, "--mode", mode]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains(needle), "--emit {emit} --mode {mode}: {}", stdout(&o));
    }
}

#[test]
fn files_of_layers_alone() {
    // A layer whose parameters all have defaults is checked on its own.
    let ok = temp_file("ok-layers.seq", b"layer a(d: int = 8) {\n  weight w: linear(d, d)\n  forward(x: f32[B, L, d]) -> f32[B, L, d] {\n    return w(x) + x\n  }\n}\n");
    let o = seqc(&["check", ok.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("layers a"), "{}", stderr(&o));
    let bad = temp_file("bad-layers.seq", b"layer a(d: int = 8) {\n  weight w: linear(d, 2 * d)\n  forward(x: f32[B, L, d]) -> f32[B, L, d] {\n    return w(x) + x\n  }\n}\n");
    let o = seqc(&["check", "--color", "never", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[E0302]"), "{}", stderr(&o));
    // Compiling needs a model.
    let o = seqc(&["compile", ok.to_str().unwrap(), "--emit", "graph"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[E0219]"), "{}", stderr(&o));
}

#[test]
fn explain_codes() {
    let o = seqc(&["explain", "E0321"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("E0321: a reduction over the sequence that is not masked"), "{}", stdout(&o));
    assert_eq!(seqc(&["explain", "E9999"]).status.code(), Some(1));
}
