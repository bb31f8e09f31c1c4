"""The processor-sharing server: hand-computed cases and invariants on random job sets."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsim.schemes.sharing import SharedProcessor


def run_jobs(jobs: list[tuple[float, float]], capacity: float = 1.0):
    """Submit (arrival_s, work_s) jobs; return the processor and each job's (start, end)."""
    env = simpy.Environment()
    ps = SharedProcessor(env, capacity)
    out: dict[int, tuple[float, float]] = {}

    def job(i: int, at: float, work: float):
        yield env.timeout(at)
        out[i] = yield ps.submit(work)

    for i, (at, work) in enumerate(jobs):
        env.process(job(i, at, work))
    env.run()
    return ps, [out[i] for i in range(len(jobs))]


def test_two_jobs_by_hand():
    # a (2 s of work) alone for 1 s, then a and b (1 s) at half speed: both finish at 3.
    ps, times = run_jobs([(0.0, 2.0), (1.0, 1.0), (5.0, 1.0)])
    approx = pytest.approx
    assert times == [(0.0, approx(3.0)), (1.0, approx(3.0)), (5.0, approx(6.0))]
    assert ps.segments == [(0.0, 1.0, 1), (1.0, approx(3.0), 2), (5.0, approx(6.0), 1)]
    assert ps.busy_s() == pytest.approx(4.0)


def test_three_equal_jobs_finish_together_and_a_short_one_leaves_first():
    _, times = run_jobs([(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)])
    assert [e for _, e in times] == [pytest.approx(3.0)] * 3
    _, times = run_jobs([(0.0, 3.0), (0.0, 1.0)])
    # two jobs at half speed until the short one is done (t=2), then the long one alone: 2 more.
    assert [e for _, e in times] == [pytest.approx(4.0), pytest.approx(2.0)]


def test_capacity_scales_speed_and_zero_work_is_instant():
    _, times = run_jobs([(0.0, 2.0), (0.0, 2.0)], capacity=2.0)
    assert [e for _, e in times] == [pytest.approx(2.0)] * 2
    _, times = run_jobs([(1.5, 0.0)])
    assert times == [(1.5, 1.5)]
    with pytest.raises(ValueError):
        SharedProcessor(simpy.Environment(), capacity=0.0)


jobs_strategy = st.lists(
    st.tuples(st.floats(0.0, 10.0, allow_nan=False), st.floats(0.001, 5.0, allow_nan=False)),
    min_size=1, max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(jobs=jobs_strategy, capacity=st.sampled_from([0.5, 1.0, 3.0]))
def test_work_is_conserved_and_capacity_never_exceeded(jobs, capacity):
    ps, times = run_jobs(jobs, capacity)
    total = sum(w for _, w in jobs)
    # Busy time is exactly the work divided by the capacity (the server never idles with work).
    assert ps.busy_s() == pytest.approx(total / capacity, rel=1e-9)
    # Each job receives exactly its work, at a rate capacity/n while n jobs are present: never
    # more than its share, so the rates of the jobs present never sum above the capacity.
    for (at, work), (start, end) in zip(jobs, times, strict=True):
        assert start == at
        assert end >= start + work / capacity - 1e-9
        served = sum(
            (min(e, end) - max(s, start)) * capacity / n
            for s, e, n in ps.segments if min(e, end) > max(s, start)
        )
        assert served == pytest.approx(work, rel=1e-6, abs=1e-9)
    # Segments never overlap and count the jobs present.
    for (_s1, e1, _), (s2, _, _) in zip(ps.segments, ps.segments[1:], strict=False):
        assert s2 >= e1 - 1e-12
    for s, e, n in ps.segments:
        if e - s < 1e-9:
            continue  # too short for its midpoint to be told apart from its ends
        mid = (s + e) / 2
        present = sum(1 for (at, _), (st_, en) in zip(jobs, times, strict=True) if st_ <= mid < en)
        assert present == n
