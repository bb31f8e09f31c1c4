"""Sweeps: one table on every backend, resuming, kill -9, failed rows, bad files, the figure."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from sfsim.sweep import WALL_COLUMNS, run_sweep
from tests.conftest import TINY


def _base(rounds: int = 1) -> dict[str, Any]:
    s = copy.deepcopy(TINY)
    s["variability"] = {"compute": "lognormal", "sigma": 0.3}  # seeds matter
    s["training"]["rounds"] = rounds
    return s


def _spec(rounds: int = 1) -> dict[str, Any]:
    """2 local-iteration counts × 2 schedulers × 2 seeds = 8 runs of the tiny scenario."""
    return {
        "name": "t",
        "base": _base(rounds),
        "grid": {"training.local_iterations": [1, 2]},
        "schedulers": ["fifo", "spt"],
        "seeds": {"count": 2, "start": 5},
    }


def _table(out: Path, name: str = "results.parquet") -> pd.DataFrame:
    df = pd.read_parquet(out / name)
    return df.drop(columns=[c for c in WALL_COLUMNS if c in df.columns])


def test_same_table_on_one_worker_two_workers_and_dask(tmp_path: Path) -> None:
    from distributed import LocalCluster

    one = run_sweep(_spec(), tmp_path / "one", workers=1, quiet=True)
    run_sweep(_spec(), tmp_path / "two", workers=2, quiet=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        run_sweep(_spec(), tmp_path / "dask", dask=cluster.scheduler_address, quiet=True)
    assert len(one) == 8 and (one["status"] == "ok").all()
    assert list(one["seed"]) == [5, 6] * 4
    assert list(one["scheduler"]) == ["fifo", "fifo", "spt", "spt"] * 2
    assert list(one["training.local_iterations"]) == [1] * 4 + [2] * 4
    # the seed changes the run (the comparison below would not notice a backend ignoring seeds)
    assert one["makespan_s"].iloc[0] != one["makespan_s"].iloc[1]
    ref = _table(tmp_path / "one")
    for other in ("two", "dask"):
        pd.testing.assert_frame_equal(ref, _table(tmp_path / other))
        pd.testing.assert_frame_equal(_table(tmp_path / "one", "aggregate.parquet"),
                                      _table(tmp_path / other, "aggregate.parquet"))
    # every run has its folder, named by its key, holding the resolved scenario
    for key in ref["run"]:
        assert (tmp_path / "two" / "runs" / key / "summary.json").is_file()
        assert (tmp_path / "dask" / "runs" / key / "scenario.resolved.yaml").is_file()


def test_aggregate_is_mean_and_student_t_interval_over_seeds(tmp_path: Path) -> None:
    from scipy import stats

    res = run_sweep(_spec(), tmp_path, workers=1, quiet=True, folders=False)
    agg = pd.read_parquet(tmp_path / "aggregate.parquet")
    assert len(agg) == 4 and list(agg["n"]) == [2] * 4
    assert not (tmp_path / "runs").exists()
    x = res.loc[res["config"] == 0, "makespan_s"].to_numpy()
    half = stats.t.ppf(0.975, 1) * x.std(ddof=1) / 2**0.5
    assert agg.loc[0, "makespan_s_mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert agg.loc[0, "makespan_s_ci95"] == pytest.approx(half, rel=1e-12)
    assert pd.read_csv(tmp_path / "aggregate.csv")["makespan_s_mean"].iloc[0] == pytest.approx(
        x.mean())


def test_resume_skips_finished_runs(tmp_path: Path) -> None:
    first = run_sweep(_spec(), tmp_path, workers=1, quiet=True)
    assert (first.attrs["ran"], first.attrs["skipped"]) == (8, 0)
    again = run_sweep(_spec(), tmp_path, workers=1, quiet=True)
    assert (again.attrs["ran"], again.attrs["skipped"]) == (0, 8)
    pd.testing.assert_frame_equal(first, again)  # wall_s comes back from the recorded rows
    for key in first["run"][:3]:
        (tmp_path / "rows" / f"{key}.json").unlink()
    part = run_sweep(_spec(), tmp_path, workers=1, quiet=True)
    assert (part.attrs["ran"], part.attrs["skipped"]) == (3, 5)
    pd.testing.assert_frame_equal(first.drop(columns="wall_s"), part.drop(columns="wall_s"))
    # a new grid value runs only the new points
    spec = _spec()
    spec["grid"]["training.local_iterations"] = [1, 2, 3]
    more = run_sweep(spec, tmp_path, workers=1, quiet=True)
    assert (more.attrs["ran"], more.attrs["skipped"]) == (4, 8)


def test_crashed_runs_are_retried_and_others_are_final(tmp_path: Path) -> None:
    spec = _spec()
    spec["seeds"] = [1]
    first = run_sweep(spec, tmp_path, workers=1, quiet=True, folders=False)
    keys = list(first["run"])
    (tmp_path / "rows" / f"{keys[0]}.json").write_text(
        json.dumps({"key": keys[0], "status": "crashed", "error": "KilledWorker: lost"}))
    (tmp_path / "rows" / f"{keys[1]}.json").write_text("{trunc")  # unreadable: run again
    again = run_sweep(spec, tmp_path, workers=1, quiet=True, folders=False)
    assert (again.attrs["ran"], again.attrs["skipped"]) == (2, 2)
    pd.testing.assert_frame_equal(first.drop(columns="wall_s"), again.drop(columns="wall_s"))


@pytest.mark.parametrize(("trace", "files"), [
    ("parquet", {"trace.parquet"}), ("json", {"trace.json"}), ("none", set()),
    ("parquet,json", {"trace.parquet", "trace.json"}),
])
def test_trace_option_picks_the_trace_files(tmp_path: Path, trace: str, files: set[str]) -> None:
    spec = _spec()
    spec.update(grid={}, schedulers=["fifo"], seeds=[1])
    res = run_sweep(spec, tmp_path, workers=1, quiet=True, trace=trace)
    folder = tmp_path / "runs" / res["run"].iloc[0]
    present = {p.name for p in folder.iterdir()}
    assert present & {"trace.parquet", "trace.json"} == files
    assert {"summary.json", "memory.parquet", "scenario.resolved.yaml"} <= present


def test_cli_prints_how_many_runs_it_skipped(tmp_path: Path, cli) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(_spec()))
    out = tmp_path / "out"
    r = cli("sweep", sweep, "--out", out, "--workers", "1", "--no-folders")
    assert r.exit_code == 0, r.output
    r = cli("sweep", sweep, "--out", out, "--workers", "1", "--no-folders")
    assert r.exit_code == 0, r.output
    assert "skipped 8 finished run(s)" in r.output
    assert (out / "sweep.yaml").read_text() == sweep.read_text()


def test_killed_sweep_resumes_to_the_same_table(tmp_path: Path) -> None:
    spec = _spec(rounds=30)
    spec["seeds"] = {"count": 4, "start": 0}  # 16 runs of 30 rounds
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sfsim.cli", "sweep", str(sweep), "--out", str(out),
           "--workers", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "rows").glob("*.json"))) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = sorted((out / "rows").glob("*.json"))
    assert 3 <= len(finished) < 16
    for f in finished:  # every recorded row is whole
        assert json.loads(f.read_text())["status"] == "ok"
    for folder in (out / "runs").iterdir():  # every visible run folder is complete
        if not folder.name.startswith("."):
            assert (folder / "summary.json").is_file()
    assert not (out / "results.parquet").exists()
    resumed = run_sweep(sweep, out, workers=1, quiet=True)
    assert resumed.attrs["skipped"] >= len(finished)
    assert resumed.attrs["skipped"] + resumed.attrs["ran"] == 16
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]  # leftovers gone
    fresh = run_sweep(sweep, tmp_path / "fresh", workers=1, quiet=True, folders=False)
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "fresh"))
    assert len(fresh) == 16


def test_failed_and_invalid_runs_are_rows(tmp_path: Path) -> None:
    spec = _spec()
    spec["seeds"] = [1]
    spec["schedulers"] = ["fifo"]
    spec["grid"] = {"devices[1].cut": [6, 40], "devices[0].memory_gb": [8, 0.01]}
    res = run_sweep(spec, tmp_path, workers=2, quiet=True)
    assert len(res) == 4
    by = {(r["devices[1].cut"], r["devices[0].memory_gb"]): r for _, r in res.iterrows()}
    assert by[(6, 8)]["status"] == "ok"
    assert by[(6, 0.01)]["status"] == "error"
    assert "does not fit in memory" in by[(6, 0.01)]["error"]
    assert pd.isna(by[(6, 0.01)]["makespan_s"])
    for mem in (8, 0.01):
        assert by[(40, mem)]["status"] == "invalid"
        assert by[(40, mem)]["error"].startswith("devices[1].cut: cut layer 40")
    agg = pd.read_parquet(tmp_path / "aggregate.parquet")
    assert list(agg["n"]) == [1, 0, 0, 0] and list(agg["n_failed"]) == [0, 1, 1, 1]
    failed_folder = tmp_path / "runs" / by[(6, 0.01)]["run"]
    assert json.loads((failed_folder / "summary.json").read_text())["status"] == "error"


BAD = [
    ({"grid": {"training.rounds": [1]}}, "base", "missing"),
    ({"base": "TINY", "gird": {}}, "gird", "unknown key"),
    ({"base": "TINY", "zip": {"training.rounds": [1, 2], "seed": [1]}}, "zip",
     "equal lengths"),
    ({"base": "TINY", "grid": {"training.roundz": [1, 2]}}, "grid.training.roundz",
     "not a scenario key"),
    ({"base": "TINY", "grid": {"training.rounds": []}}, "grid.training.rounds",
     "at least one value"),
    ({"base": "TINY", "seeds": {"count": 0}}, "seeds.count", "greater than 0"),
    ({"base": "TINY", "grid": {"seed": [1, 2]}, "seeds": [1]}, "grid.seed", "`seeds`"),
    ({"base": "missing.yaml"}, "base", "no such file"),
    ({"base": "TINY", "set": {"devices[9].cut": 2}}, "set.devices[9].cut", "out of range"),
    ({"base": "TINY", "grid": {"devices[9].cut": [2]}}, "grid.devices[9].cut", "out of range"),
    ({"base": {"devices": []}}, "base", "no devices"),
    ({"base": {**TINY, "training": {"rounds": 0}}}, "base: training.rounds", "greater than"),
]


@pytest.mark.parametrize(("data", "key", "problem"), BAD)
def test_bad_sweep_files_exit_2_naming_the_key(tmp_path: Path, cli, data, key, problem) -> None:
    if data.get("base") == "TINY":
        data = {**data, "base": _base()}
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(yaml.safe_dump(data))
    r = cli("sweep", sweep, "--out", tmp_path / "out", "-q")
    assert r.exit_code == 2, r.output
    first = r.output.strip().splitlines()[0]
    assert first.startswith(f"error: {sweep}: {key}: "), first
    assert problem in first
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_bad_set_and_trace_options_exit_2(tmp_path: Path, cli) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(_spec()))
    r = cli("sweep", sweep, "--out", tmp_path / "o", "--set", "devices[7].cut=2", "-q")
    assert r.exit_code == 2 and "--set devices[7].cut" in r.output, r.output
    r = cli("sweep", sweep, "--out", tmp_path / "o", "--trace", "xml", "-q")
    assert r.exit_code == 2 and "--trace" in r.output, r.output


def test_plot_sweep_writes_a_figure(tmp_path: Path, cli) -> None:
    run_sweep(_spec(), tmp_path, workers=1, quiet=True, folders=False)
    png = tmp_path / "fig.png"
    r = cli("plot-sweep", tmp_path, "--x", "training.local_iterations", "--y", "makespan_s",
            "--hue", "scheduler", "--out", png)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    r = cli("plot-sweep", tmp_path, "--x", "training.local_iterations", "--y", "makespan_s")
    assert r.exit_code == 0, r.output  # hue defaults to the column that varies
    r = cli("plot-sweep", tmp_path, "--x", "training.local_iterations", "--y", "nope")
    assert r.exit_code == 2 and "--y: no figure 'nope'" in r.output, r.output
    r = cli("plot-sweep", tmp_path, "--x", "training.local_iterations", "--y", "makespan_s",
            "--hue", "scheme")
    assert r.exit_code == 2 and "'scheduler' also varies" in r.output, r.output


def test_plot_data_is_the_aggregate(tmp_path: Path) -> None:
    from sfsim.plotting.sweep import sweep_figure

    run_sweep(_spec(), tmp_path, workers=1, quiet=True, folders=False)
    agg = pd.read_parquet(tmp_path / "aggregate.parquet")
    _, drawn = sweep_figure(agg, "training.local_iterations", "makespan_s",
                            where=["scheduler=spt"])
    assert list(drawn["x"]) == [1, 2]
    spt = agg[agg["scheduler"] == "spt"]
    assert list(drawn["mean"]) == list(spt["makespan_s_mean"])
    assert list(drawn["ci95"]) == list(spt["makespan_s_ci95"])


def test_sfsim_sweep_is_callable_after_the_module_is_imported(tmp_path: Path) -> None:
    import sfsim
    import sfsim.sweep  # what the CLI does; it rebinds the attribute sfsim.sweep

    spec = _spec()
    spec["seeds"] = [1]
    res = sfsim.sweep(spec, tmp_path, workers=1, quiet=True, folders=False)
    assert len(res) == 4 and (res["status"] == "ok").all()


def test_shipped_example_sweep_is_valid() -> None:
    from sfsim.sweep import expand, load_sweep

    root = Path(__file__).resolve().parents[1]
    for f in sorted((root / "scenarios" / "sweeps").glob("*.yaml")):
        points = expand(load_sweep(f))
        assert points and all(p.scenario_yaml is not None for p in points), f
