"""A workload far outside a profile's grid is extrapolated with a warning (issue 10).

The shipped gpt2 profile on cpu-ref-2core covers batch 1..4, sequence 128..512, rank 4..16.
"""

from __future__ import annotations

import warnings

import pytest

from sfsim.costs.arch import ARCHS
from sfsim.costs.base import Op, Workload
from sfsim.costs.processors import catalogue
from sfsim.costs.profiled import FAR_OUTSIDE, ProfiledCostModel

GPT2 = ARCHS["gpt2"]
PROC = catalogue()["jetson-orin-nano-8gb"]


def _messages(model: ProfiledCostModel, *work: tuple[Op, Workload]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for op, w in work:
            assert model.time_s(op, w, PROC) > 0
    return [str(c.message) for c in caught if issubclass(c.category, RuntimeWarning)]


def test_32x_the_batch_warns_once_per_op_and_axis() -> None:
    model = ProfiledCostModel()
    far = Workload(GPT2, 128, 128, "fp32", 8, ("q", "v"))  # batch 32x the grid's largest
    farther = Workload(GPT2, 256, 128, "fp32", 8, ("q", "v"))
    got = _messages(model, (Op.BLOCK_FWD, far), (Op.BLOCK_FWD, farther), (Op.BLOCK_FWD, far))
    assert len(got) == 1
    assert "gpt2 block_fwd: batch 128 is 32x outside the profiled range 1..4" in got[0]
    assert "extrapolated" in got[0]
    # another op is another warning; the same op on another axis is another warning
    got = _messages(model, (Op.BLOCK_BWD, far),
                    (Op.BLOCK_FWD, Workload(GPT2, 2, 8192, "fp32", 8, ("q", "v"))))
    assert len(got) == 2
    assert "block_bwd: batch 128" in got[0] and "block_fwd: seq 8192 is 16x" in got[1]


def test_rank_far_above_the_grid_warns() -> None:
    got = _messages(ProfiledCostModel(),
                    (Op.BLOCK_FWD, Workload(GPT2, 2, 256, "fp32", 256, ("q", "v"))))
    assert len(got) == 1 and "rank 256 is 16x outside the profiled range 4..16" in got[0]


@pytest.mark.parametrize(("batch", "seq", "rank"), [
    (1, 128, 4), (3, 300, 8), (4, 512, 16),  # inside
    (int(4 * FAR_OUTSIDE), 128, 8), (1, 64, 32),  # outside, but not far
])
def test_inside_or_near_the_grid_is_silent(batch: int, seq: int, rank: int) -> None:
    w = Workload(GPT2, batch, seq, "fp32", rank, ("q", "v"))
    assert _messages(ProfiledCostModel(), *[(op, w) for op in Op]) == []
