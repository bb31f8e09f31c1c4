"""Benchmark Shannon transfers under block fading: vectorised blocks vs the old per-block loop.

Run from the repository root::

    .venv/bin/python benchmarks/bench_links.py [--repeats 5]

For each case it prints the median wall time of one ``duration_s`` call with the current
`sfsim.links.ShannonLink` and with the algorithm it replaced (one ``SeedSequence`` and one loop
iteration per coherence block, copied below), side by side in one run, and their ratio. The old
loop is timed only up to ``--old-max-blocks`` blocks; beyond that its time is extrapolated from
its measured cost per block (marked ``~``), since it would run for hours (or for ever).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing sfsim

from sfsim.links import ShannonLink, dbm_to_w, path_loss_db, shannon_rate_bps


class OldLink:
    """sfsim ≤ 0.1.0: a SeedSequence per block, one Python iteration per block."""

    def __init__(self, link: ShannonLink):
        self.link, self.gains = link, {}

    def gain(self, k: int) -> float:
        if k not in self.gains:
            s = self.link.seed
            child = np.random.SeedSequence(s.entropy, spawn_key=(*s.spawn_key, k))
            self.gains[k] = float(np.random.default_rng(child).exponential(1.0))
        return self.gains[k]

    def duration_s(self, nbytes: float, start_s: float, max_blocks: int) -> tuple[float, int]:
        lk, bits = self.link, 8.0 * nbytes
        t = start_s + lk.latency_s
        block, n = int(t // lk.coherence_s), 0
        while n < max_blocks:
            end = max((block + 1) * lk.coherence_s, t)
            rate = shannon_rate_bps(lk.bandwidth_hz, lk.mean_snr * self.gain(block))
            n += 1
            if rate * (end - t) >= bits:
                return t + bits / rate - start_s, n
            bits -= rate * (end - t)
            t, block = end, block + 1
        return float("nan"), n


def make_link(coherence_s: float, bandwidth_mhz: float = 20.0, seed: int = 1) -> ShannonLink:
    return ShannonLink(
        bandwidth_hz=bandwidth_mhz * 1e6,
        tx_power_w=dbm_to_w(23),
        noise_psd_w_hz=dbm_to_w(-174),
        path_gain=10 ** (-path_loss_db(200.0) / 10),
        coherence_s=coherence_s,
        seed=np.random.SeedSequence(seed),
    )


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


CASES = [  # (label, coherence_s, bandwidth MHz, bytes)
    ("10 ms coherence, 1 MB (a few blocks)", 1e-2, 20.0, 1e6),
    ("10 ms coherence, 100 MB (~300 blocks)", 1e-2, 20.0, 1e8),
    ("1 ms coherence, 1 GB (~30k blocks)", 1e-3, 20.0, 1e9),
    ("1 us coherence, 1 MB (~30k blocks)", 1e-6, 20.0, 1e6),
    ("1 ns coherence, 1 MB (~3e7 blocks: cap)", 1e-9, 20.0, 1e6),
    ("1e-12 s coherence (coherence_ms: 1e-9), 1 MB", 1e-12, 20.0, 1e6),
    ("1 Hz bandwidth, 10 ms coherence, 1 MB", 1e-2, 1e-6, 1e6),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--old-max-blocks", type=int, default=20_000)
    ap.add_argument("--scenario", help="also time whole runs of this scenario, new vs old")
    args = ap.parse_args()
    print(f"{'case':48} {'blocks':>10} {'new s':>10} {'old s':>11} {'old/new':>9}")
    start = 0.0123
    for label, coh, bw, nbytes in CASES:
        new_s = median_s(lambda c=coh, b=bw, n=nbytes: make_link(c, b).duration_s(n, start),
                         args.repeats)
        blocks = make_link(coh, bw).duration_s(nbytes, start) / coh

        def old(c=coh, b=bw, n=nbytes, m=args.old_max_blocks):
            return OldLink(make_link(c, b)).duration_s(n, start, m)

        old_s = median_s(old, args.repeats)
        finished, done = old()
        mark = " "
        if finished != finished:  # NaN: not finished within the cap; extrapolate per block
            old_s, mark = old_s / done * blocks, "~"
        print(f"{label:48} {blocks:10.3g} {new_s:10.2e} {mark}{old_s:10.2e} "
              f"{old_s / new_s:9.3g}")
    # a simulation's pattern: many short transfers one after another on one link
    link = make_link(1e-2)
    old_link = OldLink(make_link(1e-2))
    starts = np.cumsum(np.full(2000, 0.05))
    new_s = median_s(lambda: [link.duration_s(1e6, float(t)) for t in starts], args.repeats)
    old_s = median_s(lambda: [old_link.duration_s(1e6, float(t), 10**9) for t in starts],
                     args.repeats)
    print(f"{'2000 transfers of 1 MB on one link (warm cache)':48} {'':>10} {new_s:10.2e} "
          f" {old_s:10.2e} {old_s / new_s:9.3g}")
    if args.scenario:
        scenario_runs(args.scenario, args.repeats)


def scenario_runs(path: str, repeats: int) -> None:
    """A whole run of ``path`` with the new links and with the old algorithm patched in."""
    import sfsim
    from sfsim import links

    def old_duration(self: ShannonLink, nbytes: float, start_s: float) -> float:
        if nbytes <= 0:
            return 0.0
        cache = self.__dict__.setdefault("_old", OldLink(self))
        return cache.duration_s(nbytes, start_s, 10**9)[0]

    new_s = median_s(lambda: sfsim.run(path), repeats)
    original = links.ShannonLink.duration_s
    links.ShannonLink.duration_s = old_duration  # type: ignore[method-assign]
    try:
        old_s = median_s(lambda: sfsim.run(path), repeats)
    finally:
        links.ShannonLink.duration_s = original  # type: ignore[method-assign]
    print(f"{'whole run: ' + path:48} {'':>10} {new_s:10.2e}  {old_s:10.2e} {old_s / new_s:9.3g}")

if __name__ == "__main__":
    main()
