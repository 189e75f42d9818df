//! `--emit ast`: the tree as the parser built it. Declarations and statements are
//! one line each, indented by nesting and tagged with `line:col`; expressions are
//! s-expressions, so precedence and the reach of reductions are explicit.

use crate::diag::SourceFile;
use crate::syntax::ast::*;
use std::fmt::Write;

pub fn dump(file: &File, src: &SourceFile) -> String {
    let mut t = Tree { out: String::new(), src };
    for item in &file.items {
        match item {
            Item::Layer(l) => t.layer(l),
            Item::Model(m) => t.model(m),
        }
    }
    t.out
}

struct Tree<'a> {
    out: String,
    src: &'a SourceFile,
}

impl Tree<'_> {
    fn node(&mut self, depth: usize, span: crate::diag::Span, text: String) {
        let (line, col) = self.src.line_col(span.start as usize);
        let _ = writeln!(self.out, "{}{text}  @{line}:{col}", "  ".repeat(depth));
    }

    fn layer(&mut self, l: &LayerDef) {
        self.node(0, l.span, format!("layer {}", l.name.name));
        for p in &l.params {
            let default = p.default.as_ref().map(|d| format!(" = {}", sexpr(d))).unwrap_or_default();
            self.node(1, p.span, format!("param {}: {}{default}", p.name.name, p.ty.name));
        }
        for m in &l.members {
            match m {
                LayerMember::Let(c) => self.node(1, c.span, format!("let {} {}", c.name.name, sexpr(&c.value))),
                LayerMember::Weight(w) => self.weight(1, w),
                LayerMember::Forward(f) => self.forward(1, f),
                LayerMember::Error => {}
            }
        }
    }

    fn model(&mut self, m: &ModelDef) {
        self.node(0, m.span, format!("model {}", m.name.name));
        for member in &m.members {
            match member {
                ModelMember::Config { entries, span } => {
                    self.node(1, *span, "config".into());
                    for c in entries {
                        self.node(2, c.span, format!("{} {}", c.name.name, sexpr(&c.value)));
                    }
                }
                ModelMember::Input(io) => self.node(1, io.span, format!("input {} {}", io.name.name, ty(&io.ty))),
                ModelMember::Output(io) => self.node(1, io.span, format!("output {} {}", io.name.name, ty(&io.ty))),
                ModelMember::Weights(w) => {
                    let prefix = w.prefix.as_ref().map(|(p, _)| format!(" {p:?}")).unwrap_or_default();
                    self.node(1, w.span, format!("weights{prefix}"));
                    self.entries(2, &w.entries);
                }
                ModelMember::Forward(f) => self.forward(1, f),
                ModelMember::Error => {}
            }
        }
    }

    fn entries(&mut self, depth: usize, entries: &[WeightEntry]) {
        for e in entries {
            match e {
                WeightEntry::Decl(w) => self.weight(depth, w),
                WeightEntry::Group { name, count, entries, span } => {
                    let count = count.as_ref().map(|c| format!(" [{}]", sexpr(c))).unwrap_or_default();
                    self.node(depth, *span, format!("group {}{count}", name.name));
                    self.entries(depth + 1, entries);
                }
            }
        }
    }

    fn weight(&mut self, depth: usize, w: &WeightDecl) {
        let text = match &*w.kind {
            WeightKind::Layer(c) => format!("weight {} (layer {}{})", w.name.name, c.callee.name, args(&c.args)),
            WeightKind::Tensor { ty: t, init } => {
                let init = match init {
                    None => String::new(),
                    Some(Init::Value(e)) => format!(" (init {})", sexpr(e)),
                    Some(Init::Indexed { indices, value, .. }) => {
                        format!(" (init [{}] {})", names(indices), sexpr(value))
                    }
                };
                format!("weight {} {}{init}", w.name.name, ty(t))
            }
        };
        self.node(depth, w.span, text);
    }

    fn forward(&mut self, depth: usize, f: &ForwardDef) {
        let name = f.name.as_ref().map(|n| format!(" {}", n.name)).unwrap_or_default();
        self.node(depth, f.span, format!("forward{name}"));
        for p in f.params.iter().flatten() {
            self.node(depth + 1, p.span, format!("param {} {}", p.name.name, ty(&p.ty)));
        }
        if let Some(r) = &f.ret {
            self.node(depth + 1, r.span, format!("returns {}", ty(r)));
        }
        self.stmts(depth + 1, &f.body);
    }

    fn stmts(&mut self, depth: usize, body: &[Stmt]) {
        for s in body {
            let text = match &*s.kind {
                StmtKind::Let { names: n, value } => format!("let {} {}", names(n), sexpr(value)),
                StmtKind::Define { name, indices, value, cond } => {
                    let idx: Vec<String> = indices
                        .iter()
                        .map(|b| match &b.extent {
                            Some(e) => format!("{} in {}", b.name.name, sexpr(e)),
                            None => b.name.name.clone(),
                        })
                        .collect();
                    format!("define {}[{}] {}{}", name.name, idx.join(", "), sexpr(value), cond_text(cond))
                }
                StmtKind::Assign { name, value } => format!("assign {} {}", name.name, sexpr(value)),
                StmtKind::IndexedAssign { name, indices, value, cond } => {
                    format!("assign {}[{}] {}{}", name.name, names(indices), sexpr(value), cond_text(cond))
                }
                StmtKind::State { name, indices, init } => {
                    format!("state {}[{}] {}", name.name, names(indices), sexpr(init))
                }
                StmtKind::For { var, group, body } => {
                    self.node(depth, s.span, format!("for {} in {}", var.name, sexpr(group)));
                    self.stmts(depth + 1, body);
                    continue;
                }
                StmtKind::Scan { index, dim, body } => {
                    self.node(depth, s.span, format!("scan {} in {}", index.name, sexpr(dim)));
                    self.stmts(depth + 1, body);
                    continue;
                }
                StmtKind::Return(e) => format!("return {}", sexpr(e)),
                StmtKind::Error => "error".into(),
            };
            self.node(depth, s.span, text);
        }
    }
}

