#!/usr/bin/env python3
"""Write a Mamba checkpoint in the state-spaces layout (what `seqc init
dsl-examples/mamba.seq` writes) as an F32 GGUF file for llama.cpp.

    mamba-to-gguf.py WEIGHTS.safetensors OUT.gguf

Needs numpy and llama.cpp's `gguf-py` on PYTHONPATH. The shapes come from the
tensors themselves, so any `--config` of mamba.seq converts. llama.cpp gets no
tokenizer ("no_vocab" with the vocabulary's size): its benchmark feeds random
token ids, as `seqc bench` does.
"""

import json
import struct
import sys

import numpy as np
import gguf

DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            sys.exit(f"{name}: dtype {info['dtype']} is not converted (F32 or F16 only)")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"]).astype(np.float32)
    return tensors


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    t = read_safetensors(source)

    vocab, d_model = t["backbone.embedding.weight"].shape
    n_layer = sum(1 for name in t if name.endswith(".mixer.D"))
    first = "backbone.layers.0.mixer."
    d_inner = t[first + "D"].shape[0]
    d_state = t[first + "A_log"].shape[1]
    d_conv = t[first + "conv1d.weight"].shape[-1]
    dt_rank = t[first + "dt_proj.weight"].shape[1]

    w = gguf.GGUFWriter(target, "mamba")
    w.add_context_length(2**20)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(n_layer)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_ssm_dt_b_c_rms(False)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("no_vocab")
    w.add_vocab_size(vocab)

    # The output head is tied to the embedding: llama.cpp reuses token_embd
    # when `output.weight` is absent.
    w.add_tensor("token_embd.weight", t["backbone.embedding.weight"])
    w.add_tensor("output_norm.weight", t["backbone.norm_f.weight"])
    for i in range(n_layer):
        m = f"backbone.layers.{i}.mixer."
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", t[f"backbone.layers.{i}.norm.weight"])
        w.add_tensor(b + "ssm_in.weight", t[m + "in_proj.weight"])
        w.add_tensor(b + "ssm_conv1d.weight", t[m + "conv1d.weight"].reshape(d_inner, d_conv))
        w.add_tensor(b + "ssm_conv1d.bias", t[m + "conv1d.bias"])
        w.add_tensor(b + "ssm_x.weight", t[m + "x_proj.weight"])
        w.add_tensor(b + "ssm_dt.weight", t[m + "dt_proj.weight"])
        w.add_tensor(b + "ssm_dt.bias", t[m + "dt_proj.bias"])
        # llama.cpp stores A itself, as the state-spaces code computes it.
        w.add_tensor(b + "ssm_a", -np.exp(t[m + "A_log"]))
        w.add_tensor(b + "ssm_d", t[m + "D"])
        w.add_tensor(b + "ssm_out.weight", t[m + "out_proj.weight"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {target}: {n_layer} layers, d_model {d_model}, vocab {vocab}")


if __name__ == "__main__":
    main()
