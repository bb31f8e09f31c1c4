"""``sfsim compare``: exit status 2 when every scheme is skipped; ``--out`` is never overwritten
without ``--overwrite`` (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from sfsim.cli import app

from .schemes.common import base

RUNNER = CliRunner()


def _scenario(tmp_path: Path, memory_gb: float | None = None) -> Path:
    d = base()
    if memory_gb is not None:
        for dev in d["devices"]:
            dev["memory_gb"] = memory_gb
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def _compare(*args: str) -> object:
    return RUNNER.invoke(app, ["compare", *args, "--schemes", "memsfl,fedlora"])


def test_every_scheme_skipped_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, memory_gb=0.01)  # no device holds even its runtime
    out = tmp_path / "cmp"
    res = _compare(str(scenario), "--out", str(out))
    assert res.exit_code == 2, res.output
    assert "every scheme was skipped (memsfl, fedlora)" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_one_scheme_that_runs_is_enough(tmp_path: Path) -> None:
    res = RUNNER.invoke(app, ["compare", str(_scenario(tmp_path)), "--schemes", "memsfl"])
    assert res.exit_code == 0, res.output


def test_existing_tables_are_kept_without_overwrite(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.csv").write_text("precious\n")
    (out / "notes.txt").write_text("mine\n")
    res = _compare(str(scenario), "--out", str(out))
    assert res.exit_code == 2 and "already holds compare.csv" in res.output
    assert "--overwrite" in res.output
    assert (out / "compare.csv").read_text() == "precious\n"
    assert not (out / "compare.parquet").exists()

    res = _compare(str(scenario), "--out", str(out), "--overwrite")
    assert res.exit_code == 0, res.output
    assert list(pd.read_parquet(out / "compare.parquet")["scheme"]) == ["memsfl", "fedlora"]
    assert "memsfl" in (out / "compare.csv").read_text()
    assert (out / "notes.txt").read_text() == "mine\n"  # other files are left alone
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.parquet",
                                                     "notes.txt"]  # no temporary left


def test_an_existing_folder_without_tables_is_fine(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    out.mkdir()
    res = _compare(str(_scenario(tmp_path)), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert (out / "compare.parquet").is_file()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    res = _compare(str(_scenario(tmp_path)), "--out", str(target))
    assert res.exit_code == 2 and "is not a folder" in res.output
    assert target.read_text() == "x"
