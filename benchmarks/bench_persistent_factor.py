"""What the persistent-factor lookup costs the event loop (issue 12).

Side by side, on 20 identical devices × 100 local iterations × 2 rounds of memsfl: the plain
scenario (no persistent factor anywhere: `Sim.compute` skips the lookup) against the same
scenario with ``slowdown: 1.0`` written on every device (the lookup runs on every compute; the
run is the same to the last bit). Median wall time of 7 alternating repeats. From the
repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_persistent_factor.py
"""

from __future__ import annotations

import statistics
import time

from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario, parse_scenario
from tests.schemes.common import identical


def main(repeats: int = 7) -> None:
    d = identical(20)
    d["training"].update(local_iterations=100, rounds=2)
    plain = resolve(parse_scenario(d))
    for dev in d["devices"]:
        dev["slowdown"] = 1.0
    lookup = resolve(parse_scenario(d))

    def timed(s: Scenario) -> tuple[float, float]:
        t = time.perf_counter()
        r = simulate(s)
        return time.perf_counter() - t, r.summary["makespan_s"]

    times: dict[str, list[float]] = {"plain": [], "lookup": []}
    for _ in range(repeats):
        a, ma = timed(plain)
        b, mb = timed(lookup)
        assert ma == mb  # the same run to the last bit
        times["plain"].append(a)
        times["lookup"].append(b)
    p, w = statistics.median(times["plain"]), statistics.median(times["lookup"])
    print(f"20 devices x 100 iterations x 2 rounds, median of {repeats}: plain {p:.3f} s, "
          f"with the lookup {w:.3f} s, ratio {w / p:.3f}")


if __name__ == "__main__":
    main()
