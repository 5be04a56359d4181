"""Benchmarks of the streaming service against its ceiling and other stream processors.

Run with ``make bench`` or ``python -m bench [name ...] [--events N]``; every benchmark
prints its figures and ends with one JSON line, and a full run merges them into
``bench/results/latest.json``. See ``docs/BENCHMARKS.md`` for the figures. Benchmarks
are never collected by pytest: they take minutes and need a quiet machine to mean much.
"""
