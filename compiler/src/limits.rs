//! Limits that keep any input, however malformed, from making the compiler
//! panic, hang or exhaust memory. Each has its own diagnostic code (E05xx).

/// Brackets of any kind nested deeper than this are refused before parsing.
pub const MAX_NESTING: usize = 256;
/// Height of any expression tree (operators chain without brackets).
pub const MAX_EXPR_DEPTH: usize = 256;
/// Source files larger than this are refused (bytes).
pub const MAX_SOURCE_BYTES: usize = 16 << 20;
/// Repetitions of one weight group (`layers[n]`).
pub const MAX_GROUP_COUNT: i64 = 4096;
/// Layer instances in one model, all groups unrolled.
pub const MAX_INSTANCES: usize = 20_000;
/// Elements in any tensor whose size the config fixes (2^36, 256 GiB of f32).
pub const MAX_TENSOR_ELEMENTS: i128 = 1 << 36;
/// Declarations unrolled plus statements checked, all layers and groups
/// unrolled: bounds the checker's time on any input.
pub const MAX_WORK: usize = 50_000;
