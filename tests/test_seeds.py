"""Separable seeds: ``seeds: {fleet, channel, compute, scheduler, faults, data, learning}``."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest

import sfsim
from sfsim.errors import InputError
from sfsim.scenario import parse_scenario
from sfsim.world import Seeds, build_world, resolved_devices

#: A generated fleet on Shannon links with shadowing and fading, compute variability and a
#: random scheduler: every stream of randomness is in use.
NOISY: dict[str, Any] = {
    "name": "noisy",
    "seed": 5,
    "model": {"arch": "gpt2", "seq_len": 32, "lora": {"rank": 4}},
    "costs": {"model": "analytic"},
    "fleet": {
        "count": 4,
        "mix": {"snapdragon-8-gen-3": 1, "jetson-orin-nano-8gb": 1},
        "batch_size": [1, 2],
        "cut": [1, 2, 3],
        "distance_m": {"min": 50, "max": 400},
    },
    "channel": {"model": "shannon", "shadowing_std_db": 6.0, "fading": "rayleigh",
                "coherence_ms": 5.0},
    "training": {"scheme": "memsfl", "rounds": 2, "local_iterations": 1},
    "scheduler": {"name": "random"},
    "variability": {"compute": "lognormal", "sigma": 0.3},
}


def _with(**seeds: int) -> dict[str, Any]:
    d = copy.deepcopy(NOISY)
    if seeds:
        d["seeds"] = seeds
    return d


def _same_seq(a: np.random.SeedSequence, b: np.random.SeedSequence) -> bool:
    return (a.entropy, a.spawn_key) == (b.entropy, b.spawn_key)


def _links(d: dict[str, Any]) -> list[float]:
    world = build_world(parse_scenario(d))
    return [dev.uplink.path_gain for dev in world.devices] + [
        dev.uplink.fading_power(b) for dev in world.devices for b in range(3)]


def _device_compute(r: sfsim.Run) -> pd.Series:
    t = r.trace
    dev = t[t["resource"] == "device"]
    return (dev["end_s"] - dev["start_s"]).reset_index(drop=True)


def test_default_streams_are_todays():
    """Without ``seeds``, the four streams are SeedSequence(seed).spawn(4) as before."""
    s = parse_scenario(_with())
    got = Seeds.for_scenario(s)
    want = np.random.SeedSequence(5).spawn(4)  # fleet, channel, scheduler, variability
    for name, w in zip(("fleet", "channel", "scheduler", "variability"), want, strict=True):
        assert _same_seq(getattr(got, name), w), name
    # naming every stream with the scenario's own seed changes nothing
    a = sfsim.run(_with())
    b = sfsim.run(_with(fleet=5, channel=5, compute=5, scheduler=5))
    pd.testing.assert_frame_equal(a.trace, b.trace)
    assert a.summary["makespan_s"] == b.summary["makespan_s"]


def test_seeds_x_equals_seed_n_for_stream_x():
    s = parse_scenario(_with(channel=11, compute=12))
    got, five, other = Seeds.for_scenario(s), Seeds.from_seed(5), Seeds.from_seed(11)
    assert _same_seq(got.fleet, five.fleet) and _same_seq(got.scheduler, five.scheduler)
    assert _same_seq(got.channel, other.channel)
    assert _same_seq(got.variability, Seeds.from_seed(12).variability)


def test_new_channel_seed_keeps_the_fleet_and_changes_link_draws():
    base, noisy = _with(), _with(channel=99)
    assert resolved_devices(parse_scenario(base)) == resolved_devices(parse_scenario(noisy))
    assert _links(base) != _links(noisy)
    a, b = sfsim.run(base), sfsim.run(noisy)
    assert a.summary["devices"].keys() == b.summary["devices"].keys()
    for d in a.summary["devices"]:
        for k in ("processor", "cut", "batch"):
            assert a.summary["devices"][d][k] == b.summary["devices"][d][k]
    up_a = a.trace[a.trace["resource"] == "uplink"]
    up_b = b.trace[b.trace["resource"] == "uplink"]
    assert not np.allclose(up_a["end_s"] - up_a["start_s"], up_b["end_s"] - up_b["start_s"])


def test_the_channel_of_seed_n_is_replayed_on_another_fleet():
    """seed 5 with seeds.channel 8 draws the links seed 8 would, on seed 5's fleet."""
    explicit = copy.deepcopy(NOISY)
    del explicit["fleet"]
    explicit["devices"] = [c.model_dump() for c in resolved_devices(parse_scenario(NOISY))]
    at8 = {**copy.deepcopy(explicit), "seed": 8}
    mixed = {**copy.deepcopy(explicit), "seeds": {"channel": 8}}
    assert _links(mixed) == _links(at8)
    assert _links(mixed) != _links(explicit)


