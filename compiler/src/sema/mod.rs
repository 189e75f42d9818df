//! Semantic checks: from parsed files to a checked model.
//!
//! The checker instantiates the model's layers (constant-folding their
//! configuration), builds the weight table with checkpoint names, then runs every
//! forward abstractly: each expression evaluates to a type (dtype and symbolic
//! shape) plus the causality facts of `causal.rs`, never to data. Index notation
//! and scans are checked in `index.rs`.
//!
//! Invariant: a [`CheckedModel`] is only returned when no diagnostic was raised.

mod builtins;
mod causal;
pub mod consts;
mod forward;
mod index;
pub mod types;

use crate::diag::{Code, Diagnostic, Diagnostics, FileId, Span};
use crate::ir;
use crate::limits;
use crate::syntax::ast::{self, DType, Expr, ExprKind, LayerDef, ModelDef, ModelMember, WeightEntry, WeightKind};
pub use builtins::{Builtin, DefaultInit};
use causal::TaintRef;
use std::collections::HashMap;
use std::rc::Rc;
pub use types::{Const, Dim, TensorTy};

/// How `seqc init` fills one weight.
#[derive(Clone, Debug)]
pub enum InitSpec {
    Default(DefaultInit),
    Const(f64),
    Normal(f64),
    Uniform(f64, f64),
    /// `init[i, j] = expr`, with the constants of the declaring layer.
    Indexed {
        indices: Vec<String>,
        expr: Expr,
        consts: Vec<(String, Const)>,
    },
}

impl InitSpec {
    pub fn describe(&self) -> String {
        match self {
            InitSpec::Default(DefaultInit::FanIn(n)) => format!("uniform(+-1/sqrt({n}))"),
            InitSpec::Default(DefaultInit::Normal(s)) => format!("normal({s:?})"),
            InitSpec::Default(DefaultInit::Ones) => "1.0".into(),
            InitSpec::Default(DefaultInit::Zeros) => "0.0".into(),
            InitSpec::Const(v) => format!("{v:?}"),
            InitSpec::Normal(s) => format!("normal({s:?})"),
            InitSpec::Uniform(a, b) => format!("uniform({a:?}, {b:?})"),
            InitSpec::Indexed { indices, expr, .. } => {
                format!("[{}] = {}", indices.join(", "), crate::syntax::print::print_expr(expr))
            }
        }
    }
}

/// One tensor of the checkpoint.
#[derive(Clone, Debug)]
pub struct WeightInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub init: InitSpec,
    pub span: Span,
}

/// A model input or output.
#[derive(Clone, Debug)]
pub struct Io {
    pub name: String,
    pub ty: TensorTy,
}

/// The result of checking a file with a model.
#[derive(Clone, Debug)]
pub struct CheckedModel {
    pub name: String,
    /// The model lowered to the graph IR (before any pass).
    pub graph: ir::Graph,
    pub config: Vec<(String, Const)>,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub weights: Vec<WeightInfo>,
    /// Every layer instance: its checkpoint path and the layer it instantiates
    /// (`backbone.layers.0.mixer`, `mamba`); the graph's origins are these paths.
    pub layers: Vec<(String, String)>,
}

/// What a checked file holds.
#[derive(Clone, Debug)]
// One per check: boxing the model would save nothing worth an indirection at
// every use.
#[allow(clippy::large_enum_variant)]
pub enum Checked {
    Model(CheckedModel),
    /// A file of layers alone: the names of the layers it defines.
    Layers(Vec<String>),
}

/// A `--config` override, with the span of its text for diagnostics.
#[derive(Clone, Debug)]
pub struct ConfigOverride {
    pub key: String,
    pub key_span: Span,
    pub value: Expr,
}

// ------------------------------------------------------------------ internal

type InstId = usize;
type ScopeId = usize;

/// What a declared name in a weights block or layer stands for.
#[derive(Clone, Debug)]
pub(crate) enum Member {
    /// A declaration that failed; uses of it report nothing more.
    Poison,
    Tensor(usize),
    Layer(InstId),
    Scope(ScopeId),
    Group(Rc<[ScopeId]>),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum LayerKind<'a> {
    Builtin(Builtin),
    User(&'a LayerDef),
}

/// One instantiated layer: its constants and its members.
pub(crate) struct Instance<'a> {
    pub kind: LayerKind<'a>,
    /// Its checkpoint path (`backbone.layers.3.mixer`).
    pub path: String,
    /// Whether instantiating it raised errors; its forward is then not checked.
    pub failed: bool,
    pub consts: HashMap<String, Const>,
    pub members: HashMap<String, Member>,
    pub site: Span,
}

/// A tensor during checking: its type and causality facts.
#[derive(Clone, Debug)]
pub(crate) struct Tensor {
    pub ty: TensorTy,
    pub mask: Option<causal::Mask>,
    pub taint: TaintRef,
    /// The graph value that computes it.
    pub node: ir::ValueId,
}

