"""The paper reproductions: their scenarios validate, and the script writes its table."""

from __future__ import annotations

import pandas as pd
import pytest

from sfsim.scenario import load_scenario

from ..conftest import ROOT, load_module

PAPERS = sorted((ROOT / "scenarios" / "papers").glob("*.yaml"))


def load_script():
    return load_module(ROOT / "analysis" / "reproduce_papers.py", "_sfsim_reproduce_papers")


@pytest.mark.parametrize("path", PAPERS, ids=[p.stem for p in PAPERS])
def test_paper_scenarios_validate_and_state_their_assumptions(path):
    s = load_scenario(path)
    assert s.name == path.stem
    head = path.read_text().split("\nname:")[0]
    assert head.count("\n#") >= 5 and "assum" in head.lower()


def test_reproduction_table(tmp_path):
    mod = load_script()
    mod.main(["--out", str(tmp_path), "--learning-seeds", "0"])  # learning rows: tests/learning
    df = pd.read_csv(tmp_path / "reproduction.csv", keep_default_na=False)
    assert len(df) == len(mod.claims())
    assert set(df["paper"].astype(str).str.zfill(3)) == {"000", "001", "002"}
    # every figure far from the paper's says why; figures close to it need no note
    for c, row in zip(mod.claims(), df.to_dict("records"), strict=True):
        assert bool(row["note"]) == c.far(row["simulated_value"]), row["claim"]
    md = (tmp_path / "reproduction.md").read_text()
    assert mod.COMMAND in md and md.count("\n| 0") == len(df)
    docs = (ROOT / "docs" / "schemes.md").read_text()
    stale = [line for line in md.splitlines() if line.startswith("| 0") and line not in docs]
    assert not stale, f"docs/schemes.md is out of date: rerun {mod.COMMAND} and paste the table"
    runs = pd.read_csv(tmp_path / "runs.csv")
    mem = runs[runs["scenario"] == "p000_memsfl.yaml"].groupby("scheme")["server_peak_bytes"].max()
    assert mem["memsfl"] < mem["sfl_v1"]  # the paper-000 memory claim's direction
