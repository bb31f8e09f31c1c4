"""Every combination of the options added for real fleets (issue 12) either runs or is refused
with an input error naming a key: never a traceback, never a non-finite number, and when a
fault plan is active its sample counts reconcile.

A draw turns on any subset of: a generated fleet with lognormal or Dirichlet sample counts,
epochs as local work, persistent device slowdowns and a server factor, a shared cell (equal or
fluid) with fading and a broadcast downlink, dropouts, link outages, server slowdowns, a
deadline with partial aggregation, and activation compression; under any scheme.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sfsim
from sfsim.errors import InputError
from sfsim.schemes import schemes

from .conftest import TINY

SCHEMES = sorted(schemes())


def _finite(value: Any, where: str = "summary") -> None:
    if isinstance(value, float):
        assert math.isfinite(value), where
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite(v, f"{where}[{i}]")


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    d = copy.deepcopy(TINY)
    d["seed"] = draw(st.integers(0, 2**16))
    d["training"] = {"scheme": draw(st.sampled_from(SCHEMES)), "rounds": draw(st.integers(1, 2)),
                     "local_iterations": draw(st.integers(1, 2))}
    t = d["training"]
    if draw(st.booleans()):
        n = draw(st.integers(2, 5))
        samples = draw(st.sampled_from([
            {"dist": "lognormal", "median": 20, "sigma": 1.0},
            {"dist": "dirichlet", "total": 60 * n, "alpha": 0.5}, {"min": 5, "max": 40}]))
        d.pop("devices")
        d["fleet"] = {"count": n, "mix": {"dev-fast": 1, "dev-slow": 1}, "batch_size": [1, 2],
                      "cut": [1, 2], "samples": samples, "uplink_mbps": {"min": 5, "max": 50}}
    if draw(st.booleans()):
        t["local_work"] = "epochs"
        t["local_epochs"] = draw(st.sampled_from([0.5, 1.0]))
        d.setdefault("limits", {})["max_device_iterations"] = 10**6
    if draw(st.booleans()):
        d["variability"] = {"device": {"model": "lognormal", "sigma": 0.5},
                            "server_factor": draw(st.sampled_from([1.0, 2.0]))}
    channel: dict[str, Any] = {}
    if draw(st.booleans()):
        channel = {"model": "shannon", "distance_m": 150, "fading": "rayleigh",
                   "coherence_ms": 5, "bandwidth_mhz": 10}
    if draw(st.booleans()):
        channel |= {"access": "shared", "sharing": draw(st.sampled_from(["equal", "fluid"]))}
    if draw(st.booleans()):
        channel["broadcast_downlink"] = True
    if channel:
        d["channel"] = channel
    faults: dict[str, Any] = {}
    if draw(st.booleans()):
        faults["dropout"] = {"before": draw(st.sampled_from([0.0, 0.3])),
                             "during": draw(st.sampled_from([0.0, 0.5]))}
    if draw(st.booleans()):
        faults["link_outage"] = {"rate_per_hour": 3600, "mean_duration_s": 0.05}
    if draw(st.booleans()):
        faults["server_slowdown"] = {"rate_per_hour": 3600, "mean_duration_s": 0.05,
                                     "factor": 3.0}
    if faults:
        d["faults"] = faults
    if draw(st.booleans()):
        t["aggregation"] = "partial"
        if draw(st.booleans()):
            t["round_deadline_s"] = draw(st.sampled_from([0.05, 1.0]))
    if draw(st.booleans()):
        t["compression"] = {"activations": draw(st.sampled_from(["fp16", "int8"]))}
        if t["scheme"] == "fedmobillm" and draw(st.booleans()):
            t["compression"]["tokens"] = "pooled"
    return d


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scenarios())
def test_new_options_run_or_are_refused_by_key(d: dict[str, Any]) -> None:
    try:
        run = sfsim.run(d)
    except InputError as exc:
        assert exc.key or exc.file, exc  # the message names where the problem is
        event(f"refused: {exc.key}")
        return
    s = run.summary
    assert s["status"] == "ok" and s["makespan_s"] >= 0  # 0: every device dropped before
    event("ran")
    _finite(s)
    f = s.get("faults")
    if f is not None and "reconciles" in f:
        assert f["reconciles"]
        assert f["samples_trained"] == sum(v.get("samples_trained", 0)
                                           for v in s["devices"].values())
    assert (run.trace["end_s"] >= run.trace["start_s"]).all()
    assert (run.trace["energy_j"] >= 0).all()
