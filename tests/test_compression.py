"""Activation compression on the uplink (training.compression, sfsim/compression.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsim import compression
from sfsim.costs import footprint as fp
from sfsim.costs import get_arch
from sfsim.errors import InputError
from sfsim.run import build_world, resolve
from sfsim.scenario import CompressionCfg, parse_scenario
from sfsim.schemes.fedmobillm import choose_backbones, mobi_costs
from sfsim.schemes.side import build_side_net
from sfsim.schemes.splitfrozen import frozen_costs

from .schemes.common import base, run, spans

SEQ, H = 32, get_arch("gpt2").hidden  # the base scenario: GPT-2 small, fp32, seq 32


def _with(comp: dict, scheme: str) -> dict:
    d = base()
    d["training"]["scheme"] = scheme
    d["training"]["compression"] = comp
    return d


def _world(comp: dict, scheme: str):
    return build_world(resolve(parse_scenario(_with(comp, scheme))))


@pytest.mark.parametrize("scheme", ["splitfrozen", "sfl_v2", "memsfl"])
def test_quantised_uplink_bytes(scheme):
    runs = {mode: run(_with({"activations": mode}, scheme))
            for mode in ("none", "fp16", "int8")}
    for dev, batch in (("a", 2), ("b", 1)):
        tokens = batch * SEQ
        labels = tokens * fp.LABEL_BYTES_PER_TOKEN
        expect = {"none": tokens * H * 4 + labels, "fp16": tokens * H * 2 + labels,
                  "int8": tokens * H + tokens * compression.SCALE_BYTES + labels}
        for mode, res in runs.items():
            up = spans(res, "uplink").query("device == @dev and phase == 'uplink_activations'")
            assert len(up) and (up["bytes"] == expect[mode]).all(), (mode, dev)
        # the gradient downlink of a split scheme stays at full precision
        if scheme != "splitfrozen":
            down = {}
            for m, r in runs.items():
                t = spans(r, "downlink")
                down[m] = t[(t["device"] == dev) & (t["phase"] == "downlink_gradients")][
                    "bytes"].sum()
            assert down["none"] == down["fp16"] == down["int8"] > 0


def test_quantisation_adds_its_compute_on_both_sides():
    plain, q = _world({}, "splitfrozen"), _world({"activations": "int8"}, "splitfrozen")
    for d0, d1 in zip(plain.devices, q.devices, strict=True):
        c0, c1 = frozen_costs(plain, d0, d0.cut, 1), frozen_costs(q, d1, d1.cut, 1)
        elements = d0.batch * SEQ * H
        sent = elements + d0.batch * SEQ * compression.SCALE_BYTES
        orig = 4 * elements
        assert c1.device.fwd_s - c0.device.fwd_s == pytest.approx(
            (orig + sent) / d0.processor.mem_bw_bytes_s, rel=1e-9)
        assert c1.srv_fwd_s - c0.srv_fwd_s == pytest.approx(
            (orig + sent) / plain.server.processor.mem_bw_bytes_s, rel=1e-9)
        assert c1.device.fwd_flops - c0.device.fwd_flops == pytest.approx(3 * elements)
        assert c1.srv_fwd_flops - c0.srv_fwd_flops == pytest.approx(elements)


def test_fp16_model_sends_fp16_as_is():
    d = _with({"activations": "fp16"}, "splitfrozen")
    d["model"]["dtype"] = "fp16"
    d["processors"] = {k: {**v, "peak_tflops": {"fp32": 1.0, "fp16": 2.0}}
                       for k, v in d["processors"].items()}
    d2 = _with({}, "splitfrozen")
    d2["model"]["dtype"], d2["processors"] = "fp16", d["processors"]
    a, b = run(d), run(d2)
    assert a.summary["uplink_bytes"] == b.summary["uplink_bytes"]
    assert a.summary["makespan_s"] == b.summary["makespan_s"]


def _mobi_up(comp: dict, taps: int = 4) -> dict[str, float]:
    d = _with(comp, "fedmobillm")
    d["training"]["fedmobillm"] = {"taps": taps}
    res = run(d)
    up = spans(res, "uplink")
    return {dev: float(g["bytes"].iloc[0]) for dev, g in up.groupby("device")}


def test_fedmobillm_token_selection_and_sampled_layers():
    batch = {"a": 2, "b": 1}
    for comp, taps, kept, q in (
        ({}, 4, SEQ, 4),
        ({"tokens": "pooled"}, 4, 1, 4),
        ({"tokens": "topk", "keep_tokens": 5}, 4, 5, 4),
        ({"layers": "sampled", "sampled_taps": 2}, 2, SEQ, 4),
        ({"tokens": "pooled", "activations": "fp16", "layers": "sampled", "sampled_taps": 1},
         1, 1, 2),
    ):
        got = _mobi_up(comp)
        for dev, b in batch.items():
            vectors = taps * b * kept
            assert got[dev] == vectors * H * q + b * kept * fp.LABEL_BYTES_PER_TOKEN, comp


def test_fedmobillm_side_network_runs_on_the_kept_tokens():
    plain, pooled = _world({}, "fedmobillm"), _world({"tokens": "pooled"}, "fedmobillm")
    dev = plain.devices[0]
    bb = choose_backbones(plain)
    side = build_side_net(plain.arch, {a.name: a for a in bb.values()}, 4, 0.125)
    c0 = mobi_costs(plain, dev, bb[dev.id], side)
    c1 = mobi_costs(pooled, pooled.devices[0], bb[dev.id], side)
    assert c1.srv_bwd_s < c0.srv_bwd_s and c1.saved_bytes < c0.saved_bytes
    # selection reads every token once on the device
    read = 4 * dev.batch * SEQ * bb[dev.id].hidden * 4
    assert c1.device.fwd_s - c0.device.fwd_s == pytest.approx(
        read / dev.processor.mem_bw_bytes_s, rel=1e-9)


@pytest.mark.parametrize(("scheme", "comp", "key"), [
    ("sfl_v2", {"tokens": "pooled"}, "training.compression.tokens"),
    ("splitfrozen", {"tokens": "topk", "keep_tokens": 4}, "training.compression.tokens"),
    ("memsfl", {"layers": "sampled", "sampled_taps": 1}, "training.compression.layers"),
    ("fedlora", {"activations": "int8"}, "training.compression"),
    ("fedmobillm", {"tokens": "topk"}, "training.compression.keep_tokens"),
    ("fedmobillm", {"keep_tokens": 3}, "training.compression.keep_tokens"),
    ("fedmobillm", {"tokens": "topk", "keep_tokens": SEQ + 1}, "training.compression.keep_tokens"),
    ("fedmobillm", {"layers": "sampled"}, "training.compression.sampled_taps"),
    ("fedmobillm", {"layers": "sampled", "sampled_taps": 5}, "training.compression.sampled_taps"),
    ("fedmobillm", {"sampled_taps": 2}, "training.compression.sampled_taps"),
])
def test_invalid_combinations_are_refused(scheme, comp, key):
    with pytest.raises(InputError) as e:
        run(_with(comp, scheme))
    assert e.value.key == key


def test_bad_values_exit_2_with_one_line(write_yaml, cli, tmp_path):
    for comp in ({"activations": "int4"}, {"tokens": "pooled"}):
        path = write_yaml(_with(comp, "sfl_v2"))
        for args in (["run", path, "--out", str(tmp_path / "out")], ["validate", path]):
            result = cli(*args)
            assert result.exit_code == 2, args
            assert "compression" in result.output and "Traceback" not in result.output
    # the run folder records the refusal (status error), as for any input error
    assert '"status": "error"' in (tmp_path / "out" / "summary.json").read_text()


@settings(max_examples=60, deadline=None)
@given(activations=st.sampled_from(["none", "fp16", "int8"]),
       tokens=st.sampled_from(["all", "topk", "pooled"]), keep=st.integers(1, SEQ),
       sampled=st.one_of(st.none(), st.integers(1, 4)), dtype_bytes=st.sampled_from([2, 4]))
def test_costs_are_finite_and_positive(activations, tokens, keep, sampled, dtype_bytes):
    c = CompressionCfg(activations=activations, tokens=tokens,
                       keep_tokens=keep if tokens == "topk" else None,
                       layers="sampled" if sampled else "all", sampled_taps=sampled)
    w = _world({}, "fedmobillm")
    taps = compression.taps(c, 4)
    kept = compression.kept_tokens(c, SEQ)
    out = compression.compress(c, vectors=taps * 2 * kept, width=H, dtype_bytes=dtype_bytes,
                               seq_len=SEQ, device=w.devices[0].processor,
                               server=w.server.processor)
    full = taps * 2 * SEQ * H * dtype_bytes  # the sampled taps, every token, uncompressed
    for v in (out.nbytes, out.device_s, out.device_flops, out.server_s, out.server_flops):
        assert math.isfinite(v) and v >= 0
    assert 0 < out.nbytes <= full * (1 + compression.SCALE_BYTES / H)
    narrower = activations != "none" and compression.QUANT_BYTES[activations] < dtype_bytes
    # work is charged exactly when something is done: a narrower type or tokens selected
    assert (out.device_s > 0) == (narrower or kept < SEQ)
    assert (out.server_s > 0) == narrower
    assert out.nbytes < full or not (narrower or kept < SEQ)
