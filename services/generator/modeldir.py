"""A model directory: ONNX decoder + ``tokenizer.json`` + configs, read into one object.

The layout is an Optimum ``text-generation-with-past`` export's, which is also what
``marquee model build-default`` writes: ``model.onnx`` (or the older
``decoder_model_merged.onnx``), ``config.json`` (context length), ``generation_config.json``
(eos ids), ``tokenizer.json`` and ``tokenizer_config.json`` (chat template, special
tokens; or ``chat_template.jinja`` beside it). ``marquee.json`` is ours and optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

MODEL_FILE = "model.onnx"
MARQUEE_FILE = "marquee.json"
_ONNX_NAMES = (MODEL_FILE, "decoder_model_merged.onnx")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    onnx_path: Path
    tokenizer_path: Path
    name: str
    context_length: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    add_bos_token: bool
    chat_template: str | None
    #: ``marquee.json`` when we built the directory (source, weights, fingerprint).
    build: dict[str, Any] = field(default_factory=dict)


def load_model_config(path: Path) -> ModelConfig:
    """Read ``path``; a :class:`ModelError` says what is missing and how to get it."""
    if not path.is_dir():
        raise ModelError(
            f"no model directory at {path}: run `marquee model build-default` "
            "(or point MARQUEE_GENERATOR_MODEL_DIR at an Optimum text-generation-with-past export)"
        )
    onnx_path = next((path / n for n in _ONNX_NAMES if (path / n).is_file()), None)
    if onnx_path is None:
        raise ModelError(
            f"{path} has no {' or '.join(_ONNX_NAMES)}: not a model directory "
            "(rebuild it with `marquee model build-default --force`)"
        )
    tokenizer_path = path / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelError(f"{path} has no tokenizer.json (export the tokenizer with the model)")
    config = _read_json(path / "config.json")
    generation = _read_json(path / "generation_config.json")
    tok_config = _read_json(path / "tokenizer_config.json")
    build = _read_json(path / MARQUEE_FILE)

    context = next((int(config[k]) for k in _CONTEXT_KEYS if config.get(k)), None)
    if context is None:
        limit = tok_config.get("model_max_length")
        context = int(limit) if isinstance(limit, int | float) and limit < 10**7 else None
    if context is None:
        raise ModelError(
            f"{path}/config.json states no context length ({', '.join(_CONTEXT_KEYS)})"
        )

    eos = generation.get("eos_token_id", config.get("eos_token_id"))
    eos_ids = tuple(int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None)
    pad = generation.get("pad_token_id", config.get("pad_token_id"))
    return ModelConfig(
        path=path,
        onnx_path=onnx_path,
        tokenizer_path=tokenizer_path,
        name=str(build.get("name") or config.get("_name_or_path") or path.name),
        context_length=context,
        eos_token_ids=eos_ids,
        pad_token_id=None if pad is None else int(pad[0] if isinstance(pad, list) else pad),
        bos_token=_token_text(tok_config.get("bos_token")),
        eos_token=_token_text(tok_config.get("eos_token")),
        add_bos_token=bool(tok_config.get("add_bos_token", False)),
        chat_template=_chat_template(path, tok_config),
        build=build,
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path} is not a JSON object")
    return doc


def _token_text(value: Any) -> str | None:
    # transformers writes special tokens either as strings or as AddedToken dicts.
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(path: Path, tok_config: dict[str, Any]) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None
