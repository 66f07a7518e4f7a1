"""The generator's engine on the default model (no Kafka): batching, KV cache, bandwidth.

Every figure runs ``Engine.generate_batch`` (or its decoder) in this process on the model
the service would load (``MARQUEE_GENERATOR_MODEL_DIR``, default: SmolLM2-135M-Instruct
built by ``marquee model build-default``), on CPU unless a GPU is usable, greedy decoding.
Decode rates leave the prompt out: tokens after each row's first, over the time after
the last row's first token.
"""

from __future__ import annotations

import functools
import statistics
import time

import numpy as np

from .harness import BenchmarkError, BenchmarkSkipped, Context, Result, benchmark

NEW_TOKENS = 64
CACHE_TOKENS = 256
BATCHES = (1, 4, 16)
#: Varied news briefs, so a batch holds prompts of different lengths (left padding).
TOPICS = [
    "The city council approved a new tram line through the old town.",
    "A storm closed the harbour for two days.",
    "The regional orchestra announced its new season, with three premieres.",
    "Farmers report an early and unusually large apple harvest.",
    "The university opened a research centre for battery recycling.",
    "A local bakery won the national bread prize.",
    "Train services will be reduced during the summer track works.",
    "The museum returned a medieval manuscript to its monastery.",
    "Volunteers cleaned four kilometres of the river bank on Saturday.",
    "The football club signed a young goalkeeper from the youth team.",
    "Rents in the city centre rose by six percent last year.",
    "A new cycling bridge links the two halves of the park.",
    "The hospital will hire forty nurses this autumn.",
    "Schools will serve more locally grown food from January.",
    "The airport tested electric buses between its terminals.",
    "A heat wave is expected to last until the end of the week.",
]


#: Other builds of the default model, next to the served one: figure suffix ->
#: (weights, compute, attention, provider) as `marquee model build-default` and
#: ``MARQUEE_GENERATOR_PROVIDER`` take them.
VARIANTS = {
    "fp32": ("fp32", "fp32", "gqa", "cpu"),
    "q4_int8": ("q4", "int8", "gqa", "cpu"),
    "cuda": ("q4", "fp32", "ops", "cuda"),
}
_VARIANT_TEXT = {
    "fp32": "the fp32 build (weights dequantized; memory-bound at batch 1)",
    "q4_int8": "the q4-int8 build (every block matmul with int8 activations, as llama.cpp "
    "does; greedy text drifts from the fp32 reference after ~8 tokens)",
    "cuda": "the q4 build with standard-op attention (`--attention ops`) on onnxruntime's "
    "CUDA provider, KV cache on the GPU (IOBinding); skipped where no GPU is usable. The "
    "recorded figures come from one NVIDIA H200 (onnxruntime-gpu 1.31.1, CUDA 13)",
}


@functools.cache
def _engine(variant: str | None = None):
    """The served model (``MARQUEE_GENERATOR_MODEL_DIR`` or the default build), or one of
    :data:`VARIANTS` built on demand; warm."""
    from services.generator.default_model import build_default
    from services.generator.engine import Engine, RuntimeOptions
    from services.generator.errors import ModelError
    from services.generator.settings import GeneratorSettings
    from shared.config import load_settings

    settings = load_settings(GeneratorSettings)
    options = settings.runtime_options()
    if variant is not None and VARIANTS[variant][-1] == "cuda":
        _require_cuda()
    try:
        if variant is None:
            path = settings.model_dir()
        else:
            *build, provider = VARIANTS[variant]
            path, _ = build_default(settings.generator_models_cache, *build)
            options = RuntimeOptions(
                provider=provider, threads=options.threads, device_id=options.device_id
            )
        engine = Engine(path, options)
    except ModelError as exc:
        raise BenchmarkError(f"{exc} (make setup builds the default model)") from None
    return _warm(engine)


def _warm(engine):
    """``engine`` after a batch at every size: a fresh session runs its first few hundred
    steps slowly (allocations, arena growth, lazy kernel set-up)."""
    for batch in BATCHES:
        engine.generate_batch(_requests(engine, batch, 32))
    return engine


def _requests(engine, batch: int, new_tokens: int, offset: int = 0):
    from services.generator.engine import GenerationRequest, SamplingParams

    # Every row runs its full length: the figures are about a batch size, not about
    # where the model happens to end its text.
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0, ignore_eos=True)
    return [
        GenerationRequest(engine.render("news", TOPICS[(offset + i) % len(TOPICS)]), params)
        for i in range(batch)
    ]


def _decode_rate(engine, requests) -> float:
    """Decode tokens/s of one batch: tokens after each row's first, over the time after
    the last row's first token."""
    return _rate(engine.generate_batch(requests))


def _rate(results) -> float:
    first = max(r.first_token_seconds for r in results)
    end = max(r.total_seconds for r in results)
    tokens = sum(r.completion_tokens - 1 for r in results)
    if end <= first or tokens == 0:
        raise BenchmarkError("the batch finished at its first token; cannot time decoding")
    return tokens / (end - first)


