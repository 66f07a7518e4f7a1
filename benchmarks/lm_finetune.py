"""Fine-tuning the language model on the SOTU corpus (issue 20): quality and cost.

``lm_finetune_val_perplexity`` runs the default recipe end to end through the commands a
user runs (``marquee lm corpus --sotu``, ``marquee lm finetune``): minutes on 2 cores.
The throughput figures time a few steps only.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from .harness import BenchmarkSkipped, Context, Result, benchmark

SPLIT = ["--validation-from", "2010", "--test-from", "2014"]
STEPS = 12  # timed steps of the throughput figures (after one compiling step)


def _jax():
    try:
        import jax  # noqa: F401
    except ImportError:
        raise BenchmarkSkipped("needs the finetune extra: pip install -e .[finetune]") from None


def _cli(*argv: str) -> None:
    from shared.cli.main import main

    code = main(["--env-file", "", *argv])
    if code != 0:
        raise RuntimeError(f"marquee {' '.join(argv)} exited {code}")


def _corpus(root: Path) -> Path:
    out = root / "sotu"
    _cli("lm", "corpus", "--sotu", "--output", str(out), *SPLIT)
    return out


@benchmark(
    "lm_finetune_val_perplexity",
    unit="perplexity",
    higher_is_better=False,
    target_ratio=1.2,
    needs_kafka=False,
    description="""
        Validation perplexity (SOTU 2010-13; trained on 1790-2009) of SmolLM2-135M-Instruct
        after the default recipe of `marquee lm finetune` (LoRA r=8, alpha 16 on q/k/v/o,
        AdamW 5e-4 with warm-up and cosine decay, clip 1.0, 300 steps x 256 tokens), in
        JAX. Baseline: the base model on the same rows in the same run. Target (issue 20):
        base / fine-tuned >= 1.2. The test split (2014-21) is printed beside it.
    """,
)
def lm_finetune_val_perplexity(ctx: Context) -> Result:
    _jax()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = _corpus(root)
        _cli(
            "lm",
            "finetune",
            "--corpus",
            str(corpus),
            "--output",
            str(root / "run"),
            "--eval-rows",
            "32",
        )
        report = json.loads((root / "run" / "finetune.json").read_text())
    ppl = report["perplexity"]
    return Result(
        value=ppl["validation"]["finetuned"],
        baseline_name="base model",
        baseline_value=ppl["validation"]["base"],
        notes=(
            f"test perplexity {ppl['test']['base']:.2f} -> {ppl['test']['finetuned']:.2f} "
            f"({ppl['test']['base'] / ppl['test']['finetuned']:.3f}x)",
            f"{report['steps']} steps in {report['train_seconds']:.0f} s, {report['tokens_per_second']:.0f} tokens/s",
        ),
    )


def _timed(fn, args_for_step) -> float:
    """Median seconds of ``fn`` over STEPS calls after a compiling one."""
    fn(*args_for_step(0))
    times = []
    for i in range(1, STEPS + 1):
        began = time.perf_counter()
        out = fn(*args_for_step(i))
        float(out[0] if isinstance(out, tuple) else out)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


@benchmark(
    "lm_finetune_tokens_per_second",
    unit="tokens/s",
    needs_kafka=False,
    description=f"""
        Training tokens per second of the default LoRA recipe (batch 1 x 256 tokens, forward,
        backward and AdamW update, jitted) on SmolLM2-135M-Instruct in JAX on this
        machine's CPUs. Baseline: the same model's forward-only tokens per second in JAX
        (the masked loss, no gradient) on the same rows in the same run: the ratio is the
        cost of training relative to inference. Median of {STEPS} steps each.
    """,
)
def lm_finetune_tokens_per_second(ctx: Context) -> Result:
    _jax()
    import jax
    import jax.numpy as jnp

    from services.generator.default_model import gguf_path
    from services.generator.lm.corpus import PackedCorpus
    from services.generator.lm.lora import init_adapters
    from services.generator.lm.model import load_params
    from services.generator.lm.train import TrainConfig, make_loss, make_optimizer

    with tempfile.TemporaryDirectory() as tmp:
        data = PackedCorpus.load(_corpus(Path(tmp)))
    spec, params = load_params(gguf_path())
    config = TrainConfig()
    frozen = jax.tree_util.tree_map(jnp.asarray, params)
    adapters = jax.tree_util.tree_map(jnp.asarray, init_adapters(params, config.lora))
    loss = make_loss(spec, config)
    optimizer = make_optimizer(config)
    grad = jax.value_and_grad(loss, has_aux=True)

    # The frozen weights are arguments, never closed over: XLA would constant-fold them.
    @jax.jit
    def step(adapters, opt_state, frozen, ids, mask):
        (value, _), grads = grad(adapters, frozen, ids, mask)
        updates, opt_state = optimizer.update(grads, opt_state, adapters)
        return value, opt_state

    forward = jax.jit(lambda adapters, frozen, ids, mask: loss(adapters, frozen, ids, mask)[0])
    ids, mask = data.ids["train"], data.mask["train"]
    state = optimizer.init(adapters)
    tokens = ids.shape[1]
    ctx.progress("timing training steps")
    train_s = _timed(step, lambda i: (adapters, state, frozen, ids[i : i + 1], mask[i : i + 1]))
    ctx.progress("timing forward passes")
    forward_s = _timed(forward, lambda i: (adapters, frozen, ids[i : i + 1], mask[i : i + 1]))
    return Result(
        value=tokens / train_s,
        baseline_name="JAX forward only",
        baseline_value=tokens / forward_s,
        notes=(
            f"{train_s:.2f} s a training step, {forward_s:.2f} s a forward pass ({tokens} tokens)",
        ),
    )


@benchmark(
    "lm_eval_seconds",
    unit="tokens/s",
    needs_kafka=False,
    description="""
        Tokens per second of `marquee lm eval`'s perplexity through the ONNX engine (the
        served default model, batches of 4 rows x 256 tokens) on the first 32 validation
        rows of the SOTU corpus. Baseline: the JAX forward pass (batch 1, jitted) on the
        same rows in the same run.
    """,
)
def lm_eval_seconds(ctx: Context) -> Result:
    _jax()
    import jax
    import jax.numpy as jnp

    from services.generator.default_model import gguf_path
    from services.generator.lm.corpus import PackedCorpus
    from services.generator.lm.evaluate import perplexity
    from services.generator.lm.model import load_params
    from services.generator.lm.train import TrainConfig, evaluate, make_loss
    from services.generator.settings import GeneratorSettings

    with tempfile.TemporaryDirectory() as tmp:
        data = PackedCorpus.load(_corpus(Path(tmp)))
    ids, mask = data.ids["validation"][:32], data.mask["validation"][:32]
    engine = GeneratorSettings().load_engine()
    perplexity(engine, ids[:4], mask[:4])  # warm
    onnx = perplexity(engine, ids, mask)
    spec, params = load_params(gguf_path())
    loss = jax.jit(make_loss(spec, TrainConfig(full=True)))
    frozen = jax.tree_util.tree_map(jnp.asarray, params)
    evaluate(loss, frozen, None, ids[:1], mask[:1], 1)  # compile
    began = time.perf_counter()
    jax_nll = evaluate(loss, frozen, None, ids, mask, 1)
    jax_s = time.perf_counter() - began
    return Result(
        value=onnx.tokens_per_second,
        baseline_name="JAX forward",
        baseline_value=onnx.tokens / jax_s,
        notes=(
            f"perplexity ONNX {onnx.perplexity:.3f} ({engine.model_id}), JAX fp32 {2.718281828**jax_nll:.3f}",
        ),
    )
