"""Benchmark the server schedulers (issue #4): gap to the optimum and solve time.

Same as ``sfsim bench-schedulers``; run from the repository root, e.g.::

    .venv/bin/python benchmarks/bench_schedulers.py --reps 3 --out runs/bench-schedulers

See ``docs/schedulers.md`` for the instance families, the measures and recorded figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing sfsim

from sfsim.schedulers.cli import bench_command

if __name__ == "__main__":
    typer.run(bench_command)
