//! Forwards, checked abstractly: statements bind names to values, expressions
//! evaluate to tensor types, layer calls check the callee's forward against the
//! argument's shape. Index notation and scans are in `index.rs`.

use super::causal::{self, Mask, Taint};
use super::types::{broadcast, element_count, shape_str, Dim, TensorTy};
use super::{consts, index, Checker, Const, InstId, LayerKind, Member, ScopeId, Tensor, Value};
use crate::diag::{Code, Diagnostic, Span};
use crate::ir::{self, Op, ScalarFn};
use crate::syntax::ast::{self, BinOp, DType, Expr, ExprKind, Stmt, StmtKind, UnOp};
use std::collections::HashMap;
use std::rc::Rc;

/// The names visible in one forward.
pub(crate) struct Frame {
    pub consts: Rc<HashMap<String, Const>>,
    pub members: Rc<HashMap<String, Member>>,
    pub dims: HashMap<String, Dim>,
    pub vars: Vec<HashMap<String, Value>>,
    /// The model's outputs (a model forward only): type, declaration, assigned.
    pub outputs: HashMap<String, (TensorTy, Span, Option<Span>)>,
    /// Whether `return` is allowed (a layer forward).
    pub is_layer: bool,
    /// States of finished scans, to explain why they are not visible.
    pub expired_states: Vec<String>,
}

impl Frame {
    pub fn lookup(&self, name: &str) -> Option<Value> {
        for scope in self.vars.iter().rev() {
            if let Some(v) = scope.get(name) {
                return Some(v.clone());
            }
        }
        if let Some(m) = self.members.get(name) {
            return Some(Value::Member(m.clone()));
        }
        if let Some(c) = self.consts.get(name) {
            return Some(Value::Const(c.clone()));
        }
        self.dims.get(name).map(|d| Value::Dim(d.clone()))
    }

    pub fn const_lookup(&self, name: &str) -> Option<Const> {
        match self.lookup(name) {
            Some(Value::Const(c)) => Some(c),
            Some(Value::Dim(Dim::Known(v))) => Some(Const::Int(v)),
            _ => None,
        }
    }

    fn bind(&mut self, name: &str, v: Value) {
        if let Some(top) = self.vars.last_mut() {
            top.insert(name.to_string(), v);
        }
    }
}

pub(crate) fn model_forward(
    cx: &mut Checker,
    f: &ast::ForwardDef,
    config: &HashMap<String, Const>,
    top: ScopeId,
    inputs: Vec<(String, Tensor)>,
    outputs: &[(&ast::IoDecl, TensorTy)],
    failed: &[ast::Ident],
) {
    let mut dims = HashMap::new();
    for (_, t) in &inputs {
        for d in &t.ty.shape {
            if let Dim::Sym(s) = d {
                dims.insert(s.to_string(), d.clone());
            }
        }
    }
    let mut frame = Frame {
        consts: Rc::new(config.clone()),
        members: Rc::new(cx.scopes[top].clone()),
        dims,
        vars: vec![inputs.into_iter().map(|(n, t)| (n, Value::Tensor(t))).collect()],
        outputs: outputs.iter().map(|(io, ty)| (io.name.name.clone(), (ty.clone(), io.name.span, None))).collect(),
        is_layer: false,
        expired_states: Vec::new(),
    };
    poison(&mut frame, failed);
    let before = cx.errors;
    stmts(cx, &mut frame, &f.body);
    if cx.errors > before {
        return; // an output may be missing because of those errors
    }
    let mut missing: Vec<_> = frame.outputs.iter().filter(|(_, (_, _, a))| a.is_none()).collect();
    missing.sort_by_key(|(_, (_, span, _))| *span);
    for (name, (_, span, _)) in missing {
        cx.report(
            Diagnostic::error(
                Code::OutputNotAssigned,
                format!("output `{name}` is never assigned"),
                *span,
                "declared here",
            )
            .with_label(f.span, "this forward does not assign it")
            .with_help(format!("assign it in the forward: `{name} = ...`")),
        );
    }
}

/// Checks a layer's forward with symbolic inputs (a file of layers alone).
pub(crate) fn check_layer_alone(cx: &mut Checker, id: InstId) {
    let LayerKind::User(def) = cx.instances[id].kind else { return };
    let Some(f) = layer_forward(cx, def) else { return };
    let consts = Rc::new(cx.instances[id].consts.clone());
    let mut dims = HashMap::new();
    let mut vars = HashMap::new();
    for p in f.params.iter().flatten() {
        let lookup = |n: &str| consts.get(n).cloned();
        let Some(shape) = cx.type_dims(&p.ty.dims, &lookup, &mut dims, true) else { return };
        let ty = TensorTy { dtype: p.ty.dtype, shape };
        let node = cx.graph.add1(Op::Input { name: p.name.name.clone() }, Vec::new(), ty.clone());
        vars.insert(p.name.name.clone(), Value::Tensor(Tensor::plain(ty, node)));
    }
    run_layer_forward(cx, id, f, consts, dims, vars);
}

/// Checks a layer instance's forward body with its parameters bound; returns
/// what it returns.
fn run_layer_forward(
    cx: &mut Checker,
    id: InstId,
    f: &ast::ForwardDef,
    consts: Rc<HashMap<String, Const>>,
    dims: HashMap<String, Dim>,
    vars: HashMap<String, Value>,
) -> Option<Tensor> {
    let mut frame = Frame {
        consts,
        members: Rc::new(cx.instances[id].members.clone()),
        dims,
        vars: vec![vars],
        outputs: HashMap::new(),
        is_layer: true,
        expired_states: Vec::new(),
    };
    cx.sites.push(cx.instances[id].site);
    let outer = cx.graph.set_origin(cx.instances[id].path.clone());
    let ret = stmts(cx, &mut frame, &f.body);
    let out = if cx.aborted { None } else { check_return(cx, f, ret, &frame) };
    cx.graph.set_origin(outer);
    cx.sites.pop();
    out
}

