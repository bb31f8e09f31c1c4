"""Cut policies (split schemes) and backbone choice (fedmobillm) from memory and speed."""

from __future__ import annotations

import pytest

from sfsim.costs import get_arch
from sfsim.errors import InfeasibleError, InputError
from sfsim.run import resolve
from sfsim.scenario import parse_scenario
from sfsim.schemes import cuts
from sfsim.schemes.fedmobillm import backbone_device_peak_bytes
from sfsim.schemes.split import split_costs
from sfsim.world import build_world

from .common import base, run

GB = 1e9


def world_of(d):
    return build_world(resolve(parse_scenario(d)))


def without_cuts(policy: str):
    d = base()
    for dev in d["devices"]:
        dev.pop("cut")
    d["training"]["cut_policy"] = policy
    return d


def test_fixed_policy_needs_cuts():
    with pytest.raises(InputError, match="cut_policy"):
        run(without_cuts("fixed"))


def test_max_fit_takes_the_largest_cut_that_fits():
    d = without_cuts("max_fit")
    world = world_of(d)
    dev = world.device("b")
    # Room for 5 blocks but not 6.
    budget = (cuts.split_device_peak_bytes(world, dev, 5)
              + cuts.split_device_peak_bytes(world, dev, 6)) / 2
    d["devices"][1]["memory_gb"] = budget / GB
    res = run(d)
    assert res.summary["devices"]["b"]["cut"] == 5
    assert res.summary["devices"]["a"]["cut"] == world.arch.n_layers - 1  # 8 GB hold everything
    assert res.summary["scheme_notes"]["cuts"]["chosen"] == ["a", "b"]
    assert res.summary["device_peak_bytes"]["b"] <= budget


def test_policies_keep_fixed_cuts():
    d = base()
    d["devices"][1].pop("cut")
    d["training"]["cut_policy"] = "max_fit"
    res = run(d)
    assert res.summary["devices"]["a"]["cut"] == 2
    assert res.summary["scheme_notes"]["cuts"]["chosen"] == ["b"]


def test_balanced_gives_fast_devices_more_blocks_and_evens_device_time():
    d = without_cuts("balanced")
    res = run(d)
    cut = {k: v["cut"] for k, v in res.summary["devices"].items()}
    assert cut["a"] > cut["b"]  # a is ten times faster
    world = world_of(d)

    def dev_s(dev_id: str, c: int) -> float:
        sc = split_costs(world, world.device(dev_id), c)
        return sc.dev_fwd_s + sc.dev_bwd_s

    balanced = abs(dev_s("a", cut["a"]) - dev_s("b", cut["b"]))
    for c in range(1, world.arch.n_layers):  # any common cut is less balanced
        assert balanced <= abs(dev_s("a", c) - dev_s("b", c))
    # taking blocks off the server without making a straggler beats giving everyone the most
    assert res.summary["makespan_s"] < run(without_cuts("max_fit")).summary["makespan_s"]


def test_min_time_is_no_worse_than_balanced_by_its_own_estimate():
    bal = run(without_cuts("balanced")).summary["scheme_notes"]["cuts"]
    fast = run(without_cuts("min_time")).summary["scheme_notes"]["cuts"]
    assert fast["policy"] == "min_time"
    assert 0 < fast["estimated_round_s"] <= bal["estimated_round_s"]
    # this server is 10-100x faster than the devices: the best is to keep devices light
    assert all(c <= bal["cuts"][d] for d, c in fast["cuts"].items())


@pytest.mark.parametrize("policy", ["balanced", "min_time", "max_fit"])
@pytest.mark.parametrize("scheme", ["splitfrozen", "sfl_v1", "sfl_v2"])
def test_policies_work_for_other_split_schemes(scheme, policy):
    res = run(without_cuts(policy), scheme=scheme)
    cut = {k: v["cut"] for k, v in res.summary["devices"].items()}
    assert cut["a"] >= cut["b"] >= 1
    assert res.summary["scheme_notes"]["cuts"]["policy"] == policy


def test_no_cut_fits_is_a_clear_error():
    d = without_cuts("max_fit")
    d["devices"][1]["memory_gb"] = 0.1
    with pytest.raises(InfeasibleError, match=r"device 'b'.*cannot hold even one block"):
        run(d)


def test_fedmobillm_picks_the_largest_backbone_that_fits():
    d = base()
    d["model"]["arch"] = "gpt2-medium"
    world = world_of(d)
    small, medium = get_arch("gpt2"), get_arch("gpt2-medium")
    dev_b = world.device("b")
    between = (backbone_device_peak_bytes(world, dev_b, small)
               + backbone_device_peak_bytes(world, dev_b, medium)) / 2
    d["devices"][1]["memory_gb"] = between / GB
    res = run(d, scheme="fedmobillm")
    assert res.summary["scheme_notes"]["backbones"] == {"a": "gpt2-medium", "b": "gpt2"}
    # device b's uploads are GPT-2 small's width, a's GPT-2 medium's
    up = res.trace.query("resource == 'uplink'").groupby("device")["bytes"].first()
    assert up["a"] / up["b"] == pytest.approx(
        (4 * 2 * 32 * 1024 * 4 + 2 * 32 * 8) / (4 * 1 * 32 * 768 * 4 + 32 * 8))
    # the server's alignment layers: one set per backbone kind
    d["devices"][1]["memory_gb"] = 8
    one_kind = run(d, scheme="fedmobillm")
    assert one_kind.summary["scheme_notes"]["backbones"] == {"a": "gpt2-medium",
                                                             "b": "gpt2-medium"}
    srv = res.memory.query("owner == 'server' and time_s == 0").groupby("kind")["delta_bytes"]
    srv_one = one_kind.memory.query("owner == 'server' and time_s == 0").groupby("kind")[
        "delta_bytes"]
    assert srv.sum()["adapters"] > srv_one.sum()["adapters"]


def test_fedmobillm_by_processor_and_infeasible_backbones():
    d = base()
    d["model"]["arch"] = "gpt2-medium"
    d["training"]["fedmobillm"] = {"backbone_policy": "by_processor",
                                   "by_processor": {"slow": "gpt2"}}
    res = run(d, scheme="fedmobillm")
    assert res.summary["scheme_notes"]["backbones"] == {"a": "gpt2-medium", "b": "gpt2"}
    d["devices"][0]["memory_gb"] = 0.2
    with pytest.raises(InfeasibleError, match=r"device 'a'.*smallest backbone gpt2"):
        run(d, scheme="fedmobillm")


def test_backbones_must_share_the_model_family():
    d = base()
    d["training"]["fedmobillm"] = {"backbones": ["llama-3.2-1b"]}
    with pytest.raises(InputError, match="family"):
        parse_scenario(d)
    d["training"]["fedmobillm"] = {"backbones": ["gpt3"]}
    with pytest.raises(InputError, match="unknown model architecture"):
        parse_scenario(d)
