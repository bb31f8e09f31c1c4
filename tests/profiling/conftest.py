"""Shared tiny shapes for the profiling tests (fast on a CPU)."""

from __future__ import annotations

import pytest

from sfsim.costs.arch import ModelArch

TINY_GPT2 = ModelArch("tiny-gpt2", "gpt2", 3, 64, 4, 4, 256, 512, 64)
TINY_LLAMA = ModelArch("tiny-llama", "llama", 2, 64, 4, 2, 176, 512, 64)


@pytest.fixture(params=[TINY_GPT2, TINY_LLAMA], ids=["gpt2", "llama"])
def tiny_arch(request: pytest.FixtureRequest) -> ModelArch:
    return request.param


@pytest.fixture(autouse=True)
def _restore_denormals():
    """The profiler flushes denormals to zero (process-wide CPU state); undo it after each test so
    later tests (hypothesis float strategies) see IEEE-754 arithmetic again."""
    yield
    import torch

    torch.set_flush_denormal(False)
