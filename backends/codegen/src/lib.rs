//! What seqc's code generators share: the element functions (`exp`, `log`,
//! `tanh`, ...) written once over any builder ([`math`]), and the native
//! kernel ABI with the host functions kernels call ([`native`]).

pub mod math;
pub mod native;
