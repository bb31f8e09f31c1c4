"""The evaluator: semi-active schedule times of an order, and non-delay dispatch."""

from __future__ import annotations

import numpy as np
import pytest

from sfsim.schedulers import Instance, Job, TaskTime, dispatch, makespan, schedule_times
from sfsim.schedulers.evaluate import completion_times


def test_single_jobs_hand_computed() -> None:
    inst = Instance((Job.single("a", 0, 2, 1), Job.single("b", 1, 1, 5)))
    assert schedule_times(inst, ["a", "b"]) == [
        TaskTime("a", 0, 0.0, 2.0),
        TaskTime("b", 0, 2.0, 3.0),
    ]
    assert makespan(inst, ["a", "b"]) == 8.0  # b: 3 + 5
    assert makespan(inst, ["b", "a"]) == 7.0  # b: 1..2 (+5 = 7), a: 2..4 (+1 = 5)
    assert completion_times(inst, ["b", "a"]) == {"b": 7.0, "a": 5.0}


def test_chain_with_lags_hand_computed() -> None:
    inst = Instance((Job("c", 0.5, (1, 1), (2,), 0), Job.single("a", 0, 2, 1)))
    times = schedule_times(inst, ["a", "c", "c"])
    # a 0..2; c0 waits for the server 2..3; c1 ready at 3 + 2 = 5, runs 5..6
    assert [(t.job_id, t.task, t.start_s, t.end_s) for t in times] == [
        ("a", 0, 0.0, 2.0),
        ("c", 0, 2.0, 3.0),
        ("c", 1, 5.0, 6.0),
    ]
    assert makespan(inst, ["a", "c", "c"]) == 6.0


def test_empty_instance() -> None:
    assert makespan(Instance(()), []) == 0.0
    assert schedule_times(Instance(()), []) == []


@pytest.mark.parametrize("order", [["a"], ["a", "b", "b"], ["a", "x"]])
def test_invalid_order_rejected(order: list[str]) -> None:
    inst = Instance((Job.single("a", 0, 1, 0), Job.single("b", 0, 1, 0)))
    with pytest.raises(ValueError, match="not a valid plan"):
        makespan(inst, order)


def test_dispatch_waits_only_when_nothing_is_ready() -> None:
    inst = Instance((Job.single("late", 10, 1, 100), Job.single("early", 0, 1, 0)))
    # a rule that prefers 'late' can still only pick among the ready tasks
    pick_late = lambda waiting, now, rng: max(  # noqa: E731
        range(len(waiting)), key=lambda i: waiting[i].job_id == "late"
    )
    assert dispatch(inst, pick_late, np.random.default_rng(0)) == ["early", "late"]
