//! seqc's second CPU code generator: the same kernel IR as
//! `seqc-cranelift`, compiled by LLVM 19 for this machine's CPU with its full
//! vector width (AVX2's 8 lanes, AVX-512's 16, where Cranelift's x86-64
//! backend has 4) and LLVM's optimiser. Kernels follow
//! [`seqc_codegen::native`]'s ABI, and the element functions are
//! [`seqc_codegen::math`]'s, so the runtime runs either backend's code the same
//! way.
//!
//! LLVM writes object files: [`compile`] shares the kernels among threads
//! (one object each), links the objects into a shared library with the
//! system's C compiler and loads it, the path an artifact takes (so there is
//! one loader, and no JIT whose lifetime is tied to an LLVM context).

mod gen;
mod values;

use gen::{Gen, Target};
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, TargetMachine, TargetTriple};
use inkwell::OptimizationLevel;
use seqc_codegen::native::{code_size, kernel_symbol, representatives, BackendError, Compiled};
use seqc_compiler::ir::kernel::KernelModule;
use std::sync::atomic::{AtomicU64, Ordering};

/// LLVM's errors say where they come from.
fn fail(e: impl std::fmt::Display) -> BackendError {
    BackendError(format!("llvm: {e}"))
}

/// This machine, as LLVM sees it. Vector loops take its widest `f32` vectors,
/// unless `SEQC_LLVM_LANES` (4, 8 or 16) says otherwise: 8 on an AVX-512 CPU
/// that slows its clock for 512-bit work, or 16 on any CPU (LLVM splits
/// vectors wider than the machine's).
struct Host {
    machine: TargetMachine,
    triple: TargetTriple,
    target: Target,
    /// LLVM's feature string of this CPU (`+avx2,+fma,...`).
    features: String,
}

fn host() -> Result<Host, BackendError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| inkwell::targets::Target::initialize_native(&InitializationConfig::default()))
        .clone()
        .map_err(fail)?;
    let triple = TargetMachine::get_default_triple();
    let target = inkwell::targets::Target::from_triple(&triple).map_err(fail)?;
    let cpu = TargetMachine::get_host_cpu_name().to_string();
    let features = TargetMachine::get_host_cpu_features().to_string();
    // Code generation at `-O1`: kernels arrive vectorised and optimised (the
    // pass pipeline below), and `-O2`'s machine passes took half again as long
    // (the 130M Mamba's two modes: 45-80 -> 22-54 ms per thread) for kernels
    // that measured the same (decode profile: scan and element-wise kernels
    // level within run-to-run noise; prefill 4,600-4,800 -> 4,900-5,200 tok/s).
    let machine = target
        .create_target_machine(&triple, &cpu, &features, OptimizationLevel::Less, RelocMode::PIC, CodeModel::Default)
        .ok_or_else(|| fail(format!("no target machine for {cpu} ({})", triple.as_str().to_string_lossy())))?;
    let has = |f: &str| features.split(',').any(|x| x == format!("+{f}"));
    let widest = if has("avx512f") {
        16
    } else if has("avx") {
        8
    } else {
        4
    };
    let lanes = match std::env::var("SEQC_LLVM_LANES") {
        Err(_) => widest,
        Ok(v) => match v.parse::<u32>() {
            Ok(n @ (4 | 8 | 16)) => n,
            _ => return Err(fail(format!("SEQC_LLVM_LANES is `{v}`; it takes 4, 8 or 16"))),
        },
    };
    Ok(Host { machine, triple, target: Target { lanes, fma: has("fma") }, features })
}

/// The CPU features code compiled here relies on (LLVM's names of those this
/// CPU has), for an artifact to record and a loader to check.
pub fn native_features() -> Result<Vec<String>, BackendError> {
    let h = host()?;
    let mut on: Vec<String> =
        h.features.split(',').filter_map(|f| f.strip_prefix('+')).map(|f| format!("llvm:{f}")).collect();
    on.sort();
    Ok(on)
}

/// The passes kernels get. LLVM's `default<O2>` is built for C: it inlines,
/// unrolls and vectorises, and kernels arrive vectorised, without calls to
/// inline. These are the passes that change their machine code: registers out
/// of memory (`sroa`), common and invariant work computed once (`early-cse`,
/// `gvn`, `licm`), loops rotated to one branch per iteration, simpler
/// induction variables and constants folded. The code measured the same
/// instruction counts as `default<O2>`'s, for a third of its time (the 130M
/// Mamba's kernels: 40-95 -> 8-26 ms per thread, of a compile under 300 ms).
/// `no-verify-fixpoint`: a run that stops short of a fixpoint is no error.
const PIPELINE: &str = "function(sroa,early-cse<memssa>,instcombine<no-verify-fixpoint>,simplifycfg,\
    loop-mssa(licm,loop-rotate,licm),loop(indvars),gvn,sccp,instcombine<no-verify-fixpoint>,simplifycfg)";

/// Which kernels an LLVM module defines: those of `modules[i]` whose indices
/// `kernels[i]` lists, each a representative (`representatives`).
type Share = Vec<Vec<usize>>;

/// Every distinct kernel of each module, in one share.
fn whole(modules: &[(&str, &KernelModule)]) -> Share {
    modules.iter().map(|(_, m)| distinct(m)).collect()
}

/// The kernels of `m` with code of their own.
fn distinct(m: &KernelModule) -> Vec<usize> {
    representatives(m).into_iter().enumerate().filter(|(i, r)| i == r).map(|(i, _)| i).collect()
}

