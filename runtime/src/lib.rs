//! seqc's runtime: compiles a `.seq` model for the CPU and runs it from Rust, on
//! whole sequences ([`Model::forward`]), or from a state whose layout the
//! compiler derived ([`Model::new_state`]): one position at a time
//! ([`Model::step`]) or several at once ([`Model::forward_from`]); and on
//! requests of different lengths back to back ([`Model::forward_packed`]).
//!
//! ```no_run
//! use seqc_runtime::{Model, Options, Tensor};
//! let model = Model::compile_file("dsl-examples/mamba.seq", &Options::default())?
//!     .load_weights("mamba.safetensors")?;
//! let tokens = Tensor::new(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0]);
//! let out = model.forward(&[("tokens", tokens)])?;
//! # Ok::<(), seqc_runtime::Error>(())
//! ```
//!
//! Every mode runs compiled code: the parallel graph after the passes, and the
//! step, chunk and packed graphs derived from it, each scheduled into kernels and
//! compiled by Cranelift (or LLVM); dense products call `gemm`.

mod artifact;
mod attention;
mod exec;
mod longconv;
mod products;
pub mod profile;
mod state;
mod team;
#[cfg(test)]
mod testing;

pub use state::State;

use exec::{Program, Source};
use seqc_compiler::diag::{render_text, ColorChoice};
use seqc_compiler::ir::interp;
use seqc_compiler::ir::kernel::Role;
use seqc_compiler::ir::Op;
use seqc_compiler::passes::{packed_derivation, step_derivation};
use seqc_compiler::sema::{Checked, CheckedModel};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// A dense f32 tensor, row-major. Token ids are held as f32 (exact below 2^24).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "a tensor's data fills its shape");
        Tensor { shape, data }
    }

    /// Token ids (or any integers) as a tensor.
    pub fn from_ids(shape: Vec<usize>, ids: &[u32]) -> Tensor {
        Tensor::new(shape, ids.iter().map(|&i| i as f32).collect())
    }
}

/// What can go wrong, with a message that names the tensor or the source line.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The `.seq` source has errors (rendered diagnostics).
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Weights(String),
    #[error("{0}")]
    Input(String),
    /// A compiler limitation or bug (scheduling, code generation).
    #[error("internal compiler error: {0}")]
    Compiler(String),
    /// A mode this model has no form for (yet): step mode for a scan that
    /// starts from a tensor, say.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(String),
}

/// Compilation options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Config overrides, `d_model=256,n_layer=2`.
    pub config: String,
    /// How the weights that only products read are held in memory.
    pub weights: Precision,
    /// Which code generator compiles the kernels.
    pub codegen: Codegen,
}

/// The code generator of the kernels (the products, attention and FFTs are
/// library calls either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codegen {
    /// Cranelift: compiles in milliseconds, 4-lane vectors.
    #[default]
    Cranelift,
    /// LLVM 19 (the `llvm` feature): the CPU's full vector width and LLVM's
    /// optimiser, for a longer compile.
    Llvm,
}

impl Codegen {
    pub fn name(self) -> &'static str {
        match self {
            Codegen::Cranelift => "cranelift",
            Codegen::Llvm => "llvm",
        }
    }

    /// Native code for every kernel of `m`.
    fn compile(self, m: &seqc_compiler::ir::kernel::KernelModule) -> Result<seqc_cranelift::Compiled, String> {
        match self {
            Codegen::Cranelift => seqc_cranelift::compile(m).map_err(|e| e.to_string()),
            #[cfg(feature = "llvm")]
            Codegen::Llvm => seqc_llvm::compile(m).map_err(|e| e.to_string()),
            #[cfg(not(feature = "llvm"))]
            Codegen::Llvm => Err(NO_LLVM.to_string()),
        }
    }
}

#[cfg(not(feature = "llvm"))]
const NO_LLVM: &str = "this build of seqc has no LLVM code generator (build it with the `llvm` feature)";

/// The precision of the weights that dense products read (the linear layers
/// and a tied output head: nearly all of a model's bytes). Every other weight
/// stays f32, and every sum is accumulated in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    /// Rounded to bf16 (to nearest, ties to even) when loaded: half the memory,
    /// and half the bytes a decode step reads.
    Bf16,
}

/// Dimension sizes by name (`B`, `L`).
type Dims = HashMap<String, usize>;