fn layer_forward<'a>(cx: &mut Checker, def: &'a ast::LayerDef) -> Option<&'a ast::ForwardDef> {
    let forwards: Vec<&ast::ForwardDef> = def
        .members
        .iter()
        .filter_map(|m| match m {
            ast::LayerMember::Forward(f) if f.name.is_none() => Some(f),
            _ => None,
        })
        .collect();
    match forwards.as_slice() {
        [] => {
            cx.report(Diagnostic::error(
                Code::NoForward,
                format!("layer `{}` has no forward", def.name.name),
                def.name.span,
                "no `forward(...) { ... }`",
            ));
            None
        }
        [f] => Some(f),
        [first, second, ..] => {
            cx.report(
                Diagnostic::error(
                    Code::NoForward,
                    format!("layer `{}` has two forwards", def.name.name),
                    second.span,
                    "second forward",
                )
                .with_label(first.span, "first forward")
                .with_note("extra forwards need a name: `forward step(...)`"),
            );
            None
        }
    }
}

fn check_return(cx: &mut Checker, f: &ast::ForwardDef, ret: Option<(Value, Span)>, frame: &Frame) -> Option<Tensor> {
    let Some((value, span)) = ret else {
        if matches!(f.body.last().map(|s| &*s.kind), Some(StmtKind::Return(_))) {
            return None; // the returned expression already reported its error
        }
        let end = Span { file: f.span.file, start: f.span.end.saturating_sub(1), end: f.span.end };
        cx.report(Diagnostic::error(
            Code::MissingReturn,
            "this forward does not return a value",
            end,
            "expected `return` before this",
        ));
        return None;
    };
    let Value::Tensor(t) = value else {
        cx.report(Diagnostic::error(
            Code::KindMismatch,
            "a forward returns a tensor",
            span,
            format!("this is {}", value.describe()),
        ));
        return None;
    };
    if let Some(ret_ty) = &f.ret {
        let consts = frame.consts.clone();
        let lookup = |n: &str| consts.get(n).cloned();
        let mut dims = frame.dims.clone();
        let want = cx.type_dims(&ret_ty.dims, &lookup, &mut dims, true)?;
        if want != t.ty.shape {
            cx.report(
                Diagnostic::error(
                    Code::ReturnMismatch,
                    format!("the forward returns {}, but declares {}", shape_str(&t.ty.shape), shape_str(&want)),
                    span,
                    format!("this is {}", shape_str(&t.ty.shape)),
                )
                .with_label(ret_ty.span, "declared here"),
            );
            return None;
        }
    }
    Some(t)
}

/// Checks statements; returns the value of a `return`, if one ends them.
pub(crate) fn stmts(cx: &mut Checker, frame: &mut Frame, body: &[Stmt]) -> Option<(Value, Span)> {
    let mut ret = None;
    for (i, s) in body.iter().enumerate() {
        if !cx.tick(s.span) {
            return None;
        }
        if let Some((_, span)) = &ret {
            cx.report(
                Diagnostic::error(Code::MisplacedStatement, "statement after `return`", s.span, "never runs")
                    .with_label(*span, "the forward returns here"),
            );
            break;
        }
        match &*s.kind {
            StmtKind::Let { names, value } => {
                let Some(v) = eval(cx, frame, value) else {
                    // Bind nothing; later uses report unknown names only once each.
                    for n in names {
                        frame.bind(&n.name, Value::Const(Const::Int(0)));
                    }
                    poison(frame, names);
                    continue;
                };
                bind_let(cx, frame, names, v, value.span);
            }
            StmtKind::Define { name, indices, value, cond } => {
                match index::define(cx, frame, indices, value, cond.as_ref(), s.span) {
                    Some(t) => frame.bind(&name.name, Value::Tensor(t)),
                    None => poison(frame, std::slice::from_ref(name)),
                }
            }
            StmtKind::Assign { name, value } => assign(cx, frame, name, value),
            StmtKind::IndexedAssign { name, .. } => cx.report(
                Diagnostic::error(
                    Code::MisplacedStatement,
                    format!("`{}[...] = ...` outside a scan", name.name),
                    s.span,
                    "not in a scan",
                )
                .with_help(format!("define a tensor with `let {}[...] = ...`", name.name)),
            ),
            StmtKind::State { .. } => cx.report(Diagnostic::error(
                Code::MisplacedStatement,
                "`state` outside a scan",
                s.span,
                "states are declared at the top of a `scan` block",
            )),
            StmtKind::For { var, group, body } => {
                let g = eval(cx, frame, group);
                match g {
                    Some(Value::Member(Member::Group(ids))) => {
                        for id in ids.iter() {
                            frame.vars.push(HashMap::from([(var.name.clone(), Value::Member(Member::Scope(*id)))]));
                            let r = stmts(cx, frame, body);
                            frame.vars.pop();
                            if let Some((_, span)) = r {
                                cx.report(Diagnostic::error(
                                    Code::MisplacedStatement,
                                    "`return` inside `for`",
                                    span,
                                    "not allowed here",
                                ));
                            }
                            if cx.aborted {
                                return None;
                            }
                        }
                    }
                    Some(Value::Member(Member::Poison)) => {}
                    Some(other) => cx.report(
                        Diagnostic::error(
                            Code::NotAGroup,
                            "`for` needs a repeated weight group",
                            group.span,
                            format!("this is {}", other.describe()),
                        )
                        .with_note("a repeated group is declared as `name[count] { ... }` in a weights block"),
                    ),
                    None => {}
                }
            }
            StmtKind::Scan { index: idx, dim, body } => index::scan(cx, frame, idx, dim, body, s.span),
            StmtKind::Return(e) => {
                if !frame.is_layer {
                    cx.report(Diagnostic::error(
                        Code::MisplacedStatement,
                        "`return` in a model's forward",
                        s.span,
                        "a model assigns its outputs instead",
                    ));
                    continue;
                }
                if let Some(v) = eval(cx, frame, e) {
                    ret = Some((v, e.span));
                } else {
                    return None;
                }
                let _ = i;
            }
            StmtKind::Error => {}
        }
    }
    ret
}

/// Marks names whose definition failed, so that uses do not report again.
pub(crate) fn poison(frame: &mut Frame, names: &[ast::Ident]) {
    for n in names {
        frame.bind(&n.name, Value::Const(Const::Str("<error>".into())));
    }
}

fn is_poison(v: &Value) -> bool {
    matches!(v, Value::Const(Const::Str(s)) if s == "<error>")
}

