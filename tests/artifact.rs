//! Ahead-of-time artifacts (`seqc compile --target cpu -o DIR`,
//! `Model::write_artifact`, `Model::load_artifact`): a loaded artifact computes
//! exactly what the model compiled in memory computes, on every example and
//! case, in both modes; a damaged, stale or foreign artifact is refused with an
//! error that says why, never run.

use seqc_compiler::init::random_inputs;
use seqc_runtime::{Codegen, Model, Options, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("artifact-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn sources() -> Vec<(String, PathBuf, &'static str)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(String, PathBuf, &str)> =
        common::SMALL.iter().map(|(f, cfg)| (f.to_string(), root.join("dsl-examples").join(f), *cfg)).collect();
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(root.join("tests/cases")).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    files.extend(cases.into_iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p, "")));
    files
}

fn f32s(t: &seqc_compiler::ir::interp::Tensor) -> Tensor {
    Tensor::new(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
}

#[test]
fn loaded_artifacts_compute_what_the_jit_computes() {
    loaded_artifacts_compute_what_compiled_models_compute(Codegen::Cranelift);
}

#[cfg(feature = "llvm")]
#[test]
fn loaded_llvm_artifacts_compute_what_compiled_models_compute() {
    loaded_artifacts_compute_what_compiled_models_compute(Codegen::Llvm);
}

fn loaded_artifacts_compute_what_compiled_models_compute(codegen: Codegen) {
    for (name, path, config) in sources() {
        let options = Options { config: config.to_string(), codegen, ..Default::default() };
        let jit = Model::compile_file(&path, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dir = scratch(&name);
        let written = jit.write_artifact(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(written.no_step.is_none(), "{name}: {:?}", written.no_step);
        assert_eq!(written.modes, ["parallel", "step", "chunk"], "{name}");
        for f in &written.files {
            assert!(dir.join(f).is_file(), "{name}: {f} is written");
        }
        let loaded = Model::load_artifact(&dir).unwrap_or_else(|e| panic!("{name}: {e}")).init_weights(3);
        assert_eq!(loaded.codegen(), codegen, "{name}: the manifest records the code generator");
        let jit = jit.init_weights(3);
        let dims = HashMap::from([("B".to_string(), 2), ("L".to_string(), 6)]);
        let inputs = random_inputs(jit.checked(), &dims, 4);
        let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
        // The same machine code over the same plan: equal to the bit.
        assert_eq!(loaded.forward(&ins).unwrap(), jit.forward(&ins).unwrap(), "{name}: forward");
        let (mut a, mut b) = (loaded.new_state(2).unwrap(), jit.new_state(2).unwrap());
        assert_eq!(
            loaded.forward_steps(&mut a, &ins).unwrap(),
            jit.forward_steps(&mut b, &ins).unwrap(),
            "{name}: step mode"
        );
        let (mut a, mut b) = (loaded.new_state(2).unwrap(), jit.new_state(2).unwrap());
        assert_eq!(
            loaded.forward_from(&mut a, &ins).unwrap(),
            jit.forward_from(&mut b, &ins).unwrap(),
            "{name}: chunk mode"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Writes the mamba example's artifact, lets `damage` change it, and returns
/// what loading it says.
fn load_after(what: &str, damage: impl FnOnce(&Path)) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples/mamba.seq");
    let options = Options { config: common::small_config("mamba.seq").to_string(), ..Default::default() };
    let dir = scratch(what);
    Model::compile_file(&path, &options).unwrap().write_artifact(&dir).unwrap();
    damage(&dir);
    let message = match Model::load_artifact(&dir) {
        Ok(_) => panic!("{what}: the damaged artifact loads"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(&dir).unwrap();
    message
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} holds {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn damaged_or_foreign_artifacts_are_refused() {
    // The source edited after compiling: the plan it schedules to differs.
    let e = load_after("edited", |d| edit(&d.join("model.seq"), "d_conv = 4", "d_conv = 3"));
    assert!(e.contains("different kernel module"), "{e}");
    // Code for a CPU feature this one lacks.
    let e = load_after("foreign", |d| {
        edit(&d.join("manifest.json"), "\"features\": [", "\"features\": [\"has_nonesuch\",")
    });
    assert!(e.contains("has_nonesuch") && e.contains("lacks"), "{e}");
    let e = load_after("format", |d| edit(&d.join("manifest.json"), "\"format\": 1", "\"format\": 99"));
    assert!(e.contains("format 99"), "{e}");
    let e = load_after("no-library", |d| std::fs::remove_file(d.join("libkernels.so")).unwrap());
    assert!(e.contains("libkernels.so"), "{e}");
    let e = load_after("garbage", |d| std::fs::write(d.join("manifest.json"), "{").unwrap());
    assert!(e.contains("not a seqc manifest"), "{e}");
}

/// An artifact written before chunk mode (a manifest without `chunk`) still
/// loads, and its `forward_from` runs step by step, to the same outputs.
#[test]
fn artifacts_without_chunk_mode_run_forward_from_by_steps() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples/mamba.seq");
    let options = Options { config: common::small_config("mamba.seq").to_string(), ..Default::default() };
    let dir = scratch("no-chunk");
    let jit = Model::compile_file(&path, &options).unwrap();
    jit.write_artifact(&dir).unwrap();
    let manifest = dir.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert!(json.as_object_mut().unwrap().remove("chunk").is_some(), "the manifest records chunk mode");
    std::fs::write(&manifest, json.to_string()).unwrap();
    let loaded = Model::load_artifact(&dir).unwrap().init_weights(3);
    let jit = jit.init_weights(3);
    let dims = HashMap::from([("B".to_string(), 1), ("L".to_string(), 5)]);
    let inputs = random_inputs(jit.checked(), &dims, 4);
    let ins: Vec<(&str, Tensor)> = inputs.iter().map(|(k, v)| (k.as_str(), f32s(v))).collect();
    let (mut a, mut b) = (loaded.new_state(1).unwrap(), jit.new_state(1).unwrap());
    assert_eq!(loaded.forward_from(&mut a, &ins).unwrap(), jit.forward_steps(&mut b, &ins).unwrap());
    assert_eq!(a, b, "the same state after");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_command_line_writes_and_runs_artifacts() {
    let seqc = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_seqc"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let dir = scratch("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let (art, w, i) = (dir.join("out"), dir.join("w.safetensors"), dir.join("in.safetensors"));
    let [art, w, i] = [&art, &w, &i].map(|p| p.to_str().unwrap().to_string());
    let config = common::small_config("hybrid.seq");
    let o = seqc(&["compile", "dsl-examples/hybrid.seq", "--config", config, "--target", "cpu", "-o", &art]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("parallel, step and chunk modes"));
    let o = seqc(&["init", "dsl-examples/hybrid.seq", "--config", config, "-o", &w, "--random-input", &i]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for mode in ["parallel", "step"] {
        let (a, b) = (format!("{art}/a-{mode}.safetensors"), format!("{art}/b-{mode}.safetensors"));
        let o = seqc(&["run", &art, "--weights", &w, "--input", &i, "-o", &a, "--mode", mode]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let o = seqc(&[
            "run",
            "dsl-examples/hybrid.seq",
            "--config",
            config,
            "--weights",
            &w,
            "--input",
            &i,
            "-o",
            &b,
            "--mode",
            mode,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{mode}: the artifact's outputs");
    }
    // An artifact keeps its code generator: `--codegen` is refused, not ignored.
    let o = seqc(&["run", &art, "--weights", &w, "--input", &i, "-o", &format!("{art}/x"), "--codegen", "llvm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("keeps the code generator"));
    // Without `-o`, a clear error.
    let o = seqc(&["compile", "dsl-examples/hybrid.seq", "--target", "cpu"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("-o DIR"));
    std::fs::remove_dir_all(&dir).unwrap();
}