def _describe(engine) -> str:
    weights = engine.config.build.get("weights", "?")
    return f"{engine.model_id} ({weights} weights) on {engine.device}"


def _batch_figure(variant: str | None) -> None:
    name = "generator_batch_decode" + (f"_{variant}" if variant else "")
    model = (
        _VARIANT_TEXT[variant]
        if variant
        else (
            "the default model (SmolLM2-135M-Instruct: GGUF Q4_1 blocks in onnxruntime's "
            "MatMulNBits with fp32 compute plus the per-block offset term, and, for the "
            "vocabulary projection, Q8_0 blocks with int8 activations)"
        )
    )

    @benchmark(
        name,
        unit="tokens/s",
        target_ratio=6.0,
        needs_kafka=False,
        description=f"""
            Decode tokens per second of `Engine.generate_batch` with 16 different news
            prompts in one batch (left-padded to the longest), {NEW_TOKENS} new tokens each
            (end-of-text ignored), greedy, on {model}. Baseline: the same engine with one
            prompt at a time, in the same run. Batch 4 is printed too. Median of
            interleaved repetitions. Target (issue 4): batch 16 ≥ 6× batch 1.
        """,
    )
    def run(ctx: Context) -> Result:
        engine = _engine(variant)
        ctx.progress(f"model: {_describe(engine)}")
        rates: dict[int, list[float]] = {b: [] for b in BATCHES}
        for rep in range(ctx.repeat):
            order = BATCHES if rep % 2 == 0 else tuple(reversed(BATCHES))
            for batch in order:
                rate = _decode_rate(engine, _requests(engine, batch, NEW_TOKENS, offset=rep))
                rates[batch].append(rate)
                ctx.progress(f"rep {rep + 1}/{ctx.repeat} batch {batch:>2}: {rate:,.1f} tokens/s")
        median = {b: statistics.median(r) for b, r in rates.items()}
        return Result(
            value=median[16],
            baseline_name="batch 1",
            baseline_value=median[1],
            notes=(
                f"batch 4: {median[4]:,.1f} tokens/s ({median[4] / median[1]:.2f}× batch 1)",
                f"model: {_describe(engine)}",
            ),
        )


def _kv_figure(variant: str | None) -> None:
    name = "generator_kv_cache" + (f"_{variant}" if variant else "")
    model = _VARIANT_TEXT[variant] if variant else "the default model"

    @benchmark(
        name,
        unit="tokens/s",
        target_ratio=5.0,
        needs_kafka=False,
        description=f"""
            Tokens per second generating {CACHE_TOKENS} new tokens for one news prompt with
            the KV cache (`Engine.generate_batch`, batch 1, greedy, {model}). Baseline: the
            no-cache loop, where every step runs the decoder over the whole sequence so far
            (empty past) and keeps the last position's logits. The no-cache loop is timed
            at 17 evenly spaced sequence lengths (its cost depends on nothing else) and its
            total over the {CACHE_TOKENS} steps integrated from those; the cached run is
            timed whole. Target (issue 4): ≥ 5×.
        """,
    )
    def run(ctx: Context) -> Result:
        engine = _engine(variant)
        (request,) = _requests(engine, 1, CACHE_TOKENS)
        ids = engine.tokenizer.encode(request.prompt)
        cached: list[float] = []
        generated: list[int] = []
        for rep in range(ctx.repeat):
            started = time.perf_counter()
            (result,) = engine.generate_batch([request])
            cached.append(result.completion_tokens / (time.perf_counter() - started))
            generated = list(result.token_ids)
            ctx.progress(f"rep {rep + 1}/{ctx.repeat} cached: {cached[-1]:,.1f} tokens/s")
        steps = len(generated)
        sample_at = sorted({round(i * (steps - 1) / 16) for i in range(17)})
        step_seconds = []
        for step in sample_at:
            sequence = np.array([ids + generated[:step]], dtype=np.int64)
            step_seconds.append(_uncached_step(engine, sequence, ctx.repeat))
        total = float(np.sum(np.interp(np.arange(steps), sample_at, step_seconds)))
        ctx.progress(
            f"no-cache step: {step_seconds[0] * 1e3:,.1f} ms at {len(ids)} tokens, "
            f"{step_seconds[-1] * 1e3:,.1f} ms at {len(ids) + steps - 1}"
        )
        return Result(
            value=statistics.median(cached),
            baseline_name="no-cache loop",
            baseline_value=steps / total,
            notes=(
                f"{steps} tokens generated after a {len(ids)}-token prompt",
                f"model: {_describe(engine)}",
            ),
        )