fn bind_let(cx: &mut Checker, frame: &mut Frame, names: &[ast::Ident], v: Value, span: Span) {
    match (names, v) {
        ([n], Value::Tuple(ts)) => {
            cx.report(
                Diagnostic::error(
                    Code::ArityMismatch,
                    format!("this gives {} tensors, bound to one name", ts.len()),
                    span,
                    "several values",
                )
                .with_help(format!("name each: `let a, b = ...` ({} names)", ts.len())),
            );
            poison(frame, std::slice::from_ref(n));
        }
        ([n], v) => frame.bind(&n.name, v),
        (ns, Value::Tuple(ts)) if ns.len() == ts.len() => {
            for (n, t) in ns.iter().zip(ts) {
                frame.bind(&n.name, Value::Tensor(t));
            }
        }
        (ns, v) => {
            let found = match &v {
                Value::Tuple(ts) => ts.len(),
                _ => 1,
            };
            cx.report(Diagnostic::error(
                Code::ArityMismatch,
                format!("{} names for {found} value{}", ns.len(), if found == 1 { "" } else { "s" }),
                span,
                format!("gives {found}"),
            ));
            poison(frame, ns);
        }
    }
}

fn assign(cx: &mut Checker, frame: &mut Frame, name: &ast::Ident, value: &Expr) {
    if let Some((ty, decl, assigned)) = frame.outputs.get(&name.name).cloned() {
        if let Some(prev) = assigned {
            cx.report(
                Diagnostic::error(
                    Code::Duplicate,
                    format!("output `{}` is assigned twice", name.name),
                    name.span,
                    "second assignment",
                )
                .with_label(prev, "first assignment"),
            );
            return;
        }
        frame.outputs.insert(name.name.clone(), (ty.clone(), decl, Some(name.span)));
        let Some(v) = eval(cx, frame, value) else { return };
        let Value::Tensor(t) = v else {
            cx.report(Diagnostic::error(
                Code::KindMismatch,
                format!("output `{}` must be a tensor", name.name),
                value.span,
                format!("this is {}", v.describe()),
            ));
            return;
        };
        if t.ty.shape != ty.shape {
            cx.report(
                Diagnostic::error(
                    Code::ShapeMismatch,
                    format!(
                        "output `{}` is declared {}, assigned {}",
                        name.name,
                        shape_str(&ty.shape),
                        shape_str(&t.ty.shape)
                    ),
                    value.span,
                    format!("this is {}", shape_str(&t.ty.shape)),
                )
                .with_label(decl, "declared here"),
            );
        }
        cx.graph.outputs.push((name.name.clone(), t.node));
        if let Some(taint) = &t.taint {
            cx.report(
                Diagnostic::error(taint.code, taint.message.clone(), taint.span, taint.label.clone())
                    .with_label(name.span, format!("and reaches output `{}` here", name.name))
                    .with_note("models are causal: an output at position l may only read positions up to l"),
            );
        }
        return;
    }
    let Some(v) = eval(cx, frame, value) else { return };
    let known = frame.vars.iter().any(|s| s.contains_key(&name.name));
    if !known {
        cx.report(
            Diagnostic::error(
                Code::UnknownName,
                format!("cannot assign to unknown name `{}`", name.name),
                name.span,
                "not defined",
            )
            .with_help(format!("define it first with `let {} = ...`", name.name)),
        );
        return;
    }
    for scope in frame.vars.iter_mut().rev() {
        if let Some(slot) = scope.get_mut(&name.name) {
            *slot = v;
            return;
        }
    }
}

fn unknown_name(cx: &mut Checker, frame: &Frame, name: &str, span: Span) {
    let mut d = Diagnostic::error(Code::UnknownName, format!("unknown name `{name}`"), span, "not defined here");
    let mut candidates: Vec<&str> = Vec::new();
    for s in &frame.vars {
        candidates.extend(s.keys().map(|k| k.as_str()));
    }
    candidates.extend(frame.members.keys().map(|k| k.as_str()));
    candidates.extend(frame.consts.keys().map(|k| k.as_str()));
    if let Some(best) = super::closest(name, candidates.into_iter()) {
        d = d.with_help(format!("did you mean `{best}`?"));
    } else if consts::element_arity(name).is_some() || super::builtins::TENSOR_FUNCTIONS.contains(&name) {
        d = d.with_note(format!("`{name}` is a function: call it"));
    }
    cx.report(d);
}