/// The distinct kernels of `m` in `parts` shares of about equal code, largest
/// first to the least loaded (LLVM's time grows with the code; by count alone,
/// one thread of the 130M Mamba got twice the other's work).
fn balanced(m: &KernelModule, parts: usize) -> Vec<Share> {
    let mut kernels: Vec<(usize, usize)> = distinct(m).into_iter().map(|i| (code_size(&m.kernels[i]), i)).collect();
    kernels.sort_by(|a, b| b.cmp(a));
    let mut shares = vec![(0usize, Vec::new()); parts.max(1)];
    for (size, i) in kernels {
        let least = shares.iter_mut().min_by_key(|(load, _)| *load).expect("at least one part");
        least.0 += size;
        least.1.push(i);
    }
    // One share at least, if empty: a module without kernels still has a library.
    shares
        .into_iter()
        .enumerate()
        .filter(|(part, (_, ks))| *part == 0 || !ks.is_empty())
        .map(|(_, (_, mut ks))| {
            ks.sort();
            vec![ks]
        })
        .collect()
}

/// Builds an LLVM module defining `share` of each `(prefix, module)`'s
/// distinct kernels under [`kernel_symbol`]; optimised unless `optimise` is
/// false.
fn build<'c>(
    ctx: &'c Context,
    host: &Host,
    target: Target,
    modules: &[(&str, &KernelModule)],
    share: &Share,
    optimise: bool,
) -> Result<Module<'c>, BackendError> {
    let module = ctx.create_module("seqc_kernels");
    module.set_triple(&host.triple);
    module.set_data_layout(&host.machine.get_target_data().get_data_layout());
    let ptr = ctx.ptr_type(inkwell::AddressSpace::default());
    let i64t = ctx.i64_type();
    let sig = ctx.void_type().fn_type(&[ptr.into(), ptr.into(), i64t.into(), i64t.into()], false);
    let builder = ctx.create_builder();
    for ((prefix, m), kernels) in modules.iter().zip(share) {
        for &i in kernels {
            let f = module.add_function(&kernel_symbol(prefix, i), sig, Some(Linkage::External));
            Gen::define(ctx, &builder, &module, f, &m.kernels[i], m.dims.len(), target);
        }
    }
    module.verify().map_err(|e| fail(format!("generated IR does not verify: {e}")))?;
    if optimise {
        module.run_passes(PIPELINE, &host.machine, PassBuilderOptions::create()).map_err(fail)?;
    }
    Ok(module)
}

/// Compiles each `(prefix, module)` into one relocatable, position-independent
/// object file for this machine, kernel `i` exported as
/// [`kernel_symbol`]`(prefix, i)` (repeated kernels once, under their first
/// occurrence). The kernels call only the C math library.
pub fn compile_object(modules: &[(&str, &KernelModule)]) -> Result<Vec<u8>, BackendError> {
    object(modules, &whole(modules))
}

/// The object file of `share` of the modules' distinct kernels.
fn object(modules: &[(&str, &KernelModule)], share: &Share) -> Result<Vec<u8>, BackendError> {
    let h = host()?;
    let ctx = Context::create();
    let module = build(&ctx, &h, h.target, modules, share, true)?;
    let buffer = h.machine.write_to_memory_buffer(&module, FileType::Object).map_err(fail)?;
    Ok(buffer.as_slice().to_vec())
}

/// Compiles every kernel of `m` for this machine and loads it. The kernels are
/// shared among threads, each compiling its own object file (LLVM spends
/// most of a model's compile time per function); one library links them.
pub fn compile(m: &KernelModule) -> Result<Compiled, BackendError> {
    const PREFIX: &str = "jit";
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    host()?; // LLVM's target registry, initialised before the threads use it.
    let shares = balanced(m, threads);
    let objects: Vec<Vec<u8>> = std::thread::scope(|s| {
        let jobs: Vec<_> = shares.iter().map(|share| s.spawn(move || object(&[(PREFIX, m)], share))).collect();
        jobs.into_iter().map(|j| j.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect::<Vec<_>>()
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    // A private directory per compilation: the library is mapped once opened,
    // and the files are removed whatever happens.
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "seqc-llvm-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let loaded = (|| {
        let mut paths = Vec::new();
        for (i, bytes) in objects.iter().enumerate() {
            let path = dir.join(format!("kernels{i}.o"));
            std::fs::write(&path, bytes).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            paths.push(path);
        }
        let lib = dir.join("libkernels.so");
        seqc_codegen::native::link_shared(&paths, &lib)?;
        let library = seqc_codegen::native::open_library(&lib)?;
        // SAFETY: the library was just compiled from `m` under `PREFIX`.
        unsafe { seqc_codegen::native::kernels_from(&library, m, PREFIX) }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}

/// The optimised LLVM IR of every kernel, as `seqc compile --emit llvm` prints
/// it for this machine.
pub fn ir(m: &KernelModule) -> Result<String, BackendError> {
    let h = host()?;
    let ctx = Context::create();
    let module = build(&ctx, &h, h.target, &[("k", m)], &whole(&[("k", m)]), true)?;
    let text = module.print_to_string().to_string();
    Ok(text)
}

/// The LLVM IR of every kernel before optimisation, for `lanes` vector lanes
/// with or without fused multiply-adds: the same text on every machine, for
/// snapshots.
pub fn ir_with(m: &KernelModule, lanes: u32, fma: bool) -> Result<String, BackendError> {
    let h = host()?;
    let ctx = Context::create();
    let module = build(&ctx, &h, Target { lanes, fma }, &[("k", m)], &whole(&[("k", m)]), false)?;
    // The body only: the header names this machine's triple and layout.
    let text = module.print_to_string().to_string();
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("target ") && !l.starts_with("source_filename"))
        .collect::<Vec<_>>()
        .join("\n"))
}
