"""Memory per scheme: how the server grows with the fleet, and device peaks against formulas."""

from __future__ import annotations

import pytest

from sfsim.costs import Workload, get_arch
from sfsim.costs import footprint as fp
from sfsim.run import resolve
from sfsim.scenario import parse_scenario
from sfsim.schemes import cuts
from sfsim.schemes.fedlora import fedlora_device_peak_bytes
from sfsim.schemes.fedmobillm import backbone_device_peak_bytes
from sfsim.schemes.split import server_side_weight_bytes
from sfsim.world import build_world

from .common import base, identical, run, static_server

ARCH = get_arch("gpt2")
L = ARCH.n_layers
W1 = Workload(ARCH, 1, 32, "fp32", 4, ("q", "v"))
STATE = fp.adapter_state(W1)  # adapters, gradients and Adam moments of one block's LoRA


def kind_peak(res, kind: str) -> float:
    m = res.memory
    return float(m[(m["owner"] == "server") & (m["kind"] == kind)]["delta_bytes"].cumsum().max())


def test_sfl_v1_server_grows_by_model_copies_memsfl_by_adapter_state_only():
    u, cut = 3, 2
    n_srv = L - cut
    runs = {(s, n): run(identical(n, cut=cut), scheme=s)
            for s in ("memsfl", "sfl_v1") for n in (u, 2 * u, 3 * u)}
    world = build_world(resolve(parse_scenario(identical(u, cut=cut))))
    copy_bytes = server_side_weight_bytes(world, n_srv)
    state_bytes = n_srv * (STATE.adapters + STATE.optimizer)
    for scheme in ("memsfl", "sfl_v1"):
        st = [static_server(runs[scheme, n]) for n in (u, 2 * u, 3 * u)]
        weights = [s.get("weights", 0.0) for s in st]
        lora = [s.get("adapters", 0.0) + s.get("optimizer", 0.0) for s in st]
        # every U more devices add exactly U × (server-side adapters + optimizer state) ...
        assert lora[1] - lora[0] == lora[2] - lora[1] == u * state_bytes
        if scheme == "memsfl":
            # ... and nothing else: one full frozen model whatever the fleet
            assert weights[0] == weights[1] == weights[2] == ARCH.total_params() * 4
        else:
            # ... plus U server-side model copies
            assert weights[1] - weights[0] == weights[2] - weights[1] == u * copy_bytes
    # Peaks: sfl_v1 serves everyone at once, so activations add up too; memsfl serves one.
    acts = n_srv * fp.block_saved_activation_bytes(Workload(ARCH, 2, 32, "fp32", 4, ("q", "v")))
    acts += fp.head_saved_activation_bytes(Workload(ARCH, 2, 32, "fp32", 4, ("q", "v")))
    assert kind_peak(runs["sfl_v1", 2 * u], "activations") == 2 * u * acts
    assert kind_peak(runs["memsfl", 2 * u], "activations") == acts
    grow_v1 = runs["sfl_v1", 2 * u].summary["server_peak_bytes"] - \
        runs["sfl_v1", u].summary["server_peak_bytes"]
    grow_mem = runs["memsfl", 2 * u].summary["server_peak_bytes"] - \
        runs["memsfl", u].summary["server_peak_bytes"]
    assert grow_v1 >= u * (copy_bytes + acts)
    assert grow_mem < u * (copy_bytes + acts) / 10


def test_splitfrozen_and_sfl_v2_keep_one_adapter_set():
    for scheme in ("splitfrozen", "sfl_v2"):
        small, big = (static_server(run(identical(n, cut=3), scheme=scheme)) for n in (2, 6))
        assert small["adapters"] == big["adapters"] == (L - 3) * STATE.adapters
        assert small["weights"] == big["weights"]


def test_split_device_peak_is_the_cut_policy_formula():
    d = base()
    res = run(d, scheme="memsfl")
    world = build_world(resolve(parse_scenario(d)))
    for dev in world.devices:
        assert res.summary["device_peak_bytes"][dev.id] == \
            cuts.split_device_peak_bytes(world, dev, dev.cut)


def test_forward_only_device_peaks_stay_within_their_formulas():
    d = base()
    world = build_world(resolve(parse_scenario(d)))
    frozen = run(d, scheme="splitfrozen").summary["device_peak_bytes"]
    mobi = run(d, scheme="fedmobillm").summary["device_peak_bytes"]
    buffer = world.scenario.training.pipeline.buffer_batches
    for dev in world.devices:
        w = world.workload(dev.batch)
        weights = fp.embedding_weight_bytes(w) + dev.cut * fp.block_weight_bytes(w)
        bound = cuts.frozen_device_peak_bytes(world, dev, dev.cut, buffer)
        assert weights + fp.boundary_bytes(w) < frozen[dev.id] <= bound
        assert mobi[dev.id] <= backbone_device_peak_bytes(world, dev, ARCH)


def test_fedlora_device_peak_is_its_formula_and_much_larger_than_split():
    d = base()
    world = build_world(resolve(parse_scenario(d)))
    fed = run(d, scheme="fedlora").summary["device_peak_bytes"]
    split = run(d, scheme="memsfl").summary["device_peak_bytes"]
    for dev in world.devices:
        assert fed[dev.id] == pytest.approx(fedlora_device_peak_bytes(world, dev), rel=1e-12)
        assert fed[dev.id] > split[dev.id]


def test_a_device_too_small_is_reported_not_passed():
    from sfsim.errors import InfeasibleError

    d = base()
    d["devices"][1]["memory_gb"] = 0.5  # GPT-2's embedding alone is 0.15 GB, the full model 0.5
    with pytest.raises(InfeasibleError, match="'b'"):
        run(d, scheme="fedlora")
