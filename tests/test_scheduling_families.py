"""Scheduling families (scenarios/scheduling/) and fleet.target_utilisation."""

from __future__ import annotations

from pathlib import Path

import pytest

import sfsim.api as api
from sfsim.errors import InputError
from sfsim.fleet_target import estimated_utilisation
from sfsim.world import build_world, resolved_devices

ROOT = Path(__file__).resolve().parents[1]
FAMILY = sorted((ROOT / "scenarios" / "scheduling").glob("*.yaml"))
TARGET = ROOT / "scenarios" / "scheduling" / "edge_target90_k1.yaml"


def test_family_is_shipped() -> None:
    names = {p.stem for p in FAMILY}
    assert {"edge_a100_200dev_k1", "edge_a100_200dev_k2", "edge_target90_k1"} <= names


@pytest.mark.parametrize("path", FAMILY, ids=lambda p: p.stem)
def test_family_is_server_bound_and_order_matters(path: Path) -> None:
    fifo = api.run(path, overrides={"scheduler.name": "fifo"}).summary
    schrage = api.run(path, overrides={"scheduler.name": "schrage"}).summary
    assert fifo["status"] == "ok" and schrage["status"] == "ok"
    assert 50 <= fifo["n_devices"] <= 300
    assert schrage["server_utilisation"] > 0.8  # the server is the bottleneck
    assert schrage["makespan_s"] < 0.95 * fifo["makespan_s"]  # and the order pays


def _scenario(target: float, **more: object) -> object:
    return api.load_scenario(TARGET, overrides={"fleet.target_utilisation": target, **more})


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_target_keeps_the_smallest_prefix_that_reaches_it(target: float) -> None:
    s = _scenario(target)
    kept = resolved_devices(s)
    full = resolved_devices(api.load_scenario(TARGET, overrides={"fleet.target_utilisation": None}))
    assert 1 < len(kept) < len(full) == s.fleet.count
    assert kept == full[: len(kept)]  # a prefix of the fleet the generator draws anyway
    world = build_world(s.model_copy(update={"devices": full, "fleet": None}))
    n = len(kept)
    assert estimated_utilisation(world, world.devices[:n]) >= target
    assert estimated_utilisation(world, world.devices[: n - 1]) < target


def test_target_is_deterministic_and_near_achieved() -> None:
    a = api.run(TARGET, overrides={"fleet.target_utilisation": 0.7, "scheduler.name": "schrage"})
    b = api.run(TARGET, overrides={"fleet.target_utilisation": 0.7, "scheduler.name": "schrage"})
    assert a.summary["makespan_s"] == b.summary["makespan_s"]
    assert a.summary["n_devices"] == b.summary["n_devices"]
    assert abs(a.summary["server_utilisation"] - 0.7) < 0.05


def test_target_unreachable_keeps_every_device() -> None:
    s = _scenario(1.0, **{"fleet.count": 60})
    assert len(resolved_devices(s)) == 60


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"training.scheme": "fedlora"}, "split scheme"),
        ({"fleet.cut": None}, "cut"),
        ({"fleet.participants": 10}, "participants"),
        ({"fleet.target_utilisation": 1.5}, "less than or equal"),
        ({"fleet.target_utilisation": 0}, "greater than"),
    ],
)
def test_target_refuses_what_it_cannot_do(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(InputError) as err:
        s = api.load_scenario(TARGET, overrides=overrides)
        resolved_devices(s)
    assert "target_utilisation" in str(err.value) or "fleet" in str(err.value)
    assert problem in str(err.value)
