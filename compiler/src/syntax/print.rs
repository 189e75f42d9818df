//! The canonical printer behind `seqc fmt`: two-space indentation, one declaration
//! or statement per line, and exactly the parentheses the grammar needs.
//!
//! Invariant: `parse(print(f))` is `f` up to spans, and printing is idempotent.
//! Comments are kept: each is printed before the first declaration or statement
//! that starts after it, or at the end of the line it shared with the previous one.

use crate::syntax::ast::*;

/// Prints a file in canonical form.
pub fn print_file(file: &File, src: &str) -> String {
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        comments: &file.comments,
        next_comment: 0,
        src,
        last_end: 0,
        last_was_comment: false,
        pending_blank: false,
    };
    for (i, item) in file.items.iter().enumerate() {
        if i > 0 {
            p.separate();
        }
        match item {
            Item::Layer(l) => p.layer(l),
            Item::Model(m) => p.model(m),
        }
    }
    p.comments_before(usize::MAX);
    p.out
}

/// Prints one expression in canonical form.
pub fn print_expr(e: &Expr) -> String {
    expr(e, 0, false)
}

struct Printer<'a> {
    out: String,
    indent: usize,
    comments: &'a [Comment],
    next_comment: usize,
    src: &'a str,
    /// Source offset where the last printed node ended, to keep trailing comments
    /// on their line.
    last_end: usize,
    /// Whether the last thing printed was a comment.
    last_was_comment: bool,
    /// A blank line is due before the next declaration (not before a comment
    /// that ends the previous line).
    pending_blank: bool,
}

