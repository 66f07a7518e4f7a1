"""GGUF -> model directory (ONNX decoder, tokenizer, configs), cached by a fingerprint.

The directory is what an Optimum ``text-generation-with-past`` export holds, so the engine
reads it the same way (and so can Optimum): ``model.onnx`` (+ ``model.onnx.data``),
``config.json``, ``generation_config.json``, ``tokenizer.json``, ``tokenizer_config.json``.
``marquee.json`` records where it came from; it is written last, so a directory without
it is an interrupted build and is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import onnx

from ..errors import ConversionError
from ..modeldir import MARQUEE_FILE, MODEL_FILE
from .gguf_file import GGUFModel
from .llama import GRAPH_VERSION, GraphOptions, build_graph
from .tokenizer import build_tokenizer

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def fingerprint(gguf_path: Path, options: GraphOptions) -> dict:
    """What the output depends on; a cached directory with the same one is reused."""
    stat = gguf_path.stat()
    return {
        "source": gguf_path.name,
        "source_bytes": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "graph_version": GRAPH_VERSION,
        "options": asdict(options),
    }


def is_current(out_dir: Path, expected: dict) -> bool:
    try:
        recorded = json.loads((out_dir / MARQUEE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded.get("fingerprint") == expected and (out_dir / MODEL_FILE).is_file()


def convert(
    gguf_path: Path,
    out_dir: Path,
    options: GraphOptions | None = None,
    *,
    name: str | None = None,
    force: bool = False,
    progress: Progress = lambda _: None,
) -> bool:
    """Write the model directory for ``gguf_path`` into ``out_dir``.

    ``name`` is the model id replies carry (default: the GGUF's file name, without
    ``.gguf``). Returns False when ``out_dir`` already held this very conversion.
    The new directory is assembled beside ``out_dir`` and renamed into place, so readers
    never see half a model.
    """
    options = options or GraphOptions()
    gguf_path = gguf_path.resolve()
    if not gguf_path.is_file():
        raise ConversionError(f"no GGUF file at {gguf_path}")
    name = name or gguf_path.stem
    expected = fingerprint(gguf_path, options) | {"name": name}
    if not force and is_current(out_dir, expected):
        return False
    started = time.monotonic()
    progress(f"reading {gguf_path.name}")
    model = GGUFModel(gguf_path)
    spec = model.spec
    progress(
        f"converting {spec.name}: {spec.n_layers} layers, hidden {spec.hidden}, "
        f"vocab {spec.vocab}, weights {options.weights}"
    )
    tokenizer, special = build_tokenizer(model)
    graph = build_graph(model, options)
    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        progress(f"writing the ONNX graph ({_size(graph)} of weights)")
        onnx.save_model(
            graph,
            staging / MODEL_FILE,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{MODEL_FILE}.data",
            size_threshold=1024,
        )
        tokenizer.save(str(staging / "tokenizer.json"))
        chat_template = model.get("tokenizer.chat_template")
        _write_json(staging / "config.json", _hf_config(spec, special))
        _write_json(
            staging / "generation_config.json",
            {
                "bos_token_id": special.bos_id,
                "eos_token_id": special.eos_id,
                "pad_token_id": special.pad_id,
            },
        )
        _write_json(
            staging / "tokenizer_config.json",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": special.bos,
                "eos_token": special.eos,
                "pad_token": special.pad,
                "add_bos_token": special.add_bos,
                "model_max_length": spec.context_length,
                "chat_template": chat_template,
            },
        )
        _write_json(
            staging / MARQUEE_FILE,
            {
                "name": name,
                "description": spec.name,
                "converted_from": gguf_path.name,
                "weights": options.weights,
                "compute": options.compute,
                "head_compute": options.head_compute,
                "fingerprint": expected,
            },
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"wrote {out_dir} in {time.monotonic() - started:.0f} s")
    return True


def _hf_config(spec, special) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.ffn,
        "num_hidden_layers": spec.n_layers,
        "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.n_kv_heads,
        "head_dim": spec.head_dim,
        "max_position_embeddings": spec.context_length,
        "rms_norm_eps": spec.rms_eps,
        "rope_theta": spec.rope_theta,
        "vocab_size": spec.vocab,
        "tie_word_embeddings": spec.tied_embeddings,
        "bos_token_id": special.bos_id,
        "eos_token_id": special.eos_id,
        "pad_token_id": special.pad_id,
        "hidden_act": "silu",
    }


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _size(graph: onnx.ModelProto) -> str:
    total = sum(len(t.raw_data) for t in graph.graph.initializer)
    return f"{total / 2**20:,.0f} MiB"
