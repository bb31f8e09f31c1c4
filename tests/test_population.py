"""Populations: N devices of which k take part per round, drawn with the fleet seed.

What is checked: a round's participants are a seeded subset of the right size; weighted sampling
favours devices with more samples; a population run builds, simulates and reports only the devices
that took part and releases their memory at the round's end; a scenario without ``participants``
is untouched by all of it; a 100,000-device population stays a generator (small resolved
scenario, nothing expanded).
"""

from __future__ import annotations

import numpy as np
import pytest

from sfsim.costs import footprint as fp
from sfsim.errors import InputError
from sfsim.run import resolve, simulate
from sfsim.scenario import dump_scenario, load_scenario, parse_scenario
from sfsim.schemes.population import RELEASE_LABEL
from sfsim.world import build_world, resolved_devices

from .conftest import ROOT


def _population(tiny, count=300, participants=6, rounds=3, **fleet):
    tiny["fleet"] = {"count": count, "mix": {"dev-fast": 2, "dev-slow": 1}, "cut": [1, 2, 3],
                     "uplink_mbps": {"min": 10, "max": 50}, "samples": {"min": 10, "max": 1000},
                     "overhead_mb": 0, "participants": participants, **fleet}
    tiny["training"]["rounds"] = rounds
    return parse_scenario(tiny)


def test_participants_are_a_seeded_subset_of_the_right_size(tiny):
    pop = build_world(_population(tiny)).population
    assert pop is not None and pop.size == 302  # two explicit devices + 300 generated
    draws = [pop.participants(r) for r in range(20)]
    for p in draws:
        assert len(p) == 6 and len(set(p.tolist())) == 6
        assert p.min() >= 0 and p.max() < pop.size and list(p) == sorted(p)
    assert len({tuple(p) for p in draws}) > 15  # rounds draw afresh
    again = build_world(_population(tiny)).population
    assert again is not None
    assert all((again.participants(r) == draws[r]).all() for r in range(20))
    tiny["seed"] = 4
    other = build_world(_population(tiny)).population
    assert other is not None
    assert any((other.participants(r) != draws[r]).any() for r in range(20))


@pytest.mark.parametrize("sampling", ["uniform", "weighted"])
def test_weighted_sampling_favours_devices_with_more_samples(tiny, sampling):
    pop = build_world(_population(tiny, count=2000, participants=100, sampling=sampling)).population
    assert pop is not None
    chosen = np.concatenate([pop.participants(r) for r in range(50)])  # 5000 draws
    mean_all = pop.samples.mean()
    # Uniform draws' mean sample count is the population's; weighted draws' is E[s²]/E[s]
    # (≈ 1.3 × the mean for samples uniform on [10, 1000]). 5000 draws put the standard error
    # near 1% of the mean, so the margins below are tens of standard errors wide.
    ratio = pop.samples[chosen].mean() / mean_all
    expected = (pop.samples.astype(float) ** 2).mean() / mean_all**2
    if sampling == "uniform":
        assert abs(ratio - 1.0) < 0.05
    else:
        assert expected > 1.25 and abs(ratio - expected) < 0.05


@pytest.mark.parametrize("sampling", ["uniform", "weighted"])
def test_weighted_sampling_of_a_large_share_uses_exponential_keys(tiny, sampling):
    """k > N/10 takes the other weighted method; drawing 60 of 302 without replacement caps the
    bias below E[s²]/E[s], but it stays far above the uniform draw's (about 1.28 vs 1.0)."""
    pop = build_world(_population(tiny, count=300, participants=60, sampling=sampling)).population
    assert pop is not None
    chosen = np.concatenate([pop.participants(r) for r in range(50)])
    ratio = pop.samples[chosen].mean() / pop.samples.mean()
    assert (abs(ratio - 1.0) < 0.05) if sampling == "uniform" else (ratio > 1.15)


def test_population_run_reports_only_participants(tiny):
    s = _population(tiny)
    res = simulate(resolve(s))
    sm = res.summary
    assert sm["population"] == 302
    rounds = sm["participants"]
    assert len(rounds) == 3 and all(len(p) == 6 for p in rounds)
    took_part = {d for p in rounds for d in p}
    assert set(sm["devices"]) == took_part == set(sm["device_peak_bytes"])
    assert sm["n_devices"] == len(took_part)
    pop = build_world(s).population
    assert pop is not None
    for r, ids in enumerate(rounds):
        assert ids == [pop.device_id(int(i)) for i in pop.participants(r)]
        in_trace = set(res.trace.loc[res.trace["round"] == r, "device"]) - {"server"}
        assert in_trace == set(ids)
    owners = set(res.memory["owner"]) - {"server"}
    assert owners == took_part


