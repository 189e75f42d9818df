//! Tensors in safetensors files: checkpoints, inputs and outputs. Floats of any
//! stored width are read as f64 (f16 and bf16 through `half`); integers as ids.

use crate::ir::interp::Tensor;
use crate::syntax::ast::DType;
use safetensors::tensor::{Dtype, TensorView};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read `{0}`: {1}")]
    Read(String, std::io::Error),
    #[error("`{0}` is not a safetensors file: {1}")]
    Format(String, String),
    #[error("tensor `{name}` in `{file}` has dtype {dtype:?}, which seqc does not read")]
    Dtype { file: String, name: String, dtype: Dtype },
    #[error("cannot write `{0}`: {1}")]
    Write(String, String),
}

/// A tensor as stored: its dtype and its values.
#[derive(Clone, Debug)]
pub struct Stored {
    pub dtype: DType,
    pub tensor: Tensor,
}

/// Every tensor of a safetensors file, in the file's order.
pub fn read(path: &Path) -> Result<Vec<(String, Stored)>, CheckpointError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::Read(file.clone(), e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| CheckpointError::Format(file.clone(), e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.iter() {
        let data = view.data();
        let (dtype, values): (DType, Vec<f64>) = match view.dtype() {
            Dtype::F32 => (
                DType::F32,
                data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
            ),
            Dtype::F64 => {
                (DType::F32, data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
            }
            Dtype::F16 => {
                (DType::F16, data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64()).collect())
            }
            Dtype::BF16 => {
                (DType::Bf16, data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64()).collect())
            }
            Dtype::I32 => (
                DType::I32,
                data.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
            ),
            Dtype::I64 => (
                DType::I64,
                data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64).collect(),
            ),
            other => return Err(CheckpointError::Dtype { file, name: name.to_string(), dtype: other }),
        };
        out.push((name.to_string(), Stored { dtype, tensor: Tensor::new(view.shape().to_vec(), values) }));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes tensors, each in the given dtype.
pub fn write(path: &Path, tensors: &[(String, DType, &Tensor)]) -> Result<(), CheckpointError> {
    let file = path.display().to_string();
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, dtype, t)| {
            let (st, bytes): (Dtype, Vec<u8>) = match dtype {
                DType::F32 => (Dtype::F32, t.data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect()),
                DType::F16 => (Dtype::F16, t.data.iter().flat_map(|&v| half::f16::from_f64(v).to_le_bytes()).collect()),
                DType::Bf16 => {
                    (Dtype::BF16, t.data.iter().flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()).collect())
                }
                DType::I32 => (Dtype::I32, t.data.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()),
                DType::I64 => (Dtype::I64, t.data.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect()),
            };
            (name.clone(), st, t.shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = encoded
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| CheckpointError::Write(file.clone(), e.to_string()))?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| CheckpointError::Write(file, e.to_string()))
}
