"""Compression as the learner sees it (sfsim/learning/uplink.py): the values the server side
trains on are the ones ``training.compression`` sends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import sfsim
from sfsim.learning.proxy import SideNet
from sfsim.learning.replay import replay
from sfsim.learning.uplink import INT8_LEVELS, Uplink, quantize

from ..plotting.conftest import QUICKSTART
from .test_learner import SMALL


def _run(scheme: str, **over: Any) -> sfsim.Run:
    return sfsim.run(QUICKSTART, scheme=scheme,
                     overrides={**SMALL, "learning.enabled": True, "training.rounds": 2, **over})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=16),
       st.integers(1, 4))
@example([1.1754943508222875e-38], 1)  # the smallest normal float32: not flushed to zero
@example([0.0, 0.0], 2)
@example([1.053940993902062e-30], 1)  # a step below 1e-30: the grid check must not clamp it
def test_int8_is_per_token_absmax_within_half_a_step(values: list[float], rows: int) -> None:
    x = torch.tensor([values] * rows, dtype=torch.float32) * torch.arange(1, rows + 1)[:, None]
    q = quantize(x, "int8")
    step = x.abs().amax(dim=-1, keepdim=True) / INT8_LEVELS
    assert torch.all((q - x).abs() <= step / 2 + 1e-6 * x.abs().amax(dim=-1, keepdim=True))
    step64 = x.double().abs().amax(dim=-1, keepdim=True) / INT8_LEVELS
    levels = torch.where(step64 > 0, q.double() / torch.where(step64 > 0, step64, 1.0), 0.0)
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # on the grid
    assert torch.all(levels.abs() <= INT8_LEVELS + 1e-3)


def test_quantisation_passes_the_gradient_straight_through() -> None:
    x = torch.randn(3, 5, 8, requires_grad=True)
    for mode in ("fp16", "int8"):
        (g,) = torch.autograd.grad((quantize(x, mode) * 2.0).sum(), [x])
        assert torch.equal(g, torch.full_like(x, 2.0))


def test_compression_the_model_already_has_changes_nothing() -> None:
    s = sfsim.load_scenario(QUICKSTART, overrides={"model.dtype": "fp16",
                                                    "training.compression.activations": "fp16"})
    assert Uplink.of(s, 32).exact
    plain = _run("memsfl", **{"model.dtype": "fp16"})
    same = _run("memsfl", **{"model.dtype": "fp16", "training.compression.activations": "fp16"})
    pd.testing.assert_frame_equal(plain.learning, same.learning)


@pytest.mark.parametrize("scheme", ["memsfl", "splitfrozen"])
def test_int8_at_the_cut_changes_what_is_learned_but_still_learns(
        scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run = sfsim.run(QUICKSTART, scheme=scheme,
                    overrides={**SMALL, "learning.enabled": False, "training.rounds": 2,
                               "training.compression.activations": "int8"})
    int8 = replay(run.result, run.scenario).frame()
    monkeypatch.setattr(Uplink, "of", classmethod(lambda cls, s, n: cls()))
    exact = replay(run.result, run.scenario).frame()  # the same run, values sent exactly
    assert list(int8["time_s"]) == list(exact["time_s"])
    a, b = exact["train_loss"].dropna().to_numpy(), int8["train_loss"].dropna().to_numpy()
    assert not np.array_equal(a, b) and np.isfinite(b).all()
    # per-token int8 keeps the function close: final accuracy within 15 points of exact
    acc_exact, acc_int8 = (f["eval_accuracy"].dropna().iloc[-1] for f in (exact, int8))
    assert abs(acc_int8 - acc_exact) <= 0.15


def _side_inputs(monkeypatch: pytest.MonkeyPatch) -> list[list[torch.Size]]:
    seen: list[list[torch.Size]] = []
    real = SideNet.logits

    def spy(self: SideNet, tapped: list[torch.Tensor], kind: str, p: Any) -> torch.Tensor:
        seen.append([t.shape for t in tapped])
        return real(self, tapped, kind, p)

    monkeypatch.setattr(SideNet, "logits", spy)
    return seen


@pytest.mark.parametrize("tokens, keep", [("pooled", None), ("topk", 32)])
def test_fedmobillm_side_network_sees_only_the_kept_tokens(
        monkeypatch: pytest.MonkeyPatch, tokens: str, keep: int | None) -> None:
    over: dict[str, Any] = {"training.compression.tokens": tokens}
    if keep is not None:  # 32 of model.seq_len 128: a quarter of the proxy's tokens
        over["training.compression.keep_tokens"] = keep
    seen = _side_inputs(monkeypatch)
    run = sfsim.run(QUICKSTART, scheme="fedmobillm",
                    overrides={**SMALL, "learning.enabled": False, "training.rounds": 1, **over})
    replay(run.result, run.scenario)
    expect = 1 if keep is None else round(keep / 128 * SMALL["learning.seq_len"])
    assert seen and all(shape[1] == expect for shapes in seen for shape in shapes)


def test_topk_keeps_the_largest_norm_positions_in_order() -> None:
    up = Uplink(None, "topk", 2)
    deep = torch.tensor([[[0.1], [3.0], [0.2], [2.0]]])  # token norms 0.1, 3, 0.2, 2
    shallow = torch.tensor([[[10.0], [11.0], [12.0], [13.0]]])
    kept = up.taps([shallow, deep])
    assert kept[0].flatten().tolist() == [11.0, 13.0]  # positions 1 and 3, in order
    assert kept[1].flatten().tolist() == [3.0, 2.0]


def test_sampled_layers_give_the_side_network_that_many_taps() -> None:
    run = sfsim.run(QUICKSTART, scheme="fedmobillm",
                    overrides={**SMALL, "learning.enabled": False, "training.rounds": 1,
                               "learning.blocks": 8, "training.fedmobillm.taps": 4,
                               "training.compression.layers": "sampled",
                               "training.compression.sampled_taps": 2})
    learner = replay(run.result, run.scenario)
    assert learner.side is not None and learner.side.n_taps == 2
