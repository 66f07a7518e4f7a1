"""Training checkpoints: the trainable pytree, the optimizer state and the loop's counters.

A checkpoint is a folder ``step-NNNNNN`` (``state.npz`` with the flattened leaves,
``meta.json``), written beside its final name and renamed into place, so a crash while
writing leaves the previous one intact. The two newest are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import FinetuneError
from .jaxdeps import require_jax

KEEP = 2
BEST_FILE = "best.npz"


def _leaves(tree) -> dict[str, np.ndarray]:
    jax, _, _ = require_jax()
    return {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def _unflatten(like, data) -> object:
    jax, jnp, _ = require_jax()
    leaves, treedef = jax.tree_util.tree_flatten(like)
    if len(data.files) != len(leaves):
        raise FinetuneError("the checkpoint does not match this run's model or LoRA settings")
    loaded = [jnp.asarray(data[f"leaf{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)]
    for new, old in zip(loaded, leaves, strict=True):
        if new.shape != old.shape:
            raise FinetuneError("the checkpoint does not match this run's model or LoRA settings")
    return jax.tree_util.tree_unflatten(treedef, loaded)


def save(directory: Path, step: int, state, meta: dict) -> Path:
    """Write ``state`` (any pytree) and ``meta`` as the checkpoint of ``step``."""
    final = directory / f"step-{step:06d}"
    staging = directory / f".step-{step:06d}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    np.savez(staging / "state.npz", **_leaves(state))
    (staging / "meta.json").write_text(json.dumps({**meta, "step": step}) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in sorted(directory.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(directory: Path) -> Path | None:
    found = sorted(p for p in directory.glob("step-*") if (p / "meta.json").is_file())
    return found[-1] if found else None


def restore(path: Path, like) -> tuple[object, dict]:
    """``(state shaped like ``like``, meta)`` from the checkpoint folder ``path``."""
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    with np.load(path / "state.npz") as data:
        return _unflatten(like, data), meta


def save_tree(path: Path, tree) -> None:
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, **_leaves(tree))
    tmp.rename(path)


def load_tree(path: Path, like):
    with np.load(path) as data:
        return _unflatten(like, data)
