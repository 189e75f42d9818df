//! Index notation and scans: extent inference, masks and causality.
//!
//! A definition `let s[b, i, j] = E where C` binds its left indices; each index's
//! extent comes from the dimensions it indexes directly (`x[b, j, e]`), or from
//! an annotation (`i in L`). Masks come from `where` and flow through plain reads,
//! products and quotients (LANGUAGE.md, Masks). A reduction over the sequence must
//! be bounded by an output position (`j <= i`), directly or through a mask, and an
//! access on the sequence axis may not read past it (`x[b, l + 1]`); reads that do
//! taint the result (see `causal.rs`).

use super::causal::{self, Bound, Mask, Taint, TaintRef};
use super::forward::{self, Frame};
use super::types::{shape_str, Dim, Shape, TensorTy};
use super::{consts, Checker, Const, Member, Tensor, Value};
use crate::diag::{Code, Diagnostic, Span};
use crate::ir;
use crate::limits;
use crate::syntax::ast::{BinOp, DType, Expr, ExprKind, Ident, IndexBinder, ReduceOp, Stmt, StmtKind, UnOp};
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Left,
    Reduce,
    Scan,
}

struct Var {
    name: String,
    extent: Option<Dim>,
    kind: Kind,
    annotated: bool,
    first_use: Option<Span>,
    /// For a reduction over the sequence: `self <= anchor + offset`.
    bounds: Vec<(usize, i64)>,
    span: Span,
}

/// The result of walking a scalar expression: its facts and its graph form.
struct Scalar {
    /// `(bounded, anchor, offset)` by variable id: elements beyond are masked.
    masks: Vec<(usize, usize, i64)>,
    is_bool: bool,
    ir: ir::Scalar,
}

impl Default for Scalar {
    /// What an expression in error stands for; the graph is discarded then.
    fn default() -> Self {
        Scalar { masks: Vec::new(), is_bool: false, ir: ir::Scalar::Const(0.0) }
    }
}

/// Replaces loop index `from` by `to`.
fn rename_index(e: ir::Scalar, from: u32, to: u32) -> ir::Scalar {
    e.renumbered(&|i| if i == from { to } else { i }, &|k| k, &|k| k)
}

fn scalar_fn(op: BinOp) -> ir::ScalarFn {
    use ir::ScalarFn as F;
    match op {
        BinOp::Add => F::Add,
        BinOp::Sub => F::Sub,
        BinOp::Mul => F::Mul,
        BinOp::Div => F::Div,
        BinOp::Lt => F::Lt,
        BinOp::Le => F::Le,
        BinOp::Gt => F::Gt,
        BinOp::Ge => F::Ge,
        BinOp::Eq => F::Eq,
        BinOp::Ne => F::Ne,
        BinOp::And => F::And,
        BinOp::Or => F::Or,
    }
}

struct Walk<'w, 'a> {
    cx: &'w mut Checker<'a>,
    frame: &'w mut Frame,
    vars: Vec<Var>,
    scope: Vec<usize>,
    where_bounds: Vec<Bound>,
    pending_access: Vec<(usize, i64, Span, String)>,
    pending_reduce: Vec<(usize, Span, ReduceOp)>,
    taint: TaintRef,
    states: Option<&'w HashMap<String, StateInfo>>,
    init_mode: bool,
    ok: bool,
    /// The graph values the expression reads, in order of first use.
    operands: Vec<ir::ValueId>,
}

struct StateInfo {
    /// The state's number in the scan.
    index: u32,
    rank: usize,
    shape: Option<Shape>,
}

