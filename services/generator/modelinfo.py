"""What a model directory holds, read without loading the weights (``marquee model info``)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import ModelError
from .modeldir import load_model_config
from .tokenizer import Tokenizer

_PAST = re.compile(r"^past_key_values\.(\d+)\.key$")


def _compute(build: dict[str, Any]) -> str:
    if build.get("weights") == "fp32":
        return "fp32"
    if "head_compute" not in build:
        return "-"
    return f"layers {build['compute']}, vocabulary projection {build['head_compute']}"


def describe(path: Path) -> dict[str, Any]:
    import onnx

    config = load_model_config(path)
    try:
        graph = onnx.load(str(config.onnx_path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{config.onnx_path} is not a readable ONNX model: {exc}") from None
    inputs = {i.name: i for i in graph.input}
    pasts = [n for n in inputs if _PAST.match(n)]
    if not pasts:
        raise ModelError(
            f"{config.onnx_path} has no past_key_values.* inputs (not a decoder with past)"
        )
    dims = [d.dim_value or d.dim_param for d in inputs[pasts[0]].type.tensor_type.shape.dim]
    tokenizer = Tokenizer(config.tokenizer_path)
    weight_files = [config.onnx_path, *config.path.glob(f"{config.onnx_path.name}.data")]
    ops = Counter(node.op_type for node in graph.node)
    build = config.build
    return {
        "name": config.name,
        "directory": str(config.path.resolve()),
        "built from": build.get("converted_from", "-"),
        "weights": build.get("weights", "-"),
        "compute": _compute(build),
        "decoder": config.onnx_path.name,
        "size": f"{sum(f.stat().st_size for f in weight_files) / 2**20:,.0f} MiB",
        "layers": len(pasts),
        "kv heads": dims[1],
        "head size": dims[3],
        "inputs": [n for n in inputs if not n.startswith("past_key_values.")],
        "context length": config.context_length,
        "vocabulary": tokenizer.vocab_size,
        "eos token ids": list(config.eos_token_ids),
        "chat template": "yes" if config.chat_template else "no (prompts are plain text)",
        "main ops": [f"{op} x{n}" for op, n in ops.most_common(6)],
    }
