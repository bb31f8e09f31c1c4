"""Fixtures for the plotting, export and progress tests: one quickstart run folder per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart scenario run through ``sfsim run`` (so trace.json comes from the CLI hook)."""
    from sfsim.cli import app

    out = tmp_path_factory.mktemp("runs") / "quickstart"
    result = CliRunner().invoke(app, ["run", str(QUICKSTART), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the quickstart run folder (safe to damage)."""
    dest = tmp_path / "run"
    shutil.copytree(run_dir, dest)
    return dest


def image_stats(path: Path) -> tuple[int, int, float, float]:
    """(width, height, fraction of non-white pixels, pixel standard deviation) of a PNG."""
    from matplotlib.image import imread

    img = imread(path)[..., :3]
    non_white = float(np.mean(np.any(img < 0.95, axis=-1)))
    return img.shape[1], img.shape[0], non_white, float(img.std())