impl<'w, 'a> Walk<'w, 'a> {
    fn new(cx: &'w mut Checker<'a>, frame: &'w mut Frame) -> Self {
        Walk {
            cx,
            frame,
            vars: Vec::new(),
            scope: Vec::new(),
            where_bounds: Vec::new(),
            pending_access: Vec::new(),
            pending_reduce: Vec::new(),
            taint: None,
            states: None,
            init_mode: false,
            ok: true,
            operands: Vec::new(),
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.ok = false;
        self.cx.report(d);
    }

    fn push_var(&mut self, name: &Ident, kind: Kind, extent: Option<Dim>) -> usize {
        self.vars.push(Var {
            name: name.name.clone(),
            annotated: extent.is_some() && kind == Kind::Left,
            extent,
            kind,
            first_use: None,
            bounds: Vec::new(),
            span: name.span,
        });
        let id = self.vars.len() - 1;
        self.scope.push(id);
        id
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.scope.iter().rev().copied().find(|&id| self.vars[id].name == name)
    }

    /// Records that `var` indexes a dimension of extent `dim` directly.
    fn unify(&mut self, var: usize, dim: &Dim, span: Span) {
        let v = &self.vars[var];
        match &v.extent {
            None => {
                let v = &mut self.vars[var];
                v.extent = Some(dim.clone());
                v.first_use = Some(span);
            }
            Some(e) if e == dim => {}
            Some(e) => {
                let (e, name, annotated, first, decl) = (e.clone(), v.name.clone(), v.annotated, v.first_use, v.span);
                let d = if annotated {
                    Diagnostic::error(
                        Code::ExtentAnnotationConflict,
                        format!("index `{name}` is annotated `{e}` but indexes a dimension of extent `{dim}`"),
                        span,
                        format!("extent `{dim}` here"),
                    )
                    .with_label(decl, format!("annotated `{e}`"))
                } else {
                    Diagnostic::error(
                        Code::IndexExtentConflict,
                        format!("index `{name}` is used on dimensions of extent `{e}` and `{dim}`"),
                        span,
                        format!("extent `{dim}` here"),
                    )
                    .with_label(first.unwrap_or(decl), format!("extent `{e}` here"))
                    .with_help("use a different index for each extent")
                };
                self.error(d);
            }
        }
    }

    /// How far past its anchor a variable can reach: 0 for output positions and
    /// the scan index; for a reduction index, through its bounds.
    fn reach(&self, var: usize, depth: usize) -> Option<i64> {
        let v = &self.vars[var];
        match v.kind {
            Kind::Scan => Some(0),
            Kind::Left if v.extent.as_ref().is_some_and(|e| e.is_seq()) => Some(0),
            Kind::Left => None,
            Kind::Reduce if depth < 16 => {
                v.bounds.iter().filter_map(|&(a, o)| self.reach(a, depth + 1).map(|r| r.saturating_add(o))).min()
            }
            Kind::Reduce => None,
        }
    }

    fn add_taint(&mut self, code: Code, span: Span, message: String, label: String) {
        if self.taint.is_none() {
            self.taint = Some(Rc::new(Taint { code, span, message, label }));
        }
    }

    /// Turns the deferred causality checks into taint, once every extent is known.
    fn finish(&mut self) {
        for (id, span, op) in std::mem::take(&mut self.pending_reduce) {
            let name = self.vars[id].name.clone();
            match self.reach(id, 0) {
                Some(r) if r <= 0 => {}
                reach => {
                    let detail = match reach {
                        Some(r) => {
                            format!("`{name}` reaches {r} position{} past the output's", if r == 1 { "" } else { "s" })
                        }
                        None => format!("nothing bounds `{name}` by the output's position"),
                    };
                    self.add_taint(
                        Code::NonCausalReduction,
                        span,
                        format!("`{}` over `{name}` reads later positions of the sequence", op.name()),
                        detail,
                    );
                }
            }
        }
        for (id, offset, span, tensor) in std::mem::take(&mut self.pending_access) {
            if self.vars[id].kind == Kind::Reduce && self.reach(id, 0).is_none() {
                continue; // reported at the reduction
            }
            match self.reach(id, 0).map(|r| r.saturating_add(offset)) {
                Some(r) if r <= 0 => {}
                Some(r) => self.add_taint(
                    Code::NonCausalAccess,
                    span,
                    format!("`{tensor}` is read at a later position"),
                    format!("{r} position{} after the output's", if r == 1 { "" } else { "s" }),
                ),
                None => self.add_taint(
                    Code::NonCausalAccess,
                    span,
                    format!("`{tensor}` is read at a position not bounded by the output's"),
                    "may be a later position".into(),
                ),
            }
        }
    }

    /// Walks a definition's value and its `where`: the condition's bounds apply
    /// to the value's reductions, and it sees the left and reduction indices.
    fn definition(&mut self, value: &Expr, cond: Option<&Expr>) -> (Scalar, Option<ir::Scalar>) {
        if let Some(c) = cond {
            let mut bounds = Vec::new();
            self.bounds_of(c, &mut bounds);
            self.where_bounds = bounds;
        }
        let s = self.scalar(value);
        self.number(&s, value.span);
        let mut cond_ir = None;
        if let Some(c) = cond {
            let extra: Vec<usize> = (0..self.vars.len()).filter(|id| self.vars[*id].kind == Kind::Reduce).collect();
            let base = self.scope.len();
            self.scope.extend(extra);
            let sc = self.scalar(c);
            self.boolean(&sc, c.span);
            self.scope.truncate(base);
            cond_ir = Some(sc.ir);
        }
        (s, cond_ir)
    }

    /// The loop indices as the graph declares them.
    fn loop_vars(&self) -> Vec<ir::ops::LoopVar> {
        self.vars
            .iter()
            .map(|v| ir::ops::LoopVar { name: v.name.clone(), extent: v.extent.clone().unwrap_or(Dim::Known(1)) })
            .collect()
    }

    // ---------------------------------------------------------- expressions

    fn scalar(&mut self, e: &Expr) -> Scalar {
        let value = |ir: ir::Scalar| Scalar { ir, ..Default::default() };
        let condition = |ir: ir::Scalar| Scalar { ir, is_bool: true, ..Default::default() };
        match &e.kind {
            ExprKind::Int(v) => value(ir::Scalar::Const(*v as f64)),
            ExprKind::Float(v) => value(ir::Scalar::Const(*v)),
            ExprKind::Bool(b) => condition(ir::Scalar::Const(f64::from(u8::from(*b)))),
            ExprKind::Name(n) => {
                if let Some(id) = self.find(n) {
                    return value(ir::Scalar::Index(id as u32));
                }
                match self.lookup_value(n, e.span, true) {
                    Some(Value::Const(Const::Bool(b))) => condition(ir::Scalar::Const(f64::from(u8::from(b)))),
                    Some(Value::Const(c @ (Const::Int(_) | Const::Float(_)))) => {
                        value(ir::Scalar::Const(c.as_f64().unwrap_or(0.0)))
                    }
                    Some(Value::Dim(Dim::Known(v))) => value(ir::Scalar::Const(v as f64)),
                    Some(Value::Tensor(t)) if t.ty.shape.is_empty() => {
                        self.taint = causal::join(&self.taint, &t.taint);
                        let operand = self.operand(t.node);
                        value(ir::Scalar::Load { operand, indices: Vec::new() })
                    }
                    Some(Value::Tensor(t)) => {
                        self.error(
                            Diagnostic::error(
                                Code::WrongIndexCount,
                                format!("`{n}` has {} dimensions and needs as many indices here", t.ty.shape.len()),
                                e.span,
                                format!("this is {}", t.ty),
                            )
                            .with_help(format!("write `{n}[...]` with {} indices", t.ty.shape.len())),
                        );
                        Scalar::default()
                    }
                    Some(v) => {
                        self.error(Diagnostic::error(
                            Code::KindMismatch,
                            format!("`{n}` is not a number"),
                            e.span,
                            format!("this is {}", v.describe()),
                        ));
                        Scalar::default()
                    }
                    None => Scalar::default(),
                }
            }
            ExprKind::Index { base, indices } => self.access(base, indices, e.span),
            ExprKind::Call { callee, args } => {
                let name = callee.as_name().unwrap_or("");
                let arity = match name {
                    "normal" if self.init_mode => Some(1),
                    "uniform" if self.init_mode => Some(2),
                    _ => consts::element_arity(name),
                };
                let Some(arity) = arity else {
                    let msg = if matches!(name, "normal" | "uniform") {
                        format!("`{name}` is only allowed in `init`")
                    } else {
                        format!("`{}` cannot be called in index notation", crate::syntax::print::print_expr(callee))
                    };
                    self.error(
                        Diagnostic::error(Code::NotCallable, msg, callee.span, "not an element function")
                            .with_note("index notation calls element functions: exp, log, sqrt, silu, max(a, b), ..."),
                    );
                    return Scalar::default();
                };
                if args.len() != arity || args.iter().any(|a| a.name.is_some()) {
                    self.error(Diagnostic::error(
                        Code::BadArguments,
                        format!("`{name}` takes {arity} positional argument{}", if arity == 1 { "" } else { "s" }),
                        e.span,
                        format!("found {}", args.len()),
                    ));
                }
                let mut irs = Vec::new();
                for a in args {
                    let s = self.scalar(&a.value);
                    self.number(&s, a.value.span);
                    irs.push(s.ir);
                }
                // Random draws only occur in `init`, which `seqc init` evaluates from
                // the source; they have no graph form.
                match ir::ScalarFn::function(name) {
                    Some(f) => value(ir::Scalar::apply(f, irs)),
                    None => Scalar::default(),
                }
            }
            ExprKind::Unary(op, x) => {
                let s = self.scalar(x);
                match op {
                    UnOp::Neg => {
                        self.number(&s, x.span);
                        value(ir::Scalar::apply(ir::ScalarFn::Neg, vec![s.ir]))
                    }
                    UnOp::Not => {
                        self.boolean(&s, x.span);
                        condition(ir::Scalar::apply(ir::ScalarFn::Not, vec![s.ir]))
                    }
                }
            }
            ExprKind::Binary(op, a, b) => {
                let sa = self.scalar(a);
                let sb = self.scalar(b);
                let f = scalar_fn(*op);
                if op.is_logical() {
                    self.boolean(&sa, a.span);
                    self.boolean(&sb, b.span);
                    return condition(ir::Scalar::apply(f, vec![sa.ir, sb.ir]));
                }
                self.number(&sa, a.span);
                self.number(&sb, b.span);
                if op.is_comparison() {
                    return condition(ir::Scalar::apply(f, vec![sa.ir, sb.ir]));
                }
                let masks = match op {
                    BinOp::Mul => sa.masks.into_iter().chain(sb.masks).collect(),
                    BinOp::Div => sa.masks,
                    _ => Vec::new(),
                };
                Scalar { masks, is_bool: false, ir: ir::Scalar::apply(f, vec![sa.ir, sb.ir]) }
            }
            ExprKind::If { cond, then, otherwise } => {
                let c = self.scalar(cond);
                self.boolean(&c, cond.span);
                let t = self.scalar(then);
                self.number(&t, then.span);
                let o = self.scalar(otherwise);
                self.number(&o, otherwise.span);
                value(ir::Scalar::Select(Box::new(c.ir), Box::new(t.ir), Box::new(o.ir)))
            }
            ExprKind::Reduce { op, indices, body } => self.reduce(*op, indices, body, e.span),
            ExprKind::Member(..) => match forward::eval(self.cx, self.frame, e) {
                Some(Value::Tensor(t)) if t.ty.shape.is_empty() => {
                    let operand = self.operand(t.node);
                    value(ir::Scalar::Load { operand, indices: Vec::new() })
                }
                Some(v) => {
                    self.error(Diagnostic::error(
                        Code::KindMismatch,
                        "expected a number",
                        e.span,
                        format!("this is {}", v.describe()),
                    ));
                    Scalar::default()
                }
                None => {
                    self.ok = false;
                    Scalar::default()
                }
            },
            ExprKind::Str(_) | ExprKind::List(_) => {
                self.error(Diagnostic::error(Code::KindMismatch, "expected a number", e.span, "not a number"));
                Scalar::default()
            }
            ExprKind::Error => {
                self.ok = false;
                Scalar::default()
            }
        }
    }

    /// The operand number of a graph value, added on first use.
    fn operand(&mut self, v: ir::ValueId) -> u32 {
        match self.operands.iter().position(|&o| o == v) {
            Some(k) => k as u32,
            None => {
                self.operands.push(v);
                (self.operands.len() - 1) as u32
            }
        }
    }

    fn number(&mut self, s: &Scalar, span: Span) {
        if s.is_bool {
            self.error(
                Diagnostic::error(
                    Code::BooleanValue,
                    "a condition where a number is expected",
                    span,
                    "this is a condition",
                )
                .with_help("choose a value with `if COND then A else B`"),
            );
        }
    }

    fn boolean(&mut self, s: &Scalar, span: Span) {
        if !s.is_bool {
            self.error(
                Diagnostic::error(
                    Code::BooleanValue,
                    "a number where a condition is expected",
                    span,
                    "this is a number",
                )
                .with_help("compare it: `x > 0`"),
            );
        }
    }

    fn lookup_value(&mut self, n: &str, span: Span, as_index: bool) -> Option<Value> {
        match self.frame.lookup(n) {
            Some(Value::Member(m @ Member::Tensor(_))) => Some(forward::member_value(self.cx, m)),
            Some(Value::Const(Const::Str(s))) if s == "<error>" => {
                self.ok = false;
                None
            }
            Some(v) => Some(v),
            None => {
                let mut d = Diagnostic::error(
                    Code::UnknownName,
                    format!("unknown name `{n}`"),
                    span,
                    "not an index or a name in scope",
                );
                if self.frame.expired_states.iter().any(|s| s == n) {
                    d = d.with_note(format!("`{n}` is a scan state: states are only visible inside their scan"));
                } else if as_index && n.len() <= 2 && n.chars().all(|c| c.is_ascii_lowercase()) {
                    d = Diagnostic::error(
                        Code::UnboundIndex,
                        format!("index `{n}` is not bound"),
                        span,
                        "no left side or reduction binds it",
                    )
                    .with_help(format!("bind it on the left of the definition or in a reduction: `sum[{n}] ...`"));
                }
                self.error(d);
                None
            }
        }
    }

    fn reduce(&mut self, op: ReduceOp, indices: &[Ident], body: &Expr, span: Span) -> Scalar {
        let base = self.scope.len();
        let mut ids = Vec::new();
        for i in indices {
            if indices.iter().filter(|j| j.name == i.name).count() > 1
                && !ids.iter().any(|&id: &usize| self.vars[id].name == i.name)
            {
                self.error(Diagnostic::error(
                    Code::RepeatedIndex,
                    format!("index `{}` is reduced twice", i.name),
                    i.span,
                    "repeated",
                ));
            }
            ids.push(self.push_var(i, Kind::Reduce, None));
        }
        let s = self.scalar(body);
        self.number(&s, body.span);
        self.scope.truncate(base);
        for &id in &ids {
            let (name, span_i) = (self.vars[id].name.clone(), self.vars[id].span);
            match self.vars[id].extent.clone() {
                None => self.error(
                    Diagnostic::error(
                        Code::UnknownExtent,
                        format!("cannot infer the extent of `{name}`"),
                        span_i,
                        "indexes no dimension directly",
                    )
                    .with_help(format!("use `{name}` directly as an index of a tensor in the body")),
                ),
                Some(e) if e.is_seq() => {
                    let mut bounds: Vec<(usize, i64)> =
                        s.masks.iter().filter(|m| m.0 == id).map(|m| (m.1, m.2)).collect();
                    for b in &self.where_bounds {
                        if b.var == name {
                            if let Some(a) = self.find(&b.anchor) {
                                bounds.push((a, b.offset));
                            }
                        }
                    }
                    self.vars[id].bounds = bounds;
                    self.pending_reduce.push((id, span, op));
                }
                Some(_) => {}
            }
        }
        let mut masks = s.masks;
        if op == ReduceOp::Softmax {
            // softmax keeps its index: the definition's index of the same name
            // takes its extent, and masks on it carry over.
            for &id in &ids {
                let Some(outer) = self.find(&self.vars[id].name.clone()) else { continue };
                if let Some(e) = self.vars[id].extent.clone() {
                    self.unify(outer, &e, self.vars[id].first_use.unwrap_or(span));
                }
                for m in &mut masks {
                    if m.0 == id {
                        m.0 = outer;
                    }
                    if m.1 == id {
                        m.1 = outer;
                    }
                }
            }
        }
        let masks: Vec<(usize, usize, i64)> = match op {
            ReduceOp::Softmax => masks,
            _ => masks.into_iter().filter(|m| !ids.contains(&m.0) && !ids.contains(&m.1)).collect(),
        };
        let ir = if op == ReduceOp::Softmax {
            // In the graph, softmax normalises over the kept index itself.
            let mut body = s.ir;
            let mut kept = Vec::new();
            for &id in &ids {
                match self.find(&self.vars[id].name.clone()) {
                    Some(outer) => {
                        body = rename_index(body, id as u32, outer as u32);
                        kept.push(outer as u32);
                    }
                    None => {
                        let (name, span_i) = (self.vars[id].name.clone(), self.vars[id].span);
                        self.error(
                            Diagnostic::error(
                                Code::UnboundIndex,
                                format!("`softmax` keeps `{name}`, but the definition has no index `{name}`"),
                                span_i,
                                "kept index",
                            )
                            .with_help(format!("put `{name}` on the left of the definition")),
                        );
                    }
                }
            }
            ir::Scalar::Reduce { op, vars: kept, body: Box::new(body) }
        } else {
            ir::Scalar::Reduce { op, vars: ids.iter().map(|&i| i as u32).collect(), body: Box::new(s.ir) }
        };
        Scalar { masks, is_bool: false, ir }
    }

    fn access(&mut self, base: &Expr, indices: &[Expr], span: Span) -> Scalar {
        let name = crate::syntax::print::print_expr(base);
        // A scan state: no causality facts, rank from its declaration.
        if let (Some(n), Some(states)) = (base.as_name(), self.states) {
            if let Some(st) = states.get(n) {
                let (rank, shape, state) = (st.rank, st.shape.clone(), st.index);
                if indices.len() != rank {
                    self.error(Diagnostic::error(
                        Code::WrongIndexCount,
                        format!("state `{n}` has {rank} indices, found {}", indices.len()),
                        span,
                        "wrong number of indices",
                    ));
                    return Scalar::default();
                }
                for (k, ix) in indices.iter().enumerate() {
                    let form = self.index_form(ix);
                    if form.terms.iter().any(|(id, _)| self.vars[*id].kind == Kind::Scan) {
                        self.error(
                            Diagnostic::error(
                                Code::StateThroughScanIndex,
                                format!("state `{n}` is read through the scan index"),
                                ix.span,
                                "the scan index",
                            )
                            .with_note("a state holds one step; read it at indices of its own dimensions"),
                        );
                        continue;
                    }
                    if let (Some(shape), Some(id)) = (&shape, form.direct()) {
                        self.unify(id, &shape[k].clone(), ix.span);
                    }
                }
                let indices = indices.iter().map(|ix| self.index_ir(ix)).collect();
                return Scalar { ir: ir::Scalar::State { state, indices }, ..Default::default() };
            }
        }
        let t = match base.as_name() {
            Some(n) if self.find(n).is_some() => {
                self.error(Diagnostic::error(
                    Code::KindMismatch,
                    format!("`{n}` is an index, not a tensor"),
                    base.span,
                    "cannot be indexed",
                ));
                return Scalar::default();
            }
            Some(n) => match self.lookup_value(n, base.span, false) {
                Some(Value::Tensor(t)) => t,
                Some(v) => {
                    self.error(Diagnostic::error(
                        Code::KindMismatch,
                        format!("`{n}` is not a tensor"),
                        base.span,
                        format!("this is {}", v.describe()),
                    ));
                    return Scalar::default();
                }
                None => return Scalar::default(),
            },
            None => match forward::eval(self.cx, self.frame, base) {
                Some(Value::Tensor(t)) => t,
                Some(v) => {
                    self.error(Diagnostic::error(
                        Code::KindMismatch,
                        "only tensors can be indexed",
                        base.span,
                        format!("this is {}", v.describe()),
                    ));
                    return Scalar::default();
                }
                None => {
                    self.ok = false;
                    return Scalar::default();
                }
            },
        };
        if indices.len() != t.ty.shape.len() {
            self.error(Diagnostic::error(
                Code::WrongIndexCount,
                format!("`{name}` has {} dimensions, found {} indices", t.ty.shape.len(), indices.len()),
                span,
                format!("`{name}` is {}", shape_str(&t.ty.shape)),
            ));
            return Scalar::default();
        }
        if !t.ty.dtype.is_float() {
            self.error(
                Diagnostic::error(
                    Code::DtypeMismatch,
                    format!("`{name}` is an integer tensor"),
                    base.span,
                    format!("this is {}", t.ty),
                )
                .with_note("integer tensors (token ids) are only read by `embed`"),
            );
        }
        self.taint = causal::join(&self.taint, &t.taint);
        let mut forms = Vec::with_capacity(indices.len());
        for (k, ix) in indices.iter().enumerate() {
            let form = self.index_form(ix);
            let dim = t.ty.shape[k].clone();
            if let Some(id) = form.direct() {
                self.unify(id, &dim, ix.span);
            }
            if dim.is_seq() {
                match form.single() {
                    Some((id, 1)) if form.exact => self.pending_access.push((id, form.c, ix.span, name.clone())),
                    None if form.exact && form.terms.is_empty() => {}
                    _ if !form.valid => {}
                    _ => self.add_taint(
                        Code::NonCausalAccess,
                        ix.span,
                        format!("`{name}` is read on the sequence axis at a position seqc cannot bound"),
                        "not `i - k` for an output position `i`".into(),
                    ),
                }
            }
            forms.push(form);
        }
        let operand = self.operand(t.node);
        let load = ir::Scalar::Load { operand, indices: indices.iter().map(|ix| self.index_ir(ix)).collect() };
        let mut masks = Vec::new();
        if let Some(m) = t.mask {
            if let (Some(b), Some(a)) = (forms[m.bounded].direct(), forms[m.anchor].direct()) {
                masks.push((b, a, m.offset));
            }
        }
        Scalar { masks, is_bool: false, ir: load }
    }

    /// The graph form of an index expression (already checked by `index_form`).
    fn index_ir(&self, e: &Expr) -> ir::Scalar {
        match &e.kind {
            ExprKind::Int(v) => ir::Scalar::Const(*v as f64),
            ExprKind::Name(n) => match self.find(n) {
                Some(id) => ir::Scalar::Index(id as u32),
                None => match self.frame.lookup(n) {
                    Some(Value::Const(c)) => ir::Scalar::Const(c.as_f64().unwrap_or(0.0)),
                    Some(Value::Dim(Dim::Known(v))) => ir::Scalar::Const(v as f64),
                    Some(Value::Dim(Dim::Sym(s))) => ir::Scalar::Size(s.to_string()),
                    _ => ir::Scalar::Const(0.0),
                },
            },
            ExprKind::Unary(UnOp::Neg, x) => ir::Scalar::apply(ir::ScalarFn::Neg, vec![self.index_ir(x)]),
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div), a, b) => {
                ir::Scalar::apply(scalar_fn(*op), vec![self.index_ir(a), self.index_ir(b)])
            }
            _ => ir::Scalar::Const(0.0),
        }
    }

    /// Integer arithmetic over indices and constants, kept affine where it is.
    fn index_form(&mut self, e: &Expr) -> Form {
        match &e.kind {
            ExprKind::Int(v) => Form::constant(*v),
            ExprKind::Name(n) => {
                if let Some(id) = self.find(n) {
                    return Form { terms: vec![(id, 1)], c: 0, exact: true, valid: true };
                }
                match self.lookup_value(n, e.span, true) {
                    Some(Value::Const(Const::Int(v))) => Form::constant(v),
                    Some(Value::Dim(Dim::Known(v))) => Form::constant(v),
                    Some(Value::Dim(Dim::Sym(s))) => {
                        Form { terms: Vec::new(), c: 0, exact: s.as_ref() != super::types::SEQ, valid: true }
                    }
                    Some(v) => {
                        self.error(
                            Diagnostic::error(
                                Code::InvalidIndexExpr,
                                format!("`{n}` cannot be used in an index"),
                                e.span,
                                format!("this is {}", v.describe()),
                            )
                            .with_note("indices are integer arithmetic on indices and integer constants"),
                        );
                        Form::invalid()
                    }
                    None => Form::invalid(),
                }
            }
            ExprKind::Unary(UnOp::Neg, x) => {
                let f = self.index_form(x);
                f.scale(-1)
            }
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
                let fa = self.index_form(a);
                let fb = self.index_form(b);
                fa.add(if *op == BinOp::Sub { fb.scale(-1) } else { fb })
            }
            ExprKind::Binary(BinOp::Mul, a, b) => {
                let fa = self.index_form(a);
                let fb = self.index_form(b);
                match (fa.terms.is_empty() && fa.exact, fb.terms.is_empty() && fb.exact) {
                    (true, _) => fb.scale(fa.c),
                    (_, true) => fa.scale(fb.c),
                    _ => Form {
                        terms: fa.terms.into_iter().chain(fb.terms).collect(),
                        c: 0,
                        exact: false,
                        valid: fa.valid && fb.valid,
                    },
                }
            }
            ExprKind::Binary(BinOp::Div, a, b) => {
                let fa = self.index_form(a);
                let fb = self.index_form(b);
                Form {
                    terms: fa.terms.into_iter().chain(fb.terms).collect(),
                    c: 0,
                    exact: false,
                    valid: fa.valid && fb.valid,
                }
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        Code::InvalidIndexExpr,
                        "not an index expression",
                        e.span,
                        "expected integer arithmetic on indices",
                    )
                    .with_note("indices are integers: `l - 1`, `h / g`, `2 * i + 1`"),
                );
                Form::invalid()
            }
        }
    }

    /// Reads `var <= anchor + c` facts off a `where` condition's conjuncts.
    fn bounds_of(&mut self, cond: &Expr, out: &mut Vec<Bound>) {
        match &cond.kind {
            ExprKind::Binary(BinOp::And, a, b) => {
                self.bounds_of(a, out);
                self.bounds_of(b, out);
            }
            ExprKind::Binary(op @ (BinOp::Le | BinOp::Lt | BinOp::Ge | BinOp::Gt), a, b) => {
                let (Some(la), Some(lb)) = (linear(a, self.frame), linear(b, self.frame)) else { return };
                // a - b <= c  (or b - a <= c)
                let (pos, neg, c) = match op {
                    BinOp::Le => (la, lb, 0),
                    BinOp::Lt => (la, lb, -1),
                    BinOp::Ge => (lb, la, 0),
                    _ => (lb, la, -1),
                };
                let mut terms: HashMap<String, i64> = HashMap::new();
                for (n, k) in pos.0 {
                    *terms.entry(n).or_default() += k;
                }
                for (n, k) in neg.0 {
                    *terms.entry(n).or_default() -= k;
                }
                terms.retain(|_, k| *k != 0);
                let c = c - (pos.1 - neg.1);
                let plus: Vec<&String> = terms.iter().filter(|(_, k)| **k == 1).map(|(n, _)| n).collect();
                let minus: Vec<&String> = terms.iter().filter(|(_, k)| **k == -1).map(|(n, _)| n).collect();
                if terms.len() == 2 && plus.len() == 1 && minus.len() == 1 {
                    out.push(Bound { var: plus[0].clone(), anchor: minus[0].clone(), offset: c });
                }
            }
            _ => {}
        }
    }
}

