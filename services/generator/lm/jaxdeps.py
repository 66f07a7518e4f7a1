"""The optional ``finetune`` extra (JAX + optax), imported only where training needs it."""

from __future__ import annotations

from ..errors import FinetuneError

INSTALL_HINT = "fine-tuning requires `pip install -e .[finetune]` (jax, jaxlib 0.10.2, optax 0.2.8)"


def require_jax():
    """``(jax, jax.numpy, optax)``, or a :class:`FinetuneError` saying what to install."""
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        raise FinetuneError(INSTALL_HINT) from None
    return jax, jnp, optax
