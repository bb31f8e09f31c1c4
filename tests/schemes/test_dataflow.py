"""What crosses the links and what runs where, scheme by scheme."""

from __future__ import annotations

import math

import pytest

from sfsim.costs import AnalyticCostModel, Op, Workload, get_arch
from sfsim.costs import footprint as fp

from .common import base, run, spans

ARCH = get_arch("gpt2")
CM = AnalyticCostModel()


def work(batch: int) -> Workload:
    return Workload(ARCH, batch, 32, "fp32", 4, ("q", "v"))


@pytest.mark.parametrize("scheme", ["fedmobillm", "splitfrozen"])
def test_forward_only_devices_never_run_a_backward_and_receive_nothing(scheme):
    res = run(base(), scheme=scheme)
    dev = spans(res, "device")
    assert set(dev["phase"]) == {"device_fwd"}
    assert res.summary["downlink_bytes"] == 0
    assert spans(res, "downlink").empty
    assert not res.trace["phase"].str.contains("gradient").any()
    # no trainable state on the devices at any time
    m = res.memory
    on_devices = m[m["owner"] != "server"]
    assert not set(on_devices["kind"]) & {"gradients", "adapters", "optimizer"}
    # while a split baseline on the same scenario does both
    split = run(base(), scheme="sfl_v2")
    assert "device_bwd" in set(spans(split, "device")["phase"])
    assert split.summary["downlink_bytes"] > 0


def test_splitfrozen_device_work_is_exactly_frozen_forwards():
    d = base()
    res = run(d, scheme="splitfrozen")
    rounds, k = d["training"]["rounds"], d["training"]["local_iterations"]
    for dev in d["devices"]:
        w = work(dev["batch_size"])
        per_batch = CM.flops(Op.EMBED_FWD, w) + dev["cut"] * CM.flops(Op.BLOCK_FWD_FROZEN, w)
        got = spans(res, "device").query("device == @dev['id']")["flops"].sum()
        assert got == pytest.approx(rounds * k * per_batch, rel=1e-12)
        up = spans(res, "uplink").query("device == @dev['id']")
        assert set(up["phase"]) == {"uplink_activations"}
        assert up["bytes"].sum() == rounds * k * (fp.boundary_bytes(w) + fp.label_bytes(w))


def test_fedlora_moves_adapters_only():
    d = base()
    res = run(d, scheme="fedlora")
    t = res.trace
    moved = t[t["resource"].isin(["uplink", "downlink"])]
    assert set(moved["phase"]) == {"adapter_upload", "adapter_download"}
    adapters = ARCH.n_layers * fp.adapter_state(work(1)).adapters  # LoRA of every block
    n_dev, rounds = len(d["devices"]), d["training"]["rounds"]
    assert res.summary["uplink_bytes"] == rounds * n_dev * adapters
    assert res.summary["downlink_bytes"] == rounds * n_dev * adapters
    # the server only aggregates
    assert set(spans(res, "server")["phase"]) == {"aggregate"}
    assert set(res.memory.query("owner == 'server'")["kind"]) <= {"adapters", "overhead"}


def test_fedmobillm_uploads_each_sample_once_and_trains_from_its_cache():
    d = base()
    for dev in d["devices"]:
        dev["samples"] = 2 * dev["batch_size"]  # two batches: all uploaded in round 0 (K = 3)
    d["training"].update(rounds=3, local_iterations=3)
    res = run(d, scheme="fedmobillm")
    up = spans(res, "uplink")
    assert set(up["round"]) == {0}
    assert up.groupby("device").size().to_dict() == {"a": 2, "b": 2}
    assert spans(res, "device").groupby("device").size().to_dict() == {"a": 2, "b": 2}
    # the server still takes rounds × K steps per device, from the cache
    steps = res.trace.query("phase == 'server_fwd'").groupby("device").size()
    assert steps.to_dict() == {"a": 9, "b": 9}
    # the cache holds both devices' uploads until training ends, then is dropped
    cache = res.memory.query("owner == 'server' and kind == 'cache'")
    assert cache["delta_bytes"].clip(lower=0).sum() == res.summary["uplink_bytes"]
    assert cache["delta_bytes"].sum() == 0
    # with more data than the run uses, every step's batch comes from the device
    d2 = base()
    res2 = run(d2, scheme="fedmobillm")
    k_all = d2["training"]["rounds"] * d2["training"]["local_iterations"]
    assert spans(res2, "uplink").groupby("device").size().to_dict() == {"a": k_all, "b": k_all}


def test_fedmobillm_upload_is_the_tapped_layers_and_labels():
    d = base()
    d["training"]["fedmobillm"] = {"taps": 3}
    res = run(d, scheme="fedmobillm")
    w = work(2)
    per_batch = 3 * fp.boundary_bytes(w) + fp.label_bytes(w)
    up = spans(res, "uplink").query("device == 'a'")
    assert (up["bytes"] == per_batch).all()


def test_split_schemes_send_activations_up_and_gradients_down_every_iteration():
    d = base()
    for scheme in ("memsfl", "sfl_v1", "sfl_v2"):
        res = run(d, scheme=scheme)
        t = res.trace
        n = d["training"]["rounds"] * d["training"]["local_iterations"] * len(d["devices"])
        assert (t["phase"] == "uplink_activations").sum() == n
        assert (t["phase"] == "downlink_gradients").sum() == n
        assert math.isclose(
            t.loc[t["phase"] == "downlink_gradients", "bytes"].sum(),
            sum(d["training"]["rounds"] * d["training"]["local_iterations"]
                * fp.boundary_bytes(work(dev["batch_size"])) for dev in d["devices"]))
