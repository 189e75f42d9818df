//! `seqc fmt`: printing then parsing gives the same tree, on every example, on
//! the prelude and on generated programs; printing is idempotent.

use proptest::prelude::*;
use seqc_compiler::diag::{FileId, Span};
use seqc_compiler::syntax::ast::*;
use seqc_compiler::syntax::{self, print, tree};
use std::path::Path;

/// The tree without source positions.
fn shape(file: &File) -> String {
    let src = seqc_compiler::diag::SourceFile::new("x", "");
    tree::dump(file, &src)
        .lines()
        .map(|l| l.rsplit_once("  @").map(|(a, _)| a).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn round_trip(name: &str, src: &str) {
    let (ast, diags) = syntax::parse(FileId(1), src);
    assert!(diags.is_empty(), "{name} does not parse: {diags:?}");
    let printed = print::print_file(&ast, src);
    let (again, diags) = syntax::parse(FileId(1), &printed);
    assert!(diags.is_empty(), "{name}: printed text does not parse: {diags:?}\n{printed}");
    assert_eq!(shape(&ast), shape(&again), "{name}: the tree changed through printing");
    assert_eq!(printed, print::print_file(&again, &printed), "{name}: printing is not idempotent");
    // Comments survive.
    let count = |s: &str| s.matches("//").count() + s.matches("/*").count();
    assert_eq!(count(src), count(&printed), "{name}: comments were lost");
}

#[test]
fn examples_and_prelude_round_trip() {
    round_trip("prelude", seqc_compiler::prelude::SOURCE);
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples")).unwrap() {
        let path = entry.unwrap().path();
        round_trip(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
    }
}

#[test]
fn prelude_is_formatted() {
    let src = seqc_compiler::prelude::SOURCE;
    let (ast, _) = syntax::parse(FileId(0), src);
    assert_eq!(src, print::print_file(&ast, src), "the prelude is not in canonical form");
}

#[test]
fn long_statements_break_like_the_language_page() {
    let src = "layer a(d: int) {\n  forward(x: f32[B, L, d]) -> f32[B, L, d] {\n    let y[b, l, e] = x[b, l, e] * x[b, l, e] * x[b, l, e] * x[b, l, e] + x[b, l, e] * x[b, l, e] * x[b, l, e] - x[b, l, e] where e <= l\n    return y\n  }\n}\n";
    let (ast, diags) = syntax::parse(FileId(1), src);
    assert!(diags.is_empty());
    let printed = print::print_file(&ast, src);
    let expected = "    let y[b, l, e] = x[b, l, e] * x[b, l, e] * x[b, l, e] * x[b, l, e]
                   + x[b, l, e] * x[b, l, e] * x[b, l, e]
                   - x[b, l, e]
        where e <= l
";
    assert!(printed.contains(expected), "{printed}");
    round_trip("long", &printed);
}

#[test]
fn examples_are_formatted() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples")).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let (ast, _) = syntax::parse(FileId(1), &src);
        let printed = print::print_file(&ast, &src);
        assert_eq!(src, printed, "{} is not in canonical form", path.display());
    }
}

#[test]
fn parentheses_are_kept_where_needed() {
    for (src, sexpr) in [
        ("(sum[n] a * b) + c", "(+ (sum[n] (* a b)) c)"),
        ("sum[n] a * b + c", "(sum[n] (+ (* a b) c))"),
        ("a - (b - c)", "(- a (- b c))"),
        ("-(a * b)", "(neg (* a b))"),
        ("(a < b) == c", "(== (< a b) c)"),
        ("x + if c then a else b", "(+ x (if c a b))"),
        ("(if c then a else b) * x", "(* (if c a b) x)"),
        ("f(a)[i].w", "(. (at (call f a) i) w)"),
        ("max(a, b) + softmax(x)", "(+ (call max a b) (call softmax x))"),
        ("max[j] x[j] * 2", "(max[j] (* (at x j) 2))"),
    ] {
        let e = syntax::parse_expr(FileId(0), src).unwrap();
        assert_eq!(tree::sexpr(&e), sexpr, "{src}");
        let printed = print::print_expr(&e);
        let again = syntax::parse_expr(FileId(0), &printed).unwrap();
        assert_eq!(tree::sexpr(&again), sexpr, "{src} printed as {printed}");
    }
}

// ------------------------------------------------------------- generated