/// An index expression as `sum(coef * var) + c`; `exact` is false past a division
/// or a product of indices, `valid` false after an error.
struct Form {
    terms: Vec<(usize, i64)>,
    c: i64,
    exact: bool,
    valid: bool,
}

impl Form {
    fn constant(c: i64) -> Form {
        Form { terms: Vec::new(), c, exact: true, valid: true }
    }

    fn invalid() -> Form {
        Form { terms: Vec::new(), c: 0, exact: false, valid: false }
    }

    fn scale(mut self, k: i64) -> Form {
        for t in &mut self.terms {
            t.1 = t.1.saturating_mul(k);
        }
        self.c = self.c.saturating_mul(k);
        self
    }

    fn add(mut self, other: Form) -> Form {
        for (id, k) in other.terms {
            match self.terms.iter_mut().find(|t| t.0 == id) {
                Some(t) => t.1 = t.1.saturating_add(k),
                None => self.terms.push((id, k)),
            }
        }
        self.terms.retain(|t| t.1 != 0);
        self.c = self.c.saturating_add(other.c);
        self.exact &= other.exact;
        self.valid &= other.valid;
        self
    }

    fn single(&self) -> Option<(usize, i64)> {
        match self.terms.as_slice() {
            [(id, k)] => Some((*id, *k)),
            _ => None,
        }
    }

