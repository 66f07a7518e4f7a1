"""Fine-tuning on the tiny random-weight model the converter builds (tests/.../conftest.py).

Tolerances: the JAX forward pass and the exact (fp32-compute) ONNX graphs both run in
float32 but in different orders of operations; on logits of magnitude ~30 they differ by
~5e-5 here, so 2e-4 (as the converter's own numpy-reference tests use).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from services.generator.errors import FinetuneError

jax = pytest.importorskip("jax", reason="the finetune extra (jax) is not installed")
import jax.numpy as jnp  # noqa: E402

from services.generator.convert import GraphOptions  # noqa: E402
from services.generator.engine import Engine, RuntimeOptions  # noqa: E402
from services.generator.lm import checkpoint, export  # noqa: E402
from services.generator.lm.corpus import pack  # noqa: E402
from services.generator.lm.lora import LoraConfig, init_adapters, merge  # noqa: E402
from services.generator.lm.model import forward, load_params  # noqa: E402
from services.generator.lm.train import TrainConfig, train  # noqa: E402
from shared.cli.main import main  # noqa: E402
from tests.services.generator.test_cli import _restore_logging  # noqa: E402, F401

ATOL = 2e-4
PROMPT = "<|im_start|>user\nthe cat in the hat sat on the mat<|im_end|>\n"
TEXT = "the hat in the cat. the cat at the hat. in the hat, the cat sat. "


@pytest.fixture(scope="module")
def model(tiny):
    return load_params(tiny[0])


@pytest.fixture(scope="module")
def data(tiny_engine) -> dict[str, np.ndarray]:
    """Repetitive text (learnable) packed into 32-token rows, as `marquee lm corpus` does."""
    tok = tiny_engine.tokenizer
    docs = [tok.encode(TEXT * 3) for _ in range(12)]
    out = {}
    for split, part in (("train", docs[:8]), ("validation", docs[8:10]), ("test", docs[10:])):
        out[f"{split}_ids"], out[f"{split}_mask"] = pack(part, 32, sep=2, pad=0)
    return out


def onnx_logits(model_dir, ids: list[int]) -> np.ndarray:
    engine = Engine(model_dir, RuntimeOptions(provider="cpu", threads=1))
    d, batch = engine.decoder, np.array([ids])
    logits, _ = d.step(
        batch, np.ones_like(batch), np.arange(len(ids))[None], d.empty_cache(1), all_logits=True
    )
    return logits[0]


def jax_logits(spec, params, ids, adapters=None, scale=1.0) -> np.ndarray:
    batch = jnp.asarray([ids])
    return np.asarray(forward(spec, params, batch, jnp.ones_like(batch, bool), adapters, scale))[0]


@pytest.mark.parametrize("variant", ["fp32", "q4-fp32-head"])
def test_jax_forward_matches_the_onnx_engine(model, tiny_dirs, tiny_engine, variant):
    spec, params = model
    ids = tiny_engine.tokenizer.encode(PROMPT)
    np.testing.assert_allclose(
        jax_logits(spec, params, ids), onnx_logits(tiny_dirs[variant], ids), rtol=0, atol=ATOL
    )


def test_right_padding_does_not_change_the_real_tokens_logits(model, tiny_engine):
    spec, params = model
    ids = tiny_engine.tokenizer.encode(PROMPT)
    padded = jnp.asarray([ids + [0] * 5])
    mask = jnp.asarray([[True] * len(ids) + [False] * 5])
    got = np.asarray(forward(spec, params, padded, mask))[0, : len(ids)]
    np.testing.assert_allclose(got, jax_logits(spec, params, ids), rtol=0, atol=1e-5)


def test_untrained_adapters_change_nothing(model, tiny_engine):
    spec, params = model
    ids = tiny_engine.tokenizer.encode(PROMPT)
    lora = LoraConfig(rank=4, targets=("q", "v", "down"))
    adapters = init_adapters(params, lora)
    np.testing.assert_array_equal(
        jax_logits(spec, params, ids, adapters, lora.scale), jax_logits(spec, params, ids)
    )


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
def test_a_few_steps_lower_the_training_loss(model, data, tmp_path, full):
    spec, params = model
    config = TrainConfig(
        steps=10, batch_size=2, learning_rate=1e-2, warmup_steps=2, eval_every=5, full=full
    )
    result = train(spec, params, data, config, tmp_path, progress=False)
    assert result.steps == 10 and len(result.losses) == 10
    assert np.mean(result.losses[-3:]) < 0.8 * result.losses[0], result.losses
    first_val = result.validation[0][1]
    assert result.best_validation_loss <= first_val
    assert result.tokens_per_second > 0


def test_merged_lora_weights_converted_to_onnx_give_the_jax_logits(
    model, data, tiny, tiny_engine, tmp_path
):
    spec, params = model
    lora = LoraConfig(rank=4, alpha=8, targets=("q", "k", "v", "o", "up"))
    config = TrainConfig(
        steps=6, batch_size=2, learning_rate=1e-2, warmup_steps=1, eval_every=100, lora=lora
    )
    adapters = train(spec, params, data, config, tmp_path / "ckpt", progress=False).trainable
    adapters = jax.tree_util.tree_map(np.asarray, adapters)
    assert any(np.abs(b).max() > 0 for entry in adapters for _, b in entry.values())
    ids = tiny_engine.tokenizer.encode(PROMPT)
    trained = jax_logits(spec, params, ids, adapters, lora.scale)
    assert np.abs(trained - jax_logits(spec, params, ids)).max() > 0.1  # training moved the model
    merged = merge(params, adapters, lora.scale)
    np.testing.assert_allclose(jax_logits(spec, merged, ids), trained, rtol=0, atol=ATOL)
    changed = export.changed_tensors(spec.n_layers, lora.projections, full=False)
    out = export.export_model(
        tiny[0],
        merged,
        changed,
        tmp_path / "model",
        "tiny-ft",
        GraphOptions(weights="q4", head_compute="fp32"),
    )
    np.testing.assert_allclose(onnx_logits(out, ids), trained, rtol=0, atol=ATOL)
    assert json.loads((out / "marquee.json").read_text())["name"] == "tiny-ft"


class Crash(RuntimeError):
    pass


def test_a_crash_mid_training_resumes_from_the_last_checkpoint(model, data, tmp_path):
    spec, params = model
    config = TrainConfig(
        steps=12, batch_size=2, learning_rate=5e-3, warmup_steps=2, eval_every=4, checkpoint_every=4
    )
    whole = train(spec, params, data, config, tmp_path / "whole", progress=False)

    def crash_at_10(step: int, _loss: float) -> None:
        if step == 10:
            raise Crash

    with pytest.raises(Crash):
        train(spec, params, data, config, tmp_path / "crashed", progress=False, on_step=crash_at_10)
    assert checkpoint.latest(tmp_path / "crashed").name == "step-000008"
    resumed = train(spec, params, data, config, tmp_path / "crashed", progress=False)
    assert resumed.resumed_from == 8 and resumed.steps == 12
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-6)
    for got, want in zip(
        jax.tree_util.tree_leaves(resumed.trainable),
        jax.tree_util.tree_leaves(whole.trainable),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)


def test_checkpoints_of_another_configuration_are_refused(model, data, tmp_path):
    spec, params = model
    train(
        spec,
        params,
        data,
        TrainConfig(steps=2, checkpoint_every=1, eval_every=100),
        tmp_path,
        progress=False,
    )
    with pytest.raises(FinetuneError, match="another configuration"):
        train(
            spec,
            params,
            data,
            TrainConfig(steps=4, learning_rate=1e-3, eval_every=100),
            tmp_path,
            progress=False,
        )


def test_early_stop_when_validation_stops_improving(model, data, tmp_path):
    spec, params = model
    config = TrainConfig(steps=20, learning_rate=0.0, warmup_steps=0, eval_every=2, patience=1)
    result = train(spec, params, data, config, tmp_path, progress=False)
    assert result.stopped_early and result.steps == 4


def test_finetune_command_smoke_run_writes_a_report_and_a_servable_model(
    capsys, tiny, tmp_path, data
):
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    np.savez(corpus_dir / "corpus.npz", **data)
    (corpus_dir / "corpus.json").write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    out = tmp_path / "run"
    code = main(
        [
            "--env-file", "", "lm", "finetune", "--corpus", str(corpus_dir), "--output", str(out),
            "--gguf", str(tiny[0]), "--steps", "20", "--batch-size", "2", "--lr", "5e-3",
            "--eval-every", "10", "--rank", "4", "--targets", "q,v",
        ]
    )  # fmt: skip
    stdout, _ = capsys.readouterr()
    assert code == 0
    report = json.loads((out / "finetune.json").read_text())
    ppl = report["perplexity"]["validation"]
    assert ppl["finetuned"] < ppl["base"], report
    assert "validation perplexity" in stdout
    engine = Engine(report["model_dir"], RuntimeOptions(provider="cpu", threads=1))
    assert engine.model_id == report["name"] == "tiny-ft-01234567"


def test_bad_lora_targets_are_a_one_line_error(capsys, tiny, tmp_path, data):
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    np.savez(corpus_dir / "corpus.npz", **data)
    (corpus_dir / "corpus.json").write_text("{}")
    code = main(
        [
            "--env-file",
            "",
            "lm",
            "finetune",
            "--corpus",
            str(corpus_dir),
            "--output",
            str(tmp_path / "o"),
            "--gguf",
            str(tiny[0]),
            "--targets",
            "q,nope",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "LoRA targets" in err.strip().splitlines()[-1]


def test_without_jax_the_command_says_what_to_install(monkeypatch):
    from services.generator.lm.jaxdeps import require_jax

    monkeypatch.setitem(sys.modules, "optax", None)
    with pytest.raises(FinetuneError, match=r"pip install -e \.\[finetune\]"):
        require_jax()


def test_the_generator_runs_without_importing_jax():
    code = (
        "import sys; import services.generator.app, services.generator.cli, services.generator.worker; "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_onnx_perplexity_equals_the_jax_loss_on_the_same_rows(model, data, tiny_dirs):
    from services.generator.lm.evaluate import perplexity
    from services.generator.lm.train import evaluate, make_loss

    spec, params = model
    config = TrainConfig(full=True)
    jax_nll = evaluate(
        jax.jit(make_loss(spec, config)), params, None, data["test_ids"], data["test_mask"], 2
    )
    engine = Engine(tiny_dirs["fp32"], RuntimeOptions(provider="cpu", threads=1))
    onnx_nll = perplexity(engine, data["test_ids"], data["test_mask"]).nll
    assert abs(onnx_nll - jax_nll) < 1e-4, (onnx_nll, jax_nll)
