//! Snapshot tests of the front end: the AST and the weight table of every example,
//! and the rendered diagnostic of every file in `tests/errors/`.
//!
//! An error case is `tests/errors/E0301-what-it-is.seq`: one defect per file, and
//! its first diagnostic must carry the code its name starts with. A leading
//! `//! config: k=v,...` line passes `--config`.

use seqc_compiler::diag::{render_text, ColorChoice, Diagnostic};
use seqc_compiler::driver::{self, Session};
use seqc_compiler::sema::Checked;
use seqc_compiler::syntax;
use std::path::Path;

fn display_name(path: &Path) -> String {
    let dir = path.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{dir}/{}", path.file_name().unwrap().to_string_lossy())
}

fn config_directive(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take_while(|l| l.starts_with("//!"))
        .find_map(|l| l.strip_prefix("//! config:"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn error_cases() {
    insta::glob!("errors/*.seq", |path| {
        let bytes = std::fs::read(path).unwrap();
        let name = display_name(path);
        let (session, result) = driver::check_bytes(&name, &bytes, &config_directive(&bytes));
        let diags: Vec<Diagnostic> = match result {
            Ok(_) => panic!("{name} checks without errors"),
            Err(d) => d,
        };
        let expected = path.file_name().unwrap().to_string_lossy()[..5].to_string();
        assert_eq!(diags[0].code.to_string(), expected, "{name}: first diagnostic has the wrong code");
        for d in &diags {
            assert!(d.labels.iter().any(|l| l.primary), "{name}: a diagnostic without a primary label");
        }
        insta::assert_snapshot!(render_text(&session.sources, &diags, ColorChoice::Never));
    });
}

#[test]
fn there_are_many_error_cases() {
    let n = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors")).unwrap().count();
    assert!(n >= 40, "only {n} error cases");
}

#[test]
fn example_asts() {
    insta::glob!("../dsl-examples", "*.seq", |path| {
        let bytes = std::fs::read(path).unwrap();
        let (session, ok) = Session::new(&display_name(path), &bytes);
        ok.unwrap();
        let ast = session.parse().unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
        insta::assert_snapshot!(syntax::tree::dump(&ast, session.sources.get(session.file)));
    });
}

#[test]
fn example_weight_tables() {
    insta::glob!("../dsl-examples", "*.seq", |path| {
        let bytes = std::fs::read(path).unwrap();
        let (session, result) = driver::check_bytes(&display_name(path), &bytes, "");
        let checked = result.unwrap_or_else(|d| panic!("{}", render_text(&session.sources, &d, ColorChoice::Never)));
        let Checked::Model(m) = checked else { panic!("{} has no model", path.display()) };
        insta::assert_snapshot!(driver::weight_table(&m));
    });
}

fn weights_of(file: &str, config: &str) -> Vec<(String, Vec<i64>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let (_, result) = driver::check_bytes(file, &std::fs::read(path).unwrap(), config);
    match result.unwrap() {
        Checked::Model(m) => m.weights.into_iter().map(|w| (w.name, w.shape)).collect(),
        Checked::Layers(_) => panic!("no model"),
    }
}

/// The names and shapes candle-transformers' Mamba reads (state-spaces layout).
#[test]
fn mamba_uses_state_spaces_names() {
    let w = weights_of("dsl-examples/mamba.seq", "d_model=64,n_layer=2,vocab=128");
    let expect: &[(&str, &[i64])] = &[
        ("backbone.embedding.weight", &[128, 64]),
        ("backbone.layers.0.norm.weight", &[64]),
        ("backbone.layers.0.mixer.in_proj.weight", &[256, 64]),
        ("backbone.layers.0.mixer.conv1d.weight", &[128, 1, 4]),
        ("backbone.layers.0.mixer.conv1d.bias", &[128]),
        ("backbone.layers.0.mixer.x_proj.weight", &[4 + 32, 128]),
        ("backbone.layers.0.mixer.dt_proj.weight", &[128, 4]),
        ("backbone.layers.0.mixer.dt_proj.bias", &[128]),
        ("backbone.layers.0.mixer.A_log", &[128, 16]),
        ("backbone.layers.0.mixer.D", &[128]),
        ("backbone.layers.0.mixer.out_proj.weight", &[64, 128]),
        ("backbone.layers.1.mixer.D", &[128]),
        ("backbone.norm_f.weight", &[64]),
    ];
    for (name, shape) in expect {
        let found = w.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(&found.1, shape, "{name}");
    }
    assert_eq!(w.len(), 1 + 2 * 10 + 1, "embedding, 10 tensors per layer, final norm");
}

/// Hugging Face Llama names, as candle-transformers' Llama reads them.
#[test]
fn transformer_uses_hugging_face_names() {
    let w =
        weights_of("dsl-examples/transformer.seq", "d_model=64,n_layer=1,n_heads=4,n_kv_heads=2,d_ff=128,vocab=100");
    let names: Vec<&str> = w.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.weight",
            "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.norm.weight",
            "lm_head.weight",
        ]
    );
    let k = &w.iter().find(|(n, _)| n == "model.layers.0.self_attn.k_proj.weight").unwrap().1;
    assert_eq!(k, &vec![32, 64], "two key/value heads of 16");
}

#[test]
fn every_example_checks() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples")).unwrap() {
        let path = entry.unwrap().path();
        let (session, result) = driver::check_bytes(&display_name(&path), &std::fs::read(&path).unwrap(), "");
        if let Err(d) = result {
            panic!("{}", render_text(&session.sources, &d, ColorChoice::Never));
        }
    }
}

#[test]
fn prelude_layers_check_with_small_configs() {
    // Each prelude layer in a one-layer model, so a change to the prelude that
    // breaks a layer fails here with the layer's name.
    let cases = [
        ("mamba(d)", 16),
        ("s4d(d, d_state = 8)", 16),
        ("attention(d, 4, n_kv_heads = 2, window = 4)", 16),
        ("mlp(d, 32)", 16),
        ("swiglu(d, 32)", 16),
        ("rglru(d)", 16),
        ("hyena(d, l_max = 64)", 16),
        ("statenorm(d, n_heads = 4)", 16),
    ];
    for (call, d) in cases {
        let src = format!(
            "model m {{\n  config {{\n    d = {d}\n  }}\n  input x: f32[B, L, d]\n  output y: f32[B, L, d]\n  weights {{\n    layer0: {call}\n  }}\n  forward {{\n    y = layer0(x)\n  }}\n}}\n"
        );
        let (session, result) = driver::check_bytes("case.seq", src.as_bytes(), "");
        if let Err(d) = result {
            panic!("{call}:\n{}", render_text(&session.sources, &d, ColorChoice::Never));
        }
    }
}

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/language.md")).unwrap();
    for code in seqc_compiler::diag::Code::ALL {
        let row = format!("| {code} | {} |", code.summary());
        assert!(doc.contains(&row), "docs/language.md lacks the row `{row}`");
    }
}
