"""Marquee's onnxruntime custom ops, compiled from this folder's C++ into a shared library.

Domain ``marquee`` (registered in ``ops.cc``):

- ``MatMulQ4_1`` and ``MatMulQ8_0`` (``block_matmul.cc``) multiply by GGUF Q4_1 and Q8_0
  blocks as they are, in fp32: onnxruntime's ``MatMulNBits`` has no exact form for Q4_1's
  per-block minimum (see ``convert/weights.py``) and computes 8-bit blocks with int8
  activations only;
- ``CachedAttention`` (``attention.cc``): rotary embedding and grouped-query attention
  over the KV cache, on the packed QKV projection, with an additive bias (left padding,
  causality); it appends in place to a preallocated cache;
- ``SwiGLU`` (``swiglu.cc``): the MLP's gated activation on the fused gate and up
  projection.

The converter compiles the library into the model directory it writes, so a directory
carries the kernels its graph needs; the engine registers it with the session
(``ModelConfig.custom_ops``).

onnxruntime's wheels ship no C headers. The C API header comes, once, into
``HEADER_CACHE`` (``.cache/headers`` beside the default models cache) from a Go module on
the Go module proxy that vendors it (``github.com/yalue/onnxruntime_go``, MIT), pinned by
hash; ``GOPROXY`` picks the proxy as it does for ``go``. The library asks onnxruntime for
API version 17 (1.17), whatever the header's version.
"""

from __future__ import annotations

import ctypes
import hashlib
import http.client
import io
import logging
import os
import re
import shutil
import subprocess
import urllib.request
import zipfile
from pathlib import Path

from ..errors import ConversionError

log = logging.getLogger(__name__)

DOMAIN = "marquee"
LIBRARY = "libmarquee_ops.so"
_HERE = Path(__file__).parent
SOURCES = tuple(_HERE / name for name in ("ops.cc", "block_matmul.cc", "attention.cc", "swiglu.cc"))
#: What the sources include from this folder.
_LOCAL_HEADERS = (_HERE / "ops.h",)
HEADER = "onnxruntime_c_api.h"
#: The C API header and the one it includes.
_HEADERS = (HEADER, "onnxruntime_ep_c_api.h")
_MODULE = "github.com/yalue/onnxruntime_go"
_VERSION = "v1.27.0"
_SHA256 = "5b7c7e6878caa1f1bf5d5acc09bfdd9de4c2f1e1beee1ff5529570139c540cb0"
#: Static libstdc++: the library loads in images that have only the C runtime.
_FLAGS = (
    "-O3",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fvisibility=hidden",
    "-static-libstdc++",
    "-static-libgcc",
)
#: Where the header is kept (beside the default models cache).
HEADER_CACHE = Path(__file__).resolve().parents[3] / ".cache" / "headers"


def compiler() -> str | None:
    """The C++ compiler to use (``$CXX``, else ``c++`` or ``g++`` on PATH), or None."""
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and (found := shutil.which(name)):
            return found
    return None


def _cpu_flags() -> set[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return set(flags.group(1).split()) if flags else set()


def fast_path_cpu() -> bool:
    """Whether this CPU has the AVX-512 the kernel's fast path needs (the portable path is
    slower than onnxruntime's MatMulNBits)."""
    return {"avx512f", "fma"} <= _cpu_flags()


def amx_cpu() -> bool:
    """Whether this CPU has the AMX tiles the block matmuls (``MatMulQ4_1``, ``MatMulQ8_0``)
    use from 8 rows (batched decode steps, prompt passes) as well."""
    return {"avx512f", "fma", "amx_tile", "amx_bf16", "avx512bw"} <= _cpu_flags()


def kernel_path(library: Path) -> str:
    """Which path ``library`` runs on this CPU: ``"avx512+amx"``, ``"avx512"`` or
    ``"portable"``."""
    probe = ctypes.CDLL(str(library)).MarqueeKernelPath
    probe.restype = ctypes.c_char_p
    return probe().decode()


def source_digest() -> str:
    """What a compiled library depends on: sources, flags and the header's version."""
    digest = hashlib.sha256(" ".join((*_FLAGS, _VERSION)).encode())
    for source in (*SOURCES, *_LOCAL_HEADERS):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def build_library(out_dir: Path, header_cache: Path | None = None, progress=lambda _: None) -> Path:
    """Compile the custom ops into ``out_dir / LIBRARY``; a :class:`ConversionError` says
    what is missing."""
    cxx = compiler()
    if cxx is None:
        raise ConversionError(
            "compiling Marquee's kernels needs a C++ compiler (apt-get install g++, or set CXX)"
        )
    include = header_dir(header_cache, progress)
    out = out_dir / LIBRARY
    progress(f"compiling {', '.join(s.name for s in SOURCES)} with {Path(cxx).name}")
    command = [cxx, *_FLAGS, "-I", str(include), *map(str, SOURCES), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConversionError(
            f"compiling Marquee's kernels failed ({' '.join(command)}): {result.stderr[-2000:]}"
        )
    return out


def header_dir(cache: Path | None = None, progress=lambda _: None) -> Path:
    """The folder holding onnxruntime's C API header, fetched once into ``cache`` (default
    ``HEADER_CACHE``); a :class:`ConversionError` when no proxy has it."""
    folder = (cache or HEADER_CACHE) / f"onnxruntime-c-api-{_VERSION}"
    if (folder / HEADER).is_file():
        return folder
    data, errors = None, []
    for proxy in _proxies():
        url = f"{proxy}/{_MODULE}/@v/{_VERSION}.zip"
        progress(f"fetching onnxruntime's C API header ({_MODULE}@{_VERSION}, once)")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (pinned)
                data = response.read()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() == _SHA256:
            break
        errors.append(f"{url}: not the expected SHA-256")
        data = None
    if data is None:
        raise ConversionError(
            "cannot fetch onnxruntime's C API header (" + "; ".join(errors or ["GOPROXY=off"]) + ")"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # The main header last: its presence says the folder is complete.
            for name in reversed(_HEADERS):
                partial = folder / f".{name}.partial-{os.getpid()}"
                partial.write_bytes(archive.read(f"{_MODULE}@{_VERSION}/{name}"))
                partial.rename(folder / name)
    except OSError as exc:
        raise ConversionError(
            f"cannot write onnxruntime's C API header into {folder}: {exc}"
        ) from None
    return folder


def _proxies() -> list[str]:
    """The HTTP(S) proxies of ``GOPROXY`` (``,`` and ``|`` separated; ``off``: none)."""
    entries = re.split(r"[,|]", os.environ.get("GOPROXY") or "https://proxy.golang.org")
    return [e.rstrip("/") for e in entries if e.startswith(("http://", "https://"))]