impl Tensor {
    pub fn plain(ty: TensorTy, node: ir::ValueId) -> Tensor {
        Tensor { ty, mask: None, taint: None, node }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Const(Const),
    Dim(Dim),
    Tensor(Tensor),
    Tuple(Vec<Tensor>),
    Member(Member),
}

impl Value {
    pub fn describe(&self) -> String {
        match self {
            Value::Const(c) => format!("the constant `{c}`"),
            Value::Dim(d) => format!("the dimension `{d}`"),
            Value::Tensor(t) => format!("a tensor {}", t.ty),
            Value::Tuple(ts) => format!("{} tensors", ts.len()),
            Value::Member(Member::Layer(_)) => "a layer".into(),
            Value::Member(Member::Tensor(_)) => "a weight".into(),
            Value::Member(Member::Scope(_)) => "a weight group".into(),
            Value::Member(Member::Group(_)) => "a repeated weight group".into(),
            Value::Member(Member::Poison) => "an invalid declaration".into(),
        }
    }
}

pub(crate) struct Checker<'a> {
    defs: HashMap<&'a str, &'a LayerDef>,
    pub diags: Diagnostics,
    /// When set, diagnostics are dropped (first pass of scan shape inference).
    quiet: bool,
    instances: Vec<Instance<'a>>,
    scopes: Vec<HashMap<String, Member>>,
    weights: Vec<WeightInfo>,
    weight_index: HashMap<String, usize>,
    /// Instantiation sites of the layers being checked, outermost first.
    sites: Vec<Span>,
    user_file: FileId,
    /// Statements checked so far; bounds the work of unrolled loops.
    work: usize,
    /// Set once a limit error stops the check.
    aborted: bool,
    /// Errors raised so far, repeats included (the list drops repeats, and a
    /// repeat still means this instance or statement failed).
    pub errors: usize,
    /// The graph the forwards lower into, as they are checked.
    pub graph: ir::Graph,
    /// The graph value of each weight read so far.
    weight_nodes: HashMap<usize, ir::ValueId>,
}

/// Checks the user's file (with the prelude) and returns the checked model or
/// layer list; diagnostics otherwise.
pub fn check(
    prelude: &ast::File,
    user: &ast::File,
    user_file: FileId,
    overrides: &[ConfigOverride],
) -> Result<Checked, Vec<Diagnostic>> {
    let mut cx = Checker {
        defs: HashMap::new(),
        diags: Diagnostics::default(),
        quiet: false,
        instances: Vec::new(),
        scopes: Vec::new(),
        weights: Vec::new(),
        weight_index: HashMap::new(),
        sites: Vec::new(),
        user_file,
        work: 0,
        aborted: false,
        errors: 0,
        graph: ir::Graph::default(),
        weight_nodes: HashMap::new(),
    };
    for item in &prelude.items {
        if let ast::Item::Layer(l) = item {
            cx.defs.insert(&l.name.name, l);
        }
    }
    let mut user_layers: HashMap<&str, Span> = HashMap::new();
    let mut models: Vec<&ModelDef> = Vec::new();
    for item in &user.items {
        match item {
            ast::Item::Layer(l) => {
                if let Some(prev) = user_layers.insert(&l.name.name, l.name.span) {
                    cx.report(
                        Diagnostic::error(
                            Code::Duplicate,
                            format!("layer `{}` is defined twice", l.name.name),
                            l.name.span,
                            "second definition",
                        )
                        .with_label(prev, "first definition"),
                    );
                }
                cx.defs.insert(&l.name.name, l);
            }
            ast::Item::Model(m) => models.push(m),
        }
    }
    if let Some(extra) = models.get(1) {
        cx.report(
            Diagnostic::error(Code::SeveralModels, "a file holds at most one model", extra.name.span, "second model")
                .with_label(models[0].name.span, "first model"),
        );
    }
    let result = match models.first() {
        Some(m) => cx.model(m, overrides).map(Checked::Model),
        None => {
            for item in &user.items {
                if let ast::Item::Layer(l) = item {
                    cx.layer_alone(l);
                }
            }
            if let Some(o) = overrides.first() {
                cx.report(Diagnostic::error(
                    Code::UnknownConfigKey,
                    format!("unknown config key `{}`", o.key),
                    o.key_span,
                    "the file has no model, so no config",
                ));
            }
            let mut names: Vec<String> = user_layers.keys().map(|s| s.to_string()).collect();
            names.sort();
            Some(Checked::Layers(names))
        }
    };
    match result {
        Some(c) if cx.diags.is_empty() => Ok(c),
        _ => Err(cx.diags.into_sorted()),
    }
}

impl<'a> Checker<'a> {
    /// Reports a diagnostic; one raised inside an instantiated layer from another
    /// file (the prelude) also points at where the user instantiated it.
    pub fn report(&mut self, mut d: Diagnostic) {
        if self.quiet {
            return;
        }
        self.errors += 1;
        let primary = d.primary_span();
        if primary.file != self.user_file {
            if let Some(site) = self.sites.iter().rev().find(|s| s.file == self.user_file) {
                d = d.with_label(*site, "in the layer instantiated here");
            }
        }
        self.diags.push(d);
    }

