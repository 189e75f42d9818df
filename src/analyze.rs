//! `seqc analyze`: cost, memory and the SSM-or-attention decision for a model,
//! from its fused graph (`seqc_compiler::analysis::cost`) and a device profile.
//! Time is a roofline estimate per op: `max(FLOPs / peak, bytes / bandwidth)`.

use seqc_compiler::analysis::cost::{self, Category, Group};
use seqc_compiler::analysis::count::Count;
use seqc_compiler::sema::CheckedModel;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A device: its peak arithmetic rate and memory bandwidth.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub name: String,
    /// FLOP/s at the analysed dtype.
    pub peak_flops: f64,
    /// Bytes/s from main memory.
    pub bandwidth: f64,
}

pub struct Request {
    pub seq_lens: Vec<usize>,
    pub batch: usize,
    pub bf16: bool,
    pub budget: Option<f64>,
    pub device: String,
    pub json: bool,
    pub symbolic: bool,
    pub plot: Option<PathBuf>,
}

/// One model's costs, per layer group.
pub struct Analysis {
    pub name: String,
    pub groups: Vec<Group>,
    /// Per group: FLOPs and bytes (exact), and the ops' own costs for the roofline.
    flops: Vec<Count>,
    bytes: Vec<Count>,
    ops: Vec<Vec<cost::OpCost>>,
    /// Per group: step-mode state per batch, fixed and growing with `L`.
    state: Vec<(Count, Count)>,
    graph: seqc_compiler::ir::Graph,
    elem: f64,
    pub weight_bytes: f64,
}

impl Analysis {
    pub fn new(m: &CheckedModel, bf16: bool) -> Result<Analysis, String> {
        let mut graph = m.graph.clone();
        seqc_compiler::passes::run_until(&mut graph, None).map_err(|e| format!("internal compiler error: {e}"))?;
        let elem = if bf16 { 2.0 } else { 4.0 };
        let all = cost::costs(&graph, elem);
        let groups = cost::groups(&graph, &m.layers);
        let ops: Vec<Vec<cost::OpCost>> =
            groups.iter().map(|g| g.nodes.iter().map(|&n| all[n].clone()).collect()).collect();
        let sum = |f: &dyn Fn(&cost::OpCost) -> &Count, g: &Vec<cost::OpCost>| {
            g.iter().fold(Count::zero(), |a, c| a.add(f(c)))
        };
        let flops = ops.iter().map(|g| sum(&|c| &c.flops, g)).collect();
        let bytes = ops.iter().map(|g| sum(&|c| &c.bytes, g)).collect();
        let state = cost::state_bytes(&graph, &groups, &m.layers, elem);
        let weight_bytes = cost::weight_bytes(&graph, elem);
        Ok(Analysis { name: m.name.clone(), groups, flops, bytes, ops, state, graph, elem, weight_bytes })
    }

    /// Roofline time of group `k` at `(b, l)`.
    pub fn time(&self, k: usize, p: &Profile, b: f64, l: f64) -> f64 {
        self.ops[k].iter().map(|c| (c.flops.eval(b, l) / p.peak_flops).max(c.bytes.eval(b, l) / p.bandwidth)).sum()
    }

    pub fn total_time(&self, p: &Profile, b: f64, l: f64) -> f64 {
        (0..self.groups.len()).map(|k| self.time(k, p, b, l)).sum()
    }

    /// Step-mode state bytes of group `k` for `b` sequences of `l` positions.
    pub fn state_bytes(&self, k: usize, b: f64, l: f64) -> f64 {
        self.state[k].0.eval(b, l) + self.state[k].1.eval(b, l)
    }

    pub fn total_state(&self, b: f64, l: f64) -> f64 {
        (0..self.groups.len()).map(|k| self.state_bytes(k, b, l)).sum()
    }

    pub fn activation(&self, b: f64, l: f64) -> (f64, Count) {
        cost::activation_peak(&self.graph, self.elem, b, l)
    }

    fn category_time(&self, c: Category, p: &Profile, b: f64, l: f64) -> f64 {
        (0..self.groups.len()).filter(|&k| self.groups[k].category == c).map(|k| self.time(k, p, b, l)).sum()
    }

