"""onnxruntime sessions: CUDA when it really works, otherwise CPU with a sane thread count.

onnxruntime-gpu lists ``CUDAExecutionProvider`` as available on machines without a GPU
(it is compiled in), so the list decides nothing: a session is created with CUDA first
and kept only if CUDA is what it actually got; onnxruntime otherwise falls back to CPU
inside that same session, which is then used as is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ModelError

log = logging.getLogger(__name__)

Provider = Literal["auto", "cuda", "cpu"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class RuntimeOptions:
    provider: Provider = "auto"
    #: Intra-op threads on CPU; None: the CPUs this process may run on.
    threads: int | None = None
    device_id: int = 0


def default_threads(
    cgroup: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """The CPUs this process may use: its affinity (what `nproc` says, cpuset-pinned
    containers), capped by a CPU quota (``docker run --cpus``, a systemd ``CPUQuota``),
    not the host's core count. More threads than that makes onnxruntime's spinning
    workers fight each other, and a quota throttles them all."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cpu_quota(cgroup, self_cgroup)
    return max(1, min(cpus or 1, quota or cpus or 1))


def cpu_quota(
    cgroup: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """Whole CPUs (at least 1) that the tightest CPU quota over this process allows, or
    None without one: cgroup v2's ``cpu.max`` in the process's own cgroup and each one
    above it, else v1's CFS quota (inside a container, the container's)."""
    try:
        entry = next(x for x in self_cgroup.read_text().splitlines() if x.startswith("0::"))
        node = cgroup / entry[3:].strip().lstrip("/")
    except (OSError, StopIteration):
        node = cgroup
    quotas = []
    while True:
        try:
            quota, period = (node / "cpu.max").read_text().split()[:2]
            if quota != "max":
                quotas.append(max(1, int(quota) // int(period)))
        except (OSError, ValueError):
            pass
        if node == cgroup or cgroup not in node.parents:
            break
        node = node.parent
    if quotas:
        return min(quotas)
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, quota // period) if quota > 0 and period > 0 else None


def preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries of pip's ``nvidia-*`` wheels, where they are
    installed, so the CUDA provider finds them without ``LD_LIBRARY_PATH``; a no-op
    elsewhere (system CUDA, or none)."""
    import importlib.util

    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    # Without the wheels onnxruntime would print a "failed to load" line per library.
    if preload is None or importlib.util.find_spec("nvidia") is None:
        return
    # onnxruntime prints (not logs) each library it cannot find: a CPU machine with some
    # nvidia wheels (a CPU PyTorch's, say) would get a page of it on every start.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload(cuda=True, cudnn=True, msvc=False)
    except Exception as exc:  # a missing library surfaces again, with its name, at session start
        log.debug("preloading CUDA libraries failed: %s", exc)
    if printed.getvalue().strip():
        log.debug("preloading CUDA libraries: %s", printed.getvalue().strip())


def try_cuda_session(model, so=None, device_id: int = 0):
    """``(session, reason)``: a session on ``model`` (a path or ONNX bytes) that asks for
    CUDA first. onnxruntime may fall back to CPU inside it (check ``get_providers()``);
    ``session`` is ``None``, with the first line of the error, where it could not start."""
    import onnxruntime as ort

    reason = "no GPU, driver or CUDA libraries that onnxruntime can use"
    preload_cuda_libraries()
    # A failed CUDA probe makes onnxruntime's process-wide logger print a page of errors
    # on stderr; the caller's one line says it all, so quiet it meanwhile.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(model, so, providers=[(CUDA, {"device_id": device_id}), CPU])
    except Exception as exc:  # onnxruntime's pybind errors share no useful base class
        session, reason = None, str(exc).strip().splitlines()[0]
    finally:
        ort.set_default_logger_severity(3)
    return session, reason


def create_session(onnx_path: Path, options: RuntimeOptions):
    """``(session, device)`` with device ``"cuda"`` or ``"cpu"``."""
    import onnxruntime as ort

    threads = options.threads or default_threads()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # Warnings about unused initializers and the like are noise to an operator.
    so.log_severity_level = 3

    wants_cuda = options.provider in ("auto", "cuda")
    if wants_cuda and CUDA in ort.get_available_providers():
        session, reason = try_cuda_session(str(onnx_path), so, options.device_id)
        if session is not None and session.get_providers()[0] == CUDA:
            log.info("generator runs on CUDA device %s", options.device_id)
            return session, "cuda"
        if options.provider == "cuda":
            raise ModelError(f"CUDA was requested but is not usable: {reason}")
        log.info("CUDA not usable (%s); running on CPU with %s threads", reason, threads)
        if session is not None:
            return session, "cpu"
    elif options.provider == "cuda":
        raise ModelError(
            "CUDA was requested but this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
        )
    try:
        session = ort.InferenceSession(str(onnx_path), so, providers=[CPU])
    except Exception as exc:
        raise ModelError(
            f"onnxruntime cannot load {onnx_path}: {str(exc).strip()[:500]} (a model built by "
            "an older Marquee: rebuild it with `marquee model build-default --force`)"
        ) from None
    log.info("generator runs on CPU with %s threads", threads)
    return session, "cpu"
