//! `seqc run` on the compiled CPU path: the runtime crate, with the checked
//! tensors converted to and from the interpreter's f64 type the files are read as.

use seqc_compiler::ir::interp::Tensor;
use seqc_compiler::sema::CheckedModel;
use seqc_runtime::Model;
use std::collections::HashMap;

fn f32s(t: &Tensor) -> seqc_runtime::Tensor {
    seqc_runtime::Tensor::new(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
}

/// How to run a model.
pub struct How {
    /// Whole sequences; position by position from an empty state; or all
    /// positions at once from it.
    pub mode: crate::Mode,
    pub precision: seqc_runtime::Precision,
    /// The code generator, when compiling from source.
    pub codegen: seqc_runtime::Codegen,
}

/// Runs `m` (compiled now, or loaded from an artifact) on checked weights and
/// inputs.
pub fn run(
    m: CheckedModel,
    artifact: Option<Model>,
    weights: &HashMap<String, Tensor>,
    inputs: &HashMap<String, Tensor>,
    how: How,
) -> Result<Vec<(String, Tensor)>, String> {
    let order: Vec<String> = m.inputs.iter().map(|io| io.name.clone()).collect();
    let model = match artifact {
        Some(model) => model,
        None => Model::from_checked_with(m, how.codegen).map_err(|e| e.to_string())?,
    };
    let model = model
        .with_precision(how.precision)
        .with_weights(weights.iter().map(|(k, t)| (k.clone(), t.data.iter().map(|&x| x as f32).collect())).collect());
    let ins: Vec<(&str, seqc_runtime::Tensor)> = order.iter().map(|n| (n.as_str(), f32s(&inputs[n]))).collect();
    let batch = ins.first().map_or(1, |(_, t)| t.shape[0]);
    let outs = match how.mode {
        crate::Mode::Parallel => model.forward(&ins),
        crate::Mode::Step => model.new_state(batch).and_then(|mut state| model.forward_steps(&mut state, &ins)),
        crate::Mode::Chunk => model.new_state(batch).and_then(|mut state| model.forward_from(&mut state, &ins)),
        // The batch's sequences back to back in one row, and back.
        crate::Mode::Packed => {
            let len = ins.first().map_or(1, |(_, t)| t.shape[1]);
            let packed: Vec<(&str, seqc_runtime::Tensor)> =
                ins.into_iter().map(|(n, t)| (n, reshaped(t, 1, batch * len))).collect();
            model
                .forward_packed(&packed, &vec![len; batch])
                .map(|outs| outs.into_iter().map(|(n, t)| (n, reshaped(t, batch, len))).collect())
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(outs.into_iter().map(|(n, t)| (n, Tensor::new(t.shape, t.data.into_iter().map(f64::from).collect()))).collect())
}

/// `[B, L, ...]` as `[batch, len, ...]`: the same elements (sequences back to
/// back are a batch's rows in order).
fn reshaped(t: seqc_runtime::Tensor, batch: usize, len: usize) -> seqc_runtime::Tensor {
    let mut shape = t.shape;
    shape.splice(..2.min(shape.len()), [batch, len]);
    seqc_runtime::Tensor::new(shape, t.data)
}
