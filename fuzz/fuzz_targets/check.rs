//! Lex + parse + check of arbitrary bytes: must never panic, hang or run away
//! with memory. Also formats what parses and checks the printed text re-parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seqc_compiler::driver::{check_bytes, Session};
use seqc_compiler::syntax;

fuzz_target!(|data: &[u8]| {
    let (session, _) = check_bytes("fuzz.seq", data, "");
    let _ = session.sources.get(session.file).line_col(data.len());
    if let Ok(ast) = session.parse() {
        let printed = syntax::print::print_file(&ast, session.text());
        let (again, ok) = Session::new("printed.seq", printed.as_bytes());
        assert!(ok.is_ok());
        assert!(again.parse().is_ok(), "printed text must parse again:\n{printed}");
    }
});