impl Printer<'_> {
    fn line(&mut self, text: &str, start: usize, end: usize) {
        self.comments_before(start);
        self.flush_blank();
        if self.last_was_comment && self.blank_between(self.last_end, start) {
            self.blank_line();
        }
        self.last_was_comment = false;
        self.push_indent();
        self.out.push_str(text);
        self.out.push('\n');
        self.last_end = end;
    }

    fn push_indent(&mut self) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
    }

    /// Emits every comment that starts before `pos`.
    fn comments_before(&mut self, pos: usize) {
        while let Some(c) = self.comments.get(self.next_comment) {
            let start = c.span.start as usize;
            if start >= pos {
                break;
            }
            self.next_comment += 1;
            let same_line = self.last_end > 0
                && start >= self.last_end
                && !self.src.get(self.last_end..start).unwrap_or("\n").contains('\n')
                && self.out.ends_with('\n');
            if same_line && c.text.starts_with("//") {
                self.out.pop();
                self.out.push_str("  ");
                self.out.push_str(&c.text);
                self.out.push('\n');
            } else {
                self.flush_blank();
                if self.blank_between(self.last_end, start) {
                    self.blank_line();
                }
                for (i, l) in c.text.lines().enumerate() {
                    if i == 0 {
                        self.push_indent();
                    }
                    self.out.push_str(l);
                    self.out.push('\n');
                }
            }
            self.last_end = c.span.end as usize;
            self.last_was_comment = true;
        }
    }

    /// Whether the source has an empty line between two offsets.
    fn blank_between(&self, from: usize, to: usize) -> bool {
        let Some(gap) = self.src.get(from..to) else { return false };
        gap.split('\n').skip(1).take(gap.matches('\n').count().saturating_sub(1)).any(|l| l.trim().is_empty())
    }

    /// Asks for a blank line before the next declaration or own-line comment.
    fn separate(&mut self) {
        self.pending_blank = true;
    }

    fn flush_blank(&mut self) {
        if std::mem::take(&mut self.pending_blank) {
            self.blank_line();
        }
    }

    /// One empty line, unless the output already ends with one (or is empty).
    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn open(&mut self, head: &str, start: usize) {
        self.line(&format!("{head} {{"), start, start);
        self.indent += 1;
    }

    fn close(&mut self, end: usize) {
        self.comments_before(end);
        self.pending_blank = false;
        self.indent -= 1;
        self.push_indent();
        self.out.push_str("}\n");
        self.last_end = end;
    }

    fn layer(&mut self, l: &LayerDef) {
        let params: Vec<String> = l
            .params
            .iter()
            .map(|p| match &p.default {
                Some(d) => format!("{}: {} = {}", p.name.name, p.ty.name, expr(d, 0, false)),
                None => format!("{}: {}", p.name.name, p.ty.name),
            })
            .collect();
        self.open(&format!("layer {}({})", l.name.name, params.join(", ")), l.span.start as usize);
        let mut prev: Option<u8> = None;
        for m in &l.members {
            let kind = match m {
                LayerMember::Let(_) => 0,
                LayerMember::Weight(_) => 1,
                LayerMember::Forward(_) => 2,
                LayerMember::Error => continue, // only error-free files are printed
            };
            if prev.is_some_and(|p| p != kind || kind == 2) {
                self.separate();
            }
            prev = Some(kind);
            match m {
                LayerMember::Let(c) => {
                    self.line(&format!("let {}", const_def(c)), c.span.start as usize, c.span.end as usize)
                }
                LayerMember::Weight(w) => {
                    self.line(&format!("weight {}", weight_decl(w)), w.span.start as usize, w.span.end as usize)
                }
                LayerMember::Forward(f) => self.forward(f),
                LayerMember::Error => {}
            }
        }
        self.close(l.span.end as usize);
    }

    fn model(&mut self, m: &ModelDef) {
        self.open(&format!("model {}", m.name.name), m.span.start as usize);
        let mut prev: Option<u8> = None;
        for member in &m.members {
            let kind = match member {
                ModelMember::Config { .. } => 0,
                ModelMember::Input(_) | ModelMember::Output(_) => 1,
                ModelMember::Weights(_) => 2,
                ModelMember::Forward(_) => 3,
                ModelMember::Error => continue,
            };
            if prev.is_some_and(|p| p != kind || kind != 1) {
                self.separate();
            }
            prev = Some(kind);
            match member {
                ModelMember::Config { entries, span } => {
                    self.open("config", span.start as usize);
                    for c in entries {
                        self.line(&const_def(c), c.span.start as usize, c.span.end as usize);
                    }
                    self.close(span.end as usize);
                }
                ModelMember::Input(io) => self.line(
                    &format!("input {}: {}", io.name.name, tensor_type(&io.ty)),
                    io.span.start as usize,
                    io.span.end as usize,
                ),
                ModelMember::Output(io) => self.line(
                    &format!("output {}: {}", io.name.name, tensor_type(&io.ty)),
                    io.span.start as usize,
                    io.span.end as usize,
                ),
                ModelMember::Weights(w) => {
                    let head = match &w.prefix {
                        Some((p, _)) => format!("weights {}", string_lit(p)),
                        None => "weights".to_string(),
                    };
                    self.open(&head, w.span.start as usize);
                    self.weight_entries(&w.entries);
                    self.close(w.span.end as usize);
                }
                ModelMember::Forward(f) => self.forward(f),
                ModelMember::Error => {}
            }
        }
        self.close(m.span.end as usize);
    }

    fn weight_entries(&mut self, entries: &[WeightEntry]) {
        for e in entries {
            match e {
                WeightEntry::Decl(d) => self.line(&weight_decl(d), d.span.start as usize, d.span.end as usize),
                WeightEntry::Group { name, count, entries, span } => {
                    let head = match count {
                        Some(c) => format!("{}[{}]", name.name, expr(c, 0, false)),
                        None => name.name.clone(),
                    };
                    self.open(&head, span.start as usize);
                    self.weight_entries(entries);
                    self.close(span.end as usize);
                }
            }
        }
    }

    fn forward(&mut self, f: &ForwardDef) {
        let mut head = "forward".to_string();
        if let Some(n) = &f.name {
            head.push(' ');
            head.push_str(&n.name);
        }
        if let Some(params) = &f.params {
            let ps: Vec<String> = params.iter().map(|p| format!("{}: {}", p.name.name, tensor_type(&p.ty))).collect();
            head.push_str(&format!("({})", ps.join(", ")));
        }
        if let Some(ret) = &f.ret {
            head.push_str(&format!(" -> {}", tensor_type(ret)));
        }
        self.open(&head, f.span.start as usize);
        self.stmts(&f.body);
        self.close(f.span.end as usize);
    }

    fn stmts(&mut self, body: &[Stmt]) {
        for s in body {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        let (start, end) = (s.span.start as usize, s.span.end as usize);
        // A definition is a head, a value and an optional condition.
        let (head, value, cond) = match &*s.kind {
            StmtKind::Let { names, value } => {
                let names: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
                (format!("let {}", names.join(", ")), value, &None)
            }
            StmtKind::Define { name, indices, value, cond } => {
                let idx: Vec<String> = indices
                    .iter()
                    .map(|b| match &b.extent {
                        Some(e) => format!("{} in {}", b.name.name, expr(e, 0, false)),
                        None => b.name.name.clone(),
                    })
                    .collect();
                (format!("let {}[{}]", name.name, idx.join(", ")), value, cond)
            }
            StmtKind::Assign { name, value } => (name.name.clone(), value, &None),
            StmtKind::IndexedAssign { name, indices, value, cond } => {
                (format!("{}[{}]", name.name, idents(indices)), value, cond)
            }
            StmtKind::State { name, indices, init } => {
                (format!("state {}[{}]", name.name, idents(indices)), init, &None)
            }
            StmtKind::For { var, group, body } => {
                self.open(&format!("for {} in {}", var.name, expr(group, 0, false)), start);
                self.stmts(body);
                self.close(end);
                return;
            }
            StmtKind::Scan { index, dim, body } => {
                self.open(&format!("scan {} in {}", index.name, expr(dim, 0, false)), start);
                self.stmts(body);
                self.close(end);
                return;
            }
            StmtKind::Return(e) => {
                self.line(&format!("return {}", expr(e, 0, false)), start, end);
                return;
            }
            StmtKind::Error => {
                self.line("/* error */", start, end);
                return;
            }
        };
        let one_line = format!("{head} = {}{}", expr(value, 0, false), where_clause(cond));
        if self.indent * 2 + one_line.len() <= MAX_WIDTH {
            self.line(&one_line, start, end);
            return;
        }
        // Too long: `where` on a line of its own, and a top-level sum broken before
        // each `+` or `-`, aligned under the `=` (LANGUAGE.md's own layout).
        let pad = " ".repeat(head.len() + 1);
        let mut text = format!("{head} = {}", expr(value, 0, false));
        if self.indent * 2 + text.len() > MAX_WIDTH {
            if let Some((first, rest)) = chain_terms(value, &[BinOp::Add, BinOp::Sub], 4)
                .or_else(|| chain_terms(value, &[BinOp::Mul, BinOp::Div], 5))
            {
                text = format!("{head} = {first}");
                for (op, term) in rest {
                    text.push_str(&format!("\n{}{pad}{op} {term}", "  ".repeat(self.indent)));
                }
            }
        }
        if let Some(c) = cond {
            text.push_str(&format!("\n{}    where {}", "  ".repeat(self.indent), expr(c, 0, false)));
        }
        self.line(&text, start, end);
    }
}

