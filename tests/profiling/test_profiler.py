"""The profiler and the CLI commands on tiny shapes (seconds, no timing assertions)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sfsim.costs.arch import ModelArch
from sfsim.costs.base import Op, Workload
from sfsim.costs.processors import catalogue
from sfsim.costs.profiled import PROFILE_COLUMNS, ProfiledCostModel
from sfsim.profiling.cli import register
from sfsim.profiling.profiler import Grid, Settings, profile_model, write_profile

QUICK = Settings(reps=2, warmup=1, threads=1, stack_blocks=2, retries=0)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_profile_rows_cover_every_op_and_read_back(tiny_arch: ModelArch, tmp_path: Path) -> None:
    grid = Grid(batches=(1, 2), seqs=(8, 16), ranks=(0, 4), targets=("q", "v"))
    result = profile_model(tiny_arch, grid, QUICK, processor="cpu-ref-2core")
    ops = {row["op"] for row in result.rows}
    assert ops == {op.value for op in Op}
    assert all(float(row["median_s"]) > 0 for row in result.rows)  # type: ignore[arg-type]
    assert len(result.rows) == 4 * (3 + 3 + 4)  # (b, s) × (rank-0 ops + ends + rank-4 ops)
    meta = result.meta
    assert meta["machine"]["torch"] and meta["settings"]["threads"] == 1  # type: ignore[index]
    path = write_profile(result, tmp_path)
    with path.open() as fh:
        assert tuple(csv.DictReader(fh).fieldnames or ()) == PROFILE_COLUMNS
    assert json.loads((tmp_path / f"{tiny_arch.name}.json").read_text())["model"] == tiny_arch.name
    cost = ProfiledCostModel(profile_dir=tmp_path)
    w = Workload(tiny_arch, 2, 16, "fp32", 4, ("q", "v"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a profile exists: no analytic fallback
        for op in Op:
            assert cost.time_s(op, w, catalogue()["cpu-ref-2core"]) > 0


def test_cli_models_json(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    names = {r["name"] for r in rows}
    assert {"gpt2", "llama-3.2-1b"} <= names
    assert all(isinstance(r["params"], int) and r["params"] > 0 for r in rows)


def test_cli_models_does_not_import_torch() -> None:
    code = (
        "import sys, typer\n"
        "from typer.testing import CliRunner\n"
        "from sfsim.profiling.cli import register\n"
        "app = typer.Typer(); register(app)\n"
        "r = CliRunner().invoke(app, ['models'])\n"
        "assert r.exit_code == 0 and 'gpt2' in r.output, r.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_profile_writes_a_readable_folder(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "my-cpu"
    args = [
        "profile",
        "--models",
        "gpt2",
        "--out",
        str(out),
        "--batches",
        "1",
        "--seqs",
        "8",
        "--ranks",
        "0,4",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--stack",
        "2",
        "--retries",
        "0",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "gpt2.csv").is_file() and (out / "gpt2.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "--models", "gpt5"], "unknown model architecture"),
        (["profile", "--ranks", "x"], "--ranks"),
        (["profile", "--ranks", "0"], "positive"),
        (["profile", "--targets", "gate"], "--targets"),
        (["fidelity", "--processor", "abacus"], "unknown 'abacus'"),
        (["fidelity", "--profile-dir", "/nonexistent/profiles"], "does not exist"),
    ],
)
def test_cli_user_errors_exit_2(app: typer.Typer, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output


def test_cli_fidelity_tiny_json_schema(app: typer.Typer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # toy shapes have no profile: analytic fallback warns
        result = CliRunner().invoke(
            app,
            [
                "fidelity",
                "--tiny",
                "--json",
                "--iters",
                "2",
                "--warmup",
                "1",
                "--retries",
                "0",
                "--threads",
                "1",
            ],
        )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["model"], r["cut"]) for r in rows} == {
        ("tiny-gpt2", 1),
        ("tiny-gpt2", 2),
        ("tiny-llama", 1),
    }
    for r in rows:
        assert r["median_abs_error"] >= 0
        assert set(r["phases"]) == {
            "device_fwd",
            "server_fwd",
            "server_bwd",
            "server_opt",
            "device_bwd",
            "device_opt",
        }
        assert r["predicted_iteration_s"] > 0 and r["measured_iteration_s"] > 0


def test_profiling_restores_process_state(tiny_arch: ModelArch) -> None:
    """Threads and flush-to-zero are set while measuring and restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    grid = Grid(batches=(1,), seqs=(8,), ranks=(0,), targets=("q", "v"))
    profile_model(tiny_arch, grid, QUICK, processor="cpu-ref-2core")
    assert torch.get_num_threads() == threads
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0  # a subnormal survives: denormals are not flushed
