"""``sfsim compare``: every scheme on one scenario, skipping what cannot run."""

from __future__ import annotations

import pandas as pd
import yaml
from typer.testing import CliRunner

from sfsim.cli import app
from sfsim.compare import COLUMNS, compare
from sfsim.scenario import parse_scenario

from .common import ALL_SCHEMES, base, run


def test_compare_runs_every_scheme_and_skips_what_does_not_fit():
    d = base()
    d["devices"][1]["memory_gb"] = 0.45  # holds a few blocks, not the whole model
    df = compare(parse_scenario(d))
    assert list(df.columns) == COLUMNS
    assert sorted(df["scheme"]) == ALL_SCHEMES
    status = dict(zip(df["scheme"], df["status"], strict=True))
    assert status["fedlora"] == "skipped" and status["fedmobillm"] == "skipped"
    assert all(status[s] == "ok" for s in ("memsfl", "sfl_v2", "splitfrozen"))
    note = df.set_index("scheme").loc["fedlora", "note"]
    assert "'b'" in note and "GB" in note
    # a row holds the run's own counters
    row = df.set_index("scheme").loc["memsfl"]
    res = run(d, scheme="memsfl")
    assert row["makespan_s"] == res.summary["makespan_s"]
    assert row["uplink_bytes"] == res.summary["uplink_bytes"]
    assert row["device_flops"] == res.trace.query("resource == 'device'")["flops"].sum()
    assert row["total_energy_j"] == res.summary["total_energy_j"]
    assert 0 < row["device_energy_j"] < row["total_energy_j"]  # the server draws power too


def test_cli_compare_writes_parquet_and_csv(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(base()))
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", str(scenario), "--out", str(out),
                                   "--schemes", "memsfl,splitfrozen"])
    assert res.exit_code == 0, res.output
    assert "splitfrozen" in res.output
    df = pd.read_parquet(out / "compare.parquet")
    assert list(df["scheme"]) == ["memsfl", "splitfrozen"]
    csv = pd.read_csv(out / "compare.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(df, csv, check_dtype=False)
    bad = CliRunner().invoke(app, ["compare", str(scenario), "--schemes", "memsfl,nope"])
    assert bad.exit_code == 2
    assert "unknown scheme 'nope'" in bad.output