    /// The graph value of a weight, created on first use.
    pub(crate) fn weight_node(&mut self, w: usize) -> ir::ValueId {
        if let Some(&v) = self.weight_nodes.get(&w) {
            return v;
        }
        let info = &self.weights[w];
        let ty = TensorTy { dtype: info.dtype, shape: info.shape.iter().map(|&d| Dim::Known(d)).collect() };
        let v = self.graph.add1(ir::Op::Weight { name: info.name.clone() }, Vec::new(), ty);
        self.weight_nodes.insert(w, v);
        v
    }

    /// A scalar constant.
    pub(crate) fn const_node(&mut self, value: f64) -> ir::ValueId {
        self.graph.add1(ir::Op::Const { value }, Vec::new(), TensorTy { dtype: DType::F32, shape: Vec::new() })
    }

    /// `f(args...)` element by element, operands broadcast to `shape`.
    pub(crate) fn elementwise(&mut self, f: ir::ScalarFn, args: &[&Tensor], shape: &[Dim]) -> ir::ValueId {
        let n = shape.len();
        let vars: Vec<ir::ops::LoopVar> = shape
            .iter()
            .enumerate()
            .map(|(i, d)| ir::ops::LoopVar { name: format!("i{i}"), extent: d.clone() })
            .collect();
        let mut operands: Vec<ir::ValueId> = Vec::new();
        let loads = args
            .iter()
            .map(|t| {
                let k = operands.iter().position(|&o| o == t.node).unwrap_or_else(|| {
                    operands.push(t.node);
                    operands.len() - 1
                });
                let r = t.ty.shape.len();
                let indices = (0..r)
                    .map(|a| {
                        let axis = n - r + a;
                        if t.ty.shape[a] == Dim::Known(1) && shape[axis] != Dim::Known(1) {
                            ir::Scalar::Const(0.0)
                        } else {
                            ir::Scalar::Index(axis as u32)
                        }
                    })
                    .collect();
                ir::Scalar::Load { operand: k as u32, indices }
            })
            .collect();
        let gen = ir::ops::Generic { vars, rank: n, body: ir::Scalar::apply(f, loads), cond: None };
        self.graph.add1(ir::Op::Generic(Box::new(gen)), operands, TensorTy { dtype: DType::F32, shape: shape.to_vec() })
    }

    /// Counts work; past the limit the check stops with one error.
    fn tick(&mut self, span: Span) -> bool {
        self.work += 1;
        if self.work > limits::MAX_WORK && !self.aborted {
            self.aborted = true;
            self.report(Diagnostic::error(
                Code::TooManyInstances,
                "the model unrolls into too much work to check",
                span,
                "stopped here",
            ));
        }
        !self.aborted
    }

    // -------------------------------------------------------------- model

    fn model(&mut self, m: &'a ModelDef, overrides: &[ConfigOverride]) -> Option<CheckedModel> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut once = |cx: &mut Checker, what: &'static str, span: Span| {
            if let Some(prev) = seen.insert(what, span) {
                cx.report(
                    Diagnostic::error(
                        Code::DuplicateSection,
                        format!("a model has one `{what}` block"),
                        span,
                        "second block",
                    )
                    .with_label(prev, "first block"),
                );
            }
        };
        for member in &m.members {
            match member {
                ModelMember::Config { span, .. } => once(self, "config", *span),
                ModelMember::Forward(f) => once(self, "forward", f.span),
                _ => {}
            }
        }
        let config = self.config(m, overrides);
        let config_map: HashMap<String, Const> = config.iter().cloned().collect();
        let lookup = |n: &str| config_map.get(n).cloned();

        // Inputs and outputs.
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut io_names: HashMap<&str, Span> = HashMap::new();
        // Declarations whose type failed: their uses report nothing more.
        let mut failed_io: Vec<ast::Ident> = Vec::new();
        for member in &m.members {
            let (io, is_input) = match member {
                ModelMember::Input(io) => (io, true),
                ModelMember::Output(io) => (io, false),
                _ => continue,
            };
            if let Some(prev) = io_names.insert(&io.name.name, io.name.span) {
                self.report(
                    Diagnostic::error(
                        Code::Duplicate,
                        format!("`{}` is declared twice", io.name.name),
                        io.name.span,
                        "second declaration",
                    )
                    .with_label(prev, "first declaration"),
                );
            }
            let Some(shape) = self.type_dims(&io.ty.dims, &lookup, &mut HashMap::new(), true) else {
                failed_io.push(io.name.clone());
                continue;
            };
            let ty = TensorTy { dtype: io.ty.dtype, shape };
            if is_input {
                inputs.push((io, ty));
            } else {
                if !io.ty.dtype.is_float() {
                    self.report(Diagnostic::error(
                        Code::DtypeMismatch,
                        format!("output `{}` must be a float tensor", io.name.name),
                        io.ty.span,
                        format!("declared {}", io.ty.dtype.name()),
                    ));
                }
                outputs.push((io, ty));
            }
        }

        // Weights.
        let top = self.new_scope();
        for member in &m.members {
            if let ModelMember::Weights(block) = member {
                let prefix = block.prefix.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
                self.entries(&block.entries, &prefix, top, &config_map);
                if self.aborted {
                    return None;
                }
            }
        }

        // Forward.
        let forwards: Vec<&ast::ForwardDef> =
            m.members.iter().filter_map(|mm| if let ModelMember::Forward(f) = mm { Some(f) } else { None }).collect();
        match forwards.first() {
            None => self.report(
                Diagnostic::error(
                    Code::NoForward,
                    format!("model `{}` has no forward", m.name.name),
                    m.name.span,
                    "no `forward { ... }`",
                )
                .with_help("add `forward { ... }` that assigns every output"),
            ),
            Some(f) => {
                if let Some(ps) = &f.params {
                    if let Some(p) = ps.first() {
                        self.report(Diagnostic::error(
                            Code::MisplacedStatement,
                            "a model's forward takes no parameters",
                            p.span,
                            "the model's inputs are its `input` declarations",
                        ));
                    }
                }
                let ins: Vec<(String, Tensor)> = inputs
                    .iter()
                    .map(|(io, ty)| {
                        let node =
                            self.graph.add1(ir::Op::Input { name: io.name.name.clone() }, Vec::new(), ty.clone());
                        (io.name.name.clone(), Tensor::plain(ty.clone(), node))
                    })
                    .collect();
                let outs: Vec<(&ast::IoDecl, TensorTy)> = outputs.iter().map(|(io, ty)| (*io, ty.clone())).collect();
                forward::model_forward(self, f, &config_map, top, ins, &outs, &failed_io);
            }
        }
        self.graph.name = m.name.name.clone();
        Some(CheckedModel {
            graph: std::mem::take(&mut self.graph),
            name: m.name.name.clone(),
            config,
            inputs: inputs.into_iter().map(|(io, ty)| Io { name: io.name.name.clone(), ty }).collect(),
            outputs: outputs.into_iter().map(|(io, ty)| Io { name: io.name.name.clone(), ty }).collect(),
            weights: std::mem::take(&mut self.weights),
            layers: self
                .instances
                .iter()
                .filter(|i| !i.path.is_empty())
                .map(|i| {
                    let kind = match &i.kind {
                        LayerKind::Builtin(b) => b.name().to_string(),
                        LayerKind::User(def) => def.name.name.clone(),
                    };
                    (i.path.clone(), kind)
                })
                .collect(),
        })
    }

