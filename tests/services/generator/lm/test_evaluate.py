"""``marquee lm eval``: perplexity through the ONNX engine (no JAX needed)."""

from __future__ import annotations

import json
import math

import numpy as np

from services.generator.lm.corpus import pack
from services.generator.lm.evaluate import perplexity
from tests.services.generator.test_cli import _restore_logging, one_line_error, run  # noqa: F401

TEXT = "the hat in the cat. the cat at the hat. in the hat, the cat sat. "


def _corpus(tmp_path, engine):
    docs = [engine.tokenizer.encode(TEXT * (i + 1)) for i in range(6)]
    arrays = {}
    for split, part in (("train", docs[:2]), ("validation", docs[2:4]), ("test", docs[4:])):
        arrays[f"{split}_ids"], arrays[f"{split}_mask"] = pack(part, 32, sep=2, pad=0)
    folder = tmp_path / "corpus"
    folder.mkdir()
    np.savez(folder / "corpus.npz", **arrays)
    (folder / "corpus.json").write_text(json.dumps({"fingerprint": "f" * 16}))
    return folder, arrays


def test_perplexity_is_the_exp_of_the_mean_next_token_nll(tiny_engine):
    ids = np.array([tiny_engine.tokenizer.encode(TEXT)[:20]])
    mask = np.ones_like(ids, bool)
    mask[0, 15:] = False
    result = perplexity(tiny_engine, ids, mask)
    d = tiny_engine.decoder
    logits, _ = d.step(
        ids[:, :15],
        np.ones((1, 15), np.int64),
        np.arange(15)[None],
        d.empty_cache(1),
        all_logits=True,
    )
    logits = logits[0].astype(np.float64)
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    expected = -np.mean([logp[i, ids[0, i + 1]] for i in range(14)])
    assert result.tokens == 14
    assert math.isclose(result.nll, expected, rel_tol=1e-5)


def test_padding_rows_in_a_batch_do_not_change_the_score(tiny_engine, tmp_path):
    _, arrays = _corpus(tmp_path, tiny_engine)
    ids, mask = arrays["test_ids"], arrays["test_mask"]
    batched = perplexity(tiny_engine, ids, mask, batch=4)
    alone = perplexity(tiny_engine, ids, mask, batch=1)
    assert batched.tokens == alone.tokens == int((mask[:, 1:] & mask[:, :-1]).sum())
    assert math.isclose(batched.nll, alone.nll, rel_tol=1e-4)


def test_eval_command_reports_both_splits_and_greedy_samples(
    capsys, tiny_dirs, tiny_engine, tmp_path
):
    folder, _ = _corpus(tmp_path, tiny_engine)
    out = tmp_path / "eval.json"
    code, stdout, _ = run(
        capsys,
        "lm",
        "eval",
        str(tiny_dirs["q4"]),
        "--corpus",
        str(folder),
        "--samples",
        "--json",
        str(out),
        "--threads",
        "1",
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["perplexity"]) == {"validation", "test"}
    assert all(v["perplexity"] > 1 and v["tokens"] > 0 for v in report["perplexity"].values())
    assert len(report["samples"]) == 4 and "validation perplexity" in stdout


def test_eval_of_a_missing_corpus_is_one_line(capsys, tiny_dirs, tmp_path):
    code, _, err = run(capsys, "lm", "eval", str(tiny_dirs["q4"]), "--corpus", str(tmp_path))
    assert code == 2 and "run `marquee lm corpus` first" in one_line_error(err)
