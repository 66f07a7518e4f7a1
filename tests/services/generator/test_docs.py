"""The engine snippet of docs/generator.md runs as it is written there."""

from __future__ import annotations

import re
from pathlib import Path

from services.generator.convert import GraphOptions, convert
from tests.services.generator.generator_helpers import TinyConfig, write_tiny_gguf

PAGE = Path(__file__).resolve().parents[3] / "docs" / "generator.md"


def engine_snippet() -> str:
    """The python block of the page's "Settings and the engine in Python" section."""
    section = PAGE.read_text().split("## Settings and the engine in Python", 1)[1]
    section = section.split("\n## ", 1)[0]
    (block,) = re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M)
    return block


def test_the_engine_snippet_runs_verbatim(monkeypatch, tmp_path, capsys):
    # A tiny random model stands in for the default build (milliseconds a token), with
    # room in its context for the news template and the snippet's 200 new tokens.
    write_tiny_gguf(tmp_path / "tiny.gguf", TinyConfig(context=512))
    convert(tmp_path / "tiny.gguf", tmp_path / "model", GraphOptions())
    monkeypatch.setenv("MARQUEE_GENERATOR_MODEL_DIR", str(tmp_path / "model"))
    namespace: dict = {}
    exec(compile(engine_snippet(), str(PAGE), "exec"), namespace)  # noqa: S102 - our own docs
    (result,) = namespace["results"]
    assert result.ok and result.finish_reason in ("stop", "length")
    assert result.completion_tokens > 0 and capsys.readouterr().out == result.text
