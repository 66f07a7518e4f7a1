"""The generator: content requests -> an ONNX language model -> generated text.

The inference half has no Kafka or database imports, so a service (or the CLI, or a
benchmark) drives it from any thread:

- :mod:`.convert` turns a Llama-architecture GGUF into a model directory;
- :mod:`.modeldir` reads a model directory (ours, or any Optimum
  ``text-generation-with-past`` export): ONNX decoder, ``tokenizer.json``, config;
- :mod:`.engine` runs it on onnxruntime (CUDA with IOBinding when present, else CPU)
  with a KV cache and batched generation;
- :mod:`.sampling`, :mod:`.stopping` and :mod:`.prompts` are pure logic.
"""

from shared.registry import ServiceSpec

from .settings import GeneratorSettings

SERVICE = ServiceSpec(
    name="generator",
    summary="content-requests -> an ONNX language model -> content-generated",
    settings=GeneratorSettings,
    build="services.generator.app:build",
)
