"""Closed-form rounds (`sfsim.fastpath`) against the event loop, on the shipped scenarios."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario, load_scenario, parse_scenario

from .conftest import ROOT, TINY

SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted(
    (ROOT / "scenarios" / "papers").glob("*.yaml")
)
OFFLINE = [None, "schrage", "spt", "lpt", "longest_tail", "random", "local_search"]


def _agree(s: Scenario) -> bool:
    """Run both paths; if the closed form applies, its times equal the event loop's to 1e-9."""
    event = simulate(s)
    fast = simulate(s, fast="auto")
    assert event.summary["engine_path"] == "event"
    if fast.summary["engine_path"] == "event":
        return False
    assert fast.summary["engine_path"] == "closed_form"
    assert fast.trace.empty and "server_peak_bytes" not in fast.summary
    assert fast.summary["makespan_s"] == pytest.approx(event.summary["makespan_s"], abs=1e-9)
    assert fast.summary["round_s"] == pytest.approx(event.summary["round_s"], abs=1e-9)
    flat = [[x for b in r.summary["round_bounds_s"] for x in b] for r in (fast, event)]
    assert flat[0] == pytest.approx(flat[1], abs=1e-9)
    for a, b in zip(fast.summary["plans"], event.summary["plans"], strict=True):
        assert a["order"] == b["order"]
        assert a["realised_makespan_s"] == pytest.approx(b["realised_makespan_s"], abs=1e-9)
    return True


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_closed_form_equals_event_loop_on_shipped_scenarios(path: Path) -> None:
    s0 = load_scenario(path)
    schedulers = OFFLINE if s0.training.scheme == "memsfl" else [None]
    applied = [_agree(resolve(s0, scheduler=name)) for name in schedulers]
    # The closed form must apply exactly where the scenario has no randomness in time.
    random_time = (
        (s0.channel.model == "shannon" and s0.channel.fading == "rayleigh")
        or (s0.variability.compute != "none" and s0.variability.sigma != 0)
        or getattr(s0.fleet, "participants", None) is not None  # sampled each round
    )
    expect = s0.training.scheme == "memsfl" and not random_time
    for name, did in zip(schedulers, applied, strict=True):
        offline = name is not None or s0.scheduler.name != "fifo"
        assert did == (expect and offline), (path.stem, name)


def test_closed_form_on_shannon_links_without_fading() -> None:
    d = copy.deepcopy(TINY)
    d["channel"] = {"model": "shannon", "fading": "none", "shadowing_std_db": 6.0,
                    "latency_ms": 2}
    d["training"].update(rounds=3, local_iterations=3)
    d["scheduler"] = {"name": "schrage"}
    assert _agree(resolve(parse_scenario(d)))


def test_randomness_keeps_the_event_loop() -> None:
    d = copy.deepcopy(TINY)
    d["scheduler"] = {"name": "schrage"}
    d["variability"] = {"compute": "lognormal", "sigma": 0.2}
    s = resolve(parse_scenario(d))
    assert simulate(s, fast="auto").summary["engine_path"] == "event"
    with pytest.raises(ValueError, match="variability"):
        simulate(s, fast=True)
