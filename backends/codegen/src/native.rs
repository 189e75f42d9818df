//! The native kernel ABI both CPU code generators compile to, and what goes
//! with it: the functions kernels call on the host, and the deduplication of
//! kernels with the same code.
//!
//! Each kernel of a [`KernelModule`] becomes
//!
//! ```text
//! extern "C" fn(buffers: *const *mut f32, dims: *const i64, lo: i64, hi: i64)
//! ```
//!
//! running grid points `lo..hi` of its grid loop; the runtime hands ranges of
//! the grid to threads.

use seqc_compiler::ir::kernel::{Expr, Kernel, KernelModule, LoopKind, Stmt, Var};
use seqc_compiler::ir::ScalarFn;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A compiled kernel: runs grid points `lo..hi`.
pub type KernelFn = unsafe extern "C" fn(buffers: *const *mut f32, dims: *const i64, lo: i64, hi: i64);

/// Code generation failed (a compiler bug, or an unsupported host).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A [`BackendError`] saying `e`.
pub fn fail(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// The native code of a module's kernels; the functions live as long as it does.
pub struct Compiled {
    // Owns the executable memory the function pointers point into (a JIT
    // module, or a loaded library).
    _code: Box<dyn std::any::Any>,
    pub kernels: Vec<KernelFn>,
}

// The owner is only kept alive, never used again, and the functions are pure
// code over the buffers their callers pass.
unsafe impl Send for Compiled {}
unsafe impl Sync for Compiled {}

impl Compiled {
    /// Kernels kept alive by `owner` (a JIT module, a loaded library).
    ///
    /// # Safety
    /// Each function has [`KernelFn`]'s signature, was compiled from the
    /// kernel of the same index of the module it is run with, and lives as
    /// long as `owner`.
    pub unsafe fn new(owner: Box<dyn std::any::Any>, kernels: Vec<KernelFn>) -> Compiled {
        Compiled { _code: owner, kernels }
    }
}

/// The symbol of kernel `i` of the module named `prefix` in an object file.
pub fn kernel_symbol(prefix: &str, i: usize) -> String {
    format!("seqc_{prefix}_k{i}")
}

/// For each kernel of `m`, the first kernel with the same code (all but its
/// name): a layer repeated `n` times is compiled once, not `n` times. An
/// object file defines only these; a loader maps the others with this same
/// function.
pub fn representatives(m: &KernelModule) -> Vec<usize> {
    use std::hash::{Hash, Hasher};
    // Everything but the name: what the code is made of.
    #[allow(clippy::type_complexity)]
    fn code(k: &Kernel) -> (usize, Var, &[Stmt], u32, u32, &Option<Expr>) {
        (k.params, k.grid_var, &k.body, k.vars, k.regs, &k.scratch)
    }
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
    m.kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            code(k).hash(&mut h);
            let alike = seen.entry(h.finish()).or_default();
            match alike.iter().find(|&&j| code(&m.kernels[j]) == code(k)) {
                Some(&j) => j,
                None => {
                    alike.push(i);
                    i
                }
            }
        })
        .collect()
}