/// A weight held for products, `[in, out]`.
enum ProductWeight {
    F32(products::Held<f32>),
    Bf16(products::Held<half::bf16>),
}

/// A derivation of the parallel graph (`step_derivation::derive`, `derive_chunk`).
type Derive = fn(&seqc_compiler::ir::Graph) -> Result<seqc_compiler::ir::Graph, step_derivation::StepError>;

/// A mode derived from the parallel graph (step, chunk, packed), compiled
/// when first used.
#[derive(Default)]
struct Derived {
    program: OnceLock<Result<Program, Error>>,
    /// Whether it reads the weights held for products through products only
    /// (checked once per set of weights, not every run).
    reads_held: OnceLock<Result<(), String>>,
}

impl Derived {
    /// A mode whose program is already decided (an artifact's).
    fn loaded(program: Result<Program, Error>) -> Derived {
        let derived = Derived::default();
        let _ = derived.program.set(program);
        derived
    }
}

/// A compiled model with its weights.
pub struct Model {
    checked: CheckedModel,
    /// The graph after all passes, its weight-only values split off.
    graph: seqc_compiler::ir::Graph,
    /// What the graph computes from weights alone, run when weights are set
    /// (`passes::prologue`).
    prologue: Option<seqc_compiler::ir::Graph>,
    codegen: Codegen,
    parallel: Program,
    /// One position from a state (`step`).
    step: Derived,
    /// Several positions from a state (`forward_from`); `None` in an artifact
    /// written before chunk mode, which then runs step by step.
    chunk: Option<Derived>,
    /// Sequences of different lengths back to back (`forward_packed`); a
    /// model with no packed form (`Error::Unsupported`) pads instead.
    packed: Derived,
    /// Weights as the checkpoint lays them out, f32.
    weights: HashMap<String, Vec<f32>>,
    /// Weights products read, held as `[in, out]` (the layout both product
    /// kernels read fastest) in `precision`.
    products: HashMap<String, ProductWeight>,
    precision: Precision,
    /// The source and config it was compiled from, for an artifact.
    source: Option<(Vec<u8>, String)>,
}

/// What [`Model::write_artifact`] wrote.
#[derive(Clone, Debug)]
pub struct ArtifactSummary {
    /// File names inside the directory.
    pub files: Vec<String>,
    /// Kernels compiled, every mode together.
    pub kernels: usize,
    /// The modes compiled: `parallel`, then `step` and `chunk` where the model
    /// has them.
    pub modes: Vec<&'static str>,
    /// Why the artifact has no step mode, if it has none.
    pub no_step: Option<String>,
}

fn compile_graph(g: &seqc_compiler::ir::Graph, codegen: Codegen) -> Result<Program, String> {
    let module = seqc_compiler::schedule::schedule(g).map_err(|e| e.to_string())?;
    let code = codegen.compile(&module)?;
    Ok(Program::new(module, code))
}

