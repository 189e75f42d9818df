//! Analyses of the graph IR: side tables computed from a graph, never writing
//! into it.

pub mod cost;
pub mod count;
pub mod state;