fn cond_text(cond: &Option<Expr>) -> String {
    cond.as_ref().map(|c| format!(" where {}", sexpr(c))).unwrap_or_default()
}

fn names(ids: &[Ident]) -> String {
    ids.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn ty(t: &TensorType) -> String {
    let dims: Vec<String> = t.dims.iter().map(sexpr).collect();
    format!("{}[{}]", t.dtype.name(), dims.join(", "))
}

fn args(a: &[Arg]) -> String {
    a.iter()
        .map(|a| match &a.name {
            Some(n) => format!(" {}={}", n.name, sexpr(&a.value)),
            None => format!(" {}", sexpr(&a.value)),
        })
        .collect()
}

/// An expression as an s-expression.
pub fn sexpr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        ExprKind::Float(v) => format!("{v:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Member(b, m) => format!("(. {} {})", sexpr(b), m.name),
        ExprKind::Call { callee, args: a } => format!("(call {}{})", sexpr(callee), args(a)),
        ExprKind::Index { base, indices } => {
            let idx: Vec<String> = indices.iter().map(sexpr).collect();
            format!("(at {} {})", sexpr(base), idx.join(" "))
        }
        ExprKind::List(items) => format!("(list {})", items.iter().map(sexpr).collect::<Vec<_>>().join(" ")),
        ExprKind::Unary(op, x) => format!("({} {})", if *op == UnOp::Neg { "neg" } else { "not" }, sexpr(x)),
        ExprKind::Binary(op, a, b) => format!("({} {} {})", op.symbol(), sexpr(a), sexpr(b)),
        ExprKind::If { cond, then, otherwise } => format!("(if {} {} {})", sexpr(cond), sexpr(then), sexpr(otherwise)),
        ExprKind::Reduce { op, indices, body } => format!("({}[{}] {})", op.name(), names(indices), sexpr(body)),
        ExprKind::Error => "error".into(),
    }
}