/// Evaluates a whole-tensor expression; `None` after reporting a diagnostic.
pub(crate) fn eval(cx: &mut Checker, frame: &mut Frame, e: &Expr) -> Option<Value> {
    match &e.kind {
        ExprKind::Int(v) => Some(Value::Const(Const::Int(*v))),
        ExprKind::Float(v) => Some(Value::Const(Const::Float(*v))),
        ExprKind::Bool(v) => Some(Value::Const(Const::Bool(*v))),
        ExprKind::Str(v) => Some(Value::Const(Const::Str(v.clone()))),
        ExprKind::Name(n) => match frame.lookup(n) {
            Some(v) if is_poison(&v) => None,
            Some(Value::Member(m @ Member::Tensor(_))) => Some(member_value(cx, m)),
            Some(Value::Member(Member::Poison)) => None,
            Some(v) => Some(v),
            None => {
                unknown_name(cx, frame, n, e.span);
                None
            }
        },
        ExprKind::Member(base, m) => {
            let b = eval(cx, frame, base)?;
            let found = match &b {
                Value::Member(Member::Layer(id)) => cx.instances[*id].members.get(&m.name).cloned(),
                Value::Member(Member::Scope(id)) => cx.scopes[*id].get(&m.name).cloned(),
                _ => None,
            };
            match found {
                Some(Member::Poison) => None,
                Some(member) => Some(member_value(cx, member)),
                None => {
                    let mut d = Diagnostic::error(
                        Code::UnknownMember,
                        format!("{} has no member `{}`", b.describe(), m.name),
                        m.span,
                        "no such member",
                    );
                    let names: Vec<String> = match &b {
                        Value::Member(Member::Layer(id)) => cx.instances[*id].members.keys().cloned().collect(),
                        Value::Member(Member::Scope(id)) => cx.scopes[*id].keys().cloned().collect(),
                        _ => Vec::new(),
                    };
                    if let Some(best) = super::closest(&m.name, names.iter().map(|s| s.as_str())) {
                        d = d.with_help(format!("did you mean `{best}`?"));
                    }
                    cx.report(d);
                    None
                }
            }
        }
        ExprKind::Call { callee, args } => call(cx, frame, callee, args, e.span),
        ExprKind::Index { .. } => {
            cx.report(
                Diagnostic::error(
                    Code::MisplacedStatement,
                    "an indexed access outside index notation",
                    e.span,
                    "indices need a definition",
                )
                .with_help("define the tensor element-wise: `let y[b, l, d] = x[b, l, d] ...`"),
            );
            None
        }
        ExprKind::Reduce { op, .. } => {
            cx.report(
                Diagnostic::error(
                    Code::MisplacedStatement,
                    format!("`{}[...]` outside index notation", op.name()),
                    e.span,
                    "a reduction needs indices",
                )
                .with_help("write it in a definition: `let y[b, l] = sum[d] x[b, l, d]`"),
            );
            None
        }
        ExprKind::List(_) => {
            cx.report(Diagnostic::error(
                Code::KindMismatch,
                "a list is only an argument of `split`, `concat` or `reshape`",
                e.span,
                "unexpected list",
            ));
            None
        }
        ExprKind::Unary(op, x) => {
            let v = eval(cx, frame, x)?;
            match (op, v) {
                (_, Value::Const(c)) => const_result(cx, consts::unary(*op, c, e.span)),
                (UnOp::Neg, Value::Tensor(t)) => {
                    float_tensor(cx, &t, x.span)?;
                    let node = cx.elementwise(ScalarFn::Neg, &[&t], &t.ty.shape.clone());
                    Some(Value::Tensor(Tensor { mask: None, node, ..t }))
                }
                (_, v) => {
                    cx.report(Diagnostic::error(
                        Code::BooleanValue,
                        "`!` needs a condition",
                        x.span,
                        format!("this is {}", v.describe()),
                    ));
                    None
                }
            }
        }
        ExprKind::Binary(op, a, b) => {
            let va = eval(cx, frame, a)?;
            let vb = eval(cx, frame, b)?;
            binary(cx, *op, va, vb, a.span, b.span, e.span)
        }
        ExprKind::If { cond, then, otherwise } => {
            let c = eval(cx, frame, cond)?;
            let Value::Const(Const::Bool(c)) = c else {
                cx.report(
                    Diagnostic::error(
                        Code::BooleanValue,
                        "a whole-tensor `if` needs a constant condition",
                        cond.span,
                        format!("this is {}", c.describe()),
                    )
                    .with_help("for an element-wise choice, use index notation: `let y[i] = if ... then ... else ...`"),
                );
                return None;
            };
            let t = eval(cx, frame, then);
            let o = eval(cx, frame, otherwise);
            if c {
                t
            } else {
                o
            }
        }
        ExprKind::Error => None,
    }
}

fn const_result(cx: &mut Checker, r: Result<Const, Diagnostic>) -> Option<Value> {
    match r {
        Ok(c) => Some(Value::Const(c)),
        Err(d) => {
            cx.report(d);
            None
        }
    }
}

pub(crate) fn member_value(cx: &mut Checker, m: Member) -> Value {
    match m {
        Member::Tensor(w) => {
            let node = cx.weight_node(w);
            let info = &cx.weights[w];
            Value::Tensor(Tensor::plain(
                TensorTy { dtype: info.dtype, shape: info.shape.iter().map(|&d| Dim::Known(d)).collect() },
                node,
            ))
        }
        other => Value::Member(other),
    }
}

fn float_tensor(cx: &mut Checker, t: &Tensor, span: Span) -> Option<()> {
    if t.ty.dtype.is_float() {
        Some(())
    } else {
        cx.report(
            Diagnostic::error(
                Code::DtypeMismatch,
                format!("expected a float tensor, found {}", t.ty),
                span,
                format!("this is {}", t.ty.dtype.name()),
            )
            .with_note("integer tensors (token ids) are only read by `embed`"),
        );
        None
    }
}

fn binary(cx: &mut Checker, op: BinOp, a: Value, b: Value, sa: Span, sb: Span, span: Span) -> Option<Value> {
    if let (Value::Const(x), Value::Const(y)) = (&a, &b) {
        return const_result(cx, consts::binary(op, x.clone(), y.clone(), span, sb));
    }
    if op.is_comparison() || op.is_logical() {
        cx.report(
            Diagnostic::error(
                Code::BooleanValue,
                format!("`{}` on tensors", op.symbol()),
                span,
                "comparisons are for conditions",
            )
            .with_help("use comparisons in `where` or in an element-wise `if`"),
        );
        return None;
    }
    let (ts, shape) = broadcast_operands(cx, op.symbol(), vec![(a, sa), (b, sb)], span)?;
    let (ta, tb) = (&ts[0], &ts[1]);
    // Masks flow through products, and through a quotient's numerator.
    let shift = |t: &Tensor| {
        let d = shape.len() - t.ty.shape.len();
        t.mask.map(|m| Mask { bounded: m.bounded + d, anchor: m.anchor + d, offset: m.offset })
    };
    let mask = match op {
        BinOp::Mul => shift(ta).or_else(|| shift(tb)),
        BinOp::Div => shift(ta),
        _ => None,
    };
    let f = match op {
        BinOp::Add => ScalarFn::Add,
        BinOp::Sub => ScalarFn::Sub,
        BinOp::Mul => ScalarFn::Mul,
        _ => ScalarFn::Div,
    };
    let node = cx.elementwise(f, &[ta, tb], &shape);
    Some(Value::Tensor(Tensor {
        ty: TensorTy { dtype: DType::F32, shape },
        mask,
        taint: causal::join(&ta.taint, &tb.taint),
        node,
    }))
}

