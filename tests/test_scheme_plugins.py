"""Schemes from installed packages: the ``sfsim.schemes`` entry-point group (issue 10).

The example package is ``tests/schemes/plugin_example`` (scheme ``local_only``). Most tests
simulate its installation by patching ``importlib.metadata.entry_points`` on a throw-away copy of
the registry; one installs it for real in a subprocess (a ``.dist-info`` folder with an
``entry_points.txt`` on ``PYTHONPATH``, which is what pip writes) and drives ``sfsim run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from sfsim.errors import InputError
from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario
from sfsim.schemes import base as scheme_base
from sfsim.schemes import scheme_class, schemes
from tests.schemes import test_contract as contract

from .conftest import ROOT

PLUGIN_SRC = ROOT / "tests" / "schemes" / "plugin_example" / "src"
GROUP = scheme_base.ENTRY_POINT_GROUP


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the scheme registry thrown away after the test, plugins not yet loaded."""
    table = dict(scheme_base._SCHEMES)
    monkeypatch.setattr(scheme_base, "_SCHEMES", table)
    monkeypatch.setattr(scheme_base, "_plugins_loaded", False)
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    return table


def _entry_points(monkeypatch: pytest.MonkeyPatch, *eps: tuple[str, str]) -> None:
    made = [metadata.EntryPoint(name=n, value=v, group=GROUP) for n, v in eps]

    def entry_points(**selection: Any) -> list[metadata.EntryPoint]:
        return [ep for ep in made if ep.group == selection.get("group")]

    monkeypatch.setattr(metadata, "entry_points", entry_points)


@pytest.fixture
def with_plugin(fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, ("local_only", "sfsim_scheme_example:LocalOnly"))


def test_plugin_is_listed_and_found_by_name(with_plugin: None) -> None:
    assert "local_only" in schemes()
    assert "example plugin" in schemes()["local_only"]
    assert scheme_class("local_only").__module__ == "sfsim_scheme_example"


def test_plugins_load_once_lazily(fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, ("local_only", "sfsim_scheme_example:LocalOnly"))
    assert "local_only" not in fresh  # nothing loaded before the first query
    scheme_class("memsfl")
    assert "local_only" in fresh
    _entry_points(monkeypatch)  # a second query does not look again
    assert "local_only" in schemes()


@pytest.fixture
def plugin_run(with_plugin: None) -> Any:
    return simulate(resolve(load_scenario(ROOT / "scenarios" / "quickstart.yaml"),
                            scheme="local_only"))


def test_the_scheme_contract_holds_for_the_plugin(plugin_run: Any) -> None:
    """The checks tests/schemes/test_contract.py runs on every built-in scheme."""
    contract.test_runs_the_quickstart(plugin_run)
    contract.test_byte_counters_equal_the_trace(plugin_run)
    contract.test_a_device_never_computes_two_things_at_once(plugin_run)
    contract.test_memory_returns_to_its_setup_level(plugin_run)
    contract.test_rounds_follow_one_another(plugin_run)
    assert plugin_run.summary["uplink_bytes"] == 0  # what the example promises


@pytest.mark.parametrize(("name", "value", "match"), [
    ("memsfl", "sfsim_scheme_example:LocalOnly", "must equal the class's name"),
    ("ghost", "no_such_module_xyz:Ghost", "cannot load scheme plugin entry point 'ghost'"),
    ("local_only", "sfsim_scheme_example:fp", "is not a Scheme subclass"),
])
def test_broken_plugins_name_themselves(
    fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    _entry_points(monkeypatch, (name, value))
    with pytest.raises(InputError, match=match):
        schemes()


def test_a_plugin_cannot_replace_a_builtin(
    fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfsim_scheme_example import LocalOnly  # type: ignore[import-not-found]

    class Impostor(LocalOnly):
        name = "memsfl"

    monkeypatch.setattr(sys.modules["sfsim_scheme_example"], "Impostor", Impostor,
                        raising=False)
    _entry_points(monkeypatch, ("memsfl", "sfsim_scheme_example:Impostor"))
    with pytest.raises(InputError, match=r"entry point 'memsfl'.*refused.*already registered"):
        scheme_class("memsfl")
    assert fresh["memsfl"] is not Impostor


def _installed_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH holding the example package and the metadata pip would write for it."""
    site = tmp_path / "site"
    info = site / "sfsim_scheme_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sfsim-scheme-example\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\nlocal_only = sfsim_scheme_example:LocalOnly\n"
    )
    paths = [str(site), str(PLUGIN_SRC), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def test_sfsim_run_uses_an_installed_plugin(tmp_path: Path) -> None:
    env = _installed_env(tmp_path)
    scenario = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    scenario["training"] = {**scenario.get("training", {}), "scheme": "local_only"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))

    def sfsim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sfsim.cli", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)

    listing = sfsim("schemes", "--json")
    assert listing.returncode == 0, listing.stderr
    assert "local_only" in {item["name"] for item in json.loads(listing.stdout)}
    assert sfsim("validate", str(path)).returncode == 0
    out = tmp_path / "run"
    done = sfsim("run", str(path), "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scheme"] == "local_only" and summary["status"] == "ok"
    assert summary["uplink_bytes"] == 0 and summary["makespan_s"] > 0
    resolved = yaml.safe_load((out / "scenario.resolved.yaml").read_text())
    assert resolved["training"]["scheme"] == "local_only"
