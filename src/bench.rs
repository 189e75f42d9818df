//! `seqc bench`: times a model on the CPU through the runtime, as a user would
//! run it. Prefill runs whole sequences (`forward`); decode runs `--seq-len`
//! positions one at a time from an empty state (`step`). Reported: tokens per
//! second, milliseconds per token (prefill) or per step (decode), the process's
//! peak resident memory, and the time from checked source to runnable code.

use indicatif::{ProgressBar, ProgressStyle};
use seqc_compiler::sema::CheckedModel;
use seqc_runtime::{Model, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

pub struct Request {
    pub seq_len: usize,
    pub batch: usize,
    pub decode: bool,
    pub weights: Option<PathBuf>,
    /// How the linear layers' weights are held.
    pub precision: seqc_runtime::Precision,
    /// The code generator, when compiling from source.
    pub codegen: seqc_runtime::Codegen,
    pub json: bool,
    pub iters: usize,
    /// Time spent parsing and checking, before `run`.
    pub check_ms: f64,
    /// Print the time per kernel (summed over the timed runs).
    pub profile: bool,
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn progress(total: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// What to time: a model compiled from its checked source now, or an artifact
/// (`seqc compile -o DIR`) loaded.
#[allow(clippy::large_enum_variant)] // one per run
pub enum Subject {
    Source(CheckedModel),
    Artifact(PathBuf),
}

pub fn run(subject: Subject, req: Request) -> Result<(), String> {
    let start = Instant::now();
    let (model, artifact) = match subject {
        Subject::Source(m) => (Model::from_checked_with(m, req.codegen).map_err(|e| e.to_string())?, false),
        Subject::Artifact(dir) => (Model::load_artifact(dir).map_err(|e| e.to_string())?, true),
    };
    let m = model.checked().clone();
    let codegen = model.codegen().name();
    if req.seq_len == 0 || req.batch == 0 || req.iters == 0 {
        return Err("`--seq-len`, `--batch` and `--iters` must be at least 1".into());
    }
    let name = m.name.clone();
    let dims = HashMap::from([("B".to_string(), req.batch), ("L".to_string(), req.seq_len)]);
    let inputs = seqc_compiler::init::random_inputs(&m, &dims, 1);
    let order: Vec<String> = m.inputs.iter().map(|io| io.name.clone()).collect();

    if req.decode {
        // Compiles the step graph.
        model.new_state(req.batch).map_err(|e| e.to_string())?;
    }
    let compile_ms = req.check_ms + start.elapsed().as_secs_f64() * 1e3;
    let model = model.with_precision(req.precision);
    let model = match &req.weights {
        Some(p) => model.load_weights(p).map_err(|e| e.to_string())?,
        None => model.init_weights(0),
    };
    let tensor = |n: &String| Tensor::new(inputs[n].shape.clone(), inputs[n].data.iter().map(|&x| x as f32).collect());
    let ins: Vec<(&str, Tensor)> = order.iter().map(|n| (n.as_str(), tensor(n))).collect();

    let (tokens, seconds) = if req.decode {
        if req.profile {
            seqc_runtime::profile::enable();
        }
        let rows: Vec<Vec<(&str, Tensor)>> = (0..req.seq_len)
            .map(|t| {
                ins.iter()
                    .map(|(n, x)| {
                        let inner: usize = x.shape[2..].iter().product();
                        let l = x.shape[1];
                        let data: Vec<f32> = (0..req.batch)
                            .flat_map(|b| x.data[(b * l + t) * inner..(b * l + t + 1) * inner].to_vec())
                            .collect();
                        let mut shape = x.shape.clone();
                        shape[1] = 1;
                        (*n, Tensor::new(shape, data))
                    })
                    .collect()
            })
            .collect();
        let bar = progress((req.seq_len * (req.iters + 1)) as u64, req.json, "decode");
        let mut timed = 0.0;
        for it in 0..=req.iters {
            let mut state = model.new_state(req.batch).map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            for r in &rows {
                model.step(&mut state, r).map_err(|e| e.to_string())?;
                bar.inc(1);
            }
            if it > 0 {
                timed += t0.elapsed().as_secs_f64();
            }
        }
        bar.finish_and_clear();
        ((req.seq_len * req.iters) as f64, timed)
    } else {
        if req.profile {
            seqc_runtime::profile::enable();
        }
        let bar = progress((req.iters + 1) as u64, req.json, "prefill");
        let mut timed = 0.0;
        for it in 0..=req.iters {
            let t0 = Instant::now();
            model.forward(&ins).map_err(|e| e.to_string())?;
            bar.inc(1);
            if it > 0 {
                timed += t0.elapsed().as_secs_f64();
            }
        }
        bar.finish_and_clear();
        ((req.seq_len * req.iters) as f64, timed)
    };
    let profile = if req.profile { seqc_runtime::profile::take() } else { Vec::new() };
    if req.profile && !req.json {
        let total: f64 = profile.iter().map(|r| r.1).sum();
        eprintln!("time by kernel (warm-up run included):");
        for (what, secs, n) in profile.iter().take(15) {
            eprintln!("  {:5.1}%  {:9.3} ms  {n:6}x  {what}", 100.0 * secs / total, secs * 1e3);
        }
    }
    // Per sequence position; a decode step advances every sequence of the batch.
    let steps_per_s = tokens / seconds;
    let tokens_per_s = steps_per_s * req.batch as f64;
    let ms_per_token = if req.decode { 1e3 / steps_per_s } else { 1e3 / tokens_per_s };
    let peak = peak_bytes().unwrap_or(0);
    let mode = if req.decode { "decode" } else { "prefill" };
    let weight_dtype = match req.precision {
        seqc_runtime::Precision::F32 => "f32",
        seqc_runtime::Precision::Bf16 => "bf16",
    };
    if req.json {
        let mut out = serde_json::json!({
            "model": name, "mode": mode, "batch": req.batch, "seq_len": req.seq_len, "iters": req.iters,
            "tokens_per_s": tokens_per_s, "ms_per_token": ms_per_token, "peak_bytes": peak, "compile_ms": compile_ms,
            "threads": rayon_threads(), "artifact": artifact, "weight_dtype": weight_dtype,
            "codegen": codegen,
        });
        if req.profile {
            // Every launch, the warm-up run included (`iters + 1` runs).
            out["profile"] = profile
                .iter()
                .map(|(what, secs, n)| serde_json::json!({"what": what, "ms": secs * 1e3, "launches": n}))
                .collect();
        }
        println!("{out}");
    } else {
        println!(
            "{name}: {mode}, B = {}, L = {}, {} timed runs, {} threads, {codegen}",
            req.batch,
            req.seq_len,
            req.iters,
            rayon_threads()
        );
        println!("  tokens/s      {tokens_per_s:.1}");
        if req.decode {
            println!("  ms per step   {ms_per_token:.3}  (every sequence of the batch advances one position)");
        } else {
            println!("  ms per token  {ms_per_token:.4}");
        }
        println!("  peak memory   {:.1} MiB (resident, whole process)", peak as f64 / (1 << 20) as f64);
        if artifact {
            println!("  load          {compile_ms:.1} ms (artifact to runnable code, no code generation)");
        } else {
            println!("  compile       {compile_ms:.1} ms (checked source to runnable code)");
        }
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