/// Float tensors (numbers become scalar constants) and their broadcast shape.
fn broadcast_operands(
    cx: &mut Checker,
    what: &str,
    vals: Vec<(Value, Span)>,
    span: Span,
) -> Option<(Vec<Tensor>, Vec<Dim>)> {
    let mut ts: Vec<(Tensor, Span)> = Vec::new();
    for (v, s) in vals {
        let t = match v {
            Value::Tensor(t) => {
                float_tensor(cx, &t, s)?;
                t
            }
            Value::Const(c @ (Const::Int(_) | Const::Float(_))) => {
                let node = cx.const_node(c.as_f64().unwrap_or(0.0));
                Tensor::plain(TensorTy { dtype: DType::F32, shape: Vec::new() }, node)
            }
            Value::Dim(Dim::Known(v)) => {
                let node = cx.const_node(v as f64);
                Tensor::plain(TensorTy { dtype: DType::F32, shape: Vec::new() }, node)
            }
            other => {
                cx.report(Diagnostic::error(
                    Code::KindMismatch,
                    format!("`{what}` needs numbers or tensors"),
                    s,
                    format!("this is {}", other.describe()),
                ));
                return None;
            }
        };
        ts.push((t, s));
    }
    let mut shape: Vec<Dim> = Vec::new();
    for (t, _) in &ts {
        match broadcast(&shape, &t.ty.shape) {
            Some(sh) => shape = sh,
            None => {
                let mut d = Diagnostic::error(
                    Code::ShapeMismatch,
                    format!(
                        "shapes {} do not broadcast",
                        ts.iter().map(|(t, _)| shape_str(&t.ty.shape)).collect::<Vec<_>>().join(" and ")
                    ),
                    span,
                    format!("`{what}` of incompatible shapes"),
                );
                for (t, s) in &ts {
                    d = d.with_label(*s, shape_str(&t.ty.shape));
                }
                cx.report(d.with_note(
                    "shapes broadcast when, aligned from the right, each pair of dimensions is equal or one of them is 1",
                ));
                return None;
            }
        }
    }
    Some((ts.into_iter().map(|(t, _)| t).collect(), shape))
}

fn taint(code: Code, span: Span, message: impl Into<String>, label: impl Into<String>) -> Option<Rc<Taint>> {
    Some(Rc::new(Taint { code, span, message: message.into(), label: label.into() }))
}

/// Evaluates positional arguments, refusing keyword arguments except `allowed`.
fn positional(cx: &mut Checker, args: &[ast::Arg], fname: &str, allowed: &[&str]) -> Option<Vec<usize>> {
    let mut pos = Vec::new();
    for (i, a) in args.iter().enumerate() {
        match &a.name {
            None => pos.push(i),
            Some(n) if allowed.contains(&n.name.as_str()) => {}
            Some(n) => {
                cx.report(Diagnostic::error(
                    Code::BadArguments,
                    format!("`{fname}` has no parameter `{}`", n.name),
                    n.span,
                    "unknown keyword argument",
                ));
                return None;
            }
        }
    }
    Some(pos)
}

fn arity(cx: &mut Checker, fname: &str, want: usize, found: usize, span: Span) -> Option<()> {
    if want == found {
        return Some(());
    }
    cx.report(Diagnostic::error(
        Code::BadArguments,
        format!("`{fname}` takes {want} argument{}, found {found}", if want == 1 { "" } else { "s" }),
        span,
        "wrong number of arguments",
    ));
    None
}

fn tensor_arg(cx: &mut Checker, frame: &mut Frame, e: &Expr) -> Option<Tensor> {
    match eval(cx, frame, e)? {
        Value::Tensor(t) => Some(t),
        other => {
            cx.report(Diagnostic::error(
                Code::KindMismatch,
                "expected a tensor",
                e.span,
                format!("this is {}", other.describe()),
            ));
            None
        }
    }
}

fn const_arg(cx: &mut Checker, frame: &mut Frame, e: &Expr) -> Option<Const> {
    match eval(cx, frame, e)? {
        Value::Const(c) => Some(c),
        Value::Dim(Dim::Known(v)) => Some(Const::Int(v)),
        other => {
            cx.report(Diagnostic::error(
                Code::KindMismatch,
                "expected a constant",
                e.span,
                format!("this is {}", other.describe()),
            ));
            None
        }
    }
}

fn list_items<'e>(cx: &mut Checker, e: &'e Expr, what: &str) -> Option<&'e [Expr]> {
    match &e.kind {
        ExprKind::List(items) => Some(items),
        _ => {
            cx.report(Diagnostic::error(
                Code::KindMismatch,
                format!("expected a list of {what}"),
                e.span,
                "not a `[...]` list",
            ));
            None
        }
    }
}

/// A reduction along the last axis of a tensor whose last axis is the sequence
/// reads every position: taint it.
fn last_axis_taint(t: &Tensor, what: &str, span: Span) -> causal::TaintRef {
    if t.ty.shape.last().is_some_and(|d| d.is_seq()) {
        taint(
            Code::NonCausalReduction,
            span,
            format!("{what} reduces over the sequence axis"),
            "reads every position, later ones included",
        )
    } else {
        None
    }
}

fn call(cx: &mut Checker, frame: &mut Frame, callee: &Expr, args: &[ast::Arg], span: Span) -> Option<Value> {
    if let Some(name) = callee.as_name() {
        if frame.lookup(name).is_none() {
            return builtin_call(cx, frame, name, callee.span, args, span);
        }
    }
    let f = eval(cx, frame, callee)?;
    match f {
        Value::Member(Member::Layer(id)) => layer_call(cx, frame, id, callee, args, span),
        other => {
            cx.report(Diagnostic::error(
                Code::NotCallable,
                format!("{} is not callable", other.describe()),
                callee.span,
                "not a layer or function",
            ));
            None
        }
    }
}

