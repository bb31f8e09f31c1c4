"""``sfsim plot``: images from a run folder; bad folders are user errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sfsim.cli import app

from .conftest import QUICKSTART, image_stats


def invoke(*args: object):
    return CliRunner().invoke(app, ["plot", *(str(a) for a in args)])


def test_plot_writes_three_non_blank_pngs(run_copy: Path) -> None:
    result = invoke(run_copy)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run_copy / "plots").iterdir())
    assert names == ["gantt.png", "memory.png", "rounds.png"]
    assert result.stdout.split() == [str(run_copy / "plots" / n) for n in
                                     ("gantt.png", "memory.png", "rounds.png")]
    for name in names:
        w, h, ink, std = image_stats(run_copy / "plots" / name)
        assert w >= 400 and h >= 300, name
        assert 0.03 < ink < 0.95, name  # something drawn, not a solid block
        assert std > 0.05, name


def test_plot_svg_selected_figures_and_devices(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    result = invoke(run_copy, "--out", out, "--format", "svg", "--figures", "memory,rounds",
                    "--devices", "phone", "--breakdown", "busy")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["memory.svg", "rounds.svg"]
    text = (out / "memory.svg").read_text()
    assert "<svg" in text and "phone" in text and "pi5" not in text


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nope")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "no such run folder" in result.stderr
    assert "Traceback" not in result.output


def test_a_file_or_a_plain_folder_is_not_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    for target, words in ((tmp_path / "f.txt", "not a run folder"),
                          (tmp_path, "not a run folder")):
        result = invoke(target)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and words in result.stderr


def test_failed_run_folder_is_a_user_error(tmp_path: Path) -> None:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["devices"][0]["memory_gb"] = 0.05  # cannot hold its blocks: the run fails
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(data))
    out = tmp_path / "failed"
    ran = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out), "-q"])
    assert ran.exit_code == 2
    assert json.loads((out / "summary.json").read_text())["status"] == "error"
    result = invoke(out)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "did not succeed" in result.stderr


@pytest.mark.parametrize("damage", ["summary", "parquet"])
def test_damaged_run_folder_is_a_user_error(run_copy: Path, damage: str) -> None:
    if damage == "summary":
        (run_copy / "summary.json").write_text("{not json")
    else:
        (run_copy / "memory.parquet").unlink()
    result = invoke(run_copy)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_bad_options_are_user_errors(run_copy: Path) -> None:
    result = invoke(run_copy, "--devices", "nobody")
    assert result.exit_code == 2 and "orin-nano" in result.stderr  # lists the valid devices
    result = invoke(run_copy, "--figures", "pie")
    assert result.exit_code == 2 and "gantt" in result.stderr
    assert not (run_copy / "plots").exists()