    fn direct(&self) -> Option<usize> {
        match self.single() {
            Some((id, 1)) if self.c == 0 && self.exact => Some(id),
            _ => None,
        }
    }
}

/// A condition side as linear terms over names and a constant (names that are
/// integer constants fold in).
fn linear(e: &Expr, frame: &Frame) -> Option<(Vec<(String, i64)>, i64)> {
    match &e.kind {
        ExprKind::Int(v) => Some((Vec::new(), *v)),
        ExprKind::Name(n) => match frame.const_lookup(n) {
            Some(Const::Int(v)) => Some((Vec::new(), v)),
            Some(_) => None,
            None => Some((vec![(n.clone(), 1)], 0)),
        },
        ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
            let (mut ta, ca) = linear(a, frame)?;
            let (tb, cb) = linear(b, frame)?;
            let sign = if *op == BinOp::Sub { -1 } else { 1 };
            ta.extend(tb.into_iter().map(|(n, k)| (n, k * sign)));
            Some((ta, ca.checked_add(cb.checked_mul(sign)?)?))
        }
        _ => None,
    }
}

/// Evaluates an annotation `i in D`.
fn annotation(cx: &mut Checker, frame: &mut Frame, e: &Expr) -> Option<Dim> {
    match forward::eval(cx, frame, e)? {
        Value::Dim(d) => Some(d),
        Value::Const(Const::Int(v)) if v > 0 => Some(Dim::Known(v)),
        v => {
            cx.report(Diagnostic::error(
                Code::InvalidDimension,
                "an index extent must be a dimension",
                e.span,
                format!("this is {}", v.describe()),
            ));
            None
        }
    }
}