fn builtin_call(
    cx: &mut Checker,
    frame: &mut Frame,
    name: &str,
    name_span: Span,
    args: &[ast::Arg],
    span: Span,
) -> Option<Value> {
    if let Some(n) = consts::element_arity(name) {
        let pos = positional(cx, args, name, &[])?;
        arity(cx, name, n, pos.len(), span)?;
        let vals: Vec<Value> = args.iter().map(|a| eval(cx, frame, &a.value)).collect::<Option<_>>()?;
        let constants: Option<Vec<Const>> =
            vals.iter().map(|v| if let Value::Const(c) = v { Some(c.clone()) } else { None }).collect();
        if let Some(constants) = constants {
            return const_result(cx, consts::call(name, &constants, span));
        }
        // Element functions keep shapes (and broadcast their operands); no mask survives.
        let f = ScalarFn::function(name).expect("element functions have scalar forms");
        let spans: Vec<Span> = args.iter().map(|a| a.value.span).collect();
        let (ts, shape) = broadcast_operands(cx, name, vals.into_iter().zip(spans).collect(), span)?;
        let refs: Vec<&Tensor> = ts.iter().collect();
        let node = cx.elementwise(f, &refs, &shape);
        let taint = ts.iter().fold(None, |acc, t| causal::join(&acc, &t.taint));
        return Some(Value::Tensor(Tensor { ty: TensorTy { dtype: DType::F32, shape }, mask: None, taint, node }));
    }
    match name {
        "ceil_div" | "floor_div" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 2, pos.len(), span)?;
            let a = const_arg(cx, frame, &args[0].value)?;
            let b = const_arg(cx, frame, &args[1].value)?;
            const_result(cx, consts::call(name, &[a, b], span))
        }
        "split" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 2, pos.len(), span)?;
            let x = tensor_arg(cx, frame, &args[0].value)?;
            let items = list_items(cx, &args[1].value, "sizes")?;
            let mut sizes = Vec::new();
            for it in items {
                match const_arg(cx, frame, it)? {
                    Const::Int(v) if v > 0 => sizes.push(v),
                    v => {
                        cx.report(Diagnostic::error(
                            Code::InvalidDimension,
                            "a split size must be a positive integer",
                            it.span,
                            format!("this is `{v}`"),
                        ));
                        return None;
                    }
                }
            }
            let Some(last) = x.ty.shape.last().cloned() else {
                cx.report(Diagnostic::error(
                    Code::ShapeMismatch,
                    "`split` of a scalar",
                    args[0].value.span,
                    "no axis to split",
                ));
                return None;
            };
            let total: i64 = sizes.iter().fold(0i64, |a, b| a.saturating_add(*b));
            if last != Dim::Known(total) {
                cx.report(
                    Diagnostic::error(
                        Code::SplitSizes,
                        format!("split sizes add up to {total}, but the last dimension is {last}"),
                        args[1].value.span,
                        format!("these add up to {total}"),
                    )
                    .with_label(args[0].value.span, format!("this is {}", shape_str(&x.ty.shape))),
                );
                return None;
            }
            let types: Vec<TensorTy> = sizes
                .iter()
                .map(|&s| {
                    let mut shape = x.ty.shape.clone();
                    *shape.last_mut().expect("non-empty") = Dim::Known(s);
                    TensorTy { dtype: x.ty.dtype, shape }
                })
                .collect();
            let nodes = cx.graph.add(Op::Split { sizes }, vec![x.node], types.clone());
            let parts = types
                .into_iter()
                .zip(nodes)
                .map(|(ty, node)| Tensor { ty, mask: None, taint: x.taint.clone(), node })
                .collect();
            Some(Value::Tuple(parts))
        }
        "concat" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 1, pos.len(), span)?;
            let items = list_items(cx, &args[0].value, "tensors")?;
            let mut parts = Vec::new();
            for it in items {
                parts.push((tensor_arg(cx, frame, it)?, it.span));
            }
            let Some((first, _)) = parts.first().cloned() else {
                cx.report(Diagnostic::error(
                    Code::BadArguments,
                    "`concat` of no tensors",
                    args[0].value.span,
                    "empty list",
                ));
                return None;
            };
            let rank = first.ty.shape.len();
            let mut total = 0i64;
            let mut taint_acc = None;
            for (t, s) in &parts {
                let ok = t.ty.shape.len() == rank && rank > 0 && t.ty.shape[..rank - 1] == first.ty.shape[..rank - 1];
                let last = t.ty.shape.last().and_then(|d| d.known());
                match (ok, last) {
                    (true, Some(v)) => total = total.saturating_add(v),
                    _ => {
                        cx.report(
                            Diagnostic::error(
                                Code::ShapeMismatch,
                                "`concat` needs equal shapes but for a fixed last axis",
                                *s,
                                format!("this is {}", shape_str(&t.ty.shape)),
                            )
                            .with_note(format!("the first is {}", shape_str(&first.ty.shape))),
                        );
                        return None;
                    }
                }
                taint_acc = causal::join(&taint_acc, &t.taint);
            }
            let mut shape = first.ty.shape.clone();
            shape[rank - 1] = Dim::Known(total);
            let ty = TensorTy { dtype: first.ty.dtype, shape };
            let node = cx.graph.add1(Op::Concat, parts.iter().map(|(t, _)| t.node).collect(), ty.clone());
            Some(Value::Tensor(Tensor { ty, mask: None, taint: taint_acc, node }))
        }
        "reshape" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 2, pos.len(), span)?;
            let x = tensor_arg(cx, frame, &args[0].value)?;
            let items = list_items(cx, &args[1].value, "dimensions")?;
            let mut shape = Vec::new();
            for it in items {
                match eval(cx, frame, it)? {
                    Value::Dim(d) => shape.push(d),
                    Value::Const(Const::Int(v)) if v > 0 => shape.push(Dim::Known(v)),
                    other => {
                        cx.report(Diagnostic::error(
                            Code::InvalidDimension,
                            "a dimension must be a positive integer or a symbol",
                            it.span,
                            format!("this is {}", other.describe()),
                        ));
                        return None;
                    }
                }
            }
            if element_count(&shape) != element_count(&x.ty.shape) {
                cx.report(
                    Diagnostic::error(
                        Code::ReshapeCount,
                        format!("cannot reshape {} into {}", shape_str(&x.ty.shape), shape_str(&shape)),
                        args[1].value.span,
                        "a different number of elements",
                    )
                    .with_label(args[0].value.span, format!("this is {}", shape_str(&x.ty.shape))),
                );
                return None;
            }
            // The sequence axis must stay an axis of its own, after the same leading axes.
            let before = |s: &[Dim]| s.iter().position(|d| d.is_seq()).map(|p| element_count(&s[..p]));
            let mixed = before(&x.ty.shape) != before(&shape);
            let t = if mixed {
                causal::join(
                    &x.taint,
                    &taint(
                        Code::NonCausalAccess,
                        span,
                        "this reshape mixes positions of the sequence",
                        "moves elements across positions",
                    ),
                )
            } else {
                x.taint.clone()
            };
            let ty = TensorTy { dtype: x.ty.dtype, shape };
            let node = cx.graph.add1(Op::Reshape, vec![x.node], ty.clone());
            Some(Value::Tensor(Tensor { ty, mask: None, taint: t, node }))
        }
        "linear" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 2, pos.len(), span)?;
            let x = tensor_arg(cx, frame, &args[0].value)?;
            let w = tensor_arg(cx, frame, &args[1].value)?;
            float_tensor(cx, &x, args[0].value.span)?;
            if w.ty.shape.len() != 2 || x.ty.shape.last() != w.ty.shape.get(1) {
                cx.report(
                    Diagnostic::error(
                        Code::ShapeMismatch,
                        format!("`linear` of {} by a weight {}", shape_str(&x.ty.shape), shape_str(&w.ty.shape)),
                        span,
                        "the weight must be [out, in] with `in` the input's last dimension",
                    )
                    .with_label(args[0].value.span, shape_str(&x.ty.shape))
                    .with_label(args[1].value.span, shape_str(&w.ty.shape)),
                );
                return None;
            }
            let mut shape = x.ty.shape.clone();
            *shape.last_mut().expect("rank checked") = w.ty.shape[0].clone();
            let t = causal::join(&causal::join(&x.taint, &w.taint), &last_axis_taint(&x, "`linear`", span));
            let ty = TensorTy { dtype: DType::F32, shape };
            let node = cx.graph.add1(Op::Linear { bias: false }, vec![x.node, w.node], ty.clone());
            Some(Value::Tensor(Tensor { ty, mask: None, taint: t, node }))
        }
        "softmax" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 1, pos.len(), span)?;
            let x = tensor_arg(cx, frame, &args[0].value)?;
            float_tensor(cx, &x, args[0].value.span)?;
            let t = causal::join(&x.taint, &last_axis_taint(&x, "`softmax`", span));
            let node = cx.graph.add1(Op::Softmax, vec![x.node], x.ty.clone());
            Some(Value::Tensor(Tensor { taint: t, mask: None, node, ..x }))
        }
        "rope" => {
            let pos = positional(cx, args, name, &["theta"])?;
            arity(cx, name, 1, pos.len(), span)?;
            let x = tensor_arg(cx, frame, &args[pos[0]].value)?;
            float_tensor(cx, &x, args[pos[0]].value.span)?;
            let mut theta = 10000.0;
            for a in args.iter().filter(|a| a.name.is_some()) {
                match const_arg(cx, frame, &a.value)? {
                    c @ (Const::Int(_) | Const::Float(_)) => theta = c.as_f64().unwrap_or(theta),
                    v => {
                        cx.report(consts::type_error(a.value.span, "float", &v));
                        return None;
                    }
                }
            }
            let ok =
                x.ty.shape.len() == 4 && x.ty.shape[1].is_seq() && x.ty.shape[3].known().is_some_and(|e| e % 2 == 0);
            if !ok {
                cx.report(
                    Diagnostic::error(
                        Code::ShapeMismatch,
                        format!("`rope` of {}", shape_str(&x.ty.shape)),
                        args[pos[0]].value.span,
                        "expected [B, L, heads, head_dim]",
                    )
                    .with_note("the head dimension must be even (its halves rotate together)"),
                );
                return None;
            }
            let node = cx.graph.add1(Op::Rope { theta }, vec![x.node], x.ty.clone());
            Some(Value::Tensor(Tensor { mask: None, node, ..x }))
        }
        "fftconv" => {
            let pos = positional(cx, args, name, &[])?;
            arity(cx, name, 2, pos.len(), span)?;
            let x = tensor_arg(cx, frame, &args[0].value)?;
            let k = tensor_arg(cx, frame, &args[1].value)?;
            float_tensor(cx, &x, args[0].value.span)?;
            let ok = x.ty.shape.len() == 3
                && x.ty.shape[1].is_seq()
                && k.ty.shape.len() == 2
                && k.ty.shape[1] == x.ty.shape[2];
            if !ok {
                cx.report(
                    Diagnostic::error(
                        Code::ShapeMismatch,
                        format!("`fftconv` of {} with a filter {}", shape_str(&x.ty.shape), shape_str(&k.ty.shape)),
                        span,
                        "expected x: [B, L, D] and filter: [Lk, D]",
                    )
                    .with_label(args[0].value.span, shape_str(&x.ty.shape))
                    .with_label(args[1].value.span, shape_str(&k.ty.shape)),
                );
                return None;
            }
            let ty = TensorTy { dtype: DType::F32, shape: x.ty.shape.clone() };
            let node = cx.graph.add1(Op::FftConv { starts: false }, vec![x.node, k.node], ty.clone());
            Some(Value::Tensor(Tensor { ty, mask: None, taint: causal::join(&x.taint, &k.taint), node }))
        }
        "normal" | "uniform" => {
            cx.report(Diagnostic::error(
                Code::MisplacedStatement,
                format!("`{name}` is only allowed in `init`"),
                name_span,
                "random draws are for initial values",
            ));
            None
        }
        "sum" | "mean" => {
            cx.report(Diagnostic::error(
                Code::NotCallable,
                format!("`{name}` has no function form"),
                name_span,
                "not a function",
            ));
            None
        }
        _ => {
            unknown_name(cx, frame, name, name_span);
            None
        }
    }
}

