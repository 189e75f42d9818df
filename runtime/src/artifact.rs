//! Ahead-of-time artifacts: `seqc compile FILE --target cpu -o DIR` writes a
//! directory that [`crate::Model::load_artifact`] runs without generating code.
//!
//! ```text
//! DIR/model.seq       the source, as compiled
//! DIR/manifest.json   format, seqc version, config, the CPU features the code
//!                     uses, and per mode the kernel module's fingerprint
//! DIR/kernels.o       every mode's kernels (parallel, step, chunk), relocatable
//!                     (to link into a program)
//! DIR/libkernels.so   the same, linked as a shared library (what loading opens)
//! ```
//!
//! Loading checks and schedules the source again (no code generation), and
//! takes the library only if each mode's kernel module has the fingerprint the
//! manifest records: machine code never runs with a launch plan other than the
//! one it was compiled against, whatever compiler version loads it.

use crate::exec::Program;
use crate::Codegen;
use crate::Error;
use seqc_compiler::ir::kernel::KernelModule;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub const SOURCE: &str = "model.seq";
pub const MANIFEST: &str = "manifest.json";
pub const OBJECT: &str = "kernels.o";
pub const LIBRARY: &str = "libkernels.so";
/// Bumped whenever the directory's layout or the manifest's meaning changes.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub seqc: String,
    pub model: String,
    /// The config overrides it was compiled with (`d_model=256`).
    pub config: String,
    /// The code generator (absent in artifacts of seqc before LLVM: Cranelift).
    #[serde(default)]
    pub codegen: Codegen,
    /// The CPU features the code was compiled with: Cranelift's ISA flags
    /// (`has_avx2`, ...) or LLVM's (`llvm:avx2`, ...).
    pub features: Vec<String>,
    pub parallel: ModuleEntry,
    /// Absent when the model has no step form.
    pub step: Option<ModuleEntry>,
    /// Several positions from a state (`forward_from`); absent in artifacts of
    /// seqc before it, which then run `forward_from` step by step.
    #[serde(default)]
    pub chunk: Option<ModuleEntry>,
}

#[derive(Serialize, Deserialize)]
pub struct ModuleEntry {
    /// The symbol prefix of this mode's kernels in the library.
    pub prefix: String,
    pub kernels: usize,
    /// FNV-1a of the kernel module's printed form.
    pub fingerprint: String,
}

/// A stable fingerprint of a kernel module: FNV-1a (64 bits) of its text.
pub fn fingerprint(m: &KernelModule) -> String {
    let text = seqc_compiler::ir::kernel::print::print(m);
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// What [`write`] wrote.
pub struct Written {
    pub files: Vec<String>,
    pub kernels: usize,
}

/// Writes the artifact of a model compiled from `source` with `config`.
#[allow(clippy::too_many_arguments)]
pub fn write(
    dir: &Path,
    codegen: Codegen,
    model: &str,
    source: &[u8],
    config: &str,
    parallel: &KernelModule,
    step: Option<&KernelModule>,
    chunk: Option<&KernelModule>,
) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut modules = vec![("parallel", parallel)];
    modules.extend(step.map(|s| ("step", s)));
    modules.extend(chunk.map(|c| ("chunk", c)));
    let object = compile_object(codegen, &modules)?;
    let entry = |prefix: &str, m: &KernelModule| ModuleEntry {
        prefix: prefix.to_string(),
        kernels: m.kernels.len(),
        fingerprint: fingerprint(m),
    };
    let manifest = Manifest {
        format: FORMAT,
        seqc: env!("CARGO_PKG_VERSION").to_string(),
        model: model.to_string(),
        config: config.to_string(),
        codegen,
        features: native_features(codegen)?,
        parallel: entry("parallel", parallel),
        step: step.map(|s| entry("step", s)),
        chunk: chunk.map(|c| entry("chunk", c)),
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Compiler(e.to_string()))?;
    for (name, bytes) in [(SOURCE, source), (OBJECT, &object), (MANIFEST, json.as_bytes())] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    link(dir)?;
    let kernels = [Some(parallel), step, chunk].iter().flatten().map(|m| m.kernels.len()).sum();
    Ok(Written { files: [SOURCE, MANIFEST, OBJECT, LIBRARY].map(String::from).to_vec(), kernels })
}

