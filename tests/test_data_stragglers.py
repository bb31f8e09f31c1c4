"""Per-device data and persistent stragglers (issue 12): local work by epochs, FedAvg weights,
imbalanced sample-count generators, persistent device and server slowdowns."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsim import fleetdata
from sfsim.errors import InputError
from sfsim.estimators import instance_from, realised_instance
from sfsim.run import resolve, simulate
from sfsim.scenario import dump_scenario, parse_scenario
from sfsim.schedulers import Instance, Job, makespan
from sfsim.schedulers.evaluate import check_order
from sfsim.schedulers.registry import available, get_scheduler
from sfsim.schemes.split import round_instance, split_costs
from sfsim.world import build_world, resolved_devices

from .schemes.common import ALL_SCHEMES, base, identical, run

FLEET = {"count": 8, "mix": {"fast": 1, "slow": 1}, "cut": 2, "batch_size": [1, 2]}


def _epochs(d: dict[str, Any], epochs: float | None = 1.0, samples: tuple[int, int] = (10, 7)
            ) -> dict[str, Any]:
    d["devices"][0]["samples"], d["devices"][1]["samples"] = samples
    d["training"].update(local_work="epochs", local_epochs=epochs)
    return d


def _per_round(res: Any, phase: str) -> dict[tuple[int, str], int]:
    t = res.trace
    rows = t[t["phase"] == phase]
    return {(int(r), str(dev)): int(n) for (r, dev), n in rows.groupby(["round", "device"]).size()
            .items()}


def _durations(res: Any, phase: str, device: str) -> np.ndarray:
    t = res.trace
    rows = t[(t["phase"] == phase) & (t["device"] == device)]
    return (rows["end_s"] - rows["start_s"]).to_numpy()


# ---- local work ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("epochs", [1.0, 0.5])
def test_epochs_give_each_device_ceil_e_n_over_b_iterations(scheme, epochs):
    d = _epochs(base(), epochs)
    d["training"]["rounds"] = 1
    res = run(d, scheme=scheme)
    want = {"a": math.ceil(epochs * 10 / 2), "b": math.ceil(epochs * 7 / 1)}
    assert want != {"a": 3, "b": 3}  # not what local_iterations would give
    assert _per_round(res, "device_fwd") == {(0, dev): k for dev, k in want.items()}
    for dev, k in want.items():
        assert res.summary["devices"][dev]["iterations_per_round"] == k


def test_epochs_hold_in_every_round_and_the_server_serves_each_iteration():
    d = _epochs(base(), 1.5)
    res = run(d)  # memsfl, 2 rounds
    want = {"a": 8, "b": 11}  # ceil(1.5 × 10 / 2), ceil(1.5 × 7)
    for phase in ("device_fwd", "server_fwd", "device_bwd"):
        assert _per_round(res, phase) == {(r, dev): k for r in (0, 1) for dev, k in want.items()}


def test_epoch_ceiling_ignores_float_rounding():
    assert 1.1 * 100 / 2 > 55  # the float product is just above 55
    assert fleetdata.epoch_iterations(1.1, 100, 2) == 55
    assert fleetdata.epoch_iterations(1.1, 101, 2) == 56
    assert fleetdata.epoch_iterations(1.0, 1001, 4) == 251
    assert fleetdata.epoch_iterations(1e-6, 1, 65536) == 1  # never 0
    samples, batch = np.array([1000, 1001, 7, 1]), np.array([4, 4, 1, 3])
    vec = fleetdata.epoch_iterations(1.1, samples, batch)
    assert vec.tolist() == [fleetdata.epoch_iterations(1.1, n, b)
                            for n, b in zip(samples.tolist(), batch.tolist(), strict=True)]


def test_samples_trained_counts_a_partial_last_batch_once():
    d = _epochs(base(), 1.0, samples=(1001, 7))
    d["devices"][0]["batch_size"] = 4
    d["training"]["rounds"] = 1
    dev = run(d, scheme="fedlora").summary["devices"]["a"]
    assert dev["iterations_per_round"] == 251
    assert dev["samples_per_round"] == 1001  # not 251 × 4 = 1004
    assert dev["samples_trained"] == 1001
    # iterations mode: k × batch samples seen per round, repeats counted
    d = base()
    d["training"].update(local_iterations=5, rounds=2)
    dev = run(d, scheme="fedlora").summary["devices"]["a"]
    assert (dev["iterations_per_round"], dev["samples_per_round"], dev["samples_trained"]) == (
        5, 10, 20)


def test_iterations_mode_refuses_local_epochs():
    d = base()
    d["training"]["local_epochs"] = 2.0
    with pytest.raises(InputError) as exc:
        parse_scenario(d)
    assert exc.value.key == "training.local_epochs"
    assert "local_work" in exc.value.problem


def test_epoch_work_over_the_limit_names_local_epochs():
    d = _epochs(base(), 100.0, samples=(10**6, 10**6))
    with pytest.raises(InputError) as exc:  # explicit devices: at load
        parse_scenario(d)
    assert exc.value.key == "training.local_epochs"
    assert "limits.max_device_iterations" in exc.value.problem
    # a generated fleet's counts are drawn at build: the same error then
    d = _epochs(base(), 1000.0)
    d["fleet"] = {**FLEET, "samples": {"dist": "lognormal", "median": 1000, "sigma": 0.1}}
    s = parse_scenario(d)
    with pytest.raises(InputError) as exc:
        build_world(s)
    assert exc.value.key == "training.local_epochs"
    d["limits"] = {"max_device_iterations": 10**9}
    build_world(parse_scenario(d))  # raised on purpose: fine
    # a population: bounded by its busiest participants
    d["limits"] = {"max_device_iterations": 10**6}
    d["fleet"].update(count=1000, participants=3)
    with pytest.raises(InputError) as exc:
        build_world(parse_scenario(d))
    assert exc.value.key == "training.local_epochs" and "busiest" in exc.value.problem


# ---- schedulers and instances with jobs of different lengths -----------------------------------


def test_instance_from_takes_per_device_iterations():
    def duration(dev: str, it: int, phase: str) -> float:
        return 1.0

    inst = instance_from(["a", "b"], {"a": 3, "b": 1}, duration)
    assert {j.id: j.k for j in inst.jobs} == {"a": 3, "b": 1}
    assert instance_from(["a", "b"], 2, duration).n_tasks == 4


def test_realised_instance_reads_each_devices_iterations():
    durations = {("a", i, "server_fwd"): 1.0 for i in range(4)}
    durations.update({("b", 0, "server_fwd"): 2.0, ("b", -1, "adapter_upload"): 1.0})
    inst = realised_instance(durations, ["a", "b"], None)
    assert {j.id: j.k for j in inst.jobs} == {"a": 4, "b": 1}


@pytest.mark.parametrize("name", sorted(available()))
def test_every_offline_scheduler_orders_jobs_of_different_lengths(name):
    jobs = (
        Job("long", 0.5, (1.0, 2.0, 0.5), (0.3, 0.2), 1.0),
        Job("short", 0.1, (1.5,), (), 0.2),
        Job("mid", 0.0, (0.7, 0.7), (1.0,), 0.0),
    )
    inst = Instance(jobs)
    sched = get_scheduler(name)
    if sched.online:
        pytest.skip(f"{name} dispatches online")
    try:
        order = sched.order(inst, np.random.default_rng(0))
    except (InputError, ValueError) as exc:  # carlier: one task per job only, said clearly
        assert name == "carlier", exc
        return
    check_order(inst, order)
    assert makespan(inst, order) > 0


def test_epoch_round_plans_and_replays_exactly():
    d = _epochs(base(), 1.0)
    d["scheduler"] = {"name": "schrage"}
    res = run(d)
    for plan in res.summary["plans"]:
        assert plan["replayed_makespan_s"] == pytest.approx(plan["realised_makespan_s"], rel=1e-9)
        assert plan["regret_s"] >= 0


# ---- FedAvg weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["memsfl", "fedlora", "sfl_v1"])
def test_fedavg_weights_normalise_and_match_samples(scheme):
    d = base()
    d["devices"][0]["samples"], d["devices"][1]["samples"] = 300, 100
    res = run(d, scheme=scheme)
    weights = res.summary["fedavg_weights"]
    assert weights == pytest.approx({"a": 0.75, "b": 0.25})
    assert sum(weights.values()) == pytest.approx(1.0)
    ev = res.events[res.events["kind"] == "aggregate"]
    for _, rows in ev.groupby("round"):
        logged = dict(zip(rows["device"], rows["value"] / rows["value"].sum(), strict=True))
        assert logged == pytest.approx(weights)
    for dev, n in (("a", 300), ("b", 100)):
        assert res.summary["devices"][dev]["samples"] == n


def test_streaming_schemes_report_no_fedavg_weights():
    res = run(base(), scheme="splitfrozen")
    assert "fedavg_weights" not in res.summary
    assert res.summary["devices"]["a"]["samples_trained"] == 2 * 3 * 2  # rounds × K × batch


def test_closed_form_reports_the_same_data_figures():
    d = _epochs(base(), 1.0)
    d["scheduler"] = {"name": "schrage"}
    d["devices"][1]["slowdown"] = 3.0
    d["variability"] = {"server_factor": 2.0}
    s = resolve(parse_scenario(d))
    event, closed = simulate(s), simulate(s, fast=True)
    assert closed.summary["engine_path"] == "closed_form"
    assert closed.summary["fedavg_weights"] == event.summary["fedavg_weights"]
    for dev in ("a", "b"):
        for key in ("samples", "iterations_per_round", "samples_trained", "slowdown"):
            assert closed.summary["devices"][dev][key] == event.summary["devices"][dev][key]
    assert closed.summary["round_s"] == pytest.approx(event.summary["round_s"], rel=1e-9)


# ---- sample-count generators --------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    {"dist": "lognormal", "median": 200, "sigma": 1.0},
    {"dist": "dirichlet", "total": 4000, "alpha": 0.5},
])
def test_sample_draws_are_deterministic_per_seed_and_reproduced_by_the_resolved_yaml(spec):
    d = base()
    d["fleet"] = {**FLEET, "samples": spec}

    def counts(seed: int) -> list[int]:
        return [c.samples for c in resolved_devices(parse_scenario({**d, "seed": seed}))][2:]

    assert counts(1) == counts(1)
    assert counts(1) != counts(2)
    assert all(n >= 1 for n in counts(1))
    if spec["dist"] == "dirichlet":  # proportions of the total, up to rounding
        assert abs(sum(counts(1)) - 4000) <= len(counts(1))
    s = resolve(parse_scenario(d))
    again = resolve(parse_scenario(yaml.safe_load(dump_scenario(s))))
    assert again.devices == s.devices
    assert simulate(again).summary["makespan_s"] == simulate(s).summary["makespan_s"]


def test_a_distribution_leaves_the_fleet_seeds_other_draws_alone():
    d = base()
    d["fleet"] = {**FLEET, "samples": 500, "uplink_mbps": {"min": 5, "max": 50}}
    fixed = resolved_devices(parse_scenario(d))
    d["fleet"]["samples"] = {"dist": "lognormal", "median": 500, "sigma": 2.0}
    drawn = resolved_devices(parse_scenario(d))
    strip = [c.model_dump(exclude={"samples"}) for c in fixed]
    assert strip == [c.model_dump(exclude={"samples"}) for c in drawn]
    assert [c.samples for c in drawn[2:]] != [500] * 8


def test_lognormal_counts_follow_their_median():
    spec = parse_scenario({**base(), "fleet": {**FLEET, "samples": {
        "dist": "lognormal", "median": 300, "sigma": 0.8}}}).fleet.samples
    n = fleetdata.draw_sample_counts(spec, 20_000, np.random.SeedSequence(7))
    assert np.median(n) == pytest.approx(300, rel=0.03)
    assert np.std(np.log(n)) == pytest.approx(0.8, rel=0.03)


def test_a_population_draws_the_same_counts_and_slowdowns_as_its_expanded_fleet():
    d = base()
    d["fleet"] = {**FLEET, "samples": {"dist": "dirichlet", "total": 800, "alpha": 2.0}}
    d["variability"] = {"device": {"model": "lognormal", "sigma": 0.7}}
    fleet = resolved_devices(parse_scenario(d))
    d["fleet"]["participants"] = 3
    pop = build_world(parse_scenario(d)).population
    assert pop is not None
    assert pop.samples.tolist() == [c.samples for c in fleet]
    assert [pop.device_cfg(i).slowdown for i in range(pop.size)] == [c.slowdown for c in fleet]


def test_bad_distributions_name_their_key():
    for spec, key in (({"dist": "lognormal", "median": 0}, "fleet.samples.median"),
                      ({"dist": "dirichlet", "total": 10, "alpha": 0}, "fleet.samples.alpha"),
                      ({"dist": "gamma", "k": 1}, "fleet.samples"),
                      ({"dist": "lognormal", "median": 5, "mu": 1}, "fleet.samples.mu")):
        with pytest.raises(InputError) as exc:
            parse_scenario({**base(), "fleet": {**FLEET, "samples": spec}})
        assert exc.value.key == key, exc.value


# ---- persistent stragglers ----------------------------------------------------------------------


def test_an_explicit_straggler_is_slow_in_every_round():
    d = base()
    plain = run(d)
    d["devices"][1]["slowdown"] = 4.0
    slow = run(d)
    for phase in ("device_fwd", "device_bwd"):
        ratio = _durations(slow, phase, "b") / _durations(plain, phase, "b")
        assert ratio == pytest.approx(np.full(6, 4.0), rel=1e-9)  # 2 rounds × 3 iterations
        assert _durations(slow, phase, "a") == pytest.approx(_durations(plain, phase, "a"),
                                                             rel=1e-9)


def test_drawn_stragglers_keep_their_factor_against_the_others():
    d = base()
    d["devices"][1]["processor"] = "fast"  # two identical devices
    d["devices"][1]["batch_size"] = 2
    d["variability"] = {"device": {"model": "lognormal", "sigma": 0.8}}
    res = run(d, scheme="fedlora")
    factors = {c.id: c.slowdown for c in resolve(parse_scenario(d)).devices}
    assert factors["a"] != factors["b"]
    ratio = _durations(res, "device_fwd", "b") / _durations(res, "device_fwd", "a")
    assert ratio == pytest.approx(np.full(6, factors["b"] / factors["a"]), rel=1e-9)
    for dev, f in factors.items():
        assert res.summary["devices"][dev]["slowdown"] == f


@pytest.mark.parametrize("scheme", ["fedlora", "memsfl"])
def test_a_synchronous_round_grows_with_the_straggler_factor(scheme):
    rounds, compute = [], []
    for factor in (1.0, 2.0, 4.0, 8.0):
        d = identical(3)
        d["devices"][0]["slowdown"] = factor
        res = run(d, scheme=scheme)
        rounds.append(res.summary["round_s"][0])
        t = res.trace
        mine = t[(t["round"] == 0) & (t["device"] == "d0") & (t["resource"] == "device")]
        compute.append(float((mine["end_s"] - mine["start_s"]).sum()))
    assert all(b > a for a, b in itertools.pairwise(rounds))
    if scheme == "memsfl":  # the server queue hides part of the extra device time
        return
    # fedlora: the straggler's extra compute lies on the round's critical path, all of it
    for r, c in zip(rounds[1:], compute[1:], strict=True):
        assert r - rounds[0] >= (c - compute[0]) * (1 - 1e-9)


def test_the_server_factor_slows_every_server_phase():
    d = base()
    plain = run(d)
    d["variability"] = {"server_factor": 2.5}
    slow = run(d)
    for phase in ("server_fwd", "server_bwd", "aggregate"):
        t0, t1 = plain.trace, slow.trace
        a = (t0[t0.phase == phase].end_s - t0[t0.phase == phase].start_s).to_numpy()
        b = (t1[t1.phase == phase].end_s - t1[t1.phase == phase].start_s).to_numpy()
        assert np.sort(b) == pytest.approx(np.sort(a) * 2.5, rel=1e-9)
    assert _durations(slow, "device_fwd", "a") == pytest.approx(
        _durations(plain, "device_fwd", "a"), rel=1e-9)


def test_the_estimator_sees_the_persistent_factors():
    d = base()
    d["devices"][0]["slowdown"] = 3.0
    d["variability"] = {"server_factor": 2.0}
    world = build_world(resolve(parse_scenario(d)))
    a = world.devices[0]
    costs = {dev.id: split_costs(world, dev, dev.cut) for dev in world.devices}
    job = next(j for j in round_instance(world, costs).jobs if j.id == "a")
    c = costs["a"]
    assert job.server_s[0] == pytest.approx(2.0 * (c.srv_fwd_s + c.srv_bwd_s), rel=1e-12)
    up = a.uplink.duration_s(c.up_bytes, 0.0)
    assert job.release_s == pytest.approx(3.0 * c.dev_fwd_s + up, rel=1e-12)


def test_a_factor_of_one_changes_nothing():
    d = base()
    d["variability"] = {"compute": "lognormal", "sigma": 0.3}
    plain = run(d)
    for dev in d["devices"]:
        dev["slowdown"] = 1.0
    d["variability"].update(server_factor=1.0, device={"model": "lognormal", "sigma": 0.0})
    same = run(d)
    assert plain.trace.equals(same.trace)
    assert plain.summary["makespan_s"] == same.summary["makespan_s"]


def test_resolved_yaml_writes_and_replays_drawn_slowdowns():
    d = base()
    d["variability"] = {"device": "lognormal"}  # a word is short for {model: ...}
    s = resolve(parse_scenario(d))
    assert all(c.slowdown is not None and c.slowdown != 1.0 for c in s.devices)
    again = resolve(parse_scenario(yaml.safe_load(dump_scenario(s))))
    assert again == s
    assert simulate(again).trace.equals(simulate(s).trace)


# ---- schema bounds (fuzz) -----------------------------------------------------------------------

BOUNDS: dict[tuple[str, ...], tuple[float, float, bool]] = {
    # key path: (low, high, integer)
    ("training", "local_epochs"): (1e-6, 1e4, False),
    ("variability", "device", "sigma"): (0.0, 2.0, False),
    ("variability", "server_factor"): (1.0, 1e3, False),
    ("devices", 0, "slowdown"): (1e-3, 1e3, False),
    ("fleet", "samples", "median"): (1.0, 1e9, False),
    ("fleet", "samples", "sigma"): (0.0, 3.0, False),
    ("fleet", "samples", "total"): (1, 10**9, True),
    ("fleet", "samples", "alpha"): (1e-3, 1e3, False),
}

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=2e9),
    st.integers(min_value=-10, max_value=2 * 10**9),
    st.sampled_from([0, 1, 1e-6, 1e-3, 2.0, 3.0, 1e3, 1e4, 1e9, 10**9 + 1, 1e308]),
)


def _fuzz_base(path: tuple[str, ...]) -> dict[str, Any]:
    d = base()
    d["training"].update(rounds=1, local_iterations=1)
    if path[0] == "training":
        d["training"]["local_work"] = "epochs"
        d["devices"][0]["samples"] = d["devices"][1]["samples"] = 4
        d["limits"] = {"max_device_iterations": 10**12}
    if path[:2] == ("variability", "device"):
        d["variability"] = {"device": {"model": "lognormal"}}
    if path[0] == "fleet":
        dist = "dirichlet" if path[-1] in ("total", "alpha") else "lognormal"
        first = {"median": 10} if dist == "lognormal" else {"total": 10}
        d["fleet"] = {**FLEET, "count": 3, "samples": {"dist": dist, **first}}
    return d


def _set(d: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = d
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[path[-1]] = value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(sorted(BOUNDS, key=str)), value=numbers)
def test_new_keys_accept_exactly_their_bounds(path, value):
    low, high, integer = BOUNDS[path]
    d = _fuzz_base(path)
    _set(d, path, value)
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and low <= value <= high and (not integer or isinstance(value, int)))
    try:
        s = parse_scenario(d)
    except InputError as exc:
        assert not ok, (path, value, exc)
        assert exc.key is not None and exc.key.startswith(".".join(
            p for p in map(str, path) if not p.isdigit()).split(".")[0])
        return
    assert ok, (path, value)
    resolved = resolve(s)  # draws fit the bounds: the resolved scenario validates again
    world = build_world(resolved)
    for dev in world.devices:
        assert 1 <= dev.samples <= 10**9
        assert 1e-3 <= dev.slowdown <= 1e3 and math.isfinite(dev.slowdown)
    assert parse_scenario(yaml.safe_load(dump_scenario(resolved))) == resolved


def test_cli_refuses_a_drawn_fleet_over_the_work_limit(write_yaml, cli, tmp_path):
    d = _epochs(base(), 5.0)
    d["fleet"] = {**FLEET, "samples": {"dist": "lognormal", "median": 10**5, "sigma": 1.0}}
    path = write_yaml(d)
    for args in (("validate", path), ("run", path, "--out", tmp_path / "out")):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: {path}: training.local_epochs: ")
        assert "Traceback" not in result.output and "internal error" not in result.output
    assert not (tmp_path / "out").exists()
