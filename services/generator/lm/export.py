"""Fine-tuned weights -> a GGUF -> the converter's ONNX model directory.

The new GGUF is the base one with the changed tensors replaced by float32 (Q/K rows put
back in llama.cpp's order) and every other tensor and metadata key copied byte for byte,
so the existing converter builds the served model from it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..convert import GraphOptions, convert
from ..convert import weights as W
from ..convert.gguf_file import GGUFModel
from .model import NORMS, PROJECTIONS


def _hf_to_gguf(params: dict, spec) -> dict[str, np.ndarray]:
    out = {"token_embd.weight": params["token_embd"], "output_norm.weight": params["output_norm"]}
    if "output" in params:
        out["output.weight"] = params["output"]
    for i, layer in enumerate(params["layers"]):
        for name in (*NORMS, *PROJECTIONS):
            w = np.asarray(layer[name], np.float32)
            if name in ("attn_q", "attn_k"):
                w = W.permute(w, spec.n_heads if name == "attn_q" else spec.n_kv_heads)
            out[f"blk.{i}.{name}.weight"] = w
    return out


def write_gguf(base: Path, out: Path, params: dict, changed: set[str], name: str) -> Path:
    """``base`` with the tensors named in ``changed`` (GGUF names) taken from ``params``."""
    import gguf

    model = GGUFModel(base)
    reader = gguf.GGUFReader(base)
    replaced = _hf_to_gguf(params, model.spec)
    unknown = changed - replaced.keys()
    if unknown:
        raise ValueError(f"no such tensors: {sorted(unknown)}")
    arch = model.get("general.architecture")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for fld in reader.fields.values():
        if fld.name == gguf.Keys.General.ARCHITECTURE or fld.name.startswith("GGUF."):
            continue
        value = name if fld.name == gguf.Keys.General.NAME else fld.contents()
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(fld.name, value, vtype, sub_type=sub)
    for tensor in reader.tensors:
        if tensor.name in changed:
            writer.add_tensor(tensor.name, np.ascontiguousarray(replaced[tensor.name], np.float32))
        else:
            writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(out)
    return out


def changed_tensors(n_layers: int, projections, full: bool) -> set[str]:
    if full:
        names = {"token_embd.weight", "output_norm.weight"}
        return names | {
            f"blk.{i}.{n}.weight" for i in range(n_layers) for n in (*NORMS, *PROJECTIONS)
        }
    return {f"blk.{i}.{n}.weight" for i in range(n_layers) for n in projections}


def export_model(
    base: Path,
    params: dict,
    changed: set[str],
    out_dir: Path,
    name: str,
    options: GraphOptions | None = None,
    progress=lambda _: None,
) -> Path:
    """Write ``out_dir/<name>.gguf`` and convert it to the model directory ``out_dir/onnx``."""
    gguf_path = write_gguf(base, out_dir / f"{name}.gguf", params, changed, name)
    convert(gguf_path, out_dir / "onnx", options, name=name, force=True, progress=progress)
    return out_dir / "onnx"
