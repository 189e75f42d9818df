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
