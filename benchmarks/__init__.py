"""Marquee's benchmarks: each figure is a ratio against a baseline measured in the same run.

    python -m benchmarks --list
    python -m benchmarks publisher_throughput

A benchmark is a module in this package with a function decorated by
:func:`benchmarks.harness.benchmark`; results land in ``docs/benchmarks.json`` and the
table in ``docs/benchmarks.md`` is regenerated from it.
"""