/// Roughly how much code kernel `k` compiles to, in IR operations: what a
/// code generator's time grows with, to share kernels evenly among threads.
/// A vector loop counts twice (its body and its scalar tail), and a math
/// function as the twenty-odd operations of its polynomial.
pub fn code_size(k: &Kernel) -> usize {
    fn expr(e: &Expr) -> usize {
        1 + match e {
            Expr::Int(_) | Expr::Float(_) | Expr::Var(_) | Expr::Dim(_) | Expr::Reg(_) => 0,
            Expr::Load { index, .. } => expr(index),
            Expr::Int2(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => expr(a) + expr(b),
            Expr::Not(a) | Expr::ToFloat(a) | Expr::ToInt(a) => expr(a),
            Expr::Select(c, a, b) => expr(c) + expr(a) + expr(b),
            Expr::Call(f, args) => {
                use ScalarFn::*;
                let body = match f {
                    Exp | Log | Log1p | Tanh | Sigmoid | Silu | Gelu | Softplus | Cos | Sin | Pow => 24,
                    _ => 0,
                };
                body + args.iter().map(expr).sum::<usize>()
            }
        }
    }
    fn stmts(body: &[Stmt]) -> usize {
        body.iter()
            .map(|s| {
                1 + match s {
                    Stmt::For { extent, kind, body, .. } => {
                        let copies = if matches!(kind, LoopKind::Vector(_)) { 2 } else { 1 };
                        expr(extent) + copies * stmts(body)
                    }
                    Stmt::Let { value, .. } | Stmt::Set { value, .. } => expr(value),
                    Stmt::Store { index, value, .. } => expr(index) + expr(value),
                    Stmt::If { cond, then } => expr(cond) + stmts(then),
                    Stmt::Barrier => 0,
                }
            })
            .sum()
    }
    stmts(&k.body)
}

/// Links object files into shared library `library`: kernels need only the C
/// math library. With `$CC` when set; else with the system linker `ld`
/// directly (the C compiler's driver adds nothing such a library needs and
/// cost about 15 ms a link, twice in a model's first run), falling back to
/// `cc` where `ld` is missing or fails.
pub fn link_shared(objects: &[impl AsRef<Path>], library: &Path) -> Result<(), BackendError> {
    if let Ok(cc) = std::env::var("CC") {
        return link_with(&cc, objects, library);
    }
    link_with("ld", objects, library).or_else(|_| link_with("cc", objects, library))
}

fn link_with(tool: &str, objects: &[impl AsRef<Path>], library: &Path) -> Result<(), BackendError> {
    let what = library.display();
    let out = std::process::Command::new(tool)
        .arg("-shared")
        .arg("-o")
        .arg(library)
        .args(objects.iter().map(|o| o.as_ref()))
        .arg("-lm")
        .output()
        .map_err(|e| fail(format!("linking {what} with `{tool}`: {e} (set CC to a C compiler)")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "linking {what} with `{tool}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Opens a shared library of kernels.
pub fn open_library(path: &Path) -> Result<Arc<libloading::Library>, BackendError> {
    // An absolute path, so the loader does not search the library path.
    let path = std::fs::canonicalize(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    // SAFETY: a kernel library has no initialisers of its own; it defines
    // kernels and at most a few math wrappers over libm.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(Arc::new(lib))
}

/// The kernels of module `m`, defined in `library` under
/// [`kernel_symbol`]`(prefix, i)` for each representative `i`.
///
/// # Safety
/// The library was compiled from a module with `m`'s kernels, each under its
/// symbol with [`KernelFn`]'s signature.
pub unsafe fn kernels_from(
    library: &Arc<libloading::Library>,
    m: &KernelModule,
    prefix: &str,
) -> Result<Compiled, BackendError> {
    let mut kernels: Vec<KernelFn> = Vec::with_capacity(m.kernels.len());
    for (i, rep) in representatives(m).into_iter().enumerate() {
        if rep != i {
            kernels.push(kernels[rep]);
            continue;
        }
        let symbol = kernel_symbol(prefix, i);
        // SAFETY: the caller's promise.
        let f: KernelFn = unsafe { *library.get::<KernelFn>(symbol.as_bytes()).map_err(fail)? };
        kernels.push(f);
    }
    // SAFETY: the library lives as long as the `Compiled`.
    Ok(unsafe { Compiled::new(Box::new(library.clone()), kernels) })
}

/// The host function computing `f`, for those not generated inline.
pub fn host_name(f: ScalarFn) -> Option<&'static str> {
    Some(match f {
        ScalarFn::Pow => "seqc_pow",
        _ => return None,
    })
}

macro_rules! host {
    ($($name:ident($($a:ident),*) = $body:expr;)*) => {
        $(extern "C" fn $name($($a: f32),*) -> f32 {
            $(let $a = $a as f64;)*
            ($body) as f32
        })*
        /// Functions the generated code calls, by symbol: in f64 over the C
        /// library's, rounded once.
        pub const HOST_FUNCTIONS: &[(&str, *const u8)] = &[$((stringify!($name), $name as *const u8)),*];
    };
}

host! {
    seqc_pow(x, y) = x.powf(y);
}

/// How many arguments host function `name` takes.
pub fn host_arity(name: &str) -> usize {
    if name == "seqc_pow" {
        2
    } else {
        1
    }
}
