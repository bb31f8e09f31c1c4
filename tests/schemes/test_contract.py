"""One battery of checks run against every registered scheme."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario

from ..conftest import ROOT
from .common import ALL_SCHEMES, base, run

#: Schemes that run without round barriers by default (docs/async.md).
CONTINUOUS = {"fedmobillm", "splitfrozen"}
EXPECTED = {"fedlora", "fedmobillm", "memsfl", "sfl_v1", "sfl_v2", "splitfrozen", "splitlora"}


def test_every_scheme_of_the_issue_is_registered_with_a_description():
    from sfsim.schemes import schemes

    assert set(schemes()) >= EXPECTED
    assert all(len(desc) > 20 and "\n" not in desc for desc in schemes().values())


@pytest.fixture(scope="module", params=ALL_SCHEMES)
def quick(request):
    """Every scheme on the README's quickstart scenario."""
    s = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    return simulate(resolve(s, scheme=request.param))


@pytest.fixture(scope="module", params=ALL_SCHEMES)
def varied(request):
    """Every scheme on the tiny scenario with random compute slowdowns."""
    d = base()
    d["variability"] = {"compute": "lognormal", "sigma": 0.3}
    return run(d, scheme=request.param), d


def test_runs_the_quickstart(quick):
    s = quick.summary
    assert s["status"] == "ok" and s["makespan_s"] > 0
    assert len(s["round_s"]) == s["rounds"]
    assert (quick.trace[quick.trace["resource"] == "device"]["flops"] > 0).all()


def test_byte_counters_equal_the_trace(quick):
    t, s = quick.trace, quick.summary
    for direction in ("uplink", "downlink"):
        on_link = t[t["resource"] == direction]
        assert s[f"{direction}_bytes"] == on_link["bytes"].sum()
        assert s[f"{direction}_bytes"] == sum(d[direction] for d in s["devices"].values())
        # Bytes live on transfer spans only, FLOPs on compute spans only.
    assert (t.loc[~t["resource"].isin(["uplink", "downlink"]), "bytes"] == 0).all()
    assert (t.loc[t["resource"].isin(["uplink", "downlink"]), "flops"] == 0).all()


def _overlaps(df: pd.DataFrame) -> bool:
    df = df.sort_values("start_s")
    return bool((df["start_s"].to_numpy()[1:] < df["end_s"].to_numpy()[:-1] - 1e-12).any())


def _check_no_overlap(res) -> None:
    t = res.trace
    for dev, spans in t[t["resource"] == "device"].groupby("device"):
        assert not _overlaps(spans), dev
    for key, spans in t[t["resource"].isin(["uplink", "downlink"])].groupby(["device", "resource"]):
        assert not _overlaps(spans), key


def test_a_device_never_computes_two_things_at_once(quick):
    _check_no_overlap(quick)


def test_a_device_never_computes_two_things_at_once_with_slowdowns(varied):
    _check_no_overlap(varied[0])


def setup_levels(scenario_path, scheme: str) -> dict[str, float]:
    """Memory per owner right after the scheme's setup (before any round runs)."""
    from sfsim.engine import Sim
    from sfsim.schedulers import get_scheduler
    from sfsim.schemes import scheme_class
    from sfsim.world import build_world

    s = resolve(load_scenario(scenario_path), scheme=scheme)
    sim = Sim(build_world(s))
    scheme_class(scheme)(get_scheduler("fifo")).setup(sim)
    owners = {e.owner for e in sim.memory.events}
    return {o: sim.memory.level(o) for o in owners}


def test_memory_returns_to_its_setup_level(quick):
    """Everything a round allocates is freed by the end (no leaks in the ledger)."""
    final = quick.memory.groupby("owner")["delta_bytes"].sum().to_dict()
    static = setup_levels(ROOT / "scenarios" / "quickstart.yaml", quick.summary["scheme"])
    assert final == pytest.approx(static)


def test_same_seed_same_summary_and_trace(varied):
    first, d = varied
    again = run(d, scheme=first.summary["scheme"])
    a, b = dict(first.summary), dict(again.summary)
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b
    pd.testing.assert_frame_equal(first.trace, again.trace)
    pd.testing.assert_frame_equal(first.memory, again.memory)
    other = run(d, scheme=first.summary["scheme"], seed=d["seed"] + 1)
    assert other.summary["makespan_s"] != first.summary["makespan_s"]


def test_rounds_follow_one_another(quick):
    bounds = quick.summary["round_bounds_s"]
    t = quick.trace
    if quick.summary["scheme"] in CONTINUOUS:  # no barrier: rounds are bookkeeping of updates
        ev = quick.events.query("kind == 'update'")
        for r, (start, end) in enumerate(bounds):
            times = ev[ev["round"] == r]["time_s"]
            assert times.min() >= start - 1e-12 and times.max() <= end + 1e-12
        assert bounds[-1][1] == pytest.approx(t["end_s"].max(), abs=1e-12)
        for (_, e1), (s2, _) in itertools.pairwise(bounds):
            assert s2 == pytest.approx(e1)
        return
    for r, (start, end) in enumerate(bounds):
        in_round = t[t["round"] == r]
        assert in_round["start_s"].min() >= start - 1e-12
        assert in_round["end_s"].max() == pytest.approx(end, abs=1e-12)
    for (_, e1), (s2, _) in itertools.pairwise(bounds):
        assert s2 == pytest.approx(e1)
