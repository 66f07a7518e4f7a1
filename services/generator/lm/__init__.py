"""Training the generator's language model: corpus, JAX Llama, LoRA fine-tuning, export.

``sources`` and ``corpus`` need only numpy and the tokenizer; ``model``, ``lora``,
``train`` and ``checkpoint`` need the optional ``finetune`` extra (JAX + optax), imported
through :func:`services.generator.lm.jaxdeps.require_jax` so the generator itself runs
without it.
"""