fn compile_object(codegen: Codegen, modules: &[(&str, &KernelModule)]) -> Result<Vec<u8>, Error> {
    let object = match codegen {
        Codegen::Cranelift => seqc_cranelift::compile_object(modules),
        #[cfg(feature = "llvm")]
        Codegen::Llvm => seqc_llvm::compile_object(modules),
        #[cfg(not(feature = "llvm"))]
        Codegen::Llvm => return Err(Error::Compiler(crate::NO_LLVM.to_string())),
    };
    object.map_err(|e| Error::Compiler(e.to_string()))
}

/// The CPU features code from `codegen` relies on, on this machine.
fn native_features(codegen: Codegen) -> Result<Vec<String>, Error> {
    let features = match codegen {
        Codegen::Cranelift => seqc_cranelift::native_features(),
        #[cfg(feature = "llvm")]
        Codegen::Llvm => seqc_llvm::native_features(),
        #[cfg(not(feature = "llvm"))]
        Codegen::Llvm => return Err(Error::Compiler(crate::NO_LLVM.to_string())),
    };
    features.map_err(|e| Error::Compiler(e.to_string()))
}

/// Links the object into a shared library with the system's C compiler.
fn link(dir: &Path) -> Result<(), Error> {
    seqc_codegen::native::link_shared(&[dir.join(OBJECT)], &dir.join(LIBRARY)).map_err(|e| Error::Io(e.to_string()))
}

/// Reads an artifact's manifest and source, checking the format and that this
/// CPU has every feature its code uses.
pub fn read(dir: &Path) -> Result<(Manifest, Vec<u8>), Error> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| io(&path, format!("not a seqc manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(io(
            &path,
            format!("artifact format {} (this seqc reads {FORMAT}); compile it again", manifest.format),
        ));
    }
    let here = native_features(manifest.codegen)?;
    let missing: Vec<&String> = manifest.features.iter().filter(|f| !here.contains(f)).collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(Error::Io(format!(
            "{}: compiled for a CPU with {}, which this one lacks; compile it again here",
            dir.display(),
            list.join(", ")
        )));
    }
    let path = dir.join(SOURCE);
    let source = std::fs::read(&path).map_err(|e| io(&path, e))?;
    Ok((manifest, source))
}

/// The kernels of one mode from the artifact's library, for `module` as
/// scheduled here; refused unless its fingerprint is the manifest's.
pub fn load_program(
    dir: &Path,
    library: &Arc<libloading::Library>,
    entry: &ModuleEntry,
    module: KernelModule,
) -> Result<Program, Error> {
    if fingerprint(&module) != entry.fingerprint || module.kernels.len() != entry.kernels {
        return Err(Error::Io(format!(
            "{}: the {} kernels were compiled from a different kernel module than this seqc derives from \
             the source (another seqc version?); compile it again",
            dir.display(),
            entry.prefix
        )));
    }
    // SAFETY: the library was compiled from a module with this fingerprint,
    // each kernel under its symbol with the native signature.
    let code = unsafe { seqc_codegen::native::kernels_from(library, &module, &entry.prefix) }
        .map_err(|e| Error::Io(format!("{}: {LIBRARY}: {e}", dir.display())))?;
    Ok(Program::new(module, code))
}

/// Opens the artifact's library.
pub fn open_library(dir: &Path) -> Result<Arc<libloading::Library>, Error> {
    seqc_codegen::native::open_library(&dir.join(LIBRARY)).map_err(|e| Error::Io(e.to_string()))
}