fn check_elements(cx: &mut Checker, shape: &[Dim], span: Span) -> bool {
    let count = super::types::element_count(shape).0;
    if count > limits::MAX_TENSOR_ELEMENTS {
        cx.report(Diagnostic::error(
            Code::TensorTooLarge,
            format!("a tensor of {} elements", shape_str(shape)),
            span,
            format!("{count} elements; the limit is {}", limits::MAX_TENSOR_ELEMENTS),
        ));
        return false;
    }
    true
}

/// `let name[binders] = value where cond`
pub(crate) fn define(
    cx: &mut Checker,
    frame: &mut Frame,
    binders: &[IndexBinder],
    value: &Expr,
    cond: Option<&Expr>,
    span: Span,
) -> Option<Tensor> {
    let mut extents = Vec::new();
    for b in binders {
        extents.push(match &b.extent {
            Some(e) => Some(annotation(cx, frame, e)?),
            None => None,
        });
    }
    let mut w = Walk::new(cx, frame);
    let mut left = Vec::new();
    for (b, ext) in binders.iter().zip(extents) {
        if left.iter().any(|&id: &usize| w.vars[id].name == b.name.name) {
            w.error(
                Diagnostic::error(
                    Code::RepeatedIndex,
                    format!("index `{}` appears twice on the left", b.name.name),
                    b.name.span,
                    "repeated",
                )
                .with_note("each index appears at most once on the left of a definition"),
            );
            return None;
        }
        left.push(w.push_var(&b.name, Kind::Left, ext));
    }
    let (s, cond_ir) = w.definition(value, cond);
    let shape = left_shape(&mut w, &left)?;
    w.finish();
    if !w.ok {
        return None;
    }
    // The result's mask: a bound between two of its positional indices.
    let pos = |id: usize| left.iter().position(|&l| l == id);
    let mut mask = None;
    let where_masks: Vec<(usize, usize, i64)> =
        w.where_bounds.iter().filter_map(|b| Some((w.find(&b.var)?, w.find(&b.anchor)?, b.offset))).collect();
    for (b, a, o) in where_masks.into_iter().chain(s.masks) {
        if let (Some(pb), Some(pa)) = (pos(b), pos(a)) {
            mask = Some(Mask { bounded: pb, anchor: pa, offset: o });
            break;
        }
    }
    let taint = w.taint.clone();
    let gen = ir::ops::Generic { vars: w.loop_vars(), rank: left.len(), body: s.ir, cond: cond_ir };
    let operands = std::mem::take(&mut w.operands);
    if !check_elements(cx, &shape, span) {
        return None;
    }
    let ty = TensorTy { dtype: DType::F32, shape };
    let node = cx.graph.add1(ir::Op::Generic(Box::new(gen)), operands, ty.clone());
    Some(Tensor { ty, mask, taint, node })
}