/// Calls a layer instance: builtin forwards by rule, user forwards by checking
/// their body against the argument's shape.
fn layer_call(
    cx: &mut Checker,
    frame: &mut Frame,
    id: InstId,
    callee: &Expr,
    args: &[ast::Arg],
    span: Span,
) -> Option<Value> {
    let mut vals = Vec::new();
    for a in args {
        if let Some(n) = &a.name {
            cx.report(Diagnostic::error(
                Code::BadArguments,
                "a layer's forward takes positional arguments",
                n.span,
                "keyword argument",
            ));
            return None;
        }
        vals.push((tensor_arg(cx, frame, &a.value)?, a.value.span));
    }
    if cx.instances[id].failed {
        return None; // its declaration already reported why
    }
    match cx.instances[id].kind {
        LayerKind::Builtin(b) => {
            arity(cx, b.name(), 1, vals.len(), span)?;
            let (x, xs) = vals.pop().expect("one argument");
            let consts = cx.instances[id].consts.clone();
            let get = |n: &str| consts.get(n).cloned().unwrap_or(Const::Int(0));
            let (features, wants_float) = b.input_features(&get);
            if wants_float {
                float_tensor(cx, &x, xs)?;
                let last = x.ty.shape.last().and_then(|d| d.known());
                if last != features {
                    cx.report(
                        Diagnostic::error(
                            Code::ShapeMismatch,
                            format!(
                                "`{}` expects {} features, found {}",
                                b.name(),
                                features.unwrap_or(0),
                                shape_str(&x.ty.shape)
                            ),
                            xs,
                            format!("this is {}", shape_str(&x.ty.shape)),
                        )
                        .with_label(cx.instances[id].site, "declared here"),
                    );
                    return None;
                }
                if b == super::Builtin::Conv1d && x.ty.shape.len() != 3 {
                    cx.report(Diagnostic::error(
                        Code::ShapeMismatch,
                        format!("`conv1d` of {}", shape_str(&x.ty.shape)),
                        xs,
                        "expected [B, L, channels]",
                    ));
                    return None;
                }
            } else if x.ty.dtype.is_float() {
                cx.report(
                    Diagnostic::error(
                        Code::DtypeMismatch,
                        format!("`embed` of a float tensor {}", x.ty),
                        xs,
                        "expected integer token ids",
                    )
                    .with_label(callee.span, "this embedding"),
                );
                return None;
            }
            let mut shape = x.ty.shape.clone();
            let out = b.output_features(&get)?;
            if wants_float {
                *shape.last_mut().expect("checked") = out;
            } else {
                shape.push(out);
            }
            let t = if b.reduces_last_axis() {
                causal::join(&x.taint, &last_axis_taint(&x, &format!("`{}`", b.name()), span))
            } else {
                x.taint.clone()
            };
            let ty = TensorTy { dtype: DType::F32, shape };
            let outer = cx.graph.set_origin(cx.instances[id].path.clone());
            let node = lower_builtin(cx, id, b, &x, ty.clone());
            cx.graph.set_origin(outer);
            let node = node?;
            Some(Value::Tensor(Tensor { ty, mask: None, taint: t, node }))
        }
        LayerKind::User(def) => {
            let f = layer_forward(cx, def)?;
            let params = f.params.as_deref().unwrap_or(&[]);
            if params.len() != vals.len() {
                cx.report(
                    Diagnostic::error(
                        Code::BadArguments,
                        format!(
                            "`{}` takes {} input{}, found {}",
                            def.name.name,
                            params.len(),
                            if params.len() == 1 { "" } else { "s" },
                            vals.len()
                        ),
                        span,
                        "wrong number of inputs",
                    )
                    .with_label(f.span, "forward declared here"),
                );
                return None;
            }
            let consts = Rc::new(cx.instances[id].consts.clone());
            let mut dims: HashMap<String, Dim> = HashMap::new();
            let mut vars = HashMap::new();
            for (p, (t, ts)) in params.iter().zip(vals) {
                let lookup = |n: &str| consts.get(n).cloned();
                let want = bind_shape(cx, &p.ty, &t.ty, &lookup, &mut dims, ts, &def.name.name)?;
                if p.ty.dtype.is_float() != t.ty.dtype.is_float() {
                    cx.report(
                        Diagnostic::error(
                            Code::DtypeMismatch,
                            format!("`{}` expects {}, found {}", def.name.name, p.ty.dtype.name(), t.ty.dtype.name()),
                            ts,
                            "wrong dtype",
                        )
                        .with_label(p.ty.span, "declared here"),
                    );
                    return None;
                }
                vars.insert(
                    p.name.name.clone(),
                    Value::Tensor(Tensor { ty: TensorTy { dtype: t.ty.dtype, shape: want }, ..t }),
                );
            }
            run_layer_forward(cx, id, f, consts, dims, vars).map(Value::Tensor)
        }
    }
}

