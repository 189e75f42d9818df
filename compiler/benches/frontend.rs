//! Front-end throughput: lex + parse + check of a generated 10,000-line file, and
//! of the examples. Also prints the peak heap use of one check of the big file.
//!
//! Run: `cargo bench -p seqc-compiler --bench frontend`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seqc_compiler::driver;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BLOCK: &str = r#"// Block NUM: a gated linear recurrence between projections.
layer blockNUM(d: int, e: int = 2) {
  let h = e * d

  weight up: linear(d, h, bias = false)
  weight gate: linear(d, h, bias = false)
  weight down: linear(h, d, bias = false)
  weight norm: rmsnorm(d)
  weight decay: f32[h] init uniform(0.5, 0.9)

  forward(x: f32[B, L, d]) -> f32[B, L, d] {
    let u = up(norm(x))
    let g = silu(gate(x))
    let a[b, l, c] = sigmoid(decay[c]) * g[b, l, c]
    scan l in L {
      state s[b, c] = 0
      s[b, c] = a[b, l, c] * s[b, c] + u[b, l, c]
      y[b, l, c] = s[b, c] * g[b, l, c]
    }
    let z[b, l, c] = y[b, l, c] + u[b, l - 1, c]
    return down(z) + x
  }
}

"#;

/// A model of `n` distinct user-defined layers, each instantiated and called once.
fn generated(lines: usize) -> String {
    let per_block = BLOCK.lines().count() + 2;
    let n = lines / per_block + 1;
    let mut src = String::new();
    for i in 0..n {
        src.push_str(&BLOCK.replace("NUM", &i.to_string()));
    }
    src.push_str("model big {\n  config {\n    d = 64\n  }\n\n  input x: f32[B, L, d]\n  output y: f32[B, L, d]\n\n  weights {\n");
    for i in 0..n {
        src.push_str(&format!("    b{i}: block{i}(d)\n"));
    }
    src.push_str("  }\n\n  forward {\n    let h = x\n");
    for i in 0..n {
        src.push_str(&format!("    h = b{i}(h)\n"));
    }
    src.push_str("    y = h\n  }\n}\n");
    src
}

fn bench(c: &mut Criterion) {
    let src = generated(10_000);
    let lines = src.lines().count();
    assert!(lines >= 10_000);
    let (_, result) = driver::check_bytes("big.seq", src.as_bytes(), "");
    assert!(result.is_ok(), "the generated file checks");

    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    let base = LIVE.load(Ordering::Relaxed);
    let _ = driver::check_bytes("big.seq", src.as_bytes(), "");
    println!(
        "parse+check of {lines} lines ({} bytes): peak heap {:.1} MiB",
        src.len(),
        (PEAK.load(Ordering::Relaxed) - base) as f64 / (1 << 20) as f64
    );

    let mut g = c.benchmark_group("frontend");
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function(format!("parse {lines} lines"), |b| {
        b.iter(|| seqc_compiler::syntax::parse(seqc_compiler::diag::FileId(1), &src))
    });
    g.bench_function(format!("parse+check {lines} lines"), |b| {
        b.iter(|| driver::check_bytes("big.seq", src.as_bytes(), ""))
    });
    let mamba = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../dsl-examples/mamba.seq")).unwrap();
    g.throughput(Throughput::Bytes(mamba.len() as u64));
    g.bench_function("check mamba.seq (24 layers)", |b| b.iter(|| driver::check_bytes("mamba.seq", &mamba, "")));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