/// Lines longer than this are broken where the grammar allows it nicely.
const MAX_WIDTH: usize = 100;

/// A top-level chain `a + b - c` (or `a * b / c`) as its first term and the
/// `(op, term)` pairs after it, each printed exactly as inside the whole
/// expression; `level` is the chain's precedence.
fn chain_terms(e: &Expr, ops: &[BinOp], level: u8) -> Option<(String, Vec<(&'static str, String)>)> {
    let mut spine = Vec::new();
    let mut cur = e;
    while let ExprKind::Binary(op, a, b) = &cur.kind {
        if !ops.contains(op) {
            break;
        }
        spine.push((op.symbol(), b.as_ref()));
        cur = a;
    }
    if spine.is_empty() {
        return None;
    }
    spine.reverse();
    let last = spine.len() - 1;
    let rest = spine.into_iter().enumerate().map(|(i, (op, t))| (op, expr(t, level + 1, i != last))).collect();
    Some((expr(cur, level, true), rest))
}

fn idents(ids: &[Ident]) -> String {
    ids.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn where_clause(cond: &Option<Expr>) -> String {
    match cond {
        Some(c) => format!(" where {}", expr(c, 0, false)),
        None => String::new(),
    }
}

fn const_def(c: &ConstDef) -> String {
    format!("{} = {}", c.name.name, expr(&c.value, 0, false))
}

fn weight_decl(w: &WeightDecl) -> String {
    match &*w.kind {
        WeightKind::Layer(call) => format!("{}: {}({})", w.name.name, call.callee.name, args(&call.args)),
        WeightKind::Tensor { ty, init } => {
            let init = match init {
                None => String::new(),
                Some(Init::Value(e)) => format!(" init {}", expr(e, 0, false)),
                Some(Init::Indexed { indices, value, .. }) => {
                    format!(" init[{}] = {}", idents(indices), expr(value, 0, false))
                }
            };
            format!("{}: {}{}", w.name.name, tensor_type(ty), init)
        }
    }
}

fn tensor_type(t: &TensorType) -> String {
    let dims: Vec<String> = t.dims.iter().map(|d| expr(d, 0, false)).collect();
    format!("{}[{}]", t.dtype.name(), dims.join(", "))
}

fn args(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match &a.name {
            Some(n) => format!("{} = {}", n.name, expr(&a.value, 0, false)),
            None => expr(&a.value, 0, false),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn string_lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

const LAMBDA: u8 = 0;
const POSTFIX: u8 = 7;
const ATOM: u8 = 8;

fn level(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary(op, ..) => binary_level(*op),
        ExprKind::Unary(..) => 6,
        ExprKind::Call { .. } | ExprKind::Index { .. } | ExprKind::Member(..) => POSTFIX,
        ExprKind::Reduce { .. } | ExprKind::If { .. } => LAMBDA,
        _ => ATOM,
    }
}

fn binary_level(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And => 2,
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => 3,
        BinOp::Add | BinOp::Sub => 4,
        BinOp::Mul | BinOp::Div => 5,
    }
}

/// Whether the expression ends in a reduction or `if`, whose body would swallow
/// anything printed after it.
fn ends_open(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Reduce { .. } | ExprKind::If { .. } => true,
        ExprKind::Binary(_, _, b) => ends_open(b),
        ExprKind::Unary(_, x) => ends_open(x),
        _ => false,
    }
}

/// Prints `e` where the grammar wants at least precedence `min`, and where
/// `closed` says that something follows it.
fn expr(e: &Expr, min: u8, closed: bool) -> String {
    let lvl = level(e);
    let parens = (closed && ends_open(e)) || (lvl != LAMBDA && lvl < min);
    let text = match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        ExprKind::Float(v) => format!("{v:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => string_lit(s),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Member(base, m) => format!("{}.{}", expr(base, POSTFIX, true), m.name),
        ExprKind::Call { callee, args: a } => format!("{}({})", expr(callee, POSTFIX, true), args(a)),
        ExprKind::Index { base, indices } => {
            let idx: Vec<String> = indices.iter().map(|i| expr(i, 0, false)).collect();
            format!("{}[{}]", expr(base, POSTFIX, true), idx.join(", "))
        }
        ExprKind::List(items) => {
            let items: Vec<String> = items.iter().map(|i| expr(i, 0, false)).collect();
            format!("[{}]", items.join(", "))
        }
        ExprKind::Unary(op, x) => {
            let sym = if *op == UnOp::Neg { "-" } else { "!" };
            format!("{sym}{}", expr(x, 6, closed && !parens))
        }
        ExprKind::Binary(op, a, b) => {
            let p = binary_level(*op);
            // Comparisons do not chain, so both sides sit one level up.
            let left_min = if op.is_comparison() { p + 1 } else { p };
            format!("{} {} {}", expr(a, left_min, true), op.symbol(), expr(b, p + 1, closed && !parens))
        }
        ExprKind::If { cond, then, otherwise } => {
            format!("if {} then {} else {}", expr(cond, 0, false), expr(then, 0, false), expr(otherwise, 0, false))
        }
        ExprKind::Reduce { op, indices, body } => {
            format!("{}[{}] {}", op.name(), idents(indices), expr(body, 0, false))
        }
        ExprKind::Error => "/* error */".to_string(),
    };
    if parens {
        format!("({text})")
    } else {
        text
    }
}

/// Prints dims as `[a, b, c]`.
pub fn print_expr_list(items: &[Expr]) -> String {
    let items: Vec<String> = items.iter().map(|e| expr(e, 0, false)).collect();
    format!("[{}]", items.join(", "))
}
