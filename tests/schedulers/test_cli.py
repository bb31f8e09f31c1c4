"""The CLI commands, on a local Typer app (the lead wires them into ``sfsim``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sfsim.schedulers.cli import register
from sfsim.schedulers.instances import save_instance

from .strategies import random_single

RUNNER = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def instance_file(tmp_path: Path) -> Path:
    path = tmp_path / "inst.json"
    save_instance(random_single(8, seed=4), path)
    return path


def test_schedulers_lists_names(app: typer.Typer) -> None:
    res = RUNNER.invoke(app, ["schedulers", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)  # one shape for every --json listing: {name, description, ...}
    names = {r["name"] for r in rows}
    assert {"fifo", "schrage", "carlier", "milp", "local_search"} <= names
    assert all(r["description"] and isinstance(r["online"], bool) for r in rows)
    table = RUNNER.invoke(app, ["schedulers"])
    assert table.exit_code == 0 and "carlier" in table.stdout


def test_schedule_prints_json(app: typer.Typer, instance_file: Path) -> None:
    res = RUNNER.invoke(app, ["schedule", str(instance_file), "--scheduler", "carlier"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["scheduler"] == "carlier" and doc["optimal"] is True
    assert len(doc["order"]) == 8 and doc["makespan_s"] == doc["lower_bound_s"]
    assert {"solve_s", "gap", "status"} <= set(doc)


def test_schedule_options(app: typer.Typer, instance_file: Path) -> None:
    args = ["schedule", str(instance_file), "-s", "milp", "--time-limit", "5", "--seed", "3"]
    res = RUNNER.invoke(app, [*args, "--param", 'solver="cbc"'])
    assert res.exit_code == 0, res.output
    res = RUNNER.invoke(app, ["schedule", str(instance_file), "-s", "spt", "-p", "online=true"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "nope"], "error: unknown scheduler 'nope'; known schedulers:"),
        (["-s", "fifo", "--time-limit", "3"], "error: scheduler 'fifo' does not take"),
        (["-s", "fifo", "--param", "oops"], "error: --param needs KEY=VALUE"),
    ],
)
def test_schedule_input_errors(
    app: typer.Typer, instance_file: Path, args: list[str], message: str
) -> None:
    res = RUNNER.invoke(app, ["schedule", str(instance_file), *args])
    assert res.exit_code == 2
    assert res.stderr.startswith(message)


def test_bad_instance_file(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"jobs": [{"id": "a", "release_s": -1, "server_s": 1, "tail_s": 0}]}')
    res = RUNNER.invoke(app, ["schedule", str(path)])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {path}: jobs[0].release_s: must be a non-negative")
    missing = RUNNER.invoke(app, ["schedule", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "file not found" in missing.stderr


def test_bench_small(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["bench-schedulers", "--sizes", "5,8", "--reps", "1", "--families", "low,wide"]
    res = RUNNER.invoke(app, [*args, "--schedulers", "schrage,carlier", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("schedulers.csv", "schedulers.parquet", "summary.csv", "schedulers.png"):
        assert (out / name).stat().st_size > 0
    assert "carlier" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "5,x"], "--sizes needs comma-separated integers"),
        (["--families", "odd"], "--families: unknown"),
        (["--schedulers", "schrage,nope"], "unknown scheduler 'nope'"),
    ],
)
def test_bench_input_errors(
    app: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    res = RUNNER.invoke(app, ["bench-schedulers", *args, "--out", str(tmp_path)])
    assert res.exit_code == 2 and message in res.stderr