@pytest.mark.parametrize(
    "scheme", ["memsfl", "sfl_v1", "sfl_v2", "fedlora", "splitfrozen", "fedmobillm"]
)
def test_every_scheme_releases_participants_memory_each_round(tiny, scheme):
    s = resolve(_population(tiny, participants=4, rounds=2), scheme=scheme)
    res = simulate(s)
    m = res.memory
    end_levels = m.groupby("owner")["delta_bytes"].sum()
    assert (end_levels.drop("server").abs() < 1e-6).all()  # devices hold nothing after their round
    assert abs(end_levels["server"]) < 1e-3 * m["level_bytes"].max()
    released = m[m["label"] == RELEASE_LABEL]
    assert set(released["owner"]) - {"server"} == set(res.summary["devices"])


def test_memsfl_server_holds_lora_only_for_the_rounds_participants(tiny):
    s = resolve(_population(tiny, count=500, participants=5, rounds=3))
    res = simulate(s)
    world = build_world(s)
    st = fp.adapter_state(world.workload(1), s.model.lora.optimizer)
    n_layers = world.arch.n_layers
    cuts = {d: info["cut"] for d, info in res.summary["devices"].items()}
    rel = res.memory[(res.memory["label"] == RELEASE_LABEL) & (res.memory["owner"] == "server")]
    for r, ids in enumerate(res.summary["participants"]):
        end = res.summary["round_bounds_s"][r][1]
        adapters = rel[(rel["kind"] == "adapters") & (rel["time_s"] == end)]["delta_bytes"]
        blocks = sum(n_layers - cuts[d] for d in ids)
        assert -adapters.sum() == pytest.approx(blocks * st.adapters)


def test_without_participants_nothing_changes(tiny):
    """`sampling` alone changes nothing: the fleet is expanded and drawn exactly as before."""
    tiny["training"]["rounds"] = 2
    tiny["fleet"] = {"count": 5, "mix": {"dev-fast": 1, "dev-slow": 1}, "cut": [1, 2],
                     "overhead_mb": 0}
    plain = parse_scenario(tiny)
    tiny["fleet"]["sampling"] = "weighted"
    weighted = parse_scenario(tiny)
    a, b = resolve(plain), resolve(weighted)
    assert a.fleet is None and len(a.devices) == 7
    assert a.devices == b.devices
    assert build_world(a).population is None
    ra, rb = simulate(a), simulate(b)
    strip = lambda sm: {k: v for k, v in sm.items() if k != "wall_s"}  # noqa: E731
    assert strip(ra.summary) == strip(rb.summary)
    assert "population" not in ra.summary and "participants" not in ra.summary
    assert ra.trace.equals(rb.trace) and ra.memory.equals(rb.memory)


def test_participants_beyond_the_population_is_an_input_error(tiny):
    with pytest.raises(InputError) as err:
        _population(tiny, count=3, participants=6)
    assert err.value.key == "fleet.participants"


def test_population_100k_stays_a_generator():
    s = resolve(load_scenario(ROOT / "scenarios" / "population_100k.yaml"))
    assert s.fleet is not None and s.fleet.count == 100_000 and s.fleet.participants == 100
    text = dump_scenario(s)
    assert len(text) < 5_000  # the generator, not 100,000 devices
    world = build_world(s)
    assert world.devices == [] and world.population is not None
    assert world.population.size == 100_000
    assert world.population.processor.nbytes <= 8 * 100_000
    assert world.population._specs == {}  # nothing built until a round draws it
    ids = world.population.participants(0)
    specs = world.population.round_devices(0)
    assert [d.id for d in specs] == [world.population.device_id(int(i)) for i in ids]
    assert len(world.population._specs) == 100


def test_expanding_a_population_on_request_matches_what_rounds_build(tiny):
    s = _population(tiny, count=40)
    cfgs = resolved_devices(s)
    assert len(cfgs) == 42 and len({d.id for d in cfgs}) == 42
    pop = build_world(s).population
    assert pop is not None
    for i in (0, 1, 5, 41):
        spec = pop.spec(i)
        assert (spec.id, spec.processor.name, spec.batch, spec.cut, spec.samples) == (
            cfgs[i].id, cfgs[i].processor, cfgs[i].batch_size, cfgs[i].cut, cfgs[i].samples)


def test_a_population_resolved_scenario_reruns_to_the_same_result(tiny):
    s = resolve(_population(tiny))
    again = resolve(parse_scenario(__import__("yaml").safe_load(dump_scenario(s))))
    a, b = simulate(s), simulate(again)
    assert a.summary["participants"] == b.summary["participants"]
    assert a.summary["makespan_s"] == b.summary["makespan_s"]
    assert a.trace.equals(b.trace)
