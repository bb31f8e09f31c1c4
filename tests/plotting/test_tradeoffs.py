"""analysis/tradeoffs.py: the built-in grid, the run table, and the three trade-off figures."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from ..conftest import load_module
from .conftest import ROOT, image_stats


def _load(name: str) -> ModuleType:
    return load_module(ROOT / "analysis" / f"{name}.py", f"_sfsim_analysis_{name}")


tradeoffs = _load("tradeoffs")


@pytest.fixture(scope="module")
def grid_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("tradeoffs")
    t0 = time.perf_counter()
    assert tradeoffs.main(["--grid", "--quick", "--out", str(out)]) == 0
    return out, time.perf_counter() - t0


def test_quick_grid_runs_fast_and_plots(grid_out: tuple[Path, float]) -> None:
    out, seconds = grid_out
    assert seconds < 60
    for name in ("time_vs_memory", "makespan_vs_solve", "sensitivity"):
        w, h, ink, std = image_stats(out / f"{name}.png")
        assert w > 500 and h > 300 and ink > 0.03 and std > 0.05, name


def test_grid_table_covers_every_scheme_and_scheduler(grid_out: tuple[Path, float]) -> None:
    from sfsim.schedulers import available
    from sfsim.schemes import schemes

    table = pd.read_csv(grid_out[0] / "runs.csv")
    assert set(table["sweep"]) == {"schemes", "schedulers", "bandwidth", "heterogeneity"}
    sched = table[table["sweep"] == "schedulers"]
    assert set(sched["scheduler"]) == set(available())
    assert (sched["solve_s"] > 0).all()
    best = sched.loc[sched["scheduler"] == "carlier", "makespan_s"].iloc[0]
    assert (sched["makespan_s"] >= best - 1e-9).all()  # nothing beats the exact optimum
    ran = set(table.loc[table["sweep"] == "schemes", "scheme"])
    assert ran <= set(schemes()) and "memsfl" in ran
    bw = table[(table["sweep"] == "bandwidth") & (table["scheme"] == "memsfl")]
    bw = bw.sort_values("uplink_mbps")
    assert bw["round_s"].is_monotonic_decreasing  # a faster uplink never slows a round
    het = table[table["sweep"] == "heterogeneity"]
    assert het["compute_cv"].min() == pytest.approx(0.0) and het["compute_cv"].max() > 0.3


def test_grid_folders_are_run_folders_with_sweep_tags(grid_out: tuple[Path, float]) -> None:
    folders = [p.parent for p in (grid_out[0] / "runs").rglob("summary.json")]
    assert folders
    for f in folders:
        assert {"summary.json", "trace.parquet", "memory.parquet", "trace.json",
                "scenario.resolved.yaml", "sweep.json"} <= {p.name for p in f.iterdir()}
        assert json.loads((f / "sweep.json").read_text())["sweep"] == f.parent.name


def test_collect_runs_reads_plain_run_folders(run_dir: Path, tmp_path: Path) -> None:
    table = tradeoffs.collect_runs(run_dir.parent)
    row = table[table["run"] == run_dir.name].iloc[0]
    assert row["scheme"] == "memsfl" and row["sweep"] == ""
    assert row["uplink_mbps"] == pytest.approx(40.0)  # mean of 60, 40 and 20 Mbit/s
    assert row["compute_cv"] > 0
    assert np.isnan(row["solve_s"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text(json.dumps({"status": "error"}))
    assert tradeoffs.collect_runs(tmp_path).empty


def test_figures_work_on_tables_without_sweeps() -> None:
    table = pd.DataFrame([
        {"run": f"r{i}", "sweep": "", "scenario": "x", "scheme": s, "scheduler": "fifo",
         "n_devices": 2, "cut": c, "makespan_s": 1.0 + c, "round_s": 1.0 + c / u,
         "server_peak_gb": 2 - c / 10, "device_peak_gb": c / 10, "uplink_mbps": u,
         "compute_cv": 0.1 * i, "solve_s": float("nan")}
        for i, (s, c, u) in enumerate([("a", 1, 10), ("a", 2, 20), ("b", 1, 10), ("b", 3, 40)])
    ])
    for fn in tradeoffs.FIGURES.values():
        fig = fn(table)
        assert fig.axes


def test_missing_runs_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tradeoffs.main(["--runs", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