    /// Evaluates the config block in order, with `--config` overrides.
    fn config(&mut self, m: &ModelDef, overrides: &[ConfigOverride]) -> Vec<(String, Const)> {
        let entries: Vec<&ast::ConstDef> = m
            .members
            .iter()
            .filter_map(|mm| if let ModelMember::Config { entries, .. } = mm { Some(entries) } else { None })
            .flatten()
            .collect();
        let mut values: Vec<(String, Const)> = Vec::new();
        for o in overrides {
            if !entries.iter().any(|e| e.name.name == o.key) {
                let keys: Vec<&str> = entries.iter().map(|e| e.name.name.as_str()).collect();
                let mut d = Diagnostic::error(
                    Code::UnknownConfigKey,
                    format!("unknown config key `{}`", o.key),
                    o.key_span,
                    format!("model `{}` has no such key", m.name.name),
                );
                d = if keys.is_empty() {
                    d.with_note("the model has no config block")
                } else {
                    d.with_note(format!("the keys are: {}", keys.join(", ")))
                };
                self.report(d);
            }
        }
        for e in entries {
            if values.iter().any(|(n, _)| *n == e.name.name) {
                self.report(Diagnostic::error(
                    Code::Duplicate,
                    format!("config key `{}` is defined twice", e.name.name),
                    e.name.span,
                    "second definition",
                ));
                continue;
            }
            let lookup = |n: &str| values.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let default = match consts::eval(&e.value, &lookup) {
                Ok(v) => v,
                Err(d) => {
                    self.report(d);
                    continue;
                }
            };
            let mut value = default.clone();
            if let Some(o) = overrides.iter().rev().find(|o| o.key == e.name.name) {
                match consts::eval(&o.value, &|_| None) {
                    Ok(v) => match (&default, v) {
                        (Const::Int(_), v @ Const::Int(_)) | (Const::Bool(_), v @ Const::Bool(_)) => value = v,
                        (Const::Float(_), Const::Int(i)) => value = Const::Float(i as f64),
                        (Const::Float(_), v @ Const::Float(_)) => value = v,
                        (Const::Str(_), v @ Const::Str(_)) => value = v,
                        (d, v) => self.report(
                            Diagnostic::error(
                                Code::BadConfigValue,
                                format!("`{}` is {}, not {}", e.name.name, d.kind(), v.kind()),
                                o.value.span,
                                format!("expected {}", d.kind()),
                            )
                            .with_label(e.value.span, format!("declared {} here", d.kind())),
                        ),
                    },
                    Err(_) => self.report(Diagnostic::error(
                        Code::BadConfigValue,
                        format!("the value of `{}` must be a literal", e.name.name),
                        o.value.span,
                        "not a number or boolean",
                    )),
                }
            }
            values.push((e.name.name.clone(), value));
        }
        values
    }

