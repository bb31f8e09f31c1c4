"""Priority rules: hand-checked choices, online and offline."""

from __future__ import annotations

import numpy as np

from sfsim.schedulers import Instance, Job, Ready, get_scheduler, makespan

RNG = np.random.default_rng(0)
INST = Instance(
    (
        Job.single("a", 0.0, 3.0, 1.0),
        Job.single("b", 1.0, 1.0, 10.0),
        Job.single("c", 2.0, 2.0, 4.0),
    )
)
WAITING = [
    Ready("a", 0, 0.0, 3.0, 1.0),
    Ready("b", 0, 1.0, 1.0, 10.0),
    Ready("c", 0, 2.0, 2.0, 4.0),
]


def test_fifo_sorts_by_release_with_id_ties() -> None:
    inst = Instance((Job.single("z", 1, 1, 0), Job.single("y", 1, 1, 0), Job.single("x", 0, 1, 0)))
    assert get_scheduler("fifo").order(inst, RNG) == ["x", "y", "z"]


def test_static_rules_ignore_releases() -> None:
    assert get_scheduler("spt").order(INST, RNG) == ["b", "c", "a"]
    assert get_scheduler("lpt").order(INST, RNG) == ["a", "c", "b"]
    assert get_scheduler("longest_tail").order(INST, RNG) == ["b", "c", "a"]


def test_schrage_serves_the_longest_ready_tail() -> None:
    # at 0 only a is ready; at 3 both b and c are, b has the longer tail
    order = get_scheduler("schrage").order(INST, RNG)
    assert order == ["a", "b", "c"]
    assert makespan(INST, order) == 4.0 + 10.0  # b ends at 4, then its tail


def test_online_choices() -> None:
    assert get_scheduler("fifo").select(WAITING, 3.0, RNG) == 0
    assert get_scheduler("spt", online=True).select(WAITING, 3.0, RNG) == 1
    assert get_scheduler("lpt", online=True).select(WAITING, 3.0, RNG) == 0
    assert get_scheduler("schrage", online=True).select(WAITING, 3.0, RNG) == 1
    assert get_scheduler("longest_tail", online=True).select(WAITING, 3.0, RNG) == 1


def test_fifo_chain_interleaves_by_arrival() -> None:
    inst = Instance((Job("a", 0.0, (1.0, 1.0), (5.0,), 0.0), Job.single("b", 0.5, 1.0, 0.0)))
    # a0 0..1, b 1..2, a1 ready at 6
    assert get_scheduler("fifo").order(inst, RNG) == ["a", "b", "a"]


def test_random_uses_the_generator() -> None:
    inst = Instance(tuple(Job.single(f"d{i}", 0, 1, 0) for i in range(8)))
    orders = {
        tuple(get_scheduler("random").order(inst, np.random.default_rng(s))) for s in range(5)
    }
    assert len(orders) > 1
