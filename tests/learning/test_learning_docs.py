"""docs/learning.md and the README's Learning paragraph hold together: every `sfsim` command they
show names an existing command, existing options and existing scenario files; the learning
scenarios validate with learning on; the figure the page shows is in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfsim.cli import app
from sfsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "learning.md"
SCENARIOS = sorted((ROOT / "scenarios" / "learning").glob("*.yaml"))


def _commands(text: str) -> list[list[str]]:
    """`sfsim ...` commands of console / bash blocks (``&&`` splits one line into several)."""
    out = []
    for block in re.findall(r"```(?:console|bash)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.removeprefix("$ ").split("#")[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part)
                if words[:1] == ["sfsim"]:
                    out.append(words[1:])
    return out


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_learning_scenarios_validate_with_learning_on(path: Path) -> None:
    s = load_scenario(path)
    assert s.name == path.stem
    assert s.learning.enabled


def test_documented_commands_use_real_options_and_files() -> None:
    seen = 0
    for doc in (DOC, ROOT / "README.md"):
        cmds = [c for c in _commands(doc.read_text()) if "learning" in " ".join(c)]
        assert cmds, f"{doc.name} shows no learning command"
        for words in cmds:
            seen += 1
            help_text = CliRunner().invoke(app, [words[0], "--help"],
                                           terminal_width=200).output
            for w in words[1:]:
                if w.startswith("--"):
                    assert w in help_text, f"{doc.name}: sfsim {words[0]} has no option {w}"
                elif w.startswith("scenarios/"):
                    assert (ROOT / w).is_file(), f"{doc.name}: no file {w}"
    assert seen >= 4


def test_the_figure_is_committed_and_not_blank() -> None:
    from ..plotting.conftest import image_stats

    img = ROOT / "docs" / "img" / "learning_curves.png"
    assert "img/learning_curves.png" in DOC.read_text()
    w, h, ink, std = image_stats(img)
    assert w >= 400 and h >= 300 and 0.03 < ink < 0.95 and std > 0.05
