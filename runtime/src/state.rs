//! A step-mode state: the tensors the step graph carries, by the names the
//! compiler derived (`backbone.layers.0.mixer:h`, `model.layers.0.self_attn:%12`).
//! Every layer kind's state is handled the same way: cloned, saved, restored.

use crate::Error;
use seqc_compiler::ir::interp::Tensor as F64Tensor;
use seqc_compiler::ir::kernel::eval::int;
use seqc_compiler::ir::kernel::{KernelModule, Role};
use seqc_compiler::syntax::ast::DType;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct State {
    pub(crate) batch: usize,
    pub(crate) position: usize,
    tensors: Vec<(String, Vec<f32>)>,
    /// The storage of the state before the last step, reused for the next
    /// (a step writes the new state here, then the two swap).
    spare: Vec<Vec<f32>>,
}

/// Two states are equal when they hold the same sequences at the same point
/// (whatever their spare storage holds).
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        (self.batch, self.position, &self.tensors) == (other.batch, other.position, &other.tensors)
    }
}

impl State {
    pub(crate) fn new(m: &KernelModule, batch: usize) -> State {
        let dims: Vec<i64> = m
            .dims
            .iter()
            .map(|d| match d.as_str() {
                "B" => batch as i64,
                "P" => 1,
                _ => 0,
            })
            .collect();
        let tensors = m
            .buffers
            .iter()
            .filter_map(|b| match &b.role {
                Role::State { name, init } => Some((name.clone(), vec![*init as f32; int(&b.size, &dims) as usize])),
                _ => None,
            })
            .collect();
        State { batch, position: 0, tensors, spare: Vec::new() }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Storage for the next state's `count` tensors, to be given back to
    /// [`State::advance`] holding it.
    pub(crate) fn take_spare(&mut self, count: usize) -> Vec<Vec<f32>> {
        let mut spare = std::mem::take(&mut self.spare);
        spare.resize_with(count, Vec::new);
        spare
    }

    /// Takes the next states of a run of `len` positions.
    pub(crate) fn advance(&mut self, m: &KernelModule, mut next: Vec<Vec<f32>>, len: usize) {
        for ((name, _), data) in m.next_states.iter().zip(next.iter_mut()) {
            if let Some(slot) = self.tensors.iter_mut().find(|(n, _)| n == name) {
                std::mem::swap(&mut slot.1, data);
            }
        }
        self.spare = next;
        self.position += len;
    }

    /// Positions consumed so far.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Bytes held: fixed for scans and convolution windows, growing by one
    /// position per step for key/value caches without a window.
    pub fn bytes(&self) -> usize {
        self.tensors.iter().map(|(_, v)| v.len() * 4).sum()
    }

    /// The state's tensors, by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.tensors.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Writes the state to a safetensors file (its tensors flat, and the batch
    /// size and position as `@batch` and `@position`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let mut ts: Vec<(String, F64Tensor)> = self
            .tensors
            .iter()
            .map(|(n, v)| (n.clone(), F64Tensor::new(vec![v.len()], v.iter().map(|&x| x as f64).collect())))
            .collect();
        ts.push(("@batch".into(), F64Tensor::new(vec![1], vec![self.batch as f64])));
        ts.push(("@position".into(), F64Tensor::new(vec![1], vec![self.position as f64])));
        let refs: Vec<(String, DType, &F64Tensor)> =
            ts.iter().map(|(n, t)| (n.clone(), if n.starts_with('@') { DType::I64 } else { DType::F32 }, t)).collect();
        seqc_compiler::checkpoint::write(path.as_ref(), &refs).map_err(|e| Error::Io(e.to_string()))
    }

    /// Reads a state written by [`State::save`]; `like` (a new state of the same
    /// model) gives the names it must have.
    pub fn load(path: impl AsRef<Path>, like: &State) -> Result<State, Error> {
        let stored = seqc_compiler::checkpoint::read(path.as_ref()).map_err(|e| Error::Io(e.to_string()))?;
        let scalar = |name: &str| {
            stored
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, s)| s.tensor.data.first().copied())
                .map(|v| v as usize)
                .ok_or_else(|| Error::Input(format!("the state file has no `{name}`")))
        };
        let (batch, position) = (scalar("@batch")?, scalar("@position")?);
        let mut tensors = Vec::new();
        for (name, _) in &like.tensors {
            let s = stored
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Error::Input(format!("the state file has no `{name}`")))?;
            tensors.push((name.clone(), s.1.tensor.data.iter().map(|&x| x as f32).collect()));
        }
        if stored.len() != like.tensors.len() + 2 {
            return Err(Error::Input("the state file holds tensors this model's state does not have".into()));
        }
        Ok(State { batch, position, tensors, spare: Vec::new() })
    }
}