    fn new_scope(&mut self) -> ScopeId {
        self.scopes.push(HashMap::new());
        self.scopes.len() - 1
    }

    /// Declares a weights block's entries into `scope`, names prefixed by `prefix`.
    fn entries(&mut self, entries: &[WeightEntry], prefix: &str, scope: ScopeId, env: &HashMap<String, Const>) {
        for entry in entries {
            if self.aborted {
                return;
            }
            let declared = match entry {
                WeightEntry::Decl(d) => &d.name,
                WeightEntry::Group { name, .. } => name,
            };
            // Every declaration unrolled counts, failed ones too: a huge group of
            // unknown layers must stop as surely as one of real ones.
            if !self.tick(declared.span) {
                return;
            }
            if self.scopes[scope].contains_key(&declared.name) {
                self.report(Diagnostic::error(
                    Code::Duplicate,
                    format!("`{}` is declared twice", declared.name),
                    declared.span,
                    "second declaration",
                ));
                continue;
            }
            let (name, member) = match entry {
                WeightEntry::Decl(d) => {
                    let path = join(prefix, &d.name.name);
                    let member = self.weight_decl(d, &path, env).unwrap_or(Member::Poison);
                    (&d.name, member)
                }
                WeightEntry::Group { name, count, entries, span } => {
                    let path = join(prefix, &name.name);
                    let member = match count {
                        None => {
                            let inner = self.new_scope();
                            self.entries(entries, &path, inner, env);
                            Member::Scope(inner)
                        }
                        Some(c) => {
                            let n = match consts::eval(c, &|k| env.get(k).cloned()) {
                                Ok(Const::Int(n)) if (0..=limits::MAX_GROUP_COUNT).contains(&n) => n,
                                Ok(Const::Int(n)) if n < 0 => {
                                    self.report(Diagnostic::error(
                                        Code::InvalidDimension,
                                        format!("a group repeats a negative number of times ({n})"),
                                        c.span,
                                        "negative count",
                                    ));
                                    self.scopes[scope].insert(name.name.clone(), Member::Poison);
                                    continue;
                                }
                                Ok(Const::Int(n)) => {
                                    self.report(
                                        Diagnostic::error(
                                            Code::GroupTooLarge,
                                            format!("group `{}` repeats {n} times", name.name),
                                            c.span,
                                            format!("the limit is {}", limits::MAX_GROUP_COUNT),
                                        )
                                        .with_label(*span, "this group"),
                                    );
                                    self.scopes[scope].insert(name.name.clone(), Member::Poison);
                                    continue;
                                }
                                Ok(v) => {
                                    self.report(consts::type_error(c.span, "int", &v));
                                    self.scopes[scope].insert(name.name.clone(), Member::Poison);
                                    continue;
                                }
                                Err(d) => {
                                    self.report(d);
                                    self.scopes[scope].insert(name.name.clone(), Member::Poison);
                                    continue;
                                }
                            };
                            let mut ids = Vec::with_capacity(n as usize);
                            for i in 0..n {
                                if !self.tick(name.span) {
                                    return;
                                }
                                let inner = self.new_scope();
                                self.entries(entries, &format!("{path}.{i}"), inner, env);
                                ids.push(inner);
                                if self.aborted {
                                    return;
                                }
                            }
                            Member::Group(ids.into())
                        }
                    };
                    (name, member)
                }
            };
            self.scopes[scope].insert(name.name.clone(), member);
        }
    }

    /// Declares one weight: a raw tensor or an instantiated layer at `path`.
    fn weight_decl(&mut self, d: &ast::WeightDecl, path: &str, env: &HashMap<String, Const>) -> Option<Member> {
        match &*d.kind {
            WeightKind::Layer(call) => {
                let id = self.instantiate(call, path, env)?;
                Some(Member::Layer(id))
            }
            WeightKind::Tensor { ty, init } => {
                let lookup = |n: &str| env.get(n).cloned();
                let shape = self.type_dims(&ty.dims, &lookup, &mut HashMap::new(), false)?;
                let shape: Vec<i64> = shape.iter().map(|d| d.known().unwrap_or(1)).collect();
                let init = self.init_spec(init.as_ref(), &shape, env, ty.span)?;
                Some(Member::Tensor(self.add_weight(path, ty.dtype, shape, init, d.name.span)?))
            }
        }
    }

    fn add_weight(&mut self, name: &str, dtype: DType, shape: Vec<i64>, init: InitSpec, span: Span) -> Option<usize> {
        if let Some(&prev) = self.weight_index.get(name) {
            let prev_span = self.weights[prev].span;
            self.report(
                Diagnostic::error(
                    Code::DuplicateWeight,
                    format!("two weights are named `{name}`"),
                    span,
                    "second declaration",
                )
                .with_label(prev_span, "first declaration"),
            );
            return None;
        }
        self.weights.push(WeightInfo { name: name.to_string(), dtype, shape, init, span });
        self.weight_index.insert(name.to_string(), self.weights.len() - 1);
        Some(self.weights.len() - 1)
    }