def test_new_fleet_seed_changes_the_fleet():
    a = resolved_devices(parse_scenario(_with()))
    b = resolved_devices(parse_scenario(_with(fleet=6)))
    assert a != b
    assert b == resolved_devices(parse_scenario({**_with(), "seed": 6}))


def test_new_compute_seed_changes_only_compute_noise():
    a, b = sfsim.run(_with()), sfsim.run(_with(compute=77))
    for d, info in a.summary["devices"].items():  # the same fleet
        assert {k: info[k] for k in ("processor", "cut", "batch")} == {
            k: b.summary["devices"][d][k] for k in ("processor", "cut", "batch")}
    assert not np.allclose(_device_compute(a), _device_compute(b))
    no_noise = {**_with(), "variability": {"compute": "none"}}
    c, d = sfsim.run(no_noise), sfsim.run({**no_noise, "seeds": {"compute": 77}})
    pd.testing.assert_frame_equal(c.trace, d.trace)  # nothing to draw: identical


def test_resolved_scenario_with_seeds_reruns_identically(tmp_path):
    r = sfsim.run(_with(channel=3, compute=4, scheduler=2))
    assert "channel: 3" in r.scenario_yaml
    again = sfsim.run(r.scenario)
    pd.testing.assert_frame_equal(r.trace, again.trace)
    back = sfsim.load_run(r.write(tmp_path / "run"))
    pd.testing.assert_frame_equal(sfsim.run(back.scenario).trace, r.trace)


def test_set_seeds_from_the_command_line_and_the_api():
    a = sfsim.run(_with(channel=9))
    b = sfsim.run(_with(), overrides=["seeds.channel=9"])
    pd.testing.assert_frame_equal(a.trace, b.trace)


@pytest.mark.parametrize("seeds, key", [
    ({"channel": -1}, "seeds.channel"),
    ({"noise": 1}, "seeds.noise"),
    ({"fleet": 1.5}, "seeds.fleet"),
])
def test_bad_seeds_name_the_key(seeds, key):
    with pytest.raises(InputError) as e:
        parse_scenario({**_with(), "seeds": seeds})
    assert e.value.key == key


def _dropped(d: dict[str, Any]) -> list[tuple[int, str]]:
    ev = sfsim.run(d).events
    drops = ev[ev["kind"] == "drop"]
    return list(zip(drops["round"].tolist(), drops["device"].tolist(), strict=True))


def test_faults_seed_replays_the_dropouts_of_seed_n_on_this_fleet():
    """seeds.faults 8 draws the dropouts seed 8 would, on seed 5's fleet and links."""
    explicit = copy.deepcopy(NOISY)
    del explicit["fleet"]
    explicit["devices"] = [c.model_dump() for c in resolved_devices(parse_scenario(NOISY))]
    explicit["training"] = {**explicit["training"], "rounds": 6, "aggregation": "partial"}
    explicit["faults"] = {"dropout": {"before": 0.4}}
    at8 = {**copy.deepcopy(explicit), "seed": 8}
    mixed = {**copy.deepcopy(explicit), "seeds": {"faults": 8}}
    assert _dropped(mixed) == _dropped(at8)
    assert _dropped(mixed) != _dropped(explicit)
    assert _links(mixed) == _links(explicit)  # the links are still seed 5's


@pytest.mark.parametrize("stream", ["data", "learning"])
def test_data_and_learning_seeds_follow_seed_n(stream):
    got = Seeds.for_scenario(parse_scenario(_with(**{stream: 8})))
    assert _same_seq(getattr(got, stream), getattr(Seeds.from_seed(8), stream))
    assert _same_seq(got.fleet, Seeds.from_seed(5).fleet)
