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
