"""Analytic memory (footprint.py) against what torch really keeps, per block type, within 5%."""

from __future__ import annotations

import pytest
import torch

from sfsim.costs import footprint as fp
from sfsim.costs.arch import ARCHS, LORA_TARGETS, ModelArch
from sfsim.costs.base import Workload
from sfsim.profiling.blocks import TORCH_DTYPES, make_block
from sfsim.profiling.memory import measure_block, measure_head, saved_activation_bytes

TARGET_SETS = {
    "gpt2": [("q", "v"), ("o",), ("up", "down"), LORA_TARGETS["gpt2"]],
    "llama": [("q", "v"), ("o",), ("gate",), ("up", "down"), LORA_TARGETS["llama"]],
}


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_saved_activations_within_5_percent(
    tiny_arch: ModelArch, input_grad: bool, dtype: str
) -> None:
    for targets in TARGET_SETS[tiny_arch.family]:
        block = make_block(tiny_arch, 4, targets, dtype)
        x = torch.randn(2, 24, tiny_arch.hidden, dtype=TORCH_DTYPES[dtype])
        measured = saved_activation_bytes(block, x.requires_grad_(input_grad))
        work = Workload(tiny_arch, 2, 24, dtype, 4, targets)
        analytic = fp.block_saved_activation_bytes(work, input_grad=input_grad)
        assert analytic == pytest.approx(measured, rel=0.05), targets


@pytest.mark.parametrize("name", ["gpt2", "llama-3.2-1b"])
def test_real_block_memory_within_5_percent(name: str) -> None:
    rows = measure_block(ARCHS[name], batch=1, seq=16, rank=8, targets=("q", "v"))
    assert {r.quantity for r in rows} == {
        "weight_bytes",
        "lora_bytes",
        "optimizer_bytes",
        "saved_act_bytes",
    }
    for row in rows:
        assert row.ratio == pytest.approx(1.0, abs=0.05), row


def test_head_saved_activations(tiny_arch: ModelArch) -> None:
    row = measure_head(tiny_arch, batch=2, seq=8)
    assert row.ratio == pytest.approx(1.0, abs=0.05)


def test_frozen_block_saves_nothing(tiny_arch: ModelArch) -> None:
    block = make_block(tiny_arch, 0)
    x = torch.randn(1, 8, tiny_arch.hidden)
    assert saved_activation_bytes(block, x) == 0
