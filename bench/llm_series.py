"""A llama-shaped GGUF and an ONNX model with external data, each in two versions whose bytes shift.

    .venv/bin/python bench/llm_series.py /tmp/llm
    .venv/bin/python tools/dedup_stats.py local /tmp/llm/gguf/v1.gguf /tmp/llm/gguf/v2.gguf \\
        --chunker auto --chunker fixed --chunker cdc --chunk-size 4MiB --sample 0.05
    .venv/bin/python tools/dedup_stats.py local /tmp/llm/onnx-v1 /tmp/llm/onnx-v2 --chunker auto ...

GGUF (written by llama.cpp's gguf package): 8 llama blocks of random float16 weights (~168 MiB);
v2 adds a chat template to the metadata, which shifts every tensor. ONNX (the onnx package): the
same weights as float32 in ``model.onnx.data`` beside ``model.onnx``; v2 inserts a 1.2 MB tensor
before them all. Nothing is downloaded; needs the dev extras (gguf, onnx).
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def llama_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"token_embd.weight": rng.standard_normal((8000, 1024), dtype=np.float32).astype(np.float16)}
    shapes = {"attn_q": (1024, 1024), "attn_k": (1024, 1024), "attn_v": (1024, 1024), "attn_output": (1024, 1024),
              "ffn_up": (2816, 1024), "ffn_down": (1024, 2816), "attn_norm": (1024,), "ffn_norm": (1024,)}
    for layer in range(8):
        for name, shape in shapes.items():
            out[f"blk.{layer}.{name}.weight"] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
    return out


def write_gguf(path: str, tensors: dict[str, np.ndarray], chat_template: str = "") -> None:
    import gguf

    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(2048)
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(8000)])
    if chat_template:
        writer.add_chat_template(chat_template)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_onnx(directory: str, tensors: dict[str, np.ndarray], inserted: np.ndarray | None = None) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    os.makedirs(directory, exist_ok=True)
    items = [(k, v.astype(np.float32)) for k, v in tensors.items()]
    if inserted is not None:
        items.insert(0, ("inserted", inserted))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in items])
    onnx.save(helper.make_model(graph), os.path.join(directory, "model.onnx"), save_as_external_data=True,
              location="model.onnx.data", size_threshold=1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    out = parser.parse_args().out_dir
    tensors = llama_tensors()
    os.makedirs(os.path.join(out, "gguf"), exist_ok=True)
    write_gguf(os.path.join(out, "gguf", "v1.gguf"), tensors)
    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    write_gguf(os.path.join(out, "gguf", "v2.gguf"), tensors, template)
    write_onnx(os.path.join(out, "onnx-v1"), tensors)
    inserted = np.random.default_rng(1).standard_normal(300_000).astype(np.float32)
    write_onnx(os.path.join(out, "onnx-v2"), tensors, inserted)


if __name__ == "__main__":
    main()
