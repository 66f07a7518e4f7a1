"""LoRA adapters: low-rank updates ``W + (alpha / r) B A`` beside frozen projections.

``A`` starts small and random, ``B`` at zero, so an untrained adapter changes nothing
(Hu et al., 2021). Merging writes the update into the weights: the merged model is a
plain Llama that the converter turns into ONNX like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import PROJECTIONS

#: Short names on the command line -> GGUF projection names.
TARGETS = {
    "q": "attn_q",
    "k": "attn_k",
    "v": "attn_v",
    "o": "attn_output",
    "gate": "ffn_gate",
    "up": "ffn_up",
    "down": "ffn_down",
}


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q", "k", "v", "o")

    def __post_init__(self) -> None:
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(
                f"LoRA targets must be among {', '.join(TARGETS)}; got {unknown or 'none'}"
            )
        if self.rank < 1:
            raise ValueError("LoRA rank must be at least 1")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def projections(self) -> tuple[str, ...]:
        return tuple(TARGETS[t] for t in self.targets)


def init_adapters(params: dict, config: LoraConfig, seed: int = 0) -> list[dict]:
    """``[{projection: (A [r, in], B [out, r])}]`` per layer, numpy float32."""
    rng = np.random.default_rng(seed)
    adapters = []
    for layer in params["layers"]:
        entry = {}
        for name in config.projections:
            out_f, in_f = layer[name].shape
            a = rng.normal(0.0, 1.0 / np.sqrt(in_f), (config.rank, in_f)).astype(np.float32)
            entry[name] = (a, np.zeros((out_f, config.rank), np.float32))
        adapters.append(entry)
    return adapters


def merge(params: dict, adapters: list[dict], scale: float) -> dict:
    """A copy of ``params`` with every adapter folded into its projection (numpy float32)."""
    merged = dict(params)
    merged["layers"] = []
    for layer, entry in zip(params["layers"], adapters, strict=True):
        layer = {k: np.asarray(v, np.float32) for k, v in layer.items()}
        for name, (a, b) in entry.items():
            assert name in PROJECTIONS
            layer[name] = (layer[name] + scale * (np.asarray(b) @ np.asarray(a))).astype(np.float32)
        merged["layers"].append(layer)
    return merged


def count(adapters: list[dict]) -> int:
    return sum(a.size + b.size for entry in adapters for a, b in entry.values())
