"""``marquee generate --kind news --prompt "..."``: generate locally, streaming the text.

No Kafka, no Postgres: the generator's engine on the configured model directory. Text
goes to stdout as it is produced; a summary line goes to stderr.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import ConfigurationError
from .argtypes import positive_int


def register(commands) -> None:
    from services.generator.prompts import KINDS

    parser = commands.add_parser(
        "generate", help="generate text locally with the generator's model"
    )
    parser.add_argument("--kind", choices=KINDS, default="news")
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
    parser.set_defaults(handler=run)


def run(args, _: Settings) -> int:
    from services.generator.engine import Engine, GenerationRequest, SamplingParams
    from services.generator.errors import RequestError
    from services.generator.settings import GeneratorSettings

    settings = load_settings(GeneratorSettings, args.env_file)
    try:
        params = SamplingParams.of(args)
        if not args.prompt.strip():
            raise RequestError("the prompt is empty")
    except RequestError as exc:
        raise ConfigurationError(str(exc)) from None
    options = settings.runtime_options()
    if args.threads:
        options = dataclasses.replace(options, threads=args.threads)
    engine = Engine(args.model or settings.model_dir(), options)
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
