"""Benchmark the cost of learning: the quickstart with the proxy model trained vs timing only.

Run from the repository root::

    .venv/bin/python benchmarks/bench_learning.py [--repeats 3]

Each repeat runs ``sfsim run`` end to end in a fresh process (start-up, the torch import, the
simulation, the learner and writing the run folder all count), alternating the two scenarios so
both see the same machine load:

* ``scenarios/quickstart.yaml`` (learning off, as every timing-only run), and
* ``scenarios/learning/quickstart_learning.yaml`` (the same scenario with ``learning.enabled``).

It prints the median wall time of each, their ratio, and whether the learning run met the
target of issue 13 (<= 60 s on two cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "learning off": ROOT / "scenarios" / "quickstart.yaml",
    "learning on": ROOT / "scenarios" / "learning" / "quickstart_learning.yaml",
}
TARGET_S = 60.0


def run_once(scenario: Path, out: Path) -> float:
    """Wall seconds of one ``sfsim run`` in a new process."""
    cmd = [str(Path(sys.executable).parent / "sfsim"), "run", str(scenario), "--out", str(out),
           "-q", "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return took


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as tmp:
        for i in range(args.repeats):
            for name, scenario in CASES.items():
                times[name].append(run_once(scenario, Path(tmp) / f"{i}_{name.split()[1]}"))
        learned = Path(tmp) / "0_on" / "learning.parquet"
        if not learned.is_file():
            raise SystemExit(f"the learning run wrote no {learned.name}: is learning enabled?")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"cores available: {os.cpu_count()}, repeats: {args.repeats}")
    for name, ts in times.items():
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{name:13s} median {med[name]:7.2f} s   (runs: {runs})")
    ratio = med["learning on"] / med["learning off"]
    verdict = "met" if med["learning on"] <= TARGET_S else "NOT met"
    print(f"learning on / off: {ratio:.1f}x; target <= {TARGET_S:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
