"""The fine-tuning loop: masked cross-entropy, AdamW with clipping and a warm-up/cosine
schedule, periodic validation with early stopping, checkpoints and resume.

Batches are drawn from a permutation of the training rows fixed by the seed, so a run
resumed from the checkpoint of step ``t`` sees exactly the batches the crashed run would
have seen after ``t``, and ends with the same weights.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..convert.gguf_file import LlamaSpec
from . import checkpoint
from .jaxdeps import require_jax
from .lora import LoraConfig, init_adapters
from .model import forward

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 1
    learning_rate: float = 5e-4
    warmup_steps: int = 20
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    eval_every: int = 50
    #: Validation rows per evaluation (0: all of them).
    eval_rows: int = 0
    #: Evaluations without improvement before stopping.
    patience: int = 3
    checkpoint_every: int = 50
    seed: int = 0
    #: Train every weight instead of LoRA adapters.
    full: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TrainResult:
    trainable: object
    steps: int
    losses: list[float]
    validation: list[tuple[int, float]]
    best_validation_loss: float | None
    stopped_early: bool
    tokens_per_second: float
    resumed_from: int | None = None


def make_loss(spec: LlamaSpec, config: TrainConfig):
    """``loss(trainable, frozen, ids, mask) -> (mean NLL, tokens)`` over next-token targets."""
    jax, jnp, optax = require_jax()
    scale = config.lora.scale

    def loss(trainable, frozen, ids, mask):
        if config.full:
            logits = forward(spec, trainable, ids, mask)
        else:
            logits = forward(spec, frozen, ids, mask, trainable, scale)
        valid = (mask[:, 1:] & mask[:, :-1]).astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], ids[:, 1:])
        tokens = valid.sum()
        return (nll * valid).sum() / jnp.maximum(tokens, 1.0), tokens

    return loss


def make_optimizer(config: TrainConfig):
    _, _, optax = require_jax()
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, max(config.steps - 1, 0)),
        decay_steps=max(config.steps, 1),
        end_value=config.learning_rate * 0.1,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, weight_decay=config.weight_decay),
    )


def evaluate(loss_fn, trainable, frozen, ids: np.ndarray, mask: np.ndarray, batch: int) -> float:
    """Mean NLL per token over all rows (``exp`` of it is the perplexity)."""
    total = count = 0.0
    for start in range(0, len(ids), batch):
        mean, n = loss_fn(
            trainable, frozen, ids[start : start + batch], mask[start : start + batch]
        )
        total += float(mean) * float(n)
        count += float(n)
    return total / max(count, 1.0)


def batches(rows: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Row indices of the batch at ``step``: epochs of seeded permutations."""
    per_epoch = max(rows // batch, 1)
    epoch, offset = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(rows)
    picked = order[offset * batch : offset * batch + batch]
    return picked if len(picked) == batch else np.resize(order, batch)


def train(
    spec: LlamaSpec,
    params: dict,
    data: dict[str, np.ndarray],
    config: TrainConfig,
    checkpoint_dir: Path,
    *,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train on ``data`` (``train_ids``, ``train_mask``, ``validation_ids``, ...); resume from
    the newest checkpoint in ``checkpoint_dir`` when there is one of this very run."""
    from tqdm import tqdm

    jax, jnp, optax = require_jax()
    frozen = None if config.full else jax.tree_util.tree_map(jnp.asarray, params)
    if config.full:
        trainable = jax.tree_util.tree_map(jnp.asarray, params)
    else:
        trainable = jax.tree_util.tree_map(
            jnp.asarray, init_adapters(params, config.lora, config.seed)
        )
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(trainable)
    loss_fn = make_loss(spec, config)
    eval_fn = jax.jit(loss_fn)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def step_fn(trainable, opt_state, frozen, ids, mask):
        (loss, tokens), grads = grad_fn(trainable, frozen, ids, mask)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss, tokens

    run_key = json.dumps(asdict(config), sort_keys=True, default=str)
    meta = {"config": run_key, "losses": [], "validation": [], "best": None, "bad_evals": 0}
    start, resumed = 0, None
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if (found := checkpoint.latest(checkpoint_dir)) is not None:
        (trainable, opt_state), meta = checkpoint.restore(found, (trainable, opt_state))
        if meta.get("config") != run_key:
            from ..errors import FinetuneError

            raise FinetuneError(
                f"{checkpoint_dir} holds checkpoints of another configuration: pass a new "
                "--output or the same settings as before"
            )
        start = resumed = int(meta["step"])
        log.info("resuming from %s (step %d)", found, start)
    best_path = checkpoint_dir / checkpoint.BEST_FILE
    val_ids, val_mask = data["validation_ids"], data["validation_mask"]
    if config.eval_rows:
        val_ids, val_mask = val_ids[: config.eval_rows], val_mask[: config.eval_rows]
    train_ids, train_mask = data["train_ids"], data["train_mask"]

    def validate(step: int) -> bool:
        """Record a validation loss; True when it is time to stop."""
        if not len(val_ids):
            return False
        value = evaluate(eval_fn, trainable, frozen, val_ids, val_mask, config.batch_size)
        meta["validation"].append([step, value])
        if meta["best"] is None or value < meta["best"] - 1e-6:
            meta["best"], meta["bad_evals"] = value, 0
            checkpoint.save_tree(best_path, trainable)
        else:
            meta["bad_evals"] += 1
        return meta["bad_evals"] >= config.patience

    tokens_seen, busy, stopped = 0.0, 0.0, False
    bar = tqdm(
        total=config.steps, initial=start, disable=not progress, unit="step", desc="finetune"
    )
    step = start
    try:
        while step < config.steps:
            rows = batches(len(train_ids), config.batch_size, config.seed, step)
            began = time.perf_counter()
            trainable, opt_state, loss, tokens = step_fn(
                trainable, opt_state, frozen, train_ids[rows], train_mask[rows]
            )
            loss = float(loss)  # waits for the step
            if step > start:  # the first step of a process compiles
                busy += time.perf_counter() - began
                tokens_seen += float(tokens)
            step += 1
            meta["losses"].append(loss)
            if on_step is not None:
                on_step(step, loss)
            rate = tokens_seen / busy if busy else 0.0
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
            bar.update(1)
            if step % config.eval_every == 0 or step == config.steps:
                stopped = validate(step)
            if step % config.checkpoint_every == 0 or step == config.steps or stopped:
                checkpoint.save(checkpoint_dir, step, (trainable, opt_state), meta)
            if stopped:
                log.info(
                    "validation loss has not improved for %d evaluations: stopping", config.patience
                )
                break
    finally:
        bar.close()
    if best_path.is_file():
        trainable = checkpoint.load_tree(best_path, trainable)
    return TrainResult(
        trainable=trainable,
        steps=step,
        losses=list(meta["losses"]),
        validation=[tuple(v) for v in meta["validation"]],
        best_validation_loss=meta["best"],
        stopped_early=stopped,
        tokens_per_second=tokens_seen / busy if busy else 0.0,
        resumed_from=resumed,
    )