impl Model {
    pub fn compile_file(path: impl AsRef<Path>, options: &Options) -> Result<Model, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Model::compile_source(&path.display().to_string(), &bytes, options)
    }

    /// Compiles source text; `name` is the file name diagnostics show.
    pub fn compile_source(name: &str, source: &[u8], options: &Options) -> Result<Model, Error> {
        let (session, result) = seqc_compiler::driver::check_bytes(name, source, &options.config);
        let checked = match result {
            Ok(Checked::Model(m)) => m,
            Ok(Checked::Layers(_)) => return Err(Error::Source(format!("{name}: the file has no model"))),
            Err(d) => return Err(Error::Source(render_text(&session.sources, &d, ColorChoice::Never))),
        };
        let model = Model::from_checked_with(checked, options.codegen)?.with_precision(options.weights);
        Ok(Model { source: Some((source.to_vec(), options.config.clone())), ..model })
    }

    /// Writes an ahead-of-time artifact to `dir` (created if missing): every
    /// mode's kernels as an object file and a shared library, the source and
    /// a manifest ([`Model::load_artifact`] runs it). Only a model compiled
    /// from source ([`Model::compile_file`], [`Model::compile_source`]) has
    /// what an artifact holds.
    pub fn write_artifact(&self, dir: impl AsRef<Path>) -> Result<ArtifactSummary, Error> {
        let Some((source, config)) = &self.source else {
            return Err(Error::Input("an artifact needs the model's source: compile it with `compile_file`".into()));
        };
        let (step, no_step) = match self.step_program() {
            Ok(p) => (Some(&p.module), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let chunk = match (step, &self.chunk) {
            (Some(_), Some(mode)) => Some(&self.derived(mode, step_derivation::derive_chunk)?.module),
            _ => None,
        };
        let written = artifact::write(
            dir.as_ref(),
            self.codegen,
            &self.checked.name,
            source,
            config,
            &self.parallel.module,
            step,
            chunk,
        )?;
        let modes = [Some("parallel"), step.map(|_| "step"), chunk.map(|_| "chunk")].into_iter().flatten().collect();
        Ok(ArtifactSummary { files: written.files, kernels: written.kernels, modes, no_step })
    }

    /// Loads an artifact [`Model::write_artifact`] wrote: the source is checked
    /// and scheduled again (no code is generated), and the library's kernels
    /// are used only if they were compiled from the same kernel modules.
    pub fn load_artifact(dir: impl AsRef<Path>) -> Result<Model, Error> {
        let dir = dir.as_ref();
        let (manifest, source) = artifact::read(dir)?;
        let name = dir.join(artifact::SOURCE).display().to_string();
        let (session, result) = seqc_compiler::driver::check_bytes(&name, &source, &manifest.config);
        let checked = match result {
            Ok(Checked::Model(m)) => m,
            Ok(Checked::Layers(_)) => return Err(Error::Source(format!("{name}: the file has no model"))),
            Err(d) => return Err(Error::Source(render_text(&session.sources, &d, ColorChoice::Never))),
        };
        let mut graph = checked.graph.clone();
        seqc_compiler::passes::run_until(&mut graph, None).map_err(Error::Compiler)?;
        let prologue = seqc_compiler::passes::prologue::split(&mut graph);
        let schedule = |g: &seqc_compiler::ir::Graph| seqc_compiler::schedule::schedule(g).map_err(|e| e.to_string());
        let library = artifact::open_library(dir)?;
        let parallel =
            artifact::load_program(dir, &library, &manifest.parallel, schedule(&graph).map_err(Error::Compiler)?)?;
        let load = |entry: &artifact::ModuleEntry, derive: Derive| -> Result<Derived, Error> {
            let module = derive(&graph).map_err(|e| e.to_string()).and_then(|g| schedule(&g));
            Ok(Derived::loaded(Ok(artifact::load_program(dir, &library, entry, module.map_err(Error::Compiler)?)?)))
        };
        let step = match &manifest.step {
            Some(entry) => load(entry, step_derivation::derive)?,
            None => Derived::loaded(Err(Error::Unsupported("the artifact has no step mode".to_string()))),
        };
        let chunk = manifest.chunk.as_ref().map(|entry| load(entry, step_derivation::derive_chunk)).transpose()?;
        Ok(Model {
            checked,
            graph,
            prologue,
            codegen: manifest.codegen,
            parallel,
            step,
            chunk,
            packed: Derived::default(),
            weights: HashMap::new(),
            products: HashMap::new(),
            precision: Precision::F32,
            source: Some((source, manifest.config)),
        })
    }

    /// Holds the weights products read in `precision` (now, and when weights are
    /// loaded later).
    pub fn with_precision(self, precision: Precision) -> Model {
        let mut model = Model { precision, ..self };
        if !model.products.is_empty() || !model.weights.is_empty() {
            let mut weights = std::mem::take(&mut model.weights);
            for (name, held) in std::mem::take(&mut model.products) {
                // Back to the checkpoint's layout, then held anew.
                let rows = match held {
                    ProductWeight::F32(t) => t.rows(),
                    ProductWeight::Bf16(t) => t.rows(),
                };
                // A weight kernels read too is kept as stored (rounded, if
                // it was held in bf16).
                weights.entry(name).or_insert(rows);
            }
            model = model.with_weights(weights);
        }
        model
    }

    /// How a loaded weight is held: `None` if no weight of that name is loaded.
    /// Weights that products read take the model's precision; one that kernels
    /// read too (a tied embedding) is then rounded for them as well.
    pub fn weight_precision(&self, name: &str) -> Option<Precision> {
        match self.products.get(name) {
            Some(ProductWeight::Bf16(_)) => Some(Precision::Bf16),
            Some(ProductWeight::F32(_)) => Some(Precision::F32),
            None => self.weights.contains_key(name).then_some(Precision::F32),
        }
    }

    /// Compiles a checked model (the graph as lowered) with Cranelift.
    pub fn from_checked(checked: CheckedModel) -> Result<Model, Error> {
        Model::from_checked_with(checked, Codegen::default())
    }

    /// Compiles a checked model with the given code generator.
    pub fn from_checked_with(checked: CheckedModel, codegen: Codegen) -> Result<Model, Error> {
        let mut graph = checked.graph.clone();
        seqc_compiler::passes::run_until(&mut graph, None).map_err(Error::Compiler)?;
        let prologue = seqc_compiler::passes::prologue::split(&mut graph);
        let parallel = compile_graph(&graph, codegen).map_err(Error::Compiler)?;
        Ok(Model {
            checked,
            graph,
            prologue,
            codegen,
            parallel,
            step: Derived::default(),
            chunk: Some(Derived::default()),
            packed: Derived::default(),
            weights: HashMap::new(),
            products: HashMap::new(),
            precision: Precision::F32,
            source: None,
        })
    }

    /// The code generator that compiled the kernels.
    pub fn codegen(&self) -> Codegen {
        self.codegen
    }

    /// The checked model: declarations, weight table, graph as lowered.
    pub fn checked(&self) -> &CheckedModel {
        &self.checked
    }

    /// The kernel module of parallel mode.
    pub fn kernels(&self) -> &seqc_compiler::ir::kernel::KernelModule {
        &self.parallel.module
    }

    /// Loads weights from a safetensors file (f32, f16 or bf16), checked against
    /// the model's declarations by name, shape and dtype.
    pub fn load_weights(self, path: impl AsRef<Path>) -> Result<Model, Error> {
        let stored = seqc_compiler::checkpoint::read(path.as_ref()).map_err(|e| Error::Weights(e.to_string()))?;
        let bound = seqc_compiler::bind::weights(&self.checked, stored).map_err(|e| Error::Weights(e.to_string()))?;
        let weights = bound.iter().map(|(k, t)| (k.clone(), t.data.iter().map(|&x| x as f32).collect())).collect();
        Ok(self.with_weights(weights))
    }

    /// Sets the weights from each declaration's `init`, deterministically for a seed.
    pub fn init_weights(self, seed: u64) -> Model {
        let w = seqc_compiler::init::init_weights(&self.checked, seed);
        let weights = w.iter().map(|(k, t)| (k.clone(), t.data.iter().map(|&x| x as f32).collect())).collect();
        self.with_weights(weights)
    }

    /// Sets weights already checked against the declarations (by the caller),
    /// flat and row-major, by checkpoint name.
    pub fn with_weights(mut self, mut weights: HashMap<String, Vec<f32>>) -> Model {
        // Decided from the parallel program alone, so loading weights never
        // compiles step mode; the step graph reads weights through the same
        // ops, and `step_program` checks that it agrees.
        self.products.clear();
        for mode in [Some(&mut self.step), self.chunk.as_mut(), Some(&mut self.packed)].into_iter().flatten() {
            mode.reads_held = OnceLock::new();
        }
        if let Some(prologue) = &self.prologue {
            weights.extend(run_prologue(prologue, &weights));
        }
        for (name, n, k, shared) in self.parallel.product_weights() {
            match (shared, self.precision) {
                // Kernels read it as stored (f32), products as rows (`dot`).
                (true, Precision::F32) => {}
                // Rounded where kernels read it, so that every use sees the
                // same values, and held in bf16 for the products (a tied
                // embedding: the bytes a decode step reads for its logits).
                (true, Precision::Bf16) => {
                    if let Some(w) = weights.get_mut(&name) {
                        w.iter_mut().for_each(|x| *x = half::bf16::from_f32(*x).to_f32());
                        let held = products::Held::new(w, n, k, half::bf16::from_f32);
                        self.products.insert(name, ProductWeight::Bf16(held));
                    }
                }
                (false, precision) => {
                    if let Some(w) = weights.remove(&name) {
                        let held = match precision {
                            Precision::F32 => ProductWeight::F32(products::Held::new(&w, n, k, |x| x)),
                            Precision::Bf16 => ProductWeight::Bf16(products::Held::new(&w, n, k, half::bf16::from_f32)),
                        };
                        self.products.insert(name, held);
                    }
                }
            }
        }
        self.weights = weights;
        self
    }

    /// Checks inputs against the declarations; returns `B`, `L` and the data
    /// (borrowed: a run reads the caller's tensors where they are).
    fn bind_inputs<'t>(&self, inputs: &'t [(&str, Tensor)]) -> Result<(Dims, HashMap<String, &'t [f32]>), Error> {
        if self.weights.is_empty() && self.products.is_empty() && !self.checked.weights.is_empty() {
            return Err(Error::Weights("no weights are loaded".into()));
        }
        let described: Vec<seqc_compiler::bind::InputOf> = inputs
            .iter()
            .map(|(n, t)| {
                let declared = self.checked.inputs.iter().find(|io| io.name == *n);
                let dtype = declared.map_or(seqc_compiler::syntax::ast::DType::F32, |io| io.ty.dtype);
                seqc_compiler::bind::InputOf { name: n, dtype, shape: &t.shape }
            })
            .collect();
        let dims =
            seqc_compiler::bind::input_dims(&self.checked, &described).map_err(|e| Error::Input(e.to_string()))?;
        let data: HashMap<String, &[f32]> = inputs.iter().map(|(n, t)| (n.to_string(), t.data.as_slice())).collect();
        self.check_ids(&data)?;
        Ok((dims, data))
    }

    /// Token ids index embedding tables: each must be an integer in range.
    fn check_ids(&self, data: &HashMap<String, &[f32]>) -> Result<(), Error> {
        for node in &self.graph.nodes {
            let Op::Embed = node.op else { continue };
            let Some(Op::Input { name }) =
                self.graph.nodes.iter().find(|n| n.results.contains(&node.operands[0])).map(|n| &n.op)
            else {
                continue;
            };
            let rows = self.graph.ty(node.operands[1]).shape[0].known().unwrap_or(i64::MAX);
            if let Some(bad) = data[name].iter().find(|&&v| v < 0.0 || v.fract() != 0.0 || v as i64 >= rows) {
                return Err(Error::Input(format!(
                    "input `{name}`: token id {bad} is out of range for an embedding of {rows} rows"
                )));
            }
        }
        Ok(())
    }

    /// Runs whole sequences: each input `[B, L, ...]`; returns each output.
    pub fn forward(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let (dims, data) = self.bind_inputs(inputs)?;
        let dims: HashMap<&str, usize> = dims.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let source = Bound { inputs: &data, weights: &self.weights, products: &self.products, states: None };
        let mut next = vec![Vec::new(); self.parallel.module.next_states.len()];
        let outs = self.parallel.run(&dims, &source, &mut next).map_err(Error::Compiler)?;
        Ok(self.named_outputs(outs, &dims))
    }

    /// Runs a packed batch of sequences of different lengths: each input holds
    /// them back to back, `[1, sum(lengths), ...]` (the layout varlen attention
    /// kernels take); each output comes back packed the same way.
    ///
    /// The sequences run as they lie, through the packed graph
    /// (`passes::packed_derivation`, compiled when first used): scans restart,
    /// convolutions and attention stop at each sequence's first position, so no
    /// padding is run. A model outside the packed form runs as one batch
    /// right-padded to the longest, which is exact because every model that
    /// checks is causal (padding after a sequence's end never reaches its
    /// positions); [`Model::packed_form`] says which.
    pub fn forward_packed(&self, inputs: &[(&str, Tensor)], lengths: &[usize]) -> Result<Vec<(String, Tensor)>, Error> {
        let total: usize = lengths.iter().sum();
        for (name, t) in inputs {
            if t.shape.len() < 2 || t.shape[0] != 1 || t.shape[1] != total {
                return Err(Error::Input(format!(
                    "packed input `{name}` has shape {:?}; expected [1, {total}, ...] (the lengths sum to {total})",
                    t.shape
                )));
            }
        }
        if lengths.is_empty() {
            return Err(Error::Input("a packed batch needs at least one sequence".into()));
        }
        if let Some(out) =
            self.checked.outputs.iter().find(|o| o.ty.shape.get(1).map(|d| d.to_string()) != Some("L".into()))
        {
            return Err(Error::Input(format!(
                "output `{}` is not per position ([B, L, ...]); it cannot be unpacked",
                out.name
            )));
        }
        if let Some(program) = self.packed_program()? {
            let (dims, mut data) = self.bind_inputs(inputs)?;
            let starts = starts(lengths);
            data.insert(packed_derivation::STARTS.to_string(), &starts);
            let dims: HashMap<&str, usize> = dims.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let source = Bound { inputs: &data, weights: &self.weights, products: &self.products, states: None };
            let mut next = Vec::new();
            let outs = program.run(&dims, &source, &mut next).map_err(Error::Compiler)?;
            return Ok(self.named_outputs(outs, &dims));
        }
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let padded: Vec<(&str, Tensor)> = inputs.iter().map(|(n, t)| (*n, pad(t, lengths, longest))).collect();
        let outs = self.forward(&padded)?;
        Ok(outs.into_iter().map(|(n, t)| (n, unpad(&t, lengths))).collect())
    }

    /// Whether [`Model::forward_packed`] runs the packed graph (`Ok`,
    /// compiling it if it is not yet) or pads (`Err(Error::Unsupported)`, with
    /// the reason: a form the packed derivation does not cover).
    pub fn packed_form(&self) -> Result<(), Error> {
        self.derived(&self.packed, packed_derivation::derive_packed).map(|_| ())
    }

    /// The packed program, compiled when first asked for; `None` for a model
    /// the packed derivation does not cover.
    fn packed_program(&self) -> Result<Option<&Program>, Error> {
        match self.derived(&self.packed, packed_derivation::derive_packed) {
            Ok(program) => Ok(Some(program)),
            Err(Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn named_outputs(&self, outs: Vec<Vec<f32>>, dims: &HashMap<&str, usize>) -> Vec<(String, Tensor)> {
        self.checked
            .outputs
            .iter()
            .zip(outs)
            .map(|(io, data)| {
                let shape = io
                    .ty
                    .shape
                    .iter()
                    .map(|d| match d {
                        seqc_compiler::sema::Dim::Known(v) => *v as usize,
                        seqc_compiler::sema::Dim::Sym(s) => dims.get(&**s).copied().unwrap_or(1),
                    })
                    .collect();
                (io.name.clone(), Tensor::new(shape, data))
            })
            .collect()
    }

    fn step_program(&self) -> Result<&Program, Error> {
        self.derived(&self.step, step_derivation::derive)
    }

    /// The program of a mode with a state, compiled from `derive`'s graph
    /// when first asked for.
    fn derived<'a, E: std::fmt::Display>(
        &'a self,
        mode: &'a Derived,
        derive: fn(&seqc_compiler::ir::Graph) -> Result<seqc_compiler::ir::Graph, E>,
    ) -> Result<&'a Program, Error> {
        let program = mode
            .program
            .get_or_init(|| {
                let graph = derive(&self.graph).map_err(|e| Error::Unsupported(e.to_string()))?;
                compile_graph(&graph, self.codegen).map_err(Error::Compiler)
            })
            .as_ref()
            .map_err(Error::clone)?;
        // Weights held for products alone must be read only by products here too.
        let checked = mode.reads_held.get_or_init(|| {
            let products = program.gemm_only_weights();
            let used = |name: &str| program.module.buffers.iter().any(|b| b.role == Role::Weight(name.to_string()));
            let product_only = self.products.keys().filter(|w| !self.weights.contains_key(*w));
            match product_only.into_iter().find(|w| used(w) && !products.iter().any(|(p, _, _)| p == *w)) {
                Some(w) => Err(format!("a mode with a state reads weight `{w}` outside a product; its layout differs")),
                None => Ok(()),
            }
        });
        checked.clone().map_err(Error::Compiler)?;
        Ok(program)
    }

    /// The state before the first position, for `batch` sequences.
    pub fn new_state(&self, batch: usize) -> Result<State, Error> {
        let program = self.step_program()?;
        Ok(State::new(&program.module, batch))
    }

    /// Runs one position: each input `[B, 1, ...]`; returns each output at it.
    pub fn step(&self, state: &mut State, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let program = self.step_program()?;
        let (dims, data) = self.bind_inputs(inputs)?;
        if dims.get("L").is_some_and(|&l| l != 1) {
            return Err(Error::Input("step takes one position (`L` = 1); use forward_from for more".into()));
        }
        if dims.get("B").is_some_and(|&b| b != state.batch) {
            return Err(Error::Input(format!("the state holds {} sequences, the inputs {}", state.batch, dims["B"])));
        }
        self.run_from(program, state, &data, 1)
    }

    /// Runs `len` positions of a step or chunk program from `state`.
    fn run_from(
        &self,
        program: &Program,
        state: &mut State,
        data: &HashMap<String, &[f32]>,
        len: usize,
    ) -> Result<Vec<(String, Tensor)>, Error> {
        let m = &program.module;
        let names = m.dims.iter().map(|d| d.as_str());
        let run_dims: HashMap<&str, usize> = names
            .filter_map(|d| step_derivation::dim_value(d, state.batch, state.position, len).map(|v| (d, v)))
            .collect();
        let mut next = state.take_spare(m.next_states.len());
        let source = Bound { inputs: data, weights: &self.weights, products: &self.products, states: Some(state) };
        let outs = match program.run(&run_dims, &source, &mut next) {
            Ok(outs) => outs,
            // Binding fails before any launch, so the state is as it was; one
            // that lacks a piece of this model's is the caller's mistake.
            Err(e) => {
                let missing = m.buffers.iter().find_map(|b| match &b.role {
                    Role::State { name, .. } if state.get(name).is_none() => Some(name),
                    _ => None,
                });
                return Err(match missing {
                    Some(name) => Error::Input(format!("the state holds no `{name}`: it is another model's")),
                    None => Error::Compiler(e),
                });
            }
        };
        state.advance(m, next, len);
        let dims = HashMap::from([("B", state.batch), ("L", len)]);
        Ok(self.named_outputs(outs, &dims))
    }

    /// Continues the sequences of `state` with `inputs` (`[B, L, ...]`, any `L`);
    /// returns the outputs of every position. All `L` positions run at once
    /// (the chunk graph: products over every row, each scan from the state),
    /// compiled when first used; one position runs as a step.
    pub fn forward_from(&self, state: &mut State, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let (dims, data) = self.bind_inputs(inputs)?;
        let len = dims.get("L").copied().unwrap_or(1);
        if dims.get("B").is_some_and(|&b| b != state.batch) {
            return Err(Error::Input(format!("the state holds {} sequences, the inputs {}", state.batch, dims["B"])));
        }
        match &self.chunk {
            // No positions: empty outputs, and the state as it was.
            _ if len == 0 => {
                let dims = HashMap::from([("B", state.batch), ("L", 0)]);
                Ok(self.named_outputs(vec![Vec::new(); self.checked.outputs.len()], &dims))
            }
            // One position: a step, on the inputs bound above.
            _ if len == 1 => self.run_from(self.step_program()?, state, &data, 1),
            Some(mode) => {
                let program = self.derived(mode, step_derivation::derive_chunk)?;
                self.run_from(program, state, &data, len)
            }
            None => self.forward_steps(state, inputs),
        }
    }

    /// What [`Model::forward_from`] computes, through step mode: one position
    /// at a time.
    pub fn forward_steps(&self, state: &mut State, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        let (dims, _) = self.bind_inputs(inputs)?;
        let len = dims.get("L").copied().unwrap_or(1);
        let mut rows: Vec<Vec<Tensor>> = Vec::new();
        for t in 0..len {
            let at: Vec<(&str, Tensor)> = inputs.iter().map(|(n, x)| (*n, row(x, t))).collect();
            for (i, (_, y)) in self.step(state, &at)?.into_iter().enumerate() {
                if rows.len() <= i {
                    rows.push(Vec::new());
                }
                rows[i].push(y);
            }
        }
        Ok(self.checked.outputs.iter().zip(rows).map(|(io, ys)| (io.name.clone(), join(&ys))).collect())
    }
}

/// Each position's first position, for sequences of `lengths` back to back
/// (the packed graph's `@start`).
fn starts(lengths: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(lengths.iter().sum());
    for &n in lengths {
        let first = out.len() as f32;
        out.extend(std::iter::repeat_n(first, n));
    }
    out
}

/// A packed `[1, sum(lengths), ...]` tensor as `[n, longest, ...]`, each
/// sequence right-padded with zeros (a valid token id, and never read).
fn pad(x: &Tensor, lengths: &[usize], longest: usize) -> Tensor {
    let inner: usize = x.shape[2..].iter().product();
    let mut data = vec![0f32; lengths.len() * longest * inner];
    let mut at = 0;
    for (i, &len) in lengths.iter().enumerate() {
        data[i * longest * inner..][..len * inner].copy_from_slice(&x.data[at * inner..(at + len) * inner]);
        at += len;
    }
    let mut shape = x.shape.clone();
    shape[0] = lengths.len();
    shape[1] = longest;
    Tensor::new(shape, data)
}

/// The valid positions of a padded `[n, longest, ...]` tensor, packed.
fn unpad(x: &Tensor, lengths: &[usize]) -> Tensor {
    let (longest, inner) = (x.shape[1], x.shape[2..].iter().product::<usize>());
    let mut data = Vec::with_capacity(lengths.iter().sum::<usize>() * inner);
    for (i, &len) in lengths.iter().enumerate() {
        data.extend_from_slice(&x.data[i * longest * inner..][..len * inner]);
    }
    let mut shape = x.shape.clone();
    shape[0] = 1;
    shape[1] = lengths.iter().sum();
    Tensor::new(shape, data)
}

/// Position `t` of a `[B, L, ...]` tensor, keeping the axis.
fn row(x: &Tensor, t: usize) -> Tensor {
    let (b, l) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let mut data = Vec::with_capacity(b * inner);
    for bi in 0..b {
        data.extend_from_slice(&x.data[(bi * l + t) * inner..(bi * l + t + 1) * inner]);
    }
    let mut shape = x.shape.clone();
    shape[1] = 1;
    Tensor::new(shape, data)
}

/// Tensors `[B, 1, ...]` joined along axis 1.
fn join(parts: &[Tensor]) -> Tensor {
    let mut shape = parts[0].shape.clone();
    let (b, l) = (shape[0], parts.len());
    let inner: usize = shape[2..].iter().product();
    let mut data = Vec::with_capacity(b * l * inner);
    for bi in 0..b {
        for p in parts {
            data.extend_from_slice(&p.data[bi * inner..(bi + 1) * inner]);
        }
    }
    shape[1] = l;
    Tensor::new(shape, data)
}

/// The weight-only values of a model, from its prologue graph (run by the
/// interpreter, in f64: once per set of weights, and small). A weight it needs
/// and does not find leaves its values out, and a run then names what is missing.
fn run_prologue(prologue: &seqc_compiler::ir::Graph, weights: &HashMap<String, Vec<f32>>) -> Vec<(String, Vec<f32>)> {
    let mut read = HashMap::new();
    for node in &prologue.nodes {
        if let Op::Weight { name } = &node.op {
            let Some(data) = weights.get(name) else { return Vec::new() };
            let shape = prologue.ty(node.results[0]).shape.iter().map(|d| d.known().unwrap_or(0) as usize).collect();
            read.insert(name.clone(), interp::Tensor::new(shape, data.iter().map(|&x| x as f64).collect()));
        }
    }
    let none = HashMap::new();
    match interp::run(prologue, &interp::Bindings { dims: &none, inputs: &HashMap::new(), weights: &read }) {
        Ok(values) => values.into_iter().map(|(name, t)| (name, t.data.iter().map(|&x| x as f32).collect())).collect(),
        Err(_) => Vec::new(),
    }
}

struct Bound<'a> {
    inputs: &'a HashMap<String, &'a [f32]>,
    weights: &'a HashMap<String, Vec<f32>>,
    products: &'a HashMap<String, ProductWeight>,
    states: Option<&'a State>,
}

impl Source for Bound<'_> {
    fn get(&self, role: &Role) -> Option<&[f32]> {
        match role {
            Role::Input(n) => self.inputs.get(n).copied(),
            Role::Weight(n) => self.weights.get(n).map(|v| v.as_slice()),
            Role::State { name, .. } => self.states?.get(name),
            Role::Temp | Role::Alias(_) => None,
        }
    }

    fn product_weight(&self, role: &Role) -> Option<products::Rhs<'_>> {
        let Role::Weight(n) = role else { return None };
        Some(match self.products.get(n)? {
            ProductWeight::F32(t) => products::Rhs::F32T(t),
            ProductWeight::Bf16(t) => products::Rhs::Bf16T(t),
        })
    }
}
