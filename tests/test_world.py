"""Building the world: the generated fleet, units, and the one-seed rule."""

from __future__ import annotations

from collections import Counter

import pytest

from sfsim.errors import InputError
from sfsim.run import resolve
from sfsim.scenario import load_scenario, parse_scenario
from sfsim.world import build_world

from .conftest import ROOT


def _fleet(tiny, **fleet):
    tiny["fleet"] = {"count": 7, "mix": {"dev-fast": 2, "dev-slow": 1}, "cut": [1, 2, 3],
                     "uplink_mbps": {"min": 10, "max": 50}, **fleet}
    return parse_scenario(tiny)


def test_fleet_counts_follow_mix_by_largest_remainder(tiny):
    world = build_world(_fleet(tiny))
    gen = [d for d in world.devices if d.id.startswith("dev")]
    assert len(gen) == 7
    counts = Counter(d.processor.name for d in gen)
    assert counts == {"dev-fast": 5, "dev-slow": 2}  # 4.67 -> 5, 2.33 -> 2
    assert all(d.cut in (1, 2, 3) for d in gen)
    assert all(10e6 <= d.uplink.expected_rate_bps() <= 50e6 for d in gen)


def test_fleet_is_a_function_of_the_seed(tiny):
    a = build_world(_fleet(tiny))
    b = build_world(_fleet(tiny))
    key = [(d.id, d.processor.name, d.cut, d.uplink.expected_rate_bps()) for d in a.devices]
    assert key == [(d.id, d.processor.name, d.cut, d.uplink.expected_rate_bps())
                   for d in b.devices]
    tiny["seed"] = 99
    c = build_world(_fleet(tiny))
    assert key != [(d.id, d.processor.name, d.cut, d.uplink.expected_rate_bps())
                   for d in c.devices]


def test_units_converted_once(tiny):
    w = build_world(parse_scenario(tiny))
    a = w.device("a")
    assert a.uplink.expected_rate_bps() == 100e6
    assert a.downlink.expected_rate_bps() == 100e6
    assert a.memory_bytes == 8e9
    assert w.server.processor.flops_per_s("fp32") == 10e12


def test_resolve_expands_fleet_and_keeps_links(tiny):
    s = _fleet(tiny)
    r = resolve(s)
    assert r.fleet is None and len(r.devices) == 9
    w1, w2 = build_world(s), build_world(r)
    assert [d.uplink.expected_rate_bps() for d in w1.devices] == \
        [d.uplink.expected_rate_bps() for d in w2.devices]


def test_shannon_world_has_distinct_fading_per_link():
    s = load_scenario(ROOT / "scenarios" / "memsfl_10dev.yaml")
    w = build_world(s)
    gains = {d.id: d.uplink.fading_power(0) for d in w.devices}  # type: ignore[attr-defined]
    assert len(set(gains.values())) == len(gains)


def test_override_seed_and_scheduler(tiny):
    s = parse_scenario(tiny)
    r = resolve(s, seed=11, scheduler="random", scheme="sfl_v2")
    assert (r.seed, r.scheduler.name, r.training.scheme) == (11, "random", "sfl_v2")


def test_fleet_id_clash_is_an_error(tiny):
    tiny["devices"][0]["id"] = "dev0"
    with pytest.raises(InputError, match="clashes"):
        build_world(_fleet(tiny))
