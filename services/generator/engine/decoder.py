"""One forward step of an Optimum-contract decoder, with its KV cache kept where it runs.

The session's declared inputs decide what is fed (a GPT-2 export has no
``position_ids``, an older merged export wants ``use_cache_branch``; ours accepts
``num_logits_to_keep``). Everything goes through IOBinding: the ``present.*`` outputs stay
as onnxruntime values on the device (GPU memory under CUDA) and are bound as the next
step's ``past_key_values.*`` without a copy. Only the last position's logits come back
to the host. Dropping finished rows or common left padding copies the cache once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
#: Without ``num_logits_to_keep`` a prompt pass returns logits for every position
#: (``batch x length x vocab`` floats); passes are split by rows to stay under this.
MAX_PREFILL_LOGITS_BYTES = 512 * 2**20
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass
class KVCache:
    """``past_key_values`` for the rows of a batch: ``[batch, kv_heads, length, head_dim]``."""

    values: list  # onnxruntime OrtValues, in the decoder's past-input order
    batch: int
    length: int


class Decoder:
    def __init__(self, session, device: str, device_id: int = 0) -> None:
        self.session = session
        self.device = device
        self.device_id = device_id
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        pasts = sorted(
            (int(m.group(1)), m.group(2), name) for name in inputs if (m := _PAST.match(name))
        )
        if "input_ids" not in inputs or "logits" not in outputs or not pasts:
            raise ModelError(
                "the ONNX model does not follow the text-generation-with-past contract "
                "(input_ids, past_key_values.*, logits, present.*); export it with "
                "`optimum-cli export onnx --task text-generation-with-past`"
            )
        self.past_names = [name for _, _, name in pasts]
        self.present_names = [f"present.{i}.{kind}" for i, kind, _ in pasts]
        missing = [n for n in self.present_names if n not in outputs]
        if missing:
            raise ModelError(f"the ONNX model lacks outputs {', '.join(missing[:3])}")
        shape = inputs[self.past_names[0]].shape
        if not (isinstance(shape[1], int) and isinstance(shape[3], int)):
            raise ModelError(f"cannot read KV heads and head size from past shape {shape}")
        self.kv_heads, self.head_dim = shape[1], shape[3]
        self.kv_dtype = _NP_TYPES.get(inputs[self.past_names[0]].type)
        if self.kv_dtype is None:
            raise ModelError(f"unsupported KV cache type {inputs[self.past_names[0]].type}")
        self.layers = len(pasts) // 2
        self.has_attention_mask = "attention_mask" in inputs
        self.has_position_ids = "position_ids" in inputs
        self.has_cache_branch = "use_cache_branch" in inputs
        overridable = {i.name for i in session.get_overridable_initializers()}
        self.can_keep_last = "num_logits_to_keep" in overridable
        if self.can_keep_last:
            from onnxruntime import OrtValue

            self._keep_one = OrtValue.ortvalue_from_numpy(np.array(1, dtype=np.int64))
        vocab = session.get_outputs()[outputs.index("logits")].shape[-1]
        self.vocab: int | None = vocab if isinstance(vocab, int) else None

    # -- cache -----------------------------------------------------------------------------
    def empty_cache(self, batch: int) -> KVCache:
        return KVCache([], batch, 0)

    def select(self, cache: KVCache, rows: np.ndarray, drop_left: int = 0) -> KVCache:
        """Keep ``rows`` and drop the first ``drop_left`` positions (padding no row needs)."""
        from onnxruntime import OrtValue

        values = []
        for value in cache.values:
            kept = np.ascontiguousarray(value.numpy()[rows, :, drop_left:, :])
            values.append(OrtValue.ortvalue_from_numpy(kept, self.device, self.device_id))
        return KVCache(values, len(rows), cache.length - drop_left)

    # -- forward ---------------------------------------------------------------------------
    def prefill(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """The prompt pass: last-position logits and the cache, in row groups when the
        model returns logits for every position (an Optimum export) and they would be big."""
        batch, length = input_ids.shape
        # An export with a symbolic vocabulary size: assume a large one.
        per_row = 1 if self.can_keep_last else length * (self.vocab or 2**18) * 4
        rows = max(1, MAX_PREFILL_LOGITS_BYTES // max(per_row, 1))
        if rows >= batch:
            return self.step(input_ids, attention_mask, position_ids, self.empty_cache(batch))
        from onnxruntime import OrtValue

        parts = [
            self.step(
                input_ids[i : i + rows],
                attention_mask[i : i + rows],
                position_ids[i : i + rows],
                self.empty_cache(min(rows, batch - i)),
            )
            for i in range(0, batch, rows)
        ]
        values = [
            OrtValue.ortvalue_from_numpy(
                np.concatenate([cache.values[k].numpy() for _, cache in parts]),
                self.device,
                self.device_id,
            )
            for k in range(len(self.past_names))
        ]
        logits = np.concatenate([part_logits for part_logits, _ in parts])
        return logits, KVCache(values, batch, length)

    def step(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        cache: KVCache,
        *,
        all_logits: bool = False,
    ) -> tuple[np.ndarray, KVCache]:
        """Logits ``[batch, vocab]`` at each row's last position (``[batch, seq, vocab]``
        with ``all_logits``) and the cache extended by this step's tokens."""
        batch, new = input_ids.shape
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        if self.has_attention_mask:
            binding.bind_cpu_input(
                "attention_mask", np.ascontiguousarray(attention_mask, dtype=np.int64)
            )
        if self.has_position_ids:
            binding.bind_cpu_input(
                "position_ids", np.ascontiguousarray(position_ids, dtype=np.int64)
            )
        if self.has_cache_branch:
            binding.bind_cpu_input("use_cache_branch", np.array([cache.length > 0]))
        if self.can_keep_last and not all_logits:
            # An overridable initializer: IOBinding finds it only as an OrtValue.
            binding.bind_ortvalue_input("num_logits_to_keep", self._keep_one)
        if cache.length == 0:
            empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)
            for name in self.past_names:
                binding.bind_cpu_input(name, empty)
        else:
            for name, value in zip(self.past_names, cache.values, strict=True):
                binding.bind_ortvalue_input(name, value)
        # Logits are read on the host; the cache stays on the device for the next step.
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()
        if not all_logits:
            logits = logits[:, -1, :]
        return logits, KVCache(list(outputs[1:]), batch, cache.length + new)
