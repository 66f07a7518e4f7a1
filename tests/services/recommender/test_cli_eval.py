"""`marquee eval --json`: the item_cold_start protocol as a user runs it (the real encoder
on MovieLens's films, a small ALS to keep it quick)."""

import json
import subprocess
import sys


def test_eval_prints_item_cold_start_with_intervals_as_json():
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "eval", "--protocol", "item_cold_start"]
        + ["--json", "--factors", "16", "--iterations", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    cold = result["protocols"]["item_cold_start"]
    assert cold["default"] == "minilm" and cold["seeds"] == [0, 1, 2]
    assert set(cold["models"]) == {"minilm", "tfidf", "random", "content_popularity"}
    ndcg = {name: m["ndcg@10"] for name, m in cold["models"].items()}
    assert all(len(m["seeds"]) == 3 and m["ci95"] > 0 for m in ndcg.values())
    assert ndcg["minilm"]["mean"] > 3 * ndcg["random"]["mean"]
    assert result["content"]["dimensions"] == {"minilm": 384, "tfidf": cold["dimensions"]["tfidf"]}
    assert "embedded 1,682 films" in done.stderr
