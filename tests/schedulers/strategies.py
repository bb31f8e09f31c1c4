"""Hypothesis strategies and small builders for scheduling instances."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from sfsim.schedulers import Instance, Job

# Integers (as floats) keep brute-force comparisons free of rounding noise.
_time = st.integers(min_value=0, max_value=20).map(float)
_work = st.integers(min_value=1, max_value=10).map(float)


@st.composite
def single_instances(draw: st.DrawFn, min_n: int = 0, max_n: int = 7) -> Instance:
    n = draw(st.integers(min_value=min_n, max_value=max_n))
    return Instance(
        tuple(Job.single(f"d{i}", draw(_time), draw(_work), draw(_time)) for i in range(n))
    )


@st.composite
def chain_instances(draw: st.DrawFn, min_n: int = 1, max_n: int = 3, max_k: int = 3) -> Instance:
    n = draw(st.integers(min_value=min_n, max_value=max_n))
    jobs = []
    for i in range(n):
        k = draw(st.integers(min_value=1, max_value=max_k))
        server = tuple(draw(_work) for _ in range(k))
        lag = tuple(draw(_time) for _ in range(k - 1))
        jobs.append(Job(f"d{i}", draw(_time), server, lag, draw(_time)))
    return Instance(tuple(jobs))


def random_single(n: int, seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    return Instance(
        tuple(
            Job.single(f"d{i}", float(r), float(p), float(q))
            for i, (r, p, q) in enumerate(
                zip(
                    rng.uniform(0, n, n),
                    rng.uniform(0.5, 1.5, n),
                    rng.uniform(0, n, n),
                    strict=True,
                )
            )
        )
    )


def random_chains(n: int, k: int, seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    return Instance(
        tuple(
            Job(
                f"d{i}",
                float(rng.uniform(0, 3)),
                tuple(float(x) for x in rng.uniform(0.5, 1.5, k)),
                tuple(float(x) for x in rng.uniform(0, 2 * n, k - 1)),
                float(rng.uniform(0, 3)),
            )
            for i in range(n)
        )
    )


def brute_force(instance: Instance) -> float:
    """Optimal makespan by trying every distinct order (multiset permutations of the ids)."""
    from sfsim.schedulers import makespan

    left = {job.id: job.k for job in instance.jobs}
    total = sum(left.values())
    best = float("inf")
    order: list[str] = []

    def extend() -> None:
        nonlocal best
        if len(order) == total:
            best = min(best, makespan(instance, order))
            return
        for job_id, count in left.items():
            if count:
                left[job_id] -= 1
                order.append(job_id)
                extend()
                order.pop()
                left[job_id] += 1

    extend()
    return best if total else 0.0
