//! Shared by the integration tests: small configs of the examples, so graphs and
//! interpreter runs stay small and their snapshots readable.

/// Every example, with a config small enough to run in the interpreter.
pub const SMALL: &[(&str, &str)] = &[
    ("mamba.seq", "d_model=16,n_layer=2,vocab=50,d_state=4"),
    ("transformer.seq", "d_model=16,n_layer=1,n_heads=4,n_kv_heads=2,d_ff=32,vocab=50"),
    ("s4d.seq", "d_input=3,d_model=8,d_state=4,n_layer=2,d_output=2"),
    ("hyena.seq", "d_model=8,n_layer=1,vocab=30,l_max=16"),
    ("griffin.seq", "d_model=16,d_rnn=16,n_heads=2,window=2,n_group=1,d_ff=24,vocab=30"),
    ("hybrid.seq", "d_model=16,n_group=1,n_heads=4,n_kv_heads=2,d_ff=24,vocab=30,d_state=4"),
    ("gla.seq", "d_model=16,n_heads=2,n_layer=1,vocab=30"),
];

/// The small config of an example file.
#[allow(dead_code)]
pub fn small_config(file: &str) -> &'static str {
    SMALL.iter().find(|(n, _)| *n == file).map(|(_, c)| *c).unwrap_or_else(|| panic!("{file} is not in SMALL"))
}

/// Every example at its small config, then every case in `tests/cases/` (sorted),
/// checked: the models the conformance-style tests run.
#[allow(dead_code)]
pub fn all_models() -> Vec<(String, seqc_compiler::sema::CheckedModel)> {
    use seqc_compiler::sema::Checked;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(String, std::path::PathBuf, &str)> =
        SMALL.iter().map(|(f, cfg)| (f.to_string(), root.join("dsl-examples").join(f), *cfg)).collect();
    let mut cases: Vec<_> = std::fs::read_dir(root.join("tests/cases")).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    for p in cases {
        files.push((p.file_name().unwrap().to_string_lossy().into_owned(), p, ""));
    }
    files
        .into_iter()
        .map(|(name, path, cfg)| {
            let (_, r) = seqc_compiler::driver::check_bytes(&name, &std::fs::read(&path).unwrap(), cfg);
            let Ok(Checked::Model(m)) = r else { panic!("{name} checks") };
            (name, m)
        })
        .collect()
}