fn at(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::default())
}

fn ident(n: &str) -> Ident {
    Ident { name: n.to_string(), span: Span::default() }
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (0i64..1_000_000).prop_map(|v| at(ExprKind::Int(v))),
        (0.0f64..1e6).prop_map(|v| at(ExprKind::Float(v))),
        prop::sample::select(vec!["x", "h", "state", "init", "weight", "output", "B", "L"])
            .prop_map(|n| at(ExprKind::Name(n.into()))),
        any::<bool>().prop_map(|b| at(ExprKind::Bool(b))),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(6, 48, 3, |inner| {
        let ops = prop::sample::select(vec![
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::Div,
            BinOp::Lt,
            BinOp::Le,
            BinOp::Eq,
            BinOp::Ne,
            BinOp::And,
            BinOp::Or,
        ]);
        let reduce =
            prop::sample::select(vec![ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean, ReduceOp::Softmax]);
        prop_oneof![
            (ops, inner.clone(), inner.clone()).prop_map(|(op, a, b)| at(ExprKind::Binary(
                op,
                Box::new(a),
                Box::new(b)
            ))),
            (prop::bool::ANY, inner.clone())
                .prop_map(|(neg, e)| at(ExprKind::Unary(if neg { UnOp::Neg } else { UnOp::Not }, Box::new(e)))),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| at(ExprKind::If {
                cond: Box::new(c),
                then: Box::new(a),
                otherwise: Box::new(b)
            })),
            (reduce, inner.clone()).prop_map(|(op, body)| at(ExprKind::Reduce {
                op,
                indices: vec![ident("n")],
                body: Box::new(body)
            })),
            (prop::sample::select(vec!["exp", "f", "max"]), prop::collection::vec(inner.clone(), 0..3)).prop_map(
                |(f, args)| at(ExprKind::Call {
                    callee: Box::new(at(ExprKind::Name(f.into()))),
                    args: args.into_iter().map(|value| Arg { name: None, value }).collect()
                })
            ),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..3))
                .prop_map(|(b, ix)| at(ExprKind::Index { base: Box::new(b), indices: ix })),
            inner.clone().prop_map(|b| at(ExprKind::Member(Box::new(b), ident("w")))),
            prop::collection::vec(inner, 0..3).prop_map(|items| at(ExprKind::List(items))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_expressions_round_trip(e in expr()) {
        let printed = print::print_expr(&e);
        let again = syntax::parse_expr(FileId(0), &printed);
        prop_assert!(again.is_ok(), "{} does not parse", printed);
        prop_assert_eq!(tree::sexpr(&e), tree::sexpr(&again.unwrap()), "printed as {}", printed);
    }

    #[test]
    fn generated_programs_round_trip(value in expr(), cond in expr(), n in 1usize..4) {
        let body: Vec<Stmt> = (0..n)
            .map(|i| Stmt {
                kind: Box::new(if i % 2 == 0 {
                    StmtKind::Define { name: ident("y"), indices: vec![IndexBinder { name: ident("i"), extent: None }], value: value.clone(), cond: Some(cond.clone()) }
                } else {
                    StmtKind::Let { names: vec![ident("z")], value: value.clone() }
                }),
                span: Span::default(),
            })
            .collect();
        let layer = LayerDef {
            name: ident("g"),
            params: vec![Param { name: ident("d"), ty: ident("int"), default: Some(value.clone()), span: Span::default() }],
            members: vec![LayerMember::Forward(ForwardDef { name: None, params: Some(Vec::new()), ret: None, body, span: Span::default() })],
            span: Span::default(),
        };
        let file = File { items: vec![Item::Layer(layer)], comments: Vec::new() };
        let printed = print::print_file(&file, "");
        let (again, diags) = syntax::parse(FileId(1), &printed);
        prop_assert!(diags.is_empty(), "{}: {:?}", printed, diags);
        prop_assert_eq!(shape(&file), shape(&again));
    }
}

#[test]
fn comments_anywhere_survive() {
    let src = "// head\n\nlayer a(d: int /* width */, e: int = 2) { // trailing\n  weight w: linear(d, d) // why\n\n  /* block\n     comment */\n  forward(x: f32[B, L, d]) -> f32[B, L, d] {\n    let y = w(x) + // inside an expression\n      x\n    return y // done\n  }\n}\n// tail\n";
    round_trip("comments", src);
}
