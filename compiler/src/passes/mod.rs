//! Graph passes, one file each, run in the order of [`PASSES`]. A pass's name is
//! the same on the command line (`seqc compile --emit graph --after NAME`), in
//! its file and in its snapshots.
//!
//! Invariant: every pass keeps the graph valid (`ir::verify`) and preserves the
//! reference interpreter's outputs; the tests check both on every example.

mod attention_fusion;
mod canonicalize;
mod cse;
mod dce;
mod elementwise_fusion;
mod inline;
mod licm;
pub mod linear_recurrence;
pub mod packed_derivation;
pub mod prologue;
mod scan_fusion;
pub mod step_derivation;

use crate::ir::{verify::verify, Graph};

/// A graph pass.
pub struct Pass {
    pub name: &'static str,
    pub summary: &'static str,
    pub run: fn(&mut Graph),
}

/// The pipeline, in order.
pub const PASSES: &[Pass] = &[
    Pass { name: "canonicalize", summary: "fold constants in bodies, inline scalar constants", run: canonicalize::run },
    Pass { name: "cse", summary: "merge identical nodes", run: cse::run },
    Pass {
        name: "elementwise-fusion",
        summary: "inline element-wise producers into their consumers",
        run: elementwise_fusion::run,
    },
    Pass {
        name: "attention-fusion",
        summary: "scores, masked softmax and weighted sum into one attention op",
        run: attention_fusion::run,
    },
    Pass { name: "scan-fusion", summary: "inline point-wise producers into scan bodies", run: scan_fusion::run },
    Pass { name: "licm", summary: "hoist loop-invariant terms out of scans", run: licm::run },
    Pass {
        name: "linear-recurrence",
        summary: "mark linear and time-invariant scan states",
        run: linear_recurrence::run,
    },
    Pass { name: "dce", summary: "remove nodes no output needs", run: dce::run },
];

/// Runs the passes up to and including `after` (all of them when `None`),
/// verifying the graph after each. `Err` is a compiler bug: the pass and why.
pub fn run_until(g: &mut Graph, after: Option<&str>) -> Result<(), String> {
    if let Some(name) = after {
        if name != "lower" && !PASSES.iter().any(|p| p.name == name) {
            return Err(format!("unknown pass `{name}`"));
        }
        if name == "lower" {
            return Ok(());
        }
    }
    for pass in PASSES {
        (pass.run)(g);
        verify(g).map_err(|e| format!("after pass `{}`: {e}", pass.name))?;
        if after == Some(pass.name) {
            break;
        }
    }
    Ok(())
}

/// The names `--after` accepts: `lower` (the graph as lowered) and each pass.
pub fn names() -> Vec<&'static str> {
    std::iter::once("lower").chain(PASSES.iter().map(|p| p.name)).collect()
}