    /// Evaluates a declared shape. Names that are not constants become symbols when
    /// `allow_symbols` (inputs, forward parameters): capitalised names only, so a
    /// misspelt constant is an error rather than a new dimension.
    pub(crate) fn type_dims(
        &mut self,
        dims: &[Expr],
        lookup: consts::Lookup,
        bound: &mut HashMap<String, Dim>,
        allow_symbols: bool,
    ) -> Option<Vec<Dim>> {
        let mut out = Vec::with_capacity(dims.len());
        let mut ok = true;
        for d in dims {
            if let ExprKind::Name(n) = &d.kind {
                if lookup(n).is_none() {
                    if let Some(b) = bound.get(n) {
                        out.push(b.clone());
                        continue;
                    }
                    if allow_symbols && n.starts_with(|c: char| c.is_ascii_uppercase()) {
                        let dim = Dim::Sym(n.as_str().into());
                        bound.insert(n.clone(), dim.clone());
                        out.push(dim);
                        continue;
                    }
                }
            }
            match consts::eval(d, lookup) {
                Ok(Const::Int(v)) if v > 0 => out.push(Dim::Known(v)),
                Ok(v) => {
                    ok = false;
                    self.report(Diagnostic::error(
                        Code::InvalidDimension,
                        format!("a dimension must be a positive integer, found `{v}`"),
                        d.span,
                        "not a valid dimension",
                    ));
                }
                Err(mut diag) => {
                    ok = false;
                    if diag.code == Code::UnknownName && !allow_symbols {
                        diag = diag.with_note(
                            "symbolic dimensions (`B`, `L`) are only allowed on inputs and forward parameters",
                        );
                    } else if diag.code == Code::UnknownName {
                        diag = diag.with_note("symbolic dimensions start with a capital letter (`B`, `L`)");
                    }
                    self.report(diag);
                }
            }
        }
        if !ok {
            return None;
        }
        let count = types::element_count(&out).0;
        if count > limits::MAX_TENSOR_ELEMENTS {
            let span = dims.first().map(|d| d.span.to(dims[dims.len() - 1].span)).unwrap_or_default();
            self.report(
                Diagnostic::error(
                    Code::TensorTooLarge,
                    format!("a tensor of {} elements", types::shape_str(&out)),
                    span,
                    format!("{count} elements; the limit is {}", limits::MAX_TENSOR_ELEMENTS),
                )
                .with_help("check the config values that size this tensor"),
            );
            return None;
        }
        Some(out)
    }

    fn init_spec(
        &mut self,
        init: Option<&ast::Init>,
        shape: &[i64],
        env: &HashMap<String, Const>,
        span: Span,
    ) -> Option<InitSpec> {
        let lookup = |n: &str| env.get(n).cloned();
        match init {
            None => Some(InitSpec::Default(DefaultInit::Zeros)),
            Some(ast::Init::Value(e)) => {
                if let ExprKind::Call { callee, args } = &e.kind {
                    let name = callee.as_name();
                    if matches!(name, Some("normal" | "uniform")) {
                        let vals: Option<Vec<f64>> = args
                            .iter()
                            .map(|a| match consts::eval(&a.value, &lookup) {
                                Ok(c) => c.as_f64().or_else(|| {
                                    self.report(consts::type_error(a.value.span, "number", &c));
                                    None
                                }),
                                Err(d) => {
                                    self.report(d);
                                    None
                                }
                            })
                            .collect();
                        let vals = vals?;
                        return match (name, vals.as_slice()) {
                            (Some("normal"), [s]) if *s >= 0.0 => Some(InitSpec::Normal(*s)),
                            (Some("uniform"), [a, b]) if a <= b => Some(InitSpec::Uniform(*a, *b)),
                            _ => {
                                self.report(
                                    Diagnostic::error(Code::BadInit, "invalid random init", e.span, "bad arguments")
                                        .with_note("`normal(std)` takes std >= 0; `uniform(lo, hi)` takes lo <= hi"),
                                );
                                None
                            }
                        };
                    }
                }
                match consts::eval(e, &lookup) {
                    Ok(c) => match c.as_f64() {
                        Some(v) => Some(InitSpec::Const(v)),
                        None => {
                            self.report(consts::type_error(e.span, "number", &c));
                            None
                        }
                    },
                    Err(d) => {
                        self.report(d);
                        None
                    }
                }
            }
            Some(ast::Init::Indexed { indices, value, span: init_span }) => {
                if indices.len() != shape.len() {
                    self.report(
                        Diagnostic::error(
                            Code::BadInit,
                            format!(
                                "`init` lists {} indices for a weight of {} dimensions",
                                indices.len(),
                                shape.len()
                            ),
                            *init_span,
                            "wrong number of indices",
                        )
                        .with_label(span, "the weight's type"),
                    );
                    return None;
                }
                let extents: Vec<(String, Dim)> =
                    indices.iter().zip(shape).map(|(i, &n)| (i.name.clone(), Dim::Known(n))).collect();
                if !index::check_init(self, &extents, indices, value, env) {
                    return None;
                }
                let mut consts: Vec<(String, Const)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                consts.sort_by(|a, b| a.0.cmp(&b.0));
                Some(InitSpec::Indexed {
                    indices: indices.iter().map(|i| i.name.clone()).collect(),
                    expr: value.clone(),
                    consts,
                })
            }
        }
    }

