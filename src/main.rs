//! `seqc`: the command line. Thin: argument handling and printing; the work is in
//! `seqc_compiler::driver`.
//!
//! Exit status: 0 success, 1 an error in the user's input (with a diagnostic),
//! 2 a usage error.

use clap::{Parser, Subcommand, ValueEnum};
use seqc_compiler::diag::{self, ColorChoice, Diagnostic};
use seqc_compiler::driver::{self, Session};
use seqc_compiler::ir::interp::{self, Tensor};
use seqc_compiler::sema::{Checked, CheckedModel};
use seqc_compiler::syntax::{self, ast::DType};
use seqc_compiler::{bind, checkpoint, passes};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod analyze;
mod bench;
mod compiled;

#[derive(Parser)]
#[command(name = "seqc", version, about = "Compiler and runtime for sequence-model kernels")]
struct Cli {
    /// How diagnostics are printed.
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// Colour in diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Target {
    Cpu,
    Ptx,
    Mlir,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Engine {
    /// Compiled CPU code (Cranelift, gemm), f32.
    Cpu,
    /// The reference interpreter, f64.
    Interp,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum WeightDtype {
    F32,
    Bf16,
}

impl WeightDtype {
    fn precision(self) -> seqc_runtime::Precision {
        match self {
            WeightDtype::F32 => seqc_runtime::Precision::F32,
            WeightDtype::Bf16 => seqc_runtime::Precision::Bf16,
        }
    }
}

/// The CPU code generator.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum CodegenArg {
    /// Compiles in milliseconds; 4-lane vectors.
    Cranelift,
    /// The CPU's full vector width (8 lanes with AVX2, 16 with AVX-512) and
    /// LLVM's optimiser; compiles in about a second.
    Llvm,
}

impl CodegenArg {
    fn codegen(self) -> seqc_runtime::Codegen {
        match self {
            CodegenArg::Cranelift => seqc_runtime::Codegen::Cranelift,
            CodegenArg::Llvm => seqc_runtime::Codegen::Llvm,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum AnalyzeDtype {
    F32,
    Bf16,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum BenchMode {
    /// Whole sequences at once (`forward`).
    Prefill,
    /// One position at a time from a state (`step`), after a prompt of `--seq-len`.
    Decode,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Mode {
    /// Whole sequences at once.
    Parallel,
    /// One position at a time, from a state.
    Step,
    /// Every position at once, from a state (`forward_from`).
    Chunk,
    /// The batch's sequences back to back in one row (`forward_packed`).
    Packed,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Emit {
    Ast,
    Graph,
    /// The step-mode state layout.
    State,
    Kernel,
    Clif,
    Llvm,
    Ptx,
    Mlir,
}

#[derive(Subcommand)]
enum Command {
    /// Check .seq files: syntax, names, shapes, causality, scans, weights.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the checkpoint tensors the model expects (names, shapes, dtypes).
        #[arg(long)]
        weights: bool,
        /// Override config values: `d_model=256,n_layer=2`.
        #[arg(long, default_value = "")]
        config: String,
    },
    /// Compile a model.
    Compile {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Target::Cpu)]
        target: Target,
        /// What to print instead of writing an artifact.
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        #[arg(long, default_value = "")]
        config: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// With `--emit graph`: stop after this pass (`lower` for the graph as lowered).
        #[arg(long)]
        after: Option<String>,
        /// With `--emit graph|kernel|clif|llvm`: `step` prints the step graph (one
        /// position and the state in, the outputs and the next state out) derived
        /// after the passes, `chunk` the chunk graph (`L` positions from the state),
        /// `packed` the packed graph (sequences back to back, each from its start).
        #[arg(long, value_enum, default_value_t = Mode::Parallel)]
        mode: Mode,
        /// The CPU code generator of an artifact (`-o DIR`).
        #[arg(long, value_enum, default_value_t = CodegenArg::Cranelift)]
        codegen: CodegenArg,
    },
    /// Write initial weights from each declaration's `init`.
    Init {
        file: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[arg(long, default_value = "")]
        config: String,
        /// Also write random inputs for the model here (token ids, unit normals).
        #[arg(long)]
        random_input: Option<PathBuf>,
        /// Batch size of the random inputs.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Sequence length of the random inputs.
        #[arg(long, default_value_t = 16)]
        seq_len: usize,
    },
    /// Run a model on inputs from a safetensors file.
    Run {
        file: PathBuf,
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = Engine::Cpu)]
        engine: Engine,
        #[arg(long, value_enum, default_value_t = Mode::Parallel)]
        mode: Mode,
        #[arg(long, default_value = "")]
        config: String,
        /// Stop at the first NaN or infinity and name the op and layer.
        #[arg(long)]
        check_finite: bool,
        /// How the compiled path holds the linear layers' weights (`bf16`: half
        /// the memory; sums stay f32).
        #[arg(long, value_enum, default_value_t = WeightDtype::F32)]
        weight_dtype: WeightDtype,
        /// The CPU code generator, Cranelift unless given (`--engine cpu`, from source).
        #[arg(long, value_enum)]
        codegen: Option<CodegenArg>,
    },
    /// Measure a model on the CPU: tokens per second, time per token, peak
    /// memory, compile time. Random weights from the file's `init` unless given.
    Bench {
        file: PathBuf,
        #[arg(long)]
        seq_len: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, value_enum, default_value_t = BenchMode::Prefill)]
        mode: BenchMode,
        #[arg(long, default_value = "")]
        config: String,
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Timed repetitions (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Print the time spent in each kernel.
        #[arg(long)]
        profile: bool,
        /// How the linear layers' weights are held in memory (`bf16`: half the
        /// bytes each decode step reads; sums stay f32).
        #[arg(long, value_enum, default_value_t = WeightDtype::F32)]
        weight_dtype: WeightDtype,
        /// The CPU code generator, Cranelift unless given (from source; an artifact keeps its own).
        #[arg(long, value_enum)]
        codegen: Option<CodegenArg>,
    },
    /// Cost, memory and the SSM-or-attention decision, from the model itself.
    Analyze {
        /// The model (two with `--compare`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Sequence lengths: `1024,4096,16384`.
        #[arg(long, value_delimiter = ',', default_value = "1024,4096,16384")]
        seq_len: Vec<usize>,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value = "")]
        config: String,
        #[arg(long, value_enum, default_value_t = AnalyzeDtype::F32)]
        dtype: AnalyzeDtype,
        /// Find the longest sequence and largest batch that fit: `24GiB`.
        #[arg(long)]
        memory_budget: Option<String>,
        /// `cpu` (measured once, cached), `h200`, or a profile TOML file
        /// (`name`, `peak_flops`, `bandwidth`).
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        json: bool,
        /// Also print every count as an expression in `B` and `L`.
        #[arg(long)]
        symbolic: bool,
        /// Write an SVG plot of time and memory against `L`.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Compare two models side by side.
        #[arg(long)]
        compare: bool,
    },
    /// Explain a diagnostic code (`seqc explain E0321`).
    Explain { code: String },
    /// Print a file in canonical formatting.
    Fmt {
        file: PathBuf,
        /// Print nothing; exit 1 if the file is not formatted.
        #[arg(long)]
        check: bool,
    },
}

