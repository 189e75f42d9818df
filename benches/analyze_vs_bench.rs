//! Checks `seqc analyze`'s estimates against reality: for every example at three
//! lengths, the estimated prefill time (roofline on the measured `cpu` profile)
//! against `seqc bench` on this machine, and the Spearman rank correlation
//! between them. Run: `cargo bench --bench analyze_vs_bench`.

use serde_json::Value;
use std::process::Command;

/// Every example at a size this machine runs in seconds.
const MODELS: &[(&str, &str)] = &[
    ("mamba.seq", "d_model=256,n_layer=2,vocab=1000"),
    ("transformer.seq", "d_model=256,n_layer=2,n_heads=4,n_kv_heads=2,d_ff=512,vocab=1000"),
    ("s4d.seq", "d_input=16,d_model=256,d_state=32,n_layer=2,d_output=16"),
    ("hyena.seq", "d_model=256,n_layer=2,vocab=1000"),
    ("griffin.seq", "d_model=256,d_rnn=256,n_heads=4,window=64,n_group=1,d_ff=512,vocab=1000"),
    ("hybrid.seq", "d_model=256,n_group=1,n_heads=4,n_kv_heads=2,d_ff=512,vocab=1000,d_state=16"),
    ("gla.seq", "d_model=256,n_heads=4,n_layer=2,vocab=1000"),
];
const LENGTHS: [usize; 3] = [128, 512, 2048];

fn seqc_json(args: &[&str]) -> Value {
    let o =
        Command::new(env!("CARGO_BIN_EXE_seqc")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    assert!(o.status.success(), "seqc {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        for k in i..=j {
            r[idx[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (a.iter().map(|x| (x - ma).powi(2)).sum(), b.iter().map(|y| (y - mb).powi(2)).sum());
    cov / (va * vb).sqrt()
}

fn main() {
    let (mut est, mut meas) = (Vec::new(), Vec::new());
    println!("{:<16} {:>6} {:>14} {:>14} {:>8}", "model", "L", "estimated s", "measured s", "ratio");
    for (file, config) in MODELS {
        let path = format!("dsl-examples/{file}");
        for l in LENGTHS {
            let ls = l.to_string();
            let a = seqc_json(&["analyze", &path, "--config", config, "--seq-len", &ls, "--device", "cpu", "--json"]);
            let e = a["lengths"][0]["est_seconds"].as_f64().unwrap();
            let b = seqc_json(&["bench", &path, "--config", config, "--seq-len", &ls, "--iters", "2", "--json"]);
            let m = b["ms_per_token"].as_f64().unwrap() * l as f64 / 1e3;
            println!("{file:<16} {l:>6} {e:>14.6} {m:>14.6} {:>8.2}", m / e);
            est.push(e);
            meas.push(m);
        }
    }
    let rho = pearson(&ranks(&est), &ranks(&meas));
    println!("Spearman rank correlation, estimated vs measured prefill time ({} points): {rho:.3}", est.len());
}