    // -------------------------------------------------------------- layers

    /// Instantiates a layer call at a checkpoint path: binds its parameters,
    /// evaluates its constants and declares its weights.
    fn instantiate(&mut self, call: &ast::Call, path: &str, env: &HashMap<String, Const>) -> Option<InstId> {
        if self.instances.len() >= limits::MAX_INSTANCES {
            if !self.aborted {
                self.aborted = true;
                self.report(Diagnostic::error(
                    Code::TooManyInstances,
                    format!("the model has more than {} layer instances", limits::MAX_INSTANCES),
                    call.span,
                    "limit reached here",
                ));
            }
            return None;
        }
        if self.sites.len() > 32 {
            self.report(
                Diagnostic::error(
                    Code::RecursiveLayer,
                    format!("layer `{}` contains itself", call.callee.name),
                    call.callee.span,
                    "instantiated inside itself",
                )
                .with_note("layers nest at most 32 deep; a layer cannot hold an instance of itself"),
            );
            self.aborted = true;
            return None;
        }
        let name = call.callee.name.as_str();
        let kind = match self.defs.get(name) {
            Some(def) => LayerKind::User(def),
            None => match Builtin::lookup(name) {
                Some(b) => LayerKind::Builtin(b),
                None => {
                    let mut d = Diagnostic::error(
                        Code::UnknownLayer,
                        format!("unknown layer `{name}`"),
                        call.callee.span,
                        "no such layer",
                    );
                    if let Some(best) = closest(
                        name,
                        self.defs.keys().copied().chain(["linear", "embed", "rmsnorm", "layernorm", "conv1d"]),
                    ) {
                        d = d.with_help(format!("did you mean `{best}`?"));
                    }
                    self.report(d);
                    return None;
                }
            },
        };
        let lookup = |n: &str| env.get(n).cloned();
        let consts = self.bind_params(kind, call, &lookup)?;
        let id = self.instances.len();
        self.instances.push(Instance {
            kind,
            path: path.to_string(),
            failed: false,
            consts,
            members: HashMap::new(),
            site: call.span,
        });
        let errors_before = self.errors;
        self.sites.push(call.span);
        match kind {
            LayerKind::Builtin(b) => {
                let consts = self.instances[id].consts.clone();
                for (wname, shape, init) in b.weights(&|n| consts.get(n).cloned().unwrap_or(Const::Int(0))) {
                    if shape.iter().any(|&d| d <= 0) {
                        self.report(Diagnostic::error(
                            Code::InvalidDimension,
                            format!("`{name}` gets a non-positive size"),
                            call.span,
                            format!("`{wname}` would have shape {shape:?}"),
                        ));
                        continue;
                    }
                    let count: i128 = shape.iter().map(|&d| d as i128).product();
                    if count > limits::MAX_TENSOR_ELEMENTS {
                        self.report(Diagnostic::error(
                            Code::TensorTooLarge,
                            format!("`{path}.{wname}` would have {count} elements"),
                            call.span,
                            format!("the limit is {}", limits::MAX_TENSOR_ELEMENTS),
                        ));
                        continue;
                    }
                    if let Some(w) = self.add_weight(
                        &join(path, wname),
                        builtins::WEIGHT_DTYPE,
                        shape,
                        InitSpec::Default(init),
                        call.span,
                    ) {
                        self.instances[id].members.insert(wname.to_string(), Member::Tensor(w));
                    }
                }
            }
            LayerKind::User(def) => {
                let mut consts = self.instances[id].consts.clone();
                for m in &def.members {
                    match m {
                        ast::LayerMember::Let(c) => {
                            let lookup = |n: &str| consts.get(n).cloned();
                            match consts::eval(&c.value, &lookup) {
                                Ok(v) => {
                                    consts.insert(c.name.name.clone(), v);
                                }
                                Err(d) => {
                                    // Later members would only repeat that the constant is unknown.
                                    self.report(d);
                                    break;
                                }
                            }
                        }
                        ast::LayerMember::Weight(w) => {
                            if let Some(member) = self.weight_decl(w, &join(path, &w.name.name), &consts) {
                                if self.instances[id].members.insert(w.name.name.clone(), member).is_some() {
                                    self.report(Diagnostic::error(
                                        Code::Duplicate,
                                        format!("weight `{}` is declared twice", w.name.name),
                                        w.name.span,
                                        "second declaration",
                                    ));
                                }
                            }
                            if self.aborted {
                                break;
                            }
                        }
                        ast::LayerMember::Forward(_) | ast::LayerMember::Error => {}
                    }
                }
                self.instances[id].consts = consts;
            }
        }
        self.instances[id].failed = self.errors > errors_before;
        self.sites.pop();
        Some(id)
    }

