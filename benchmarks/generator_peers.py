"""The engine against its peers on the same SmolLM2 weights, side by side in one run.

Peers: Hugging Face transformers (PyTorch) ``generate`` and Optimum's
``ORTModelForCausalLM.generate``, both fp32, both loading the very GGUF the default model
is built from (transformers dequantizes it; Optimum exports that model to ONNX once,
cached in the models cache). They need the ``bench`` extra (torch, transformers, optimum:
several GB, never in the default install or CI), so these figures are skipped where it
is not installed: ``pip install -e .[bench]``.

All three get the same rendered news prompts (16 different ones at batch 16), 64 new
tokens each (end-of-text ignored), greedy; the figure is end-to-end tokens per second
(prompt pass included), median of interleaved repetitions.
"""

from __future__ import annotations

import functools
import importlib.util
import statistics
import time
from pathlib import Path

from .generator_engine import TOPICS, _engine
from .harness import BenchmarkError, BenchmarkSkipped, Context, Result, benchmark

NEW_TOKENS = 64
HF_DIR = "smollm2-135m-instruct-hf"
OPTIMUM_DIR = "smollm2-135m-instruct-optimum"
#: Targets from issue 4, against Optimum: quantized weights at batch 1, batching at 16.
TARGETS = {("optimum", 1): 2.0, ("optimum", 16): 1.3}


def _installed() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "optimum")
    )


@functools.cache
def _peers() -> dict:
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.generator.default_model import gguf_path
    from services.generator.engine.runtime import default_threads
    from services.generator.settings import GeneratorSettings
    from shared.config import load_settings

    cache: Path = load_settings(GeneratorSettings).generator_models_cache
    source = gguf_path()
    hf_dir, optimum_dir = cache / HF_DIR, cache / OPTIMUM_DIR
    if not (hf_dir / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
        model.save_pretrained(hf_dir)
        AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(hf_dir)
    if not (optimum_dir / "model.onnx").is_file():
        ORTModelForCausalLM.from_pretrained(hf_dir, export=True).save_pretrained(optimum_dir)
        AutoTokenizer.from_pretrained(hf_dir).save_pretrained(optimum_dir)
    torch.set_num_threads(default_threads())
    tokenizer = AutoTokenizer.from_pretrained(hf_dir, padding_side="left")
    if tokenizer.pad_token is None:  # the GGUF names <|im_end|> (id 2) its padding token
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(2)
    return {
        "tokenizer": tokenizer,
        "transformers": AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval(),
        "optimum": ORTModelForCausalLM.from_pretrained(optimum_dir, use_cache=True),
    }


def _peer_rate(peer: str, prompts: list[str]) -> float:
    import torch

    loaded = _peers()
    tokenizer = loaded["tokenizer"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    started = time.perf_counter()
    with torch.no_grad():
        out = loaded[peer].generate(
            **batch,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
        )
    elapsed = time.perf_counter() - started
    new = out.shape[1] - batch["input_ids"].shape[1]
    if new != NEW_TOKENS:
        raise BenchmarkError(f"{peer} generated {new} tokens, not {NEW_TOKENS}")
    return len(prompts) * new / elapsed


def _our_rate(prompts: list[str]) -> float:
    from services.generator.engine import GenerationRequest, SamplingParams

    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)
    started = time.perf_counter()
    results = _engine().generate_batch([GenerationRequest(p, params) for p in prompts])
    return sum(r.completion_tokens for r in results) / (time.perf_counter() - started)


def _figure(peer: str, batch: int) -> None:
    name = f"generator_vs_{peer}_batch{batch}"
    target = TARGETS.get((peer, batch))
    runtime = "PyTorch" if peer == "transformers" else "Optimum's ONNX export on onnxruntime"
    label = {
        "optimum": "Optimum ORTModelForCausalLM.generate",
        "transformers": "transformers generate",
    }[peer]

    @benchmark(
        name,
        unit="tokens/s",
        target_ratio=target,
        needs_kafka=False,
        command=f"pip install -e .[bench] && make bench NAME={name}",
        description=f"""
            End-to-end tokens per second at batch {batch} ({NEW_TOKENS} new tokens each,
            greedy, prompt pass included) of `Engine.generate_batch` on the default model
            against {label} (fp32, {runtime}, on CPU) on the same SmolLM2 GGUF weights and the same rendered news prompts, in the same
            run. Needs the `bench` extra.
            {f"Target (issue 4): ≥ {target}× Optimum." if target else "No target: context."}
        """,
    )
    def run(ctx: Context) -> Result:
        if not _installed():
            raise BenchmarkSkipped("needs the bench extra: pip install -e .[bench]")
        engine = _engine()
        prompts = [engine.render("news", TOPICS[i % len(TOPICS)]) for i in range(batch)]
        _peer_rate(peer, prompts[:2])  # warm-up
        sides = {"peer": lambda: _peer_rate(peer, prompts), "ours": lambda: _our_rate(prompts)}
        rates: dict[str, list[float]] = {side: [] for side in sides}
        for rep in range(ctx.repeat):
            for side in sides if rep % 2 == 0 else reversed(list(sides)):
                # PyTorch's and onnxruntime's worker threads spin a while after their work:
                # let the other side's go idle before timing this one.
                time.sleep(1.0)
                rates[side].append(sides[side]())
                ctx.progress(f"rep {rep + 1}/{ctx.repeat} {side}: {rates[side][-1]:,.1f} tokens/s")
        return Result(
            value=statistics.median(rates["ours"]),
            baseline_name=label,
            baseline_value=statistics.median(rates["peer"]),
        )


for _peer in ("optimum", "transformers"):
    for _batch in (1, 16):
        _figure(_peer, _batch)