def _uncached_step(engine, sequence: np.ndarray, repeat: int) -> float:
    d = engine.decoder
    mask = np.ones_like(sequence)
    positions = np.arange(sequence.shape[1])[None]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        logits, _ = d.step(sequence, mask, positions, d.empty_cache(1))
        int(np.argmax(logits[0]))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _floor_figure(variant: str | None) -> None:
    name = "generator_bandwidth_floor" + (f"_{variant}" if variant else "")
    model = _VARIANT_TEXT[variant] if variant else "the default model"

    @benchmark(
        name,
        unit="tokens/s",
        target_ratio=0.5,
        needs_kafka=False,
        description=f"""
            Batch-1 decode tokens per second ({NEW_TOKENS} new tokens, greedy, {model})
            against the memory-bandwidth floor: the rate at which the weights one token
            reads (every initializer of the decoder except the embedding table and the
            rotary tables, of which one row is read; sizes from the ONNX file) could stream
            from memory at the bandwidth of a 1 GiB numpy copy measured in the same run,
            counting the bytes it reads and writes (STREAM's convention). Target (issue 4):
            ≥ 50% of the floor.
        """,
    )
    def run(ctx: Context) -> Result:
        engine = _engine(variant)
        per_token = weight_bytes_per_token(engine.config.onnx_path)
        rates, bandwidths = [], []
        measure = cuda_copy_bandwidth if engine.device == "cuda" else copy_bandwidth
        for rep in range(ctx.repeat):
            bandwidths.append(measure())
            rates.append(_decode_rate(engine, _requests(engine, 1, NEW_TOKENS, offset=rep)))
            ctx.progress(
                f"rep {rep + 1}/{ctx.repeat}: {rates[-1]:,.1f} tokens/s, "
                f"copy {bandwidths[-1] / 1e9:,.1f} GB/s"
            )
        bandwidth = statistics.median(bandwidths)
        return Result(
            value=statistics.median(rates),
            baseline_name="bandwidth floor",
            baseline_value=bandwidth / per_token,
            notes=(
                f"weights read per token: {per_token / 2**20:,.1f} MiB; copy bandwidth "
                f"{bandwidth / 1e9:,.1f} GB/s (read + write)",
                f"model: {_describe(engine)}",
            ),
        )


for _variant in (None, *VARIANTS):
    _batch_figure(_variant)
    _floor_figure(_variant)
_kv_figure(None)
_kv_figure("cuda")


def copy_bandwidth(nbytes: int = 2**30, repeat: int = 5) -> float:
    """Bytes per second a numpy copy moves (reads + writes), best of ``repeat``."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - started)
    return 2 * nbytes / best


def _copy_graph():
    """A one-node ONNX model, ``y = x * 1``: a kernel that reads and writes every byte."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "one"], ["y"])], "copy", [x], [y], [one]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@functools.cache
def _cuda_session():
    """An onnxruntime session on the GPU, or ``None`` with the reason where there is none;
    probed once per process (the figures and every bandwidth repetition share it)."""
    import onnxruntime as ort

    from services.generator.engine.runtime import CUDA, try_cuda_session

    if CUDA not in ort.get_available_providers():
        return None, "this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
    session, reason = try_cuda_session(_copy_graph())
    if session is None:
        return None, reason
    if session.get_providers()[0] != CUDA:
        return None, "no GPU that onnxruntime's CUDA provider can use"
    return session, ""


def _require_cuda() -> None:
    session, reason = _cuda_session()
    if session is None:
        raise BenchmarkSkipped(f"needs a GPU: {reason}")


def cuda_copy_bandwidth(nbytes: int = 2**30, repeat: int = 5) -> float:
    """Bytes per second a GPU kernel moves (reads + writes) over device memory, best of
    ``repeat``: ``y = x * 1`` on a 1 GiB tensor, both ends bound on the device."""
    from onnxruntime import OrtValue

    session, reason = _cuda_session()
    if session is None:
        raise BenchmarkError(f"cannot measure GPU bandwidth: {reason}")
    x = OrtValue.ortvalue_from_shape_and_type([nbytes // 4], np.float32, "cuda", 0)
    y = OrtValue.ortvalue_from_shape_and_type([nbytes // 4], np.float32, "cuda", 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input("x", x)
    binding.bind_ortvalue_output("y", y)
    session.run_with_iobinding(binding)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        binding.synchronize_inputs()
        started = time.perf_counter()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        best = min(best, time.perf_counter() - started)
    return 2 * nbytes / best


def weight_bytes_per_token(onnx_path) -> int:
    """Initializer bytes one decode step reads: all but the rows that lookups pick."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    lookups = {"Gather", "GatherBlockQuantized", "RotaryEmbedding"}
    looked_up, used_otherwise = set(), set()
    for node in graph.node:
        for name in node.input:
            (looked_up if node.op_type in lookups else used_otherwise).add(name)
    total = 0
    for tensor in graph.initializer:
        if tensor.name in looked_up and tensor.name not in used_otherwise:
            continue
        total += _tensor_bytes(tensor)
    return total


def _tensor_bytes(tensor) -> int:
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    return len(tensor.raw_data)
