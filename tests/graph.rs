//! The graph IR of every example (small configs): snapshots of its text form, and
//! the verifier's invariants.

use seqc_compiler::diag::{render_text, ColorChoice};
use seqc_compiler::driver;
use seqc_compiler::ir::{print::print, verify::verify};
use seqc_compiler::sema::Checked;

mod common;

#[test]
fn example_graphs() {
    insta::glob!("../dsl-examples", "*.seq", |path| {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let (session, result) = driver::check_bytes(&file, &std::fs::read(path).unwrap(), common::small_config(&file));
        let m = match result {
            Ok(Checked::Model(m)) => m,
            Ok(_) => panic!("no model"),
            Err(d) => panic!("{}", render_text(&session.sources, &d, ColorChoice::Never)),
        };
        verify(&m.graph).unwrap_or_else(|e| panic!("{file}: {e}"));
        insta::assert_snapshot!(print(&m.graph));
    });
}

/// The text form round-trips: print, parse, print gives the same text, for every
/// example and case, as lowered and after all passes; the parsed graph verifies.
#[test]
fn text_form_round_trips() {
    use seqc_compiler::ir::parse::parse;
    let mut sources: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for (file, config) in common::SMALL {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples").join(file);
        sources.push((file.to_string(), std::fs::read(path).unwrap(), config));
    }
    for entry in std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")).unwrap() {
        let path = entry.unwrap().path();
        sources.push((path.display().to_string(), std::fs::read(&path).unwrap(), ""));
    }
    for (name, bytes, config) in sources {
        let Ok(Checked::Model(mut m)) = driver::check_bytes(&name, &bytes, config).1 else { panic!("{name} checks") };
        for stage in ["lowered", "after all passes"] {
            if stage != "lowered" {
                seqc_compiler::passes::run_until(&mut m.graph, None).unwrap();
            }
            let text = print(&m.graph);
            let parsed = parse(&text).unwrap_or_else(|e| panic!("{name} ({stage}): {e}\n{text}"));
            verify(&parsed).unwrap_or_else(|e| panic!("{name} ({stage}): parsed graph: {e}"));
            assert_eq!(print(&parsed), text, "{name} ({stage}): the text changed through parsing");
        }
    }
}

#[test]
fn malformed_graph_text_is_an_error() {
    use seqc_compiler::ir::parse::parse;
    for (text, line) in [
        ("", 1),
        ("graph g {\n  %0 = bogus %1 : f32[2]\n}\n", 2),
        ("graph g {\n  %0 = input \"x\" : f32[B, L]\n  %1 = generic [i in B] (%7) = %7[i] : f32[B]\n}\n", 3),
        ("graph g {\n  %0 = input \"x\" : f32[B]\n  %1 = generic [i in B] (%0) = %0[i] + : f32[B]\n}\n", 3),
        ("graph g {\n  %0 = input \"x\" : f32[B]\n", 2),
    ] {
        let e = parse(text).expect_err(text);
        assert_eq!(e.line, line, "{text}: {e}");
    }
}