/// The extents of the left indices, each required.
fn left_shape(w: &mut Walk, left: &[usize]) -> Option<Shape> {
    if !w.ok {
        return None; // an index that indexed nothing may be the victim of that error
    }
    let mut shape = Vec::new();
    for &id in left {
        match w.vars[id].extent.clone() {
            Some(e) => shape.push(e),
            None => {
                let (name, span) = (w.vars[id].name.clone(), w.vars[id].span);
                w.error(
                    Diagnostic::error(
                        Code::UnknownExtent,
                        format!("cannot infer the extent of `{name}`"),
                        span,
                        "indexes no dimension directly",
                    )
                    .with_help(format!("give its extent: `{name} in D` for a dimension `D`")),
                );
            }
        }
    }
    (shape.len() == left.len()).then_some(shape)
}

/// Checks `init[i, j] = value` of a weight with the given extents.
pub(crate) fn check_init(
    cx: &mut Checker,
    extents: &[(String, Dim)],
    indices: &[Ident],
    value: &Expr,
    env: &HashMap<String, Const>,
) -> bool {
    let mut frame = Frame {
        consts: Rc::new(env.clone()),
        members: Rc::new(HashMap::new()),
        dims: HashMap::new(),
        vars: Vec::new(),
        outputs: HashMap::new(),
        is_layer: false,
        expired_states: Vec::new(),
    };
    let mut w = Walk::new(cx, &mut frame);
    w.init_mode = true;
    for (i, (_, d)) in indices.iter().zip(extents) {
        w.push_var(i, Kind::Left, Some(d.clone()));
    }
    let s = w.scalar(value);
    w.number(&s, value.span);
    w.ok
}

// ------------------------------------------------------------------ scans

