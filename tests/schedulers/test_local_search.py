"""Local search: never worse than its start, deterministic, budget respected."""

from __future__ import annotations

import numpy as np

from sfsim.schedulers import get_scheduler, makespan
from sfsim.schedulers.local_search import _Chains, _moves

from .strategies import random_chains, random_single


def test_not_worse_than_the_best_start() -> None:
    for seed in range(5):
        inst = random_single(30, seed=seed)
        rng = np.random.default_rng(0)
        start = min(
            makespan(inst, get_scheduler(n).order(inst, rng))
            for n in ("schrage", "longest_tail", "fifo")
        )
        assert makespan(inst, get_scheduler("local_search").order(inst, rng)) <= start


def test_improves_on_schrage_somewhere() -> None:
    gains = []
    for seed in range(10):
        inst = random_single(40, seed=seed)
        rng = np.random.default_rng(0)
        gains.append(
            makespan(inst, get_scheduler("schrage").order(inst, rng))
            - makespan(inst, get_scheduler("local_search").order(inst, rng))
        )
    assert min(gains) >= 0 and max(gains) > 0


def test_chains_and_zero_budget() -> None:
    inst = random_chains(5, 3, seed=1)
    rng = np.random.default_rng(0)
    order = get_scheduler("local_search", max_evals=0).order(inst, rng)
    best_rule = min(
        makespan(inst, get_scheduler(n).order(inst, rng)) for n in ("schrage", "longest_tail")
    )
    assert makespan(inst, order) <= best_rule
    improved = get_scheduler("local_search").order(inst, np.random.default_rng(0))
    assert makespan(inst, improved) <= makespan(inst, order)


def test_score_matches_the_evaluator_and_blocks_cover_the_path() -> None:
    inst = random_chains(4, 3, seed=5)
    data = _Chains(inst)
    order = get_scheduler("fifo").order(inst, np.random.default_rng(0))
    seq = [data.index[j] for j in order]
    assert data.score(seq)[0] == makespan(inst, order)
    blocks = data.blocks(seq)
    assert blocks and all(0 <= u <= v < len(seq) for u, v in blocks)
    assert all((x, y) != (y, x) or x == y for x, y in _moves(blocks))
