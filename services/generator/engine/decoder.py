"""One forward step of an Optimum-contract decoder, with its KV cache kept where it runs.

The session's declared inputs decide what is fed (a GPT-2 export has no
``position_ids``, an older merged export wants ``use_cache_branch``; ours accepts
``num_logits_to_keep``). Everything goes through IOBinding: the ``present.*`` outputs stay
as onnxruntime values on the device (GPU memory under CUDA) and are bound as the next
step's ``past_key_values.*`` without a copy. Only the last position's logits come back
to the host. Dropping finished rows or common left padding copies the cache once.

Models whose attention is onnxruntime's ``GroupQueryAttention`` (the converter's default
builds) can instead keep the cache in one preallocated buffer per layer, bound as both
``past_key_values.*`` and ``present.*``: the operator then appends the new positions in
place instead of copying the whole cache into a fresh ``present`` every step. The buffer
has room for more positions than are valid; ``attention_mask`` says how many are, and the
buffer grows by doubling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
#: Without ``num_logits_to_keep`` a prompt pass returns logits for every position
#: (``batch x length x vocab`` floats); passes are split by rows to stay under this.
MAX_PREFILL_LOGITS_BYTES = 512 * 2**20
#: Shared buffers start with room for this many new positions, then double.
INITIAL_RESERVE = 128
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass
class KVCache:
    """``past_key_values`` for the rows of a batch: ``[batch, kv_heads, length, head_dim]``,
    or, with shared buffers, ``[batch, kv_heads, capacity, head_dim]`` of which the first
    ``length`` positions are valid."""

    values: list  # onnxruntime OrtValues, in the decoder's past-input order
    batch: int
    length: int
    #: Shared buffers only: the numpy arrays behind ``values`` (same memory).
    buffers: list | None = None
    #: Shared buffers only: the IOBinding that binds them as past and present, made by the
    #: first step on them and reused (rebinding 2 x layers values each step, with reading
    #: every output back, made most of ~0.8 ms a step outside the session at batch 1).
    binding: object | None = field(default=None, repr=False)

    # With shared buffers, the cache a step returns writes into the same memory as the
    # one it was given: step each cache once, never an older one again.

    @property
    def capacity(self) -> int:
        return self.buffers[0].shape[2] if self.buffers else self.length


class Decoder:
    def __init__(
        self,
        session,
        device: str,
        device_id: int = 0,
        *,
        share_buffers: bool = False,
        max_length: int | None = None,
    ) -> None:
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
        logits = session.get_outputs()[outputs.index("logits")]
        self.vocab: int | None = logits.shape[-1] if isinstance(logits.shape[-1], int) else None
        self.logits_dtype = _NP_TYPES.get(logits.type)
        # In-place appends need a kernel that writes into its past buffer (the caller
        # knows the graph), host memory, prompt passes that never split by rows, and a
        # known vocabulary and type (logits go into arrays of ours).
        self.share_buffers = (
            share_buffers
            and device == "cpu"
            and self.can_keep_last
            and self.vocab is not None
            and self.logits_dtype is not None
        )
        #: The context length: shared buffers never grow past it.
        self.max_length = max_length

    # -- cache -----------------------------------------------------------------------------
    def empty_cache(self, batch: int, reserve: int = 0) -> KVCache:
        """A cache with no positions yet; shared buffers get room for ``reserve``."""
        if not self.share_buffers:
            return KVCache([], batch, 0)
        return self._buffers(batch, max(reserve, 1), [])

    def _room(self, wanted: int, needed: int) -> int:
        """Positions a shared buffer gets: ``wanted``, capped at the context length, but
        never fewer than ``needed``."""
        if self.max_length is not None:
            wanted = min(wanted, self.max_length)
        return max(wanted, needed)

    def _buffers(self, batch: int, capacity: int, contents: list[np.ndarray]) -> KVCache:
        from onnxruntime import OrtValue

        shape = (batch, self.kv_heads, capacity, self.head_dim)
        buffers = [np.empty(shape, dtype=self.kv_dtype) for _ in self.past_names]
        length = contents[0].shape[2] if contents else 0
        for buffer, content in zip(buffers, contents, strict=False):
            buffer[:, :, :length] = content
        # CPU OrtValues made from numpy share its memory (and keep the array alive).
        values = [OrtValue.ortvalue_from_numpy(b) for b in buffers]
        return KVCache(values, batch, length, buffers)

    def select(self, cache: KVCache, rows: np.ndarray, drop_left: int = 0) -> KVCache:
        """Keep ``rows`` and drop the first ``drop_left`` positions (padding no row needs)."""
        from onnxruntime import OrtValue

        if cache.buffers is not None:
            kept = [b[rows, :, drop_left : cache.length] for b in cache.buffers]
            return self._buffers(len(rows), cache.capacity - drop_left, kept)
        values = []
        for value in cache.values:
            kept = np.ascontiguousarray(value.numpy()[rows, :, drop_left:, :])
            values.append(OrtValue.ortvalue_from_numpy(kept, self.device, self.device_id))
        return KVCache(values, len(rows), cache.length - drop_left)

    def merge(self, caches: list[KVCache], reserve: int = 0) -> KVCache:
        """One cache for the rows of ``caches`` (one row each, read alone), left-padded to
        the longest, as a batched prompt pass leaves it; shared buffers get room for
        ``reserve`` more positions. The padding is zeros: the attention mask hides it,
        but what it hides must not be NaN (0 x NaN is NaN)."""
        from onnxruntime import OrtValue

        batch, width = len(caches), max(c.length for c in caches)
        capacity = self._room(width + min(reserve, INITIAL_RESERVE), needed=width)
        if not self.share_buffers:
            capacity = width
        merged = []
        for k in range(len(self.past_names)):
            out = np.empty((batch, self.kv_heads, capacity, self.head_dim), self.kv_dtype)
            for b, cache in enumerate(caches):
                row = cache.buffers[k] if cache.buffers is not None else cache.values[k].numpy()
                out[b, :, : width - cache.length] = 0
                out[b, :, width - cache.length : width] = row[0, :, : cache.length]
            merged.append(out)
        if self.share_buffers:
            values = [OrtValue.ortvalue_from_numpy(b) for b in merged]
            return KVCache(values, batch, width, merged)
        values = [OrtValue.ortvalue_from_numpy(m, self.device, self.device_id) for m in merged]
        return KVCache(values, batch, width)

    # -- forward ---------------------------------------------------------------------------
    def prefill(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        reserve: int = 0,
        *,
        pending: int = 0,
    ) -> tuple[np.ndarray, KVCache]:
        """The (first) prompt pass: last-position logits and the cache, in row groups when
        the model returns logits for every position (an Optimum export) and they would be
        big. ``reserve``: how many new tokens the caller may append; ``pending``: how many
        prompt positions later passes will append (chunked prefill)."""
        batch, length = input_ids.shape
        if self.share_buffers:
            # Room for the whole prompt and a first stretch of new tokens only: pages are
            # touched as they fill, but a batch's rows may well stop long before their
            # max_new_tokens.
            wanted = length + pending + min(reserve, INITIAL_RESERVE)
            room = self._room(wanted, needed=length + pending)
            cache = self.empty_cache(batch, room)
            return self.step(input_ids, attention_mask, position_ids, cache)
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
        if cache.buffers is not None and cache.length + new > cache.capacity:
            # Doubling: a long generation copies its cache a logarithmic number of times.
            needed = cache.length + new
            grown = self._room(max(2 * cache.capacity, needed), needed)
            cache = self._buffers(batch, grown, [b[:, :, : cache.length] for b in cache.buffers])
        # A cache's binding is reused by the steps after it; one that wants every position's
        # logits gets a fresh one (the reused one has num_logits_to_keep bound).
        bound = cache.binding is not None and not all_logits
        binding = cache.binding if bound else self.session.io_binding()
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
        if cache.buffers is not None:
            if not bound:  # the kernel writes each step's keys and values into them
                for past, present, value in zip(
                    self.past_names, self.present_names, cache.values, strict=True
                ):
                    binding.bind_ortvalue_input(past, value)
                    binding.bind_ortvalue_output(present, value)
        elif cache.length == 0:
            empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)
            for name in self.past_names:
                binding.bind_cpu_input(name, empty)
        else:
            for name, value in zip(self.past_names, cache.values, strict=True):
                binding.bind_ortvalue_input(name, value)
        # Logits are read on the host; the cache stays on the device for the next step.
        if cache.buffers is not None:
            # Straight into an array of ours: no list of every output to build each step.
            from onnxruntime import OrtValue

            kept = 1 if self.can_keep_last and not all_logits else new
            logits = np.empty((batch, kept, self.vocab), dtype=self.logits_dtype)
            binding.bind_ortvalue_output("logits", OrtValue.ortvalue_from_numpy(logits))
            self.session.run_with_iobinding(binding)
            cache = KVCache(cache.values, batch, cache.length + new, cache.buffers, binding)
            return (logits if all_logits else logits[:, -1, :]), cache
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()
        if not all_logits:
            logits = logits[:, -1, :]
        return logits, KVCache(list(outputs[1:]), batch, cache.length + new)
