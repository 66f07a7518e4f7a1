"""LM versions in real Postgres: registration, the quality gate, activation (issue 20)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.generator.errors import FinetuneError
from services.generator.lm.corpus import pack
from services.generator.lm.version_store import LMVersion, LMVersionStore
from shared.cli.main import main
from tests.services.generator.test_cli import _restore_logging  # noqa: F401


def version(name: str, val: float, status: str) -> LMVersion:
    return LMVersion(
        name, "base.gguf", f"/models/{name}", "fp", {"rank": 8}, 20.0, 22.0, val, 21.0, status
    )


def test_activation_switches_the_single_active_version_and_refuses_rejected_ones(engine):
    store = LMVersionStore(engine)
    store.register(version("a", 15.0, "candidate"))
    store.register(version("b", 14.0, "candidate"))
    store.register(version("bad", 25.0, "rejected"))
    with pytest.raises(FinetuneError, match="already registered"):
        store.register(version("a", 15.0, "candidate"))
    assert store.active() is None
    assert store.activate("a").status == "active"
    assert store.activate("b").status == "active"
    assert {v.version: v.status for v in store.list()} == {
        "a": "retired",
        "b": "active",
        "bad": "rejected",
    }
    with pytest.raises(FinetuneError, match="failed the quality gate"):
        store.activate("bad")
    assert store.active().version == "b"
    with pytest.raises(FinetuneError, match="no LM version"):
        store.activate("nope")
    assert store.activate("bad", force=True).status == "active"
    assert store.get("b").status == "retired" and store.get("a").hyperparameters == {"rank": 8}


def _corpus(tmp_path, tiny_gguf):
    from services.generator.convert.gguf_file import GGUFModel
    from services.generator.convert.tokenizer import build_tokenizer

    tok, _ = build_tokenizer(GGUFModel(tiny_gguf))
    text = "the hat in the cat. the cat at the hat. in the hat, the cat sat. " * 3
    docs = [tok.encode(text, add_special_tokens=False).ids for _ in range(12)]
    arrays = {}
    for split, part in (("train", docs[:8]), ("validation", docs[8:10]), ("test", docs[10:])):
        arrays[f"{split}_ids"], arrays[f"{split}_mask"] = pack(part, 32, sep=2, pad=0)
    folder = tmp_path / "corpus"
    folder.mkdir()
    np.savez(folder / "corpus.npz", **arrays)
    (folder / "corpus.json").write_text(json.dumps({"fingerprint": "c0ffee00c0ffee00"}))
    return folder


def test_finetune_register_gates_then_activates(engine, settings, tmp_path, monkeypatch, capsys):
    pytest.importorskip("jax", reason="the finetune extra (jax) is not installed")
    from tests.services.generator.generator_helpers import write_tiny_gguf

    monkeypatch.setenv("MARQUEE_POSTGRES_DSN", settings.postgres_dsn.get_secret_value())
    monkeypatch.setenv("MARQUEE_POSTGRES_SCHEMA", settings.postgres_schema)
    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf)
    corpus = _corpus(tmp_path, gguf)
    common = ["--env-file", "", "lm", "finetune", "--corpus", str(corpus), "--gguf", str(gguf)]
    recipe = [
        "--steps",
        "20",
        "--batch-size",
        "2",
        "--lr",
        "5e-3",
        "--eval-every",
        "10",
        "--register",
        "--margin",
        "0.01",
    ]
    # Learning rate 0: the "fine-tuned" model is the base, ratio ~1: registered, rejected.
    code = main([*common, *recipe, "--output", str(tmp_path / "r1"), "--name", "v1", "--lr", "0"])
    out, _ = capsys.readouterr()
    assert code == 0 and "fails the gate" in out
    store = LMVersionStore(engine)
    assert store.get("v1").status == "rejected" and store.active() is None
    code = main([*common, *recipe, "--output", str(tmp_path / "r2"), "--name", "v2"])
    out, _ = capsys.readouterr()
    assert code == 0 and "passes the gate" in out
    v2 = store.get("v2")
    assert v2.status == "active" and v2.validation_perplexity < v2.base_validation_perplexity
    assert v2.corpus_fingerprint == "c0ffee00c0ffee00" and v2.hyperparameters["steps"] == 20
    assert main(["--env-file", "", "lm", "versions"]) == 0
    listing, _ = capsys.readouterr()
    assert "v1" in listing and "rejected" in listing and "active" in listing
    assert main(["--env-file", "", "lm", "activate", "v1"]) == 2
    _, err = capsys.readouterr()
    assert "failed the quality gate" in err.strip().splitlines()[-1]
