"""`sfsim --version` and the one shape of every ``--json`` listing (issue 10)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sfsim import __version__
from sfsim.cli import app

RUNNER = CliRunner()


def test_version_option_and_command() -> None:
    res = RUNNER.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"sfsim {__version__}"
    res = RUNNER.invoke(app, ["version"])
    assert res.exit_code == 0 and res.stdout.strip() == __version__


@pytest.mark.parametrize(("command", "some", "fields"), [
    ("schemes", {"memsfl", "fedlora"}, {"uses_scheduler", "fixed_scheduler"}),
    ("schedulers", {"fifo", "schrage"}, {"online", "supports_chains", "params"}),
    ("models", {"gpt2", "llama-3.2-1b"}, {"params", "n_layers", "family"}),
    ("processors", {"a100-80gb-sxm", "jetson-orin-nano-8gb"}, {"kind", "peak_tflops", "source"}),
])
def test_every_json_listing_is_a_list_of_named_described_objects(
    command: str, some: set[str], fields: set[str]
) -> None:
    res = RUNNER.invoke(app, [command, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert isinstance(row, dict)
        assert isinstance(row["name"], str) and row["name"]
        assert isinstance(row["description"], str) and row["description"].strip()
        assert "\n" not in row["description"]
        assert fields <= set(row), (command, sorted(row))
    names = [r["name"] for r in rows]
    assert some <= set(names) and len(names) == len(set(names))


def test_processors_lists_the_catalogue_with_sources() -> None:
    from sfsim.costs.processors import catalogue

    rows = {r["name"]: r for r in json.loads(RUNNER.invoke(app, ["processors", "--json"]).stdout)}
    assert set(rows) == set(catalogue())
    for name, p in catalogue().items():
        row = rows[name]
        assert row["peak_tflops"]["fp32"] * 1e12 == pytest.approx(p.peak_flops["fp32"])
        assert row["memory_gb"] * 1e9 == pytest.approx(p.memory_bytes)
        assert row["mem_bw_gbps"] * 1e9 == pytest.approx(p.mem_bw_bytes_s)
        assert row["efficiency"] == p.efficiency and row["source"] == p.source
        assert row["source"], f"{name} cites no source"
    table = RUNNER.invoke(app, ["processors"])
    assert table.exit_code == 0 and "a100-80gb-sxm" in table.stdout