    /// Binds a call's arguments to the layer's parameters, defaults filled in.
    fn bind_params(
        &mut self,
        kind: LayerKind<'a>,
        call: &ast::Call,
        caller: consts::Lookup,
    ) -> Option<HashMap<String, Const>> {
        struct P<'p> {
            name: String,
            ty: String,
            default: Option<Result<Const, &'p Expr>>,
            span: Span,
        }
        let params: Vec<P> = match kind {
            LayerKind::Builtin(b) => b
                .params()
                .into_iter()
                .map(|p| P { name: p.name.into(), ty: p.ty.into(), default: p.default.map(Ok), span: call.callee.span })
                .collect(),
            LayerKind::User(def) => {
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for p in &def.params {
                    if let Some(prev) = seen.insert(&p.name.name, p.name.span) {
                        self.report(
                            Diagnostic::error(
                                Code::Duplicate,
                                format!("parameter `{}` is declared twice", p.name.name),
                                p.name.span,
                                "second declaration",
                            )
                            .with_label(prev, "first declaration"),
                        );
                        return None;
                    }
                    if !matches!(p.ty.name.as_str(), "int" | "float" | "bool") {
                        self.report(
                            Diagnostic::error(
                                Code::DtypeMismatch,
                                format!("unknown parameter type `{}`", p.ty.name),
                                p.ty.span,
                                "not a parameter type",
                            )
                            .with_note("parameters are `int`, `float` or `bool`"),
                        );
                        return None;
                    }
                }
                def.params
                    .iter()
                    .map(|p| P {
                        name: p.name.name.clone(),
                        ty: p.ty.name.clone(),
                        default: p.default.as_ref().map(Err),
                        span: p.span,
                    })
                    .collect()
            }
        };
        let layer_name = &call.callee.name;
        let mut given: Vec<Option<(Const, Span)>> = vec![None; params.len()];
        let mut ok = true;
        for (i, arg) in call.args.iter().enumerate() {
            let slot = match &arg.name {
                None if i < params.len() => i,
                None => {
                    self.report(Diagnostic::error(
                        Code::BadArguments,
                        format!(
                            "`{layer_name}` takes {} parameters, found {} arguments",
                            params.len(),
                            call.args.len()
                        ),
                        arg.value.span,
                        "extra argument",
                    ));
                    ok = false;
                    continue;
                }
                Some(n) => match params.iter().position(|p| p.name == n.name) {
                    Some(s) => s,
                    None => {
                        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                        self.report(
                            Diagnostic::error(
                                Code::BadArguments,
                                format!("`{layer_name}` has no parameter `{}`", n.name),
                                n.span,
                                "unknown parameter",
                            )
                            .with_note(format!("its parameters are: {}", names.join(", "))),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if given[slot].is_some() {
                self.report(Diagnostic::error(
                    Code::BadArguments,
                    format!("parameter `{}` is given twice", params[slot].name),
                    arg.value.span,
                    "given again here",
                ));
                ok = false;
                continue;
            }
            match consts::eval(&arg.value, caller) {
                Ok(v) => given[slot] = Some((v, arg.value.span)),
                Err(d) => {
                    self.report(d);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let mut out: HashMap<String, Const> = HashMap::new();
        for (p, g) in params.iter().zip(given) {
            let (value, span) = match g {
                Some(v) => v,
                None => match &p.default {
                    Some(Ok(c)) => (c.clone(), p.span),
                    Some(Err(e)) => {
                        let lookup = |n: &str| out.get(n).cloned();
                        match consts::eval(e, &lookup) {
                            Ok(v) => (v, e.span),
                            Err(d) => {
                                self.report(d);
                                return None;
                            }
                        }
                    }
                    None => {
                        self.report(
                            Diagnostic::error(
                                Code::BadArguments,
                                format!("`{layer_name}` needs parameter `{}`", p.name),
                                call.span,
                                format!("`{}` is missing", p.name),
                            )
                            .with_label(p.span, "declared here"),
                        );
                        return None;
                    }
                },
            };
            let value = match (p.ty.as_str(), value) {
                ("float", Const::Int(i)) => Const::Float(i as f64),
                ("int", v @ Const::Int(_)) | ("float", v @ Const::Float(_)) | ("bool", v @ Const::Bool(_)) => v,
                (ty, v) => {
                    self.report(
                        consts::type_error(span, ty, &v)
                            .with_note(format!("parameter `{}` of `{layer_name}` is {ty}", p.name)),
                    );
                    return None;
                }
            };
            out.insert(p.name.clone(), value);
        }
        Some(out)
    }

    /// Checks a layer of a file without a model, when every parameter has a default.
    fn layer_alone(&mut self, l: &'a LayerDef) {
        if l.params.iter().any(|p| p.default.is_none()) {
            return;
        }
        let call = ast::Call { callee: l.name.clone(), args: Vec::new(), span: l.name.span };
        let Some(id) = self.instantiate(&call, &l.name.name, &HashMap::new()) else { return };
        forward::check_layer_alone(self, id);
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The candidate nearest to `name` by edit distance, when near enough to suggest.
pub(crate) fn closest<'s>(name: &str, candidates: impl Iterator<Item = &'s str>) -> Option<&'s str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        if d <= (name.len().max(2) / 3).max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 3 || a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
