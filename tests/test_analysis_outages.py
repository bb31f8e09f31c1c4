"""analysis/outages.py: paired ratios per scheme and the episode costs it reports."""

from __future__ import annotations

import math

import pytest

from .conftest import ROOT, load_module

outages = load_module(ROOT / "analysis" / "outages.py", "_sfsim_analysis_outages")


def test_ratios_are_paired_by_seed_and_kind() -> None:
    rows = [
        {"kind": "link_outage", "scheme": "memsfl", "rate": 0.0, "seed": 1, "makespan_s": 2.0},
        {"kind": "link_outage", "scheme": "memsfl", "rate": 0.0, "seed": 2, "makespan_s": 4.0},
        {"kind": "server_slowdown", "scheme": "memsfl", "rate": 0.0, "seed": 1,
         "makespan_s": 100.0},
        {"kind": "link_outage", "scheme": "memsfl", "rate": 60.0, "seed": 1, "makespan_s": 3.0},
        {"kind": "link_outage", "scheme": "memsfl", "rate": 60.0, "seed": 2, "makespan_s": 8.0},
    ]
    assert outages._ratios(rows, "link_outage", "memsfl", 60.0) == [1.5, 2.0]


def test_one_run_reports_the_episode_cost() -> None:
    calm = outages._one(("link_outage", "fedlora", 0.0, 1))
    rough = outages._one(("link_outage", "fedlora", 720.0, 1))
    assert calm["paused_s"] == 0.0 and rough["paused_s"] > 0.0
    assert math.isfinite(rough["makespan_s"]) and rough["makespan_s"] > calm["makespan_s"]
    slow = outages._one(("server_slowdown", "splitfrozen", 720.0, 1))
    assert slow["extra_s"] >= 0.0 and slow["paused_s"] == 0.0


@pytest.mark.parametrize("kind", outages.KINDS)
def test_table_has_a_row_per_scheme(kind: str) -> None:
    rows = [{"kind": kind, "scheme": s, "rate": r, "seed": sd, "makespan_s": 1.0 + r / 1000,
             "paused_s": 0.0, "extra_s": 0.0}
            for s in outages.SCHEMES for r in outages.RATES for sd in (1, 2)]
    lines = outages.table(rows, kind).splitlines()
    assert len(lines) == 2 + len(outages.SCHEMES)
    assert "1.060 ± 0.000" in lines[2]  # 60/h: 1.06 / 1.0 on both seeds