/// `seqc compile FILE --target cpu -o DIR`: every mode's kernels compiled ahead
/// of time into DIR (`seqc run DIR ...` and `Model::load_artifact` run them).
fn write_artifact(
    file: &std::path::Path,
    config: &str,
    dir: &std::path::Path,
    codegen: seqc_runtime::Codegen,
) -> Result<(), Reported> {
    let options = seqc_runtime::Options { config: config.to_string(), codegen, ..Default::default() };
    let start = std::time::Instant::now();
    let model = seqc_runtime::Model::compile_file(file, &options).map_err(fail)?;
    let written = model.write_artifact(dir).map_err(fail)?;
    let modes = match &written.modes[..] {
        [one] => format!("{one} mode"),
        [first @ .., last] => format!("{} and {last} modes", first.join(", ")),
        [] => "no modes".to_string(),
    };
    eprintln!(
        "wrote {}: {} kernels ({modes}, {}) in {:.0} ms: {}",
        dir.display(),
        written.kernels,
        codegen.name(),
        start.elapsed().as_secs_f64() * 1e3,
        written.files.join(", ")
    );
    if let Some(why) = written.no_step {
        eprintln!("note: no step mode: {why}");
    }
    Ok(())
}

const CODEGEN_OF_ARTIFACT: &str =
    "`--codegen` does not apply to an artifact; it keeps the code generator it was compiled with";