    fn category_state(&self, c: Category, b: f64, l: f64) -> f64 {
        (0..self.groups.len()).filter(|&k| self.groups[k].category == c).map(|k| self.state_bytes(k, b, l)).sum()
    }

    fn has(&self, c: Category) -> bool {
        self.groups.iter().any(|g| g.category == c)
    }

    /// Total FLOPs and bytes at `(b, l)`.
    pub fn totals(&self, b: f64, l: f64) -> (f64, f64) {
        (self.flops.iter().map(|f| f.eval(b, l)).sum(), self.bytes.iter().map(|f| f.eval(b, l)).sum())
    }
}

/// The smallest `L` in `1..=2^26` where `f(L) > 0` given `f(1) <= 0`, if any.
fn first_positive(f: &dyn Fn(f64) -> f64) -> Option<usize> {
    if f(1.0) > 0.0 {
        return Some(1);
    }
    let mut hi = 2usize;
    while f(hi as f64) <= 0.0 {
        hi *= 2;
        if hi > 1 << 26 {
            return None;
        }
    }
    let mut lo = hi / 2;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if f(mid as f64) > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The largest `n` in `1..=2^26` with `fits(n)`, if `fits(1)`; `Err` when every
/// one fits (unbounded).
fn largest(fits: &dyn Fn(f64) -> bool) -> Result<Option<usize>, ()> {
    if !fits(1.0) {
        return Ok(None);
    }
    first_positive(&|n| if fits(n) { -1.0 } else { 1.0 }).map_or(Err(()), |first_bad| Ok(Some(first_bad - 1)))
}

/// `24GiB`, `512MB`, `1e9`: bytes.
pub fn parse_bytes(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a size like 24GiB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` (B, KB, MB, GB, KiB, MiB, GiB, ...)")),
    };
    Ok(n * scale)
}

/// The built-in H200 profile: 4.8 TB/s; 67 TFLOP/s in f32 (CUDA cores), 989 in
/// bf16 (dense tensor cores).
pub fn h200(bf16: bool) -> Profile {
    Profile { name: "h200".into(), peak_flops: if bf16 { 989e12 } else { 67e12 }, bandwidth: 4.8e12 }
}

/// A device profile by name or file: `cpu` (measured once, cached), `h200`, or
/// a TOML file with `name`, `peak_flops` and `bandwidth`.
pub fn profile(device: &str, bf16: bool) -> Result<Profile, String> {
    match device {
        "h200" => Ok(h200(bf16)),
        "cpu" => cpu_profile(),
        path => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let p: Profile = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            if !(p.peak_flops > 0.0 && p.bandwidth > 0.0) {
                return Err(format!("{path}: `peak_flops` and `bandwidth` must be positive"));
            }
            Ok(p)
        }
    }
}

fn cache_path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    // Versioned: a change to the probes measures again.
    base.join("seqc").join("cpu-profile-v2.toml")
}

/// This machine, measured on first use: a 1024 x 1024 x 1024 product through
/// the runtime (gemm) and a parallel read of 256 MiB; cached afterwards.
fn cpu_profile() -> Result<Profile, String> {
    let path = cache_path();
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(p) = toml::from_str::<Profile>(&text) {
            return Ok(p);
        }
    }
    eprintln!("measuring this CPU's peak FLOP/s and bandwidth (once; cached in {})", path.display());
    let src = b"model probe {\n  config {\n    d = 1024\n  }\n  input x: f32[B, L, d]\n  output y: f32[B, L, d]\n  weights {\n    w: linear(d, d, bias = false)\n  }\n  forward {\n    y = w(x)\n  }\n}\n";
    let model = seqc_runtime::Model::compile_source("probe.seq", src, &Default::default())
        .map_err(|e| e.to_string())?
        .init_weights(0);
    let x = seqc_runtime::Tensor::new(vec![1, 1024, 1024], vec![0.5; 1024 * 1024]);
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let t = std::time::Instant::now();
        model.forward(&[("x", x.clone())]).map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let peak_flops = 2.0 * 1024f64.powi(3) / best;
    let n = 64 << 20;
    let data = vec![1.0f32; n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        // Eight independent sums per thread, so the reads, not the additions,
        // bound the loop.
        let total: f32 = std::thread::scope(|s| {
            let sum = |c: &[f32]| {
                let lanes = c.chunks_exact(8).fold([0f32; 8], |mut acc, x| {
                    for (a, v) in acc.iter_mut().zip(x) {
                        *a += v;
                    }
                    acc
                });
                lanes.iter().sum::<f32>()
            };
            let parts: Vec<_> = data.chunks(n.div_ceil(threads)).map(|c| s.spawn(move || sum(c))).collect();
            parts.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let p = Profile { name: "cpu".into(), peak_flops, bandwidth: (n * 4) as f64 / best };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&path, toml::to_string(&p).unwrap_or_default());
    Ok(p)
}

fn si(x: f64, unit: &str) -> String {
    let (v, p) = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .iter()
        .find(|(s, _)| x.abs() >= *s)
        .map_or((x, ""), |(s, p)| (x / s, *p));
    format!("{v:.3}{p}{unit}").replace(".000", "")
}

fn bytes(x: f64) -> String {
    let (v, p) = [(1024f64.powi(4), "TiB"), (1024f64.powi(3), "GiB"), (1024f64.powi(2), "MiB"), (1024.0, "KiB")]
        .iter()
        .find(|(s, _)| x.abs() >= *s)
        .map_or((x, "B"), |(s, p)| (x / s, *p));
    if p == "B" {
        format!("{v:.0} B")
    } else {
        format!("{v:.2} {p}")
    }
}

fn seconds(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.3} s")
    } else if t >= 1e-3 {
        format!("{:.3} ms", t * 1e3)
    } else {
        format!("{:.3} us", t * 1e6)
    }
}

/// The text report of one model.
pub fn report(a: &Analysis, req: &Request, p: &Profile) -> String {
    let b = req.batch as f64;
    let mut out = String::new();
    let dtype = if req.bf16 { "bf16" } else { "f32" };
    let _ = writeln!(
        out,
        "{}: B = {}, {dtype}, weights {}; device {} ({}FLOP/s, {}B/s)",
        a.name,
        req.batch,
        bytes(a.weight_bytes),
        p.name,
        si(p.peak_flops, ""),
        si(p.bandwidth, "")
    );
    for &l in &req.seq_lens {
        let lf = l as f64;
        let _ = writeln!(out, "\nL = {l}");
        let _ = writeln!(
            out,
            "  {:<14} {:<10} {:>5} {:>11} {:>11} {:>7} {:>11} {:>12}",
            "layer", "kind", "count", "FLOPs", "bytes", "FLOP/B", "est. time", "state (step)"
        );
        for (k, g) in a.groups.iter().enumerate() {
            let (f, by) = (a.flops[k].eval(b, lf), a.bytes[k].eval(b, lf));
            let _ = writeln!(
                out,
                "  {:<14} {:<10} {:>5} {:>11} {:>11} {:>7.1} {:>11} {:>12}",
                g.kind,
                g.category.name(),
                g.instances.len().max(1),
                si(f, ""),
                bytes(by),
                f / by.max(1.0),
                seconds(a.time(k, p, b, lf)),
                bytes(a.state_bytes(k, b, lf))
            );
        }
        let (f, by) = a.totals(b, lf);
        let _ = writeln!(
            out,
            "  {:<14} {:<10} {:>5} {:>11} {:>11} {:>7.1} {:>11} {:>12}",
            "total",
            "",
            "",
            si(f, ""),
            bytes(by),
            f / by.max(1.0),
            seconds(a.total_time(p, b, lf)),
            bytes(a.total_state(b, lf))
        );
        let _ = writeln!(out, "  activations (parallel mode, peak): {}", bytes(a.activation(b, lf).0));
    }
    if req.symbolic {
        let _ =
            writeln!(out, "\nas expressions in B and L (tri(L) = L(L+1)/2, winW(L) = sum over i < L of min(i+1, W);");
        let _ = writeln!(
            out,
            "  convT(L), convkT(L): a T-tap long convolution's work per sequence and per filter, direct or FFT):"
        );
        for (k, g) in a.groups.iter().enumerate() {
            let _ = writeln!(out, "  {} FLOPs: {}", g.kind, a.flops[k]);
            let _ = writeln!(out, "  {} bytes: {}", g.kind, a.bytes[k]);
            let state = a.state[k].0.add(&a.state[k].1);
            if !state.is_zero() {
                let _ = writeln!(out, "  {} state bytes (step): {}", g.kind, state);
            }
        }
        let last = *req.seq_lens.last().unwrap_or(&1) as f64;
        let _ = writeln!(out, "  activation bytes at the peak (parallel): {}", a.activation(b, last).1);
    }
    out.push_str(&crossovers(a, p, b));
    if let Some(budget) = req.budget {
        out.push_str(&fits(a, b, budget, req.seq_lens.iter().copied().max().unwrap_or(1)));
    }
    out.push_str(&recommend(a, req, p));
    out
}

fn crossovers(a: &Analysis, p: &Profile, b: f64) -> String {
    let mut out = String::from("\ncrossover\n");
    if !(a.has(Category::Attention) && (a.has(Category::Recurrent) || a.has(Category::LongConv))) {
        let _ = writeln!(out, "  none: the model does not mix attention with recurrent or convolution layers");
        return out;
    }
    let seq = |l: f64| a.category_time(Category::Recurrent, p, b, l) + a.category_time(Category::LongConv, p, b, l);
    let att = |l: f64| a.category_time(Category::Attention, p, b, l);
    match first_positive(&|l| att(l) - seq(l)) {
        Some(l) => {
            let _ = writeln!(
                out,
                "  time: attention layers cost more than the recurrent ones from L = {l} ({} vs {})",
                seconds(att(l as f64)),
                seconds(seq(l as f64))
            );
        }
        None => {
            let _ = writeln!(out, "  time: attention layers stay cheaper than the recurrent ones up to L = 2^26");
        }
    }
    let s_att = |l: f64| a.category_state(Category::Attention, b, l);
    let s_seq = |l: f64| a.category_state(Category::Recurrent, b, l) + a.category_state(Category::LongConv, b, l);
    match first_positive(&|l| s_att(l) - s_seq(l)) {
        Some(l) => {
            let _ = writeln!(
                out,
                "  memory (step mode): key/value caches outgrow the recurrent states from L = {l} ({} vs {})",
                bytes(s_att(l as f64)),
                bytes(s_seq(l as f64))
            );
        }
        None => {
            let _ = writeln!(out, "  memory (step mode): the recurrent states stay larger up to L = 2^26");
        }
    }
    out
}

fn fits(a: &Analysis, b: f64, budget: f64, l: usize) -> String {
    let mut out = format!("\nmemory budget {} (weights {} included)\n", bytes(budget), bytes(a.weight_bytes));
    let parallel = |b: f64, l: f64| a.weight_bytes + a.activation(b, l).0;
    let step = |b: f64, l: f64| a.weight_bytes + a.total_state(b, l);
    for (mode, mem) in [("parallel", &parallel as &dyn Fn(f64, f64) -> f64), ("step", &step)] {
        let longest = match largest(&|n| mem(b, n) <= budget) {
            Ok(Some(n)) => format!("{n}"),
            Ok(None) => "none (the weights alone do not fit)".into(),
            Err(()) => "unbounded (constant-size state)".into(),
        };
        let batch = match largest(&|n| mem(n, l as f64) <= budget) {
            Ok(Some(n)) => format!("{n}"),
            Ok(None) => "none".into(),
            Err(()) => "over 2^26".into(),
        };
        let _ = writeln!(out, "  {mode:<8} longest sequence at B = {b}: {longest}; largest batch at L = {l}: {batch}");
    }
    out
}

/// The decision path, each step with the numbers behind it.
fn recommend(a: &Analysis, req: &Request, p: &Profile) -> String {
    let b = req.batch as f64;
    let l = req.seq_lens.iter().copied().max().unwrap_or(1);
    let lf = l as f64;
    let mut out = String::from("\nrecommendation\n");
    let long = l > 1024;
    let _ =
        writeln!(out, "  1. length: the longest requested is L = {l}, {} 1K", if long { "above" } else { "not above" });
    let _ = writeln!(
        out,
        "  2. causal: yes, proved by the causality check (no output at position l reads an input after l)"
    );
    let (f, by) = a.totals(b, lf);
    let ridge = p.peak_flops / p.bandwidth;
    let memory_bound = f / by < ridge;
    let _ = writeln!(
        out,
        "  3. memory-bound: {} (parallel mode: {:.1} FLOP/byte against the device's ridge of {:.1}; step mode reads every weight per position: {:.2} FLOP/byte)",
        if memory_bound { "yes" } else { "no" },
        f / by,
        ridge,
        f / lf / (a.weight_bytes + a.total_state(b, lf)).max(1.0)
    );
    let global: Vec<&str> = a.groups.iter().filter(|g| g.global).map(|g| g.kind.as_str()).collect();
    let _ = writeln!(
        out,
        "  4. global context: {}",
        if global.is_empty() {
            "no layer reads every past position by content".to_string()
        } else {
            format!("`{}` reads every past position (attention without a window)", global.join("`, `"))
        }
    );
    let att_share = a.category_time(Category::Attention, p, b, lf) / a.total_time(p, b, lf).max(1e-30);
    let kv = a.category_state(Category::Attention, b, lf);
    let verdict = match (a.has(Category::Attention), a.has(Category::Recurrent) || a.has(Category::LongConv)) {
        (true, false) if long => format!(
            "attention only at L = {l}: attention is {:.0}% of the estimated time and its caches hold {} per batch in step mode; an SSM or a hybrid (few attention layers) cuts both",
            att_share * 100.0,
            bytes(kv)
        ),
        (true, false) => format!("attention only at L = {l}: at this length attention costs {:.0}% of the time; it is a sound choice, the more so if global context matters", att_share * 100.0),
        (false, true) => format!(
            "recurrent only: constant state ({} per batch at any length) and time linear in L; keep it, unless tasks need exact recall of distant tokens (add a few attention layers)",
            bytes(a.total_state(b, lf))
        ),
        (true, true) => format!(
            "hybrid: attention is {:.0}% of the estimated time at L = {l} and its caches {} per batch; {}",
            att_share * 100.0,
            bytes(kv),
            if att_share > 0.5 { "fewer attention layers (or windows) would pay" } else { "the balance is reasonable at this length" }
        ),
        (false, false) => "no sequence mixing: every layer is position-wise".to_string(),
    };
    let _ = writeln!(out, "  => {verdict}");
    out
}

/// The JSON report: for each length, totals and per-layer numbers.
pub fn json(a: &Analysis, req: &Request, p: &Profile) -> serde_json::Value {
    let b = req.batch as f64;
    let lengths: Vec<serde_json::Value> = req
        .seq_lens
        .iter()
        .map(|&l| {
            let lf = l as f64;
            let layers: Vec<serde_json::Value> = a
                .groups
                .iter()
                .enumerate()
                .map(|(k, g)| {
                    serde_json::json!({
                        "layer": g.kind, "category": g.category.name(), "count": g.instances.len(),
                        "flops": a.flops[k].eval(b, lf), "bytes_moved": a.bytes[k].eval(b, lf),
                        "est_seconds": a.time(k, p, b, lf), "state_bytes": a.state_bytes(k, b, lf),
                    })
                })
                .collect();
            let (f, by) = a.totals(b, lf);
            serde_json::json!({
                "seq_len": l, "batch": req.batch, "flops": f, "bytes_moved": by,
                "activation_bytes": a.activation(b, lf).0, "state_bytes": a.total_state(b, lf),
                "est_seconds": a.total_time(p, b, lf), "layers": layers,
            })
        })
        .collect();
    serde_json::json!({
        "model": a.name, "dtype": if req.bf16 { "bf16" } else { "f32" }, "weight_bytes": a.weight_bytes,
        "device": p, "lengths": lengths,
    })
}

/// Named lines of `(length, value)` points, one panel's.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Time and memory against `L`, log-log: one line per layer kind and the total,
/// the budget as a horizontal line.
pub fn plot(a: &Analysis, req: &Request, p: &Profile, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let b = req.batch as f64;
    let max_l = (req.seq_lens.iter().copied().max().unwrap_or(1024) as f64 * 4.0).max(64.0);
    let ls: Vec<f64> = (0..=40).map(|i| 16f64 * (max_l / 16.0).powf(i as f64 / 40.0)).collect();
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(500);
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK, RGBColor(200, 120, 0), RGBColor(120, 60, 200)];
    let series = |f: &dyn Fn(usize, f64) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
        let mut out: Series = a
            .groups
            .iter()
            .enumerate()
            .map(|(k, g)| (g.kind.clone(), ls.iter().map(|&l| (l, f(k, l).max(1e-12))).collect()))
            .collect();
        let total = ls.iter().map(|&l| (l, (0..a.groups.len()).map(|k| f(k, l)).sum::<f64>().max(1e-12))).collect();
        out.push(("total".into(), total));
        out
    };
    // A drawing area, its title, its lines and the budget line it draws.
    type Panel<'a, 'b> = (&'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>, &'a str, Series, Option<f64>);
    let panels: [Panel; 2] = [
        (&left, "estimated time (s)", series(&|k, l| a.time(k, p, b, l)), None),
        (
            &right,
            "memory (bytes): step-mode state; total adds weights",
            {
                let mut s = series(&|k, l| a.state_bytes(k, b, l));
                if let Some(t) = s.last_mut() {
                    for pt in &mut t.1 {
                        pt.1 += a.weight_bytes;
                    }
                }
                s
            },
            req.budget,
        ),
    ];
    for (area, title, lines, budget) in panels {
        let ymin = lines.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(f64::INFINITY, f64::min).max(1e-12);
        let mut ymax = lines.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(0.0, f64::max);
        if let Some(bud) = budget {
            ymax = ymax.max(bud);
        }
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((16f64..max_l).log_scale(), (ymin..ymax * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("sequence length L").draw().map_err(|e| e.to_string())?;
        for (i, (name, pts)) in lines.into_iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        if let Some(bud) = budget {
            chart
                .draw_series(LineSeries::new(vec![(16.0, bud), (max_l, bud)], BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label("budget")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        }
        chart.configure_series_labels().border_style(BLACK).draw().map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Two models side by side.
pub fn compare(a: &Analysis, b2: &Analysis, req: &Request, p: &Profile) -> String {
    let b = req.batch as f64;
    let mut out = format!(
        "{} against {}: B = {}, device {}\n  {:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
        a.name, b2.name, req.batch, p.name, "L", "time A", "time B", "state A", "state B", "activ. A", "activ. B"
    );
    for &l in &req.seq_lens {
        let lf = l as f64;
        let _ = writeln!(
            out,
            "  {:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            l,
            seconds(a.total_time(p, b, lf)),
            seconds(b2.total_time(p, b, lf)),
            bytes(a.total_state(b, lf)),
            bytes(b2.total_state(b, lf)),
            bytes(a.activation(b, lf).0),
            bytes(b2.activation(b, lf).0)
        );
    }
    let _ = writeln!(out, "  weights: {} against {}", bytes(a.weight_bytes), bytes(b2.weight_bytes));
    let dt = |l: f64| a.total_time(p, b, l) - b2.total_time(p, b, l);
    let ds = |l: f64| a.total_state(b, l) - b2.total_state(b, l);
    for (what, f) in [("time", &dt as &dyn Fn(f64) -> f64), ("step-mode state", &ds)] {
        let sign = f(1.0) > 0.0;
        let flip = first_positive(&|l| if sign { -f(l) } else { f(l) });
        let (x, y) = if sign { (&b2.name, &a.name) } else { (&a.name, &b2.name) };
        let _ = match flip {
            Some(l) => writeln!(out, "  {what}: {x} is below {y} until L = {l}, above from there"),
            None => writeln!(out, "  {what}: {x} stays below {y} up to L = 2^26"),
        };
    }
    out
}