/// `scan l in L { state ...; updates; outputs }`
pub(crate) fn scan(cx: &mut Checker, frame: &mut Frame, index: &Ident, dim_expr: &Expr, body: &[Stmt], span: Span) {
    // Names the scan defines, poisoned while it fails so later uses stay quiet.
    let state_names: Vec<&str> = body
        .iter()
        .filter_map(|s| match &*s.kind {
            StmtKind::State { name, .. } => Some(name.name.as_str()),
            _ => None,
        })
        .collect();
    let output_names: Vec<Ident> = body
        .iter()
        .filter_map(|s| match &*s.kind {
            StmtKind::IndexedAssign { name, .. } if !state_names.contains(&name.name.as_str()) => Some(name.clone()),
            _ => None,
        })
        .collect();
    forward::poison(frame, &output_names);
    let dim = match &dim_expr.kind {
        ExprKind::Name(n) if frame.lookup(n).is_none() => {
            let mut dims: Vec<&String> = frame.dims.keys().collect();
            dims.sort();
            let names: Vec<String> = dims.iter().map(|d| format!("`{d}`")).collect();
            cx.report(
                Diagnostic::error(
                    Code::UnknownScanAxis,
                    format!("scan axis `{n}` is not a dimension"),
                    dim_expr.span,
                    "unknown axis",
                )
                .with_note(format!(
                    "the dimensions here are {}",
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                )),
            );
            return;
        }
        _ => match forward::eval(cx, frame, dim_expr) {
            Some(Value::Dim(d)) => d,
            Some(Value::Const(Const::Int(v))) if v > 0 => Dim::Known(v),
            Some(v) => {
                cx.report(Diagnostic::error(
                    Code::UnknownScanAxis,
                    "a scan runs over a dimension",
                    dim_expr.span,
                    format!("this is {}", v.describe()),
                ));
                return;
            }
            None => return,
        },
    };

    // Sort the body into states, updates and outputs.
    struct StateDecl<'s> {
        name: &'s Ident,
        binders: &'s [Ident],
        init: &'s Expr,
        span: Span,
        updated: Option<Span>,
    }
    let mut states: Vec<StateDecl> = Vec::new();
    let mut updates: Vec<&Stmt> = Vec::new();
    let mut outputs: Vec<&Stmt> = Vec::new();
    for s in body {
        match &*s.kind {
            StmtKind::State { name, indices, init } => {
                if states.iter().any(|st| st.name.name == name.name) {
                    cx.report(Diagnostic::error(
                        Code::Duplicate,
                        format!("state `{}` is declared twice", name.name),
                        name.span,
                        "second declaration",
                    ));
                    continue;
                }
                states.push(StateDecl { name, binders: indices, init, span: s.span, updated: None });
            }
            StmtKind::IndexedAssign { name, .. } => {
                if states.iter().any(|st| st.name.name == name.name) {
                    updates.push(s);
                } else {
                    outputs.push(s);
                }
            }
            StmtKind::Error => {}
            _ => cx.report(
                Diagnostic::error(
                    Code::MisplacedStatement,
                    "only states, updates and outputs go in a scan",
                    s.span,
                    "not allowed in a scan",
                )
                .with_note("compute inputs before the scan and use its outputs after it"),
            ),
        }
    }

    let mut infos: HashMap<String, StateInfo> = states
        .iter()
        .enumerate()
        .map(|(i, st)| (st.name.name.clone(), StateInfo { index: i as u32, rank: st.binders.len(), shape: None }))
        .collect();

    // Pass 1, silent: each state's shape from the left side of its update.
    let was_quiet = cx.quiet;
    cx.quiet = true;
    let mut shapes: HashMap<String, Shape> = HashMap::new();
    for u in &updates {
        if let StmtKind::IndexedAssign { name, indices, value, cond } = &*u.kind {
            if let Some(p) = scan_stmt(cx, frame, &infos, index, &dim, indices, value, cond.as_ref(), false) {
                shapes.entry(name.name.clone()).or_insert(p.shape);
            }
        }
    }
    cx.quiet = was_quiet;
    for (n, s) in &shapes {
        if let Some(info) = infos.get_mut(n) {
            info.shape = Some(s.clone());
        }
    }

    // Pass 2: the real checks.
    let errors_before = cx.errors;
    let mut taint: TaintRef = None;
    let mut builder = ScanBuilder::default();
    let mut update_stmts = Vec::new();
    // An update in error (perhaps silently, reading a poisoned name) leaves its
    // state's shape unknown: the outputs are not checked then.
    let mut updates_failed = false;
    for u in &updates {
        let StmtKind::IndexedAssign { name, indices, value, cond } = &*u.kind else { continue };
        let st = states.iter_mut().find(|st| st.name.name == name.name).expect("updates name states");
        if let Some(prev) = st.updated {
            cx.report(
                Diagnostic::error(
                    Code::StateUpdate,
                    format!("state `{}` is updated twice", name.name),
                    u.span,
                    "second update",
                )
                .with_label(prev, "first update")
                .with_note("each state is updated exactly once per step"),
            );
            continue;
        }
        st.updated = Some(u.span);
        if indices.len() != st.binders.len() {
            cx.report(Diagnostic::error(
                Code::WrongIndexCount,
                format!("state `{}` has {} indices, its update {}", name.name, st.binders.len(), indices.len()),
                u.span,
                "wrong number of indices",
            ));
            continue;
        }
        if let Some(i) = indices.iter().find(|i| i.name == index.name) {
            cx.report(
                Diagnostic::error(
                    Code::StateThroughScanIndex,
                    format!("state `{}` is indexed by the scan index", name.name),
                    i.span,
                    "the scan index",
                )
                .with_note("a state has no scan axis; outputs do"),
            );
            continue;
        }
        match scan_stmt(cx, frame, &infos, index, &dim, indices, value, cond.as_ref(), false) {
            Some(p) => {
                taint = causal::join(&taint, &p.taint);
                update_stmts.push(builder.add(infos[&name.name].index, p));
            }
            None => updates_failed = true,
        }
    }
    let mut ir_states = Vec::new();
    for st in &states {
        if st.updated.is_none() {
            cx.report(
                Diagnostic::error(
                    Code::StateUpdate,
                    format!("state `{}` is never updated", st.name.name),
                    st.name.span,
                    "declared here",
                )
                .with_help(format!("update it in the scan: `{}[...] = ...`", st.name.name)),
            );
        }
        // The initial value: a constant, or a tensor that broadcasts to the state.
        let Some(shape) = infos.get(&st.name.name).and_then(|i| i.shape.clone()) else { continue };
        let mut init = ir::ops::StateInit::Const(0.0);
        // `= h0[d, n]` (the state's last indices, in order) is `= h0`.
        let init_expr = match &st.init.kind {
            ExprKind::Index { base, indices } => {
                let names: Vec<Option<&str>> = indices
                    .iter()
                    .map(|i| match &i.kind {
                        ExprKind::Name(n) => Some(n.as_str()),
                        _ => None,
                    })
                    .collect();
                let last = &st.binders[st.binders.len().saturating_sub(indices.len())..];
                if indices.len() > st.binders.len() || names.iter().zip(last).any(|(n, b)| *n != Some(b.name.as_str()))
                {
                    let want: Vec<&str> = last.iter().map(|b| b.name.as_str()).collect();
                    cx.report(
                        Diagnostic::error(
                            Code::StateInit,
                            format!(
                                "the initial value of state `{}` is indexed by other indices than its own",
                                st.name.name
                            ),
                            st.init.span,
                            "indices of the initial value",
                        )
                        .with_help(format!(
                            "index it by the state's last indices, in order (`[{}]`), or not at all to broadcast it",
                            want.join(", ")
                        )),
                    );
                    continue;
                }
                &**base
            }
            _ => st.init,
        };
        match forward::eval(cx, frame, init_expr) {
            Some(Value::Const(c @ (Const::Int(_) | Const::Float(_)))) => {
                init = ir::ops::StateInit::Const(c.as_f64().unwrap_or(0.0))
            }
            None => {}
            Some(Value::Tensor(t)) => {
                init = ir::ops::StateInit::Operand(builder.operand(t.node));
                if super::types::broadcast(&t.ty.shape, &shape).as_ref() != Some(&shape) {
                    cx.report(
                        Diagnostic::error(
                            Code::StateInit,
                            format!(
                                "the initial value {} does not broadcast to state `{}` {}",
                                shape_str(&t.ty.shape),
                                st.name.name,
                                shape_str(&shape)
                            ),
                            st.init.span,
                            format!("this is {}", shape_str(&t.ty.shape)),
                        )
                        .with_label(st.span, format!("the state is {}", shape_str(&shape))),
                    );
                }
                taint = causal::join(&taint, &t.taint);
            }
            Some(v) => cx.report(Diagnostic::error(
                Code::StateInit,
                "a state starts from a constant or a tensor",
                st.init.span,
                format!("this is {}", v.describe()),
            )),
        }
        ir_states.push(ir::ops::State { name: st.name.name.clone(), shape, init });
    }
    if cx.errors > errors_before || updates_failed {
        return; // outputs read the states, which are in error
    }
    let mut bound: Vec<(String, TensorTy, TaintRef)> = Vec::new();
    let mut output_stmts = Vec::new();
    for o in &outputs {
        let StmtKind::IndexedAssign { name, indices, value, cond } = &*o.kind else { continue };
        let count = indices.iter().filter(|i| i.name == index.name).count();
        if count != 1 {
            cx.report(
                Diagnostic::error(
                    Code::ScanOutputIndex,
                    format!("output `{}` is indexed by the scan index `{}` {count} times", name.name, index.name),
                    o.span,
                    "needs the scan index exactly once",
                )
                .with_note("every output of a scan has one axis along the scan"),
            );
            continue;
        }
        if bound.iter().any(|(n, _, _)| n == &name.name) {
            cx.report(Diagnostic::error(
                Code::Duplicate,
                format!("output `{}` is defined twice in the scan", name.name),
                name.span,
                "second definition",
            ));
            continue;
        }
        if let Some(p) = scan_stmt(cx, frame, &infos, index, &dim, indices, value, cond.as_ref(), true) {
            let t = causal::join(&p.taint, &taint);
            let ty = TensorTy { dtype: DType::F32, shape: p.shape.clone() };
            output_stmts.push(builder.add(bound.len() as u32, p));
            bound.push((name.name.clone(), ty, t));
        }
    }
    let _ = span;
    frame.expired_states.extend(states.iter().map(|st| st.name.name.clone()));
    if cx.errors > errors_before || bound.is_empty() {
        return;
    }
    if builder.vars.is_empty() {
        builder.vars.push(ir::ops::LoopVar { name: index.name.clone(), extent: dim.clone() });
    }
    let recurrence = vec![ir::ops::Recurrence::Unknown; ir_states.len()];
    let op = ir::ops::ScanOp {
        axis: 0,
        vars: builder.vars,
        states: ir_states,
        updates: update_stmts,
        outputs: output_stmts,
        recurrence,
    };
    let nodes =
        cx.graph.add(ir::Op::Scan(Box::new(op)), builder.operands, bound.iter().map(|(_, ty, _)| ty.clone()).collect());
    for ((n, ty, taint), node) in bound.into_iter().zip(nodes) {
        if let Some(top) = frame.vars.last_mut() {
            top.insert(n, Value::Tensor(Tensor { ty, mask: None, taint, node }));
        }
    }
}

