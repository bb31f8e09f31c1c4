"""The vectorised fluid cell (`sfsim.channel.FluidCell`) against a per-transfer reference.

The reference below is processor sharing written the plain way: on every change, loop over the
active transfers, take off what each moved, recompute each one's rate at 1/n of the band, and
wait for the first completion or coherence-block boundary. Random arrivals and sizes over fixed
and fading Shannon links must give the same completion times.
"""

from __future__ import annotations

import math
from typing import Any

import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsim.channel import FluidCell, Job
from sfsim.links import FixedLink, Link, ShannonLink
from tests.test_channel import _fading, fleet, sim_for


def _rate(link: Link, n: int, t: float) -> float:
    if isinstance(link, FixedLink):
        return link.rate_bps / n
    assert isinstance(link, ShannonLink)
    h = 1.0
    if link.fading:
        block = int(t // link.coherence_s)
        while (block + 1) * link.coherence_s <= t:
            block += 1
        h = link.fading_power(block)
    return (link.bandwidth_hz / n) * math.log2(1.0 + n * link.mean_snr * h)


def reference(links: list[Link], jobs: list[tuple[int, float, float]]) -> list[float]:
    """Completion time of each (link index, arrival s, bytes), by plain event stepping."""
    pending = sorted(range(len(jobs)), key=lambda i: (jobs[i][1], i))
    left = {i: 8.0 * jobs[i][2] for i in range(len(jobs))}
    active: list[int] = []
    done: dict[int, float] = {}
    t = 0.0
    while pending or active:
        n = len(active)
        rates = {i: _rate(links[jobs[i][0]], n, t) for i in active}
        nxt = math.inf
        for i in active:
            if left[i] <= 0:
                nxt = t
            elif rates[i] > 0:
                nxt = min(nxt, t + left[i] / rates[i])
        for i in active:
            link = links[jobs[i][0]]
            if isinstance(link, ShannonLink) and link.fading:
                block = int(t // link.coherence_s)
                while (block + 1) * link.coherence_s <= t:
                    block += 1
                nxt = min(nxt, (block + 1) * link.coherence_s)
        arrival = jobs[pending[0]][1] if pending else math.inf
        step_to = min(nxt, arrival)
        for i in active:
            left[i] -= rates[i] * (step_to - t)
        t = step_to
        finished = [i for i in active if left[i] <= 1e-9 * 8.0 * jobs[i][2]]
        for i in finished:
            active.remove(i)
            done[i] = t
        while pending and jobs[pending[0]][1] <= t:
            active.append(pending.pop(0))
    return [done[i] for i in range(len(jobs))]


def simulated(links: list[Link], jobs: list[tuple[int, float, float]]) -> list[float]:
    env = simpy.Environment()
    cell = FluidCell(env)
    ends: dict[int, float] = {}

    def one(i: int, k: int, at: float, nbytes: float) -> Any:
        if at > 0:
            yield env.timeout(at)
        yield from cell.transfer(Job(links[k], nbytes, ""))
        ends[i] = float(env.now)

    for i, (k, at, nbytes) in enumerate(jobs):
        env.process(one(i, k, at, nbytes))
    env.run()
    return [ends[i] for i in range(len(jobs))]


FIXED = [d.uplink for d in sim_for(fleet(4, up_mbps=[10.0, 40.0, 100.0, 7.0])).world.devices]
FADING = [d.uplink for d in sim_for(_fading(4)).world.devices]

job_lists = st.lists(st.tuples(st.integers(0, 3), st.floats(0.0, 0.05),
                               st.floats(1.0, 20_000.0)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=job_lists, fading=st.booleans())
def test_fluid_cell_matches_the_plain_reference(jobs: list[tuple[int, float, float]],
                                                fading: bool) -> None:
    links = FADING if fading else FIXED
    got, want = simulated(links, jobs), reference(links, jobs)
    for g, w in zip(got, want, strict=True):
        assert math.isclose(g, w, rel_tol=1e-7, abs_tol=1e-9), (got, want)