/// A failure already reported to the user.
struct Reported;

struct Printer {
    format: MessageFormat,
    color: ColorChoice,
}

impl Printer {
    fn diagnostics(&self, session: &Session, diags: &[Diagnostic]) {
        let text = match self.format {
            MessageFormat::Human => diag::render_text(&session.sources, diags, self.color),
            MessageFormat::Json => diag::render_json(&session.sources, diags),
        };
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        if matches!(self.format, MessageFormat::Human) && !diags.is_empty() {
            let n = diags.len();
            let _ = writeln!(err, "error: {} error{} found", n, if n == 1 { "" } else { "s" });
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Reported> {
    std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read `{}`: {e}", path.display());
        Reported
    })
}

fn session(path: &Path, printer: &Printer) -> Result<Session, Reported> {
    let bytes = read(path)?;
    let (session, ok) = Session::new(&path.display().to_string(), &bytes);
    if let Err(diags) = ok {
        printer.diagnostics(&session, &diags);
        return Err(Reported);
    }
    Ok(session)
}

fn check_one(path: &Path, config: &str, printer: &Printer) -> Result<(Session, Checked), Reported> {
    let mut s = session(path, printer)?;
    match s.check(config) {
        Ok(c) => Ok((s, c)),
        Err(diags) => {
            printer.diagnostics(&s, &diags);
            Err(Reported)
        }
    }
}

fn print_weights(m: &CheckedModel, printer: &Printer) {
    if matches!(printer.format, MessageFormat::Json) {
        let rows: Vec<serde_json::Value> = m
            .weights
            .iter()
            .map(|w| serde_json::json!({"name": w.name, "shape": w.shape, "dtype": w.dtype.name(), "init": w.init.describe()}))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        print!("{}", driver::weight_table(m));
    }
}

/// Reports an error that has no place in a source file.
fn fail(e: impl std::fmt::Display) -> Reported {
    eprintln!("error: {e}");
    Reported
}

/// Runs a model one position at a time from its derived state; returns the
/// outputs of every position, joined along `L`.
/// The graph of `mode`: `g` itself, or its step, chunk or packed graph.
fn derived(g: &seqc_compiler::ir::Graph, mode: Mode) -> Result<seqc_compiler::ir::Graph, Reported> {
    use seqc_compiler::passes::step_derivation::{derive, derive_chunk};
    match mode {
        Mode::Parallel => Ok(g.clone()),
        Mode::Step => derive(g).map_err(fail),
        Mode::Chunk => derive_chunk(g).map_err(fail),
        Mode::Packed => seqc_compiler::passes::packed_derivation::derive_packed(g).map_err(fail),
    }
}

fn run_steps(
    m: &CheckedModel,
    dims: &std::collections::HashMap<String, usize>,
    inputs: &std::collections::HashMap<String, Tensor>,
    weights: &std::collections::HashMap<String, Tensor>,
    check_finite: bool,
) -> Result<Vec<(String, Tensor)>, Reported> {
    use seqc_compiler::ir::step::{step, StepState};
    let (batch, len) = (dims.get("B").copied().unwrap_or(1), dims.get("L").copied().unwrap_or(1));
    let step_graph = seqc_compiler::passes::step_derivation::derive(&m.graph).map_err(fail)?;
    let mut state = StepState::new(&step_graph, batch).map_err(fail)?;
    let mut rows: Vec<Vec<Tensor>> = Vec::new();
    for t in 0..len {
        let now = inputs.iter().map(|(k, v)| (k.clone(), v.row(1, t))).collect();
        let outs = step(&step_graph, &mut state, &now, weights, check_finite).map_err(fail)?;
        for (i, (name, y)) in outs.into_iter().enumerate() {
            if check_finite && y.data.iter().any(|v| !v.is_finite()) {
                return Err(fail(format!("output `{name}` is not finite at position {t}")));
            }
            if rows.len() <= i {
                rows.push(Vec::new());
            }
            rows[i].push(y);
        }
    }
    Ok(m.outputs
        .iter()
        .zip(rows)
        .map(|(io, ys)| (io.name.clone(), Tensor::join(&ys.iter().collect::<Vec<_>>(), 1, 0)))
        .collect())
}

/// Runs a batch's sequences back to back in one row through the packed graph,
/// and returns the outputs as the batch's rows again.
fn run_packed(
    m: &CheckedModel,
    dims: &std::collections::HashMap<String, usize>,
    inputs: &std::collections::HashMap<String, Tensor>,
    weights: &std::collections::HashMap<String, Tensor>,
    check_finite: bool,
) -> Result<Vec<(String, Tensor)>, Reported> {
    use seqc_compiler::passes::packed_derivation::{derive_packed, STARTS};
    let (batch, len) = (dims.get("B").copied().unwrap_or(1), dims.get("L").copied().unwrap_or(1));
    let per_position = |io: &&seqc_compiler::sema::Io| io.ty.shape.get(1).is_some_and(|d| d.is_seq());
    if let Some(io) = m.inputs.iter().chain(&m.outputs).find(|io| !per_position(io)) {
        return Err(fail(format!(
            "`{}` is not per position ([B, L, ...]); packed mode needs every input and output to be",
            io.name
        )));
    }
    let graph = derive_packed(&m.graph).map_err(fail)?;
    // `[B, L, ...]` as `[rows, cols, ...]`: the same elements.
    let reshaped = |t: &Tensor, rows: usize, cols: usize| {
        let mut shape = t.shape.clone();
        shape.splice(..2.min(shape.len()), [rows, cols]);
        Tensor::new(shape, t.data.clone())
    };
    let mut packed: std::collections::HashMap<String, Tensor> =
        inputs.iter().map(|(k, t)| (k.clone(), reshaped(t, 1, batch * len))).collect();
    let starts = (0..batch * len).map(|p| (p - p % len.max(1)) as f64).collect();
    packed.insert(STARTS.to_string(), Tensor::new(vec![batch * len], starts));
    let dims = std::collections::HashMap::from([("B".to_string(), 1), ("L".to_string(), batch * len)]);
    let bindings = interp::Bindings { dims: &dims, inputs: &packed, weights };
    let outs = interp::run_with(&graph, &bindings, check_finite).map_err(fail)?;
    Ok(outs.into_iter().map(|(n, t)| (n, reshaped(&t, batch, len))).collect())
}

/// Checks a file that must hold a model.
fn model_of(file: &Path, config: &str, printer: &Printer) -> Result<CheckedModel, Reported> {
    let (s, checked) = check_one(file, config, printer)?;
    match checked {
        Checked::Model(m) => Ok(m),
        Checked::Layers(_) => {
            let d = Diagnostic::error(
                diag::Code::NoModel,
                "this file has no model",
                diag::Span::new(s.file, 0, 0),
                "layers only",
            )
            .with_help("add a `model` that uses the layers");
            printer.diagnostics(&s, &[d]);
            Err(Reported)
        }
    }
}

fn run(cli: Cli) -> Result<(), Reported> {
    let color = match cli.color {
        Color::Always => ColorChoice::Auto,
        Color::Never => ColorChoice::Never,
        Color::Auto if std::io::stderr().is_terminal() => ColorChoice::Auto,
        Color::Auto => ColorChoice::Never,
    };
    let printer = Printer { format: cli.message_format, color };
    match cli.command {
        Command::Check { files, weights, config } => {
            let mut failed = false;
            for f in &files {
                match check_one(f, &config, &printer) {
                    Ok((_, Checked::Model(m))) if weights => print_weights(&m, &printer),
                    Ok((_, Checked::Model(m))) => eprintln!(
                        "checked {}: model `{}`, {} input{}, {} output{}, {} weight tensors, {} parameters",
                        f.display(),
                        m.name,
                        m.inputs.len(),
                        if m.inputs.len() == 1 { "" } else { "s" },
                        m.outputs.len(),
                        if m.outputs.len() == 1 { "" } else { "s" },
                        m.weights.len(),
                        driver::parameter_count(&m)
                    ),
                    Ok((_, Checked::Layers(names))) => {
                        if weights {
                            eprintln!("error: `{}` has no model, so no weights", f.display());
                            failed = true;
                        } else {
                            eprintln!("checked {}: layers {}", f.display(), names.join(", "));
                        }
                    }
                    Err(Reported) => failed = true,
                }
            }
            if failed {
                Err(Reported)
            } else {
                Ok(())
            }
        }
        Command::Compile { file, target, emit, config, output, after, mode, codegen } => {
            match emit {
                Some(Emit::Ast) => {
                    let s = session(&file, &printer)?;
                    match s.parse() {
                        Ok(ast) => {
                            print!("{}", syntax::tree::dump(&ast, s.sources.get(s.file)));
                            Ok(())
                        }
                        Err(diags) => {
                            printer.diagnostics(&s, &diags);
                            Err(Reported)
                        }
                    }
                }
                Some(Emit::Graph) => {
                    if let Some(a) = after.as_deref() {
                        if !passes::names().contains(&a) {
                            eprintln!("error: unknown pass `{a}`; the passes are: {}", passes::names().join(", "));
                            std::process::exit(2);
                        }
                    }
                    let mut m = model_of(&file, &config, &printer)?;
                    passes::run_until(&mut m.graph, after.as_deref())
                        .map_err(|e| fail(format!("internal compiler error: {e}")))?;
                    m.graph = derived(&m.graph, mode)?;
                    print!("{}", seqc_compiler::ir::print::print(&m.graph));
                    Ok(())
                }
                Some(emit @ (Emit::Kernel | Emit::Clif | Emit::Llvm)) => {
                    if emit != Emit::Kernel && target != Target::Cpu {
                        return Err(fail("`--emit clif|llvm` print the CPU target's code; use `--target cpu`"));
                    }
                    let mut m = model_of(&file, &config, &printer)?;
                    passes::run_until(&mut m.graph, None).map_err(|e| fail(format!("internal compiler error: {e}")))?;
                    // What the runtime compiles: weight-only values come from
                    // the prologue, as weights `@prologue:N`.
                    passes::prologue::split(&mut m.graph);
                    m.graph = derived(&m.graph, mode)?;
                    let module = seqc_compiler::schedule::schedule(&m.graph).map_err(fail)?;
                    match emit {
                        Emit::Kernel => print!("{}", seqc_compiler::ir::kernel::print::print(&module)),
                        Emit::Clif => print!("{}", seqc_cranelift::clif(&module).map_err(fail)?),
                        #[cfg(feature = "llvm")]
                        _ => print!("{}", seqc_llvm::ir(&module).map_err(fail)?),
                        #[cfg(not(feature = "llvm"))]
                        _ => return Err(fail("this build of seqc has no LLVM code generator (feature `llvm`)")),
                    }
                    Ok(())
                }
                Some(Emit::State) => {
                    let mut m = model_of(&file, &config, &printer)?;
                    passes::run_until(&mut m.graph, None).map_err(|e| fail(format!("internal compiler error: {e}")))?;
                    let layout = seqc_compiler::analysis::state::layout(&m.graph);
                    print!("{}", seqc_compiler::analysis::state::print(&m.graph, &layout));
                    Ok(())
                }
                _ => {
                    // Checking comes first so that errors in the model are reported.
                    let (s, checked) = check_one(&file, &config, &printer)?;
                    if let Checked::Layers(_) = checked {
                        let span = diag::Span::new(s.file, 0, 0);
                        let d = Diagnostic::error(
                            diag::Code::NoModel,
                            "this file has no model to compile",
                            span,
                            "layers only",
                        )
                        .with_help("add a `model` that uses the layers, or run `seqc check`");
                        printer.diagnostics(&s, &[d]);
                        return Err(Reported);
                    }
                    match (target, output) {
                        (Target::Cpu, Some(dir)) => write_artifact(&file, &config, &dir, codegen.codegen()),
                        (Target::Cpu, None) => Err(fail(
                            "give the artifact's directory with `-o DIR`; `--emit kernel|clif` prints the code instead",
                        )),
                        (Target::Ptx | Target::Mlir, _) => Err(fail(
                            "the PTX and MLIR backends are not built yet; `--emit kernel` prints the kernel IR they will lower",
                        )),
                    }
                }
            }
        }
        Command::Init { file, seed, output, config, random_input, batch, seq_len } => {
            let m = model_of(&file, &config, &printer)?;
            let weights = seqc_compiler::init::init_weights(&m, seed);
            let tensors: Vec<(String, DType, &Tensor)> =
                m.weights.iter().map(|w| (w.name.clone(), w.dtype, &weights[&w.name])).collect();
            checkpoint::write(&output, &tensors).map_err(fail)?;
            eprintln!(
                "wrote {} tensors ({} parameters) to {}",
                tensors.len(),
                driver::parameter_count(&m),
                output.display()
            );
            if let Some(path) = random_input {
                let dims = std::collections::HashMap::from([("B".to_string(), batch), ("L".to_string(), seq_len)]);
                let inputs = seqc_compiler::init::random_inputs(&m, &dims, seed);
                let tensors: Vec<(String, DType, &Tensor)> =
                    m.inputs.iter().map(|io| (io.name.clone(), io.ty.dtype, &inputs[&io.name])).collect();
                checkpoint::write(&path, &tensors).map_err(fail)?;
                eprintln!("wrote random inputs (B = {batch}, L = {seq_len}) to {}", path.display());
            }
            Ok(())
        }
        Command::Run { file, weights, input, output, engine, mode, config, check_finite, weight_dtype, codegen } => {
            // A directory is an artifact (`seqc compile -o DIR`), compiled with its own config.
            let (mut m, artifact) = if file.is_dir() {
                if codegen.is_some() {
                    return Err(fail(CODEGEN_OF_ARTIFACT));
                }
                if !config.is_empty() {
                    return Err(fail(
                        "`--config` does not apply to an artifact; it keeps the config it was compiled with",
                    ));
                }
                let model = seqc_runtime::Model::load_artifact(&file).map_err(fail)?;
                (model.checked().clone(), Some(model))
            } else {
                (model_of(&file, &config, &printer)?, None)
            };
            let w = bind::weights(&m, checkpoint::read(&weights).map_err(fail)?).map_err(fail)?;
            let (dims, inputs) = bind::inputs(&m, checkpoint::read(&input).map_err(fail)?).map_err(fail)?;
            let outputs = match (engine, mode) {
                (Engine::Interp, Mode::Parallel) => {
                    let bindings = interp::Bindings { dims: &dims, inputs: &inputs, weights: &w };
                    interp::run_with(&m.graph, &bindings, check_finite).map_err(fail)?
                }
                (Engine::Interp, Mode::Step) => {
                    passes::run_until(&mut m.graph, None).map_err(|e| fail(format!("internal compiler error: {e}")))?;
                    run_steps(&m, &dims, &inputs, &w, check_finite)?
                }
                (Engine::Interp, Mode::Chunk) => {
                    use seqc_compiler::ir::step::{chunk, StepState};
                    passes::run_until(&mut m.graph, None).map_err(|e| fail(format!("internal compiler error: {e}")))?;
                    let (batch, len) = (dims.get("B").copied().unwrap_or(1), dims.get("L").copied().unwrap_or(1));
                    let graph = derived(&m.graph, Mode::Chunk)?;
                    let mut state = StepState::new(&derived(&m.graph, Mode::Step)?, batch).map_err(fail)?;
                    chunk(&graph, &mut state, &inputs, len, &w, check_finite).map_err(fail)?
                }
                (Engine::Interp, Mode::Packed) => {
                    passes::run_until(&mut m.graph, None).map_err(|e| fail(format!("internal compiler error: {e}")))?;
                    run_packed(&m, &dims, &inputs, &w, check_finite)?
                }
                (Engine::Cpu, mode) => {
                    let how = compiled::How {
                        mode,
                        precision: weight_dtype.precision(),
                        codegen: codegen.map_or(Default::default(), CodegenArg::codegen),
                    };
                    let outs = compiled::run(m, artifact, &w, &inputs, how).map_err(fail)?;
                    if check_finite {
                        for (name, t) in &outs {
                            if let Some(k) = t.data.iter().position(|v| !v.is_finite()) {
                                return Err(fail(format!(
                                    "output `{name}` is not finite at element {k}; `--engine interp --check-finite` names the op"
                                )));
                            }
                        }
                    }
                    outs
                }
            };
            let tensors: Vec<(String, DType, &Tensor)> =
                outputs.iter().map(|(n, t)| (n.clone(), DType::F32, t)).collect();
            checkpoint::write(&output, &tensors).map_err(fail)?;
            Ok(())
        }
        Command::Bench { file, seq_len, batch, mode, config, weights, json, iters, profile, weight_dtype, codegen } => {
            let start = std::time::Instant::now();
            // A directory is an artifact (`seqc compile -o DIR`): timed as loaded.
            let subject = if file.is_dir() {
                if codegen.is_some() {
                    return Err(fail(CODEGEN_OF_ARTIFACT));
                }
                if !config.is_empty() {
                    return Err(fail(
                        "`--config` does not apply to an artifact; it keeps the config it was compiled with",
                    ));
                }
                bench::Subject::Artifact(file)
            } else {
                bench::Subject::Source(model_of(&file, &config, &printer)?)
            };
            let check_ms = start.elapsed().as_secs_f64() * 1e3;
            let decode = mode == BenchMode::Decode;
            let precision = weight_dtype.precision();
            let codegen = codegen.map_or(Default::default(), CodegenArg::codegen);
            let request =
                bench::Request { seq_len, batch, decode, weights, precision, codegen, json, iters, check_ms, profile };
            bench::run(subject, request).map_err(fail)
        }
        Command::Analyze {
            files,
            seq_len,
            batch,
            config,
            dtype,
            memory_budget,
            device,
            json,
            symbolic,
            plot,
            compare,
        } => {
            if compare != (files.len() == 2) || files.len() > 2 {
                eprintln!("error: give one model, or two with `--compare`");
                std::process::exit(2);
            }
            if seq_len.is_empty() || seq_len.contains(&0) || batch == 0 {
                return Err(fail("`--seq-len` takes positive lengths and `--batch` a positive size"));
            }
            let budget = memory_budget.as_deref().map(analyze::parse_bytes).transpose().map_err(fail)?;
            let bf16 = dtype == AnalyzeDtype::Bf16;
            let req = analyze::Request { seq_lens: seq_len, batch, bf16, budget, device, json, symbolic, plot };
            let profile = analyze::profile(&req.device, bf16).map_err(fail)?;
            let mut analyses = Vec::new();
            for f in &files {
                analyses.push(analyze::Analysis::new(&model_of(f, &config, &printer)?, bf16).map_err(fail)?);
            }
            if let Some(path) = &req.plot {
                analyze::plot(&analyses[0], &req, &profile, path).map_err(fail)?;
            }
            match (&analyses[..], req.json) {
                ([a], true) => println!("{}", analyze::json(a, &req, &profile)),
                ([a], false) => print!("{}", analyze::report(a, &req, &profile)),
                ([a, b], true) => {
                    println!(
                        "{}",
                        serde_json::json!([analyze::json(a, &req, &profile), analyze::json(b, &req, &profile)])
                    )
                }
                ([a, b], false) => {
                    print!("{}", analyze::compare(a, b, &req, &profile));
                    for x in [a, b] {
                        print!("\n{}", analyze::report(x, &req, &profile));
                    }
                }
                _ => unreachable!("one or two files"),
            }
            Ok(())
        }
        Command::Explain { code } => {
            let wanted = code.trim().trim_start_matches(['E', 'e']).parse::<u16>().ok();
            match diag::Code::ALL.iter().find(|c| Some(c.number()) == wanted) {
                Some(c) => {
                    println!("{c}: {}", c.summary());
                    println!("more: docs/language.md lists every code and the limits behind E05xx");
                    Ok(())
                }
                None => Err(fail(format!("no diagnostic code `{code}`; codes look like E0321"))),
            }
        }
        Command::Fmt { file, check } => {
            let s = session(&file, &printer)?;
            let ast = match s.parse() {
                Ok(a) => a,
                Err(diags) => {
                    printer.diagnostics(&s, &diags);
                    return Err(Reported);
                }
            };
            let formatted = syntax::print::print_file(&ast, s.text());
            if check {
                if formatted != s.text() {
                    eprintln!("{} is not formatted; run `seqc fmt {}`", file.display(), file.display());
                    return Err(Reported);
                }
            } else {
                print!("{formatted}");
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Like any Unix filter, stop quietly when the reader goes away
    // (`seqc analyze ... | head`) instead of failing to print.
    // SAFETY: restores the default action of a signal before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Deeply nested input is refused by limits, but the checker recurses: give it room.
    let worker = std::thread::Builder::new().stack_size(256 << 20).spawn(move || run(cli));
    match worker.map(|h| h.join()) {
        Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
        Ok(Ok(Err(Reported))) => ExitCode::from(1),
        _ => {
            eprintln!("error: internal compiler error; please report it with the input that caused it");
            ExitCode::from(101)
        }
    }
}
