#!/usr/bin/env bash
# seqc against llama.cpp on the same random Mamba weights, in one script and on
# one machine: the issue's three Mamba rows (prefill of the 768 x 2-layer model
# at L = 2048, prefill of the 130M shape at L = 512, decode of the 130M shape at
# B = 1), with seqc's code from both CPU code generators.
#
#   scripts/vs-llama-cpp.sh
#
# Needs target/llama.cpp with llama-bench built (scripts/fetch-llama-cpp.sh),
# numpy, tqdm and pyyaml. llama.cpp reads an F32 GGUF written from the very
# safetensors file seqc reads (scripts/mamba-to-gguf.py). Both use two threads.
# llama.cpp's prefill computes the logits of the last position only; seqc's
# computes them at every position (more work for seqc).
set -euo pipefail
cd "$(dirname "$0")/.."
llama=target/llama.cpp
bench=$llama/build/bin/llama-bench
[ -x "$bench" ] || { echo "no $bench: run scripts/fetch-llama-cpp.sh first" >&2; exit 1; }
cargo build --release --locked --quiet
seqc=target/release/seqc
out=target/vs-llama
mkdir -p "$out"
export PYTHONPATH=$llama/gguf-py

# weights NAME CONFIG: the same random weights as safetensors and as GGUF.
weights() {
    "$seqc" init dsl-examples/mamba.seq --config "$2" --seed 7 -o "$out/$1.safetensors" >/dev/null
    python3 scripts/mamba-to-gguf.py "$out/$1.safetensors" "$out/$1.gguf" >/dev/null
}

# llama_rate NAME ARGS...: llama-bench's mean tokens per second.
llama_rate() {
    local name=$1
    shift
    "$bench" -m "$out/$name.gguf" -t 2 -r 3 -o json "$@" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["avg_ts"])'
}

# seqc_value NAME CONFIG KEY ARGS...: one figure of `seqc bench --json`.
seqc_value() {
    local name=$1 config=$2 key=$3
    shift 3
    "$seqc" bench dsl-examples/mamba.seq --config "$config" --weights "$out/$name.safetensors" --json "$@" |
        python3 -c "import json, sys; print(json.load(sys.stdin)['$key'])"
}

# row WHAT SEQC LLAMA: both figures and their ratio (LOWER_IS_BETTER=1 for ms).
row() {
    python3 -c "
import sys
what, ours, theirs, lower = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == '1'
ratio = theirs / ours if lower else ours / theirs
print(f'{what:<44} {ours:>10.1f} {theirs:>10.1f} {ratio:>7.2f}x')
" "$@"
}

small=d_model=768,n_layer=2,vocab=1024
weights small "$small"
weights m130 ""

echo "llama.cpp: $("$bench" --version 2>&1 | head -1)"
printf '%-44s %10s %10s %8s\n' "row (higher ratio: seqc faster)" seqc llama.cpp ratio
p_small=$(llama_rate small -p 2048 -n 0)
p_130=$(llama_rate m130 -p 512 -n 0)
d_130=$(python3 -c "print(1000 / $(llama_rate m130 -p 0 -n 64))")
for codegen in cranelift llvm; do
    row "mamba 768x2 prefill L=2048 tok/s ($codegen)" \
        "$(seqc_value small "$small" tokens_per_s --seq-len 2048 --iters 3 --codegen $codegen)" "$p_small" 0
    row "mamba 130M prefill L=512 tok/s ($codegen)" \
        "$(seqc_value m130 "" tokens_per_s --seq-len 512 --iters 2 --codegen $codegen)" "$p_130" 0
    row "mamba 130M decode B=1 ms/token ($codegen)" \
        "$(seqc_value m130 "" ms_per_token --seq-len 16 --mode decode --iters 2 --codegen $codegen)" "$d_130" 1
done