/// The graph node of a builtin layer applied to `x`, reading the instance's weights.
fn lower_builtin(cx: &mut Checker, id: InstId, b: super::Builtin, x: &Tensor, ty: TensorTy) -> Option<ir::ValueId> {
    let member = |cx: &mut Checker, name: &str| match cx.instances[id].members.get(name).cloned() {
        Some(Member::Tensor(w)) => Some(cx.weight_node(w)),
        _ => None,
    };
    // A weight that could not be declared was reported, and marks the instance failed.
    let weight = member(cx, "weight")?;
    let bias = member(cx, "bias");
    let eps = match cx.instances[id].consts.get("eps") {
        Some(c) => c.as_f64().unwrap_or(0.0),
        None => 0.0,
    };
    let with_bias = |v: Vec<ir::ValueId>| v.into_iter().chain(bias).collect::<Vec<_>>();
    let (op, operands) = match b {
        super::Builtin::Linear => (Op::Linear { bias: bias.is_some() }, with_bias(vec![x.node, weight])),
        super::Builtin::Embed => (Op::Embed, vec![x.node, weight]),
        super::Builtin::RmsNorm => (Op::RmsNorm { eps }, vec![x.node, weight]),
        super::Builtin::LayerNorm => (Op::LayerNorm { eps }, with_bias(vec![x.node, weight])),
        super::Builtin::Conv1d => (Op::Conv1d { bias: bias.is_some() }, with_bias(vec![x.node, weight])),
    };
    Some(cx.graph.add1(op, operands, ty))
}

/// Unifies a declared parameter type with an argument's shape: constants must
/// match, capitalised names bind to the argument's dimension.
fn bind_shape(
    cx: &mut Checker,
    ty: &ast::TensorType,
    arg: &TensorTy,
    lookup: consts::Lookup,
    dims: &mut HashMap<String, Dim>,
    arg_span: Span,
    layer: &str,
) -> Option<Vec<Dim>> {
    let mismatch = |cx: &mut Checker, detail: String| {
        cx.report(
            Diagnostic::error(
                Code::ShapeMismatch,
                format!(
                    "`{layer}` expects {}, found {}",
                    crate::syntax::print::print_expr_list(&ty.dims),
                    shape_str(&arg.shape)
                ),
                arg_span,
                detail,
            )
            .with_label(ty.span, "declared here"),
        );
    };
    if ty.dims.len() != arg.shape.len() {
        mismatch(cx, format!("{} dimensions, expected {}", arg.shape.len(), ty.dims.len()));
        return None;
    }
    let mut out = Vec::new();
    for (d, actual) in ty.dims.iter().zip(&arg.shape) {
        if let ExprKind::Name(n) = &d.kind {
            if lookup(n).is_none() && n.starts_with(|c: char| c.is_ascii_uppercase()) {
                match dims.get(n) {
                    Some(b) if b != actual => {
                        mismatch(cx, format!("`{n}` is {b} in one place and {actual} in another"));
                        return None;
                    }
                    Some(_) => {}
                    None => {
                        dims.insert(n.clone(), actual.clone());
                    }
                }
                out.push(actual.clone());
                continue;
            }
        }
        let want = cx.type_dims(std::slice::from_ref(d), lookup, &mut HashMap::new(), false)?.remove(0);
        if &want != actual {
            mismatch(cx, format!("a dimension is {actual}, expected {want}"));
            return None;
        }
        out.push(want);
    }
    Some(out)
}