/// One update or output of a scan; returns its left shape and taint.
#[allow(clippy::too_many_arguments)]
fn scan_stmt(
    cx: &mut Checker,
    frame: &mut Frame,
    states: &HashMap<String, StateInfo>,
    index: &Ident,
    dim: &Dim,
    binders: &[Ident],
    value: &Expr,
    cond: Option<&Expr>,
    is_output: bool,
) -> Option<StmtParts> {
    let mut w = Walk::new(cx, frame);
    w.states = Some(states);
    let scan_var = w.push_var(index, Kind::Scan, Some(dim.clone()));
    let mut left = Vec::new();
    for b in binders {
        if b.name == index.name && is_output {
            left.push(scan_var);
            continue;
        }
        if left.iter().any(|&id: &usize| w.vars[id].name == b.name) {
            w.error(Diagnostic::error(
                Code::RepeatedIndex,
                format!("index `{}` appears twice on the left", b.name),
                b.span,
                "repeated",
            ));
            continue;
        }
        left.push(w.push_var(b, Kind::Left, None));
    }
    let (s, cond_ir) = w.definition(value, cond);
    let shape = left_shape(&mut w, &left)?;
    w.finish();
    if !w.ok {
        return None;
    }
    Some(StmtParts {
        shape,
        taint: w.taint.clone(),
        vars: w.loop_vars(),
        left: left.iter().map(|&l| l as u32).collect(),
        body: s.ir,
        cond: cond_ir,
        operands: std::mem::take(&mut w.operands),
    })
}

/// One checked scan statement, with its own loop indices (0 is the scan axis)
/// and operands, before the scan merges them.
struct StmtParts {
    shape: Shape,
    taint: TaintRef,
    vars: Vec<ir::ops::LoopVar>,
    left: Vec<u32>,
    body: ir::Scalar,
    cond: Option<ir::Scalar>,
    operands: Vec<ir::ValueId>,
}

/// Merges scan statements into one op: a shared loop-index table (the axis is 0)
/// and a shared operand list.
#[derive(Default)]
struct ScanBuilder {
    vars: Vec<ir::ops::LoopVar>,
    operands: Vec<ir::ValueId>,
}

impl ScanBuilder {
    fn operand(&mut self, v: ir::ValueId) -> u32 {
        match self.operands.iter().position(|&o| o == v) {
            Some(k) => k as u32,
            None => {
                self.operands.push(v);
                (self.operands.len() - 1) as u32
            }
        }
    }

    fn add(&mut self, target: u32, p: StmtParts) -> ir::ops::ScanStmt {
        if self.vars.is_empty() {
            self.vars.push(p.vars[0].clone());
        }
        let base = self.vars.len() as u32 - 1;
        self.vars.extend(p.vars.into_iter().skip(1));
        let ops: Vec<u32> = p.operands.iter().map(|&v| self.operand(v)).collect();
        let var = move |i: u32| if i == 0 { 0 } else { base + i };
        let operand = |k: u32| ops[k as usize];
        ir::ops::ScanStmt {
            target,
            left: p.left.into_iter().map(var).collect(),
            body: p.body.renumbered(&var, &operand, &|k| k),
            cond: p.cond.map(|c| c.renumbered(&var, &operand, &|k| k)),
        }
    }
}
