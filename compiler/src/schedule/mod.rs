//! Scheduling: the fused graph (parallel or step) to the kernel IR.

pub mod decompose;
