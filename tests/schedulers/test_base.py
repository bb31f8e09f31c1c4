"""Value objects: Job and Instance validate once, at construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sfsim.schedulers import Instance, Job


def test_single_job_fields() -> None:
    job = Job.single("a", 1, 2.5, 3)
    assert job.server_s == (2.5,) and job.lag_s == () and job.k == 1
    assert isinstance(job.release_s, float)


def test_chain_head_remaining_and_critical_path() -> None:
    job = Job("a", 1.0, [2.0, 3.0, 4.0], [5.0, 6.0], 7.0)  # type: ignore[arg-type]
    assert job.server_s == (2.0, 3.0, 4.0)  # lists become tuples
    assert job.head_s(0) == 1.0 and job.head_s(2) == 1 + 2 + 5 + 3 + 6
    assert job.remaining_s(2) == 7.0 and job.remaining_s(0) == 5 + 3 + 6 + 4 + 7
    assert job.critical_path_s() == 1 + 2 + 3 + 4 + 5 + 6 + 7


def test_numpy_scalars_are_accepted() -> None:
    job = Job.single("a", np.float64(1.0), np.int64(2), np.float32(0.5))  # type: ignore[arg-type]
    assert job.server_s == (2.0,) and type(job.server_s[0]) is float


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(release_s=-1.0), "release_s"),
        (dict(tail_s=math.inf), "tail_s"),
        (dict(server_s=(1.0, math.nan), lag_s=(1.0,)), r"server_s\[1\]"),
        (dict(server_s=()), "at least one"),
        (dict(server_s=(1.0, 2.0), lag_s=()), "lag_s needs"),
        (dict(lag_s=(1.0,)), "lag_s needs"),
        (dict(release_s=True), "number"),
        (dict(server_s="12"), "sequence"),
        (dict(id=""), "non-empty"),
    ],
)
def test_job_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = dict(id="a", release_s=0.0, server_s=(1.0,), lag_s=(), tail_s=0.0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Job(**base)  # type: ignore[arg-type]


def test_instance_rejects_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="duplicate job id 'a'"):
        Instance((Job.single("a", 0, 1, 0), Job.single("a", 1, 1, 0)))


def test_instance_properties() -> None:
    inst = Instance((Job.single("a", 0, 1, 0), Job("b", 0, (1, 1), (0,), 0)))
    assert not inst.is_single and inst.n_tasks == 3
    assert inst.job("b").k == 2
    assert Instance(()).is_single and Instance(()).n_tasks == 0
