use seqc_compiler::diag::FileId;
use seqc_compiler::syntax;

#[test]
fn prelude_parses() {
    let (file, diags) = syntax::parse(FileId(0), seqc_compiler::prelude::SOURCE);
    for d in &diags { eprintln!("{:?}", d); }
    assert!(diags.is_empty());
    let printed = syntax::print::print_file(&file, seqc_compiler::prelude::SOURCE);
    println!("{printed}");
    let (file2, diags2) = syntax::parse(FileId(0), &printed);
    assert!(diags2.is_empty(), "{diags2:?}");
    let printed2 = syntax::print::print_file(&file2, &printed);
    assert_eq!(printed, printed2);
}
