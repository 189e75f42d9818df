#!/usr/bin/env bash
# The main job on a fresh machine: check an example model, make weights and random
# inputs for it, and run its compiled code, in parallel and in step mode, and in
# parallel mode with LLVM's code.
#
#   scripts/run-example.sh [MODEL.seq] [CONFIG]
#
# Defaults: dsl-examples/mamba.seq at a small config (d_model=64, 2 layers).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-dsl-examples/mamba.seq}
config=${2:-d_model=64,n_layer=2,vocab=256}
out=target/example
mkdir -p "$out"
cargo build --release --locked --quiet
seqc=target/release/seqc
"$seqc" check --config "$config" "$model"
"$seqc" init "$model" --config "$config" --seed 1 -o "$out/weights.safetensors" \
    --random-input "$out/input.safetensors" --batch 1 --seq-len 32
"$seqc" run "$model" --config "$config" --weights "$out/weights.safetensors" \
    --input "$out/input.safetensors" -o "$out/output.safetensors" --check-finite
"$seqc" run "$model" --config "$config" --weights "$out/weights.safetensors" \
    --input "$out/input.safetensors" -o "$out/output-step.safetensors" --mode step --check-finite
# The same with LLVM's code (the second CPU code generator).
"$seqc" run "$model" --config "$config" --weights "$out/weights.safetensors" \
    --input "$out/input.safetensors" -o "$out/output-llvm.safetensors" --codegen llvm --check-finite
echo "ran $model: outputs in $out/output.safetensors (parallel), $out/output-step.safetensors (step)" \
    "and $out/output-llvm.safetensors (parallel, LLVM's code)"
