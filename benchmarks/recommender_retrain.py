"""What a retrain costs beyond the ALS fit itself: reading Postgres, bookkeeping, writing.

``training.retrain`` runs as ``marquee train`` and the scheduled retrains run it: read
every interaction, evaluate a fit on a held-out split against popularity (the quality
gate), fit on everything, COPY the factors into Postgres, activate, prune. The issue's
figure is "load from Postgres + fit + write factors", so the headline leaves the
evaluation out: its two phases (the split and ``evaluate_split``) are timed inside the
real call and subtracted. The whole retrain, evaluation included, is in the notes.

The baseline is implicit's own ``fit`` with the same parameters on the same users x items
matrix (summed confidences, read from Postgres beforehand, untimed).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import scipy.sparse
from implicit.cpu.als import AlternatingLeastSquares
from sqlalchemy import text
from threadpoolctl import threadpool_limits

from services.recommender import training
from services.recommender.model_store import ModelStore

from ._stack import Scratch, machine_load, scratch, seed_movielens
from .harness import BenchmarkError, Context, Result, benchmark

#: The issue's target: a retrain (without evaluation) within 1.5x the bare fit.
TARGET_OVERHEAD = 1.5
#: The evaluation's phases inside ``training.retrain``, by the names it calls them.
EVALUATION = ("split_per_user_temporal", "evaluate_split")
#: The other phases, timed for the notes: where the overhead over the bare fit goes.
PHASES = {"load": "events", "fit": "fit_recommender", "write": "save"}


@benchmark(
    "recommender_retrain_seconds",
    unit="s",
    higher_is_better=False,
    target_ratio=1 / TARGET_OVERHEAD,
    description="""
        Seconds of `services.recommender.training.retrain` (what `marquee train` and the
        scheduled retrains run) on MovieLens-100k ingested through the real worker: read
        every interaction from Postgres, fit ALS (default parameters) on all of them, COPY
        the factors into Postgres, activate, prune, without its held-out evaluation (timed
        inside the same call and subtracted; the full retrain is in the notes). Baseline:
        implicit's bare `fit` with the same parameters and threads on the same users×items
        matrix, interleaved, median of repetitions. Target (issue 3): ≤ 1.5× the bare fit
        (ratio ≥ 0.67).
    """,
)
def recommender_retrain_seconds(ctx: Context) -> Result:
    with scratch(ctx, "retrain") as stack:
        stored = seed_movielens(stack)
        matrix = _matrix(stack)
        params = stack.settings.als_params()
        store = ModelStore(stack.engine)
        runs: dict[str, list[float]] = {
            k: [] for k in ("bare", "retrain", "full", "evaluation", *PHASES)
        }
        for rep in range(ctx.repeat):
            sides: dict[str, Callable[[], None]] = {
                "bare": lambda: runs["bare"].append(_bare_fit(matrix, asdict(params))),
                "retrain": lambda: _retrain(stack, store, params, runs),
            }
            for side in sides if rep % 2 == 0 else reversed(sides):
                sides[side]()
            ctx.progress(
                f"rep {rep + 1}/{ctx.repeat}: bare fit {runs['bare'][-1]:.2f} s, retrain "
                f"{runs['retrain'][-1]:.2f} s without evaluation, {runs['full'][-1]:.2f} s with"
            )
    value, bare, full, evaluation = (
        statistics.median(runs[k]) for k in ("retrain", "bare", "full", "evaluation")
    )
    verdict = "met" if value / bare <= TARGET_OVERHEAD else "MISSED"
    return Result(
        value=value,
        baseline_name="implicit bare fit",
        baseline_value=bare,
        notes=(
            f"{stored:,} interactions, {matrix.shape[0]:,} users × {matrix.shape[1]:,} items, "
            f"{params}",
            *(f"{k}: {', '.join(f'{s:.2f}' for s in v)} s" for k, v in runs.items()),
            f"without evaluation: {value / bare:.2f}× the bare fit "
            f"(target ≤ {TARGET_OVERHEAD}×: {verdict})",
            f"with evaluation (the whole retrain): {full / bare:.2f}× the bare fit; "
            f"the evaluation alone {evaluation:.2f} s",
            machine_load(),
        ),
    )


def _matrix(stack: Scratch) -> scipy.sparse.csr_matrix:
    """Users x items of summed confidences: what retrain builds from the same rows."""
    with stack.engine.connect() as conn:
        pairs = conn.execute(text("SELECT user_id, item_id, confidence FROM user_item")).all()
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    rows = [users.setdefault(u, len(users)) for u, _, _ in pairs]
    cols = [items.setdefault(i, len(items)) for _, i, _ in pairs]
    values = np.asarray([c for _, _, c in pairs], dtype=np.float32)
    return scipy.sparse.csr_matrix((values, (rows, cols)), shape=(len(users), len(items)))


def _bare_fit(matrix: scipy.sparse.csr_matrix, params: dict) -> float:
    # As the service fits: implicit's threads on every core, BLAS single-threaded under it.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(**params, num_threads=0)
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        return time.perf_counter() - started


def _retrain(stack: Scratch, store: ModelStore, params, runs: dict[str, list[float]]) -> None:
    settings = stack.settings
    owners = {"events": store, "save": store}  # the rest are training's module globals
    names = (*EVALUATION, *PHASES.values())
    with _timed({name: owners.get(name, training) for name in names}) as spent:
        started = time.perf_counter()
        outcome = training.retrain(
            store,
            params,
            gate_ratio=settings.recommender_quality_gate_ratio,
            keep=settings.recommender_keep_versions,
        )
        full = time.perf_counter() - started
    if outcome.status != "active":
        raise BenchmarkError(f"the retrain was {outcome.status}, not activated: {outcome}")
    evaluation = sum(spent[name] for name in EVALUATION)
    runs["full"].append(full)
    runs["evaluation"].append(evaluation)
    runs["retrain"].append(full - evaluation)
    for phase, name in PHASES.items():
        runs[phase].append(spent[name])


@contextmanager
def _timed(owners: dict[str, object]) -> Iterator[dict[str, float]]:
    """Seconds spent in ``owner.<name>`` (summed over calls) while the block runs."""
    spent = dict.fromkeys(owners, 0.0)
    originals = {}
    for name, owner in owners.items():
        original = getattr(owner, name, None)
        if original is None:
            raise BenchmarkError(f"{owner!r} has no {name} any more: update {__name__}")
        originals[name] = original

        def timed(*args, _original=original, _name=name, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - started

        setattr(owner, name, timed)
    try:
        yield spent
    finally:
        for name, owner in owners.items():
            if owner is training:
                setattr(owner, name, originals[name])
            else:  # an instance attribute shadowing the method: remove it
                delattr(owner, name)
