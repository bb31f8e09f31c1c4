"""The Python API: ``import sfsim`` names, Run, load_run, trace choices, API == CLI folders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sfsim
from sfsim.errors import InputError

from .conftest import ROOT

#: Fields that hold wall-clock readings and so differ between two runs: summary.json's
#: ``wall_s`` (``finished_at`` for a failed run), the completion marker's ``written_at``.
WALL_CLOCK_FIELDS = {"wall_s", "finished_at", "written_at"}
#: JSON files of a run folder that may hold them (summary, completion marker).
JSON_WITH_CLOCKS = {"summary.json", ".sfsim-run"}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    out = {}
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        if f.name in JSON_WITH_CLOCKS:
            s = json.loads(data)
            for k in WALL_CLOCK_FIELDS:
                s.pop(k, None)
            data = json.dumps(s, sort_keys=True).encode()
        out[f.name] = data
    return out


def test_import_sfsim_is_lazy_and_exposes_the_api():
    code = (
        "import sys, sfsim; heavy = [m for m in ('pandas', 'numpy', 'pydantic', 'sfsim.api') "
        "if m in sys.modules]; print(','.join(heavy)); "
        "print(all(callable(getattr(sfsim, n)) for n in "
        "('load_scenario', 'run', 'load_run', 'compare', 'sweep', 'Run')))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["", "True"]
    with pytest.raises(AttributeError):
        _ = sfsim.no_such_name  # type: ignore[attr-defined]


def test_run_returns_summary_trace_memory(tiny):
    r = sfsim.run(tiny, overrides={"training.rounds": 2})
    assert isinstance(r, sfsim.Run) and r.ok
    assert r.summary["rounds"] == 2 and len(r.summary["round_s"]) == 2
    assert isinstance(r.trace, pd.DataFrame) and not r.trace.empty
    assert set(r.trace["round"]) == {0, 1}
    assert isinstance(r.memory, pd.DataFrame) and "level_bytes" in r.memory
    assert "rounds: 2" in r.scenario_yaml
    assert r.scenario.training.rounds == 2
    # scheme / scheduler / seed overrides as on the command line
    r2 = sfsim.run(tiny, scheme="sfl_v2", seed=9)
    assert (r2.summary["scheme"], r2.summary["seed"]) == ("sfl_v2", 9)
    with pytest.raises(InputError) as e:
        sfsim.run(tiny, seed=-1)
    assert e.value.key == "seed"


def test_same_input_same_result_and_resolved_reruns_identically(tiny, tmp_path):
    a = sfsim.run(tiny)
    b = sfsim.run(sfsim.load_scenario(tiny))
    pd.testing.assert_frame_equal(a.trace, b.trace)
    c = sfsim.run(a.scenario)  # the resolved scenario re-runs to the same result
    pd.testing.assert_frame_equal(a.trace, c.trace)
    assert a.summary["makespan_s"] == c.summary["makespan_s"]


def test_write_and_load_run_round_trip(tiny, tmp_path):
    r = sfsim.run(tiny)
    out = r.write(tmp_path / "run")
    assert out == tmp_path / "run" and r.folder == out
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert {"summary.json", "trace.parquet", "trace.json", "memory.parquet",
            "scenario.resolved.yaml"} <= set(names)
    back = sfsim.load_run(out)
    assert back.summary == json.loads((out / "summary.json").read_text())
    pd.testing.assert_frame_equal(back.trace, r.trace)
    pd.testing.assert_frame_equal(back.memory, r.memory)
    assert back.scenario_yaml == r.scenario_yaml
    assert back.scenario == r.scenario
    with pytest.raises(InputError, match="already exists"):
        r.write(out)
    r.write(out, overwrite=True)
    with pytest.raises(InputError, match="not a run folder"):
        sfsim.load_run(tmp_path)
    with pytest.raises(InputError, match="no such run folder"):
        sfsim.load_run(tmp_path / "nope")


@pytest.mark.parametrize("trace, files", [
    ("parquet,json", {"trace.parquet", "trace.json"}),
    ("json,parquet", {"trace.parquet", "trace.json"}),
    ("parquet", {"trace.parquet"}),
    ("json", {"trace.json"}),
    ("none", set()),
])
def test_trace_choice_decides_the_trace_files(tiny, tmp_path, trace, files):
    out = sfsim.run(tiny).write(tmp_path / "run", trace=trace)
    names = {p.name for p in out.iterdir()}
    assert names & {"trace.parquet", "trace.json"} == files
    assert {"summary.json", "memory.parquet", "scenario.resolved.yaml"} <= names
    back = sfsim.load_run(out)
    assert not back.memory.empty
    if "trace.parquet" not in files:
        with pytest.raises(InputError, match=r"no trace\.parquet"):
            _ = back.trace


@pytest.mark.parametrize("bad", ["", "csv", "none,json", " , "])
def test_bad_trace_choice(tiny, tmp_path, cli, write_yaml, bad):
    with pytest.raises(InputError) as e:
        sfsim.run(tiny).write(tmp_path / "run", trace=bad)
    assert e.value.key == "--trace"
    assert not (tmp_path / "run").exists()
    r = cli("run", write_yaml(tiny), "--trace", bad, "--out", tmp_path / "c")
    assert r.exit_code == 2 and "--trace" in r.output
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("trace", ["parquet,json", "none"])
def test_api_and_cli_folders_are_identical(cli, tmp_path, trace):
    """Byte for byte, apart from summary.json's wall-clock field ``wall_s``."""
    scenario = ROOT / "scenarios" / "quickstart.yaml"
    r = cli("run", scenario, "-q", "--out", tmp_path / "cli", "--trace", trace,
            "--set", "training.rounds=2", "--seed", "4")
    assert r.exit_code == 0, r.output
    sfsim.run(scenario, overrides=["training.rounds=2"], seed=4).write(tmp_path / "api",
                                                                        trace=trace)
    a, b = _folder_bytes(tmp_path / "cli"), _folder_bytes(tmp_path / "api")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    s_cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    s_api = json.loads((tmp_path / "api" / "summary.json").read_text())
    assert set(s_cli) == set(s_api) and "wall_s" in s_cli
    assert {k for k in s_cli if s_cli[k] != s_api[k]} <= {"wall_s"}


def test_cli_default_keeps_both_trace_files(cli, tiny, write_yaml, tmp_path):
    r = cli("run", write_yaml(tiny), "-q", "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"trace.parquet", "trace.json", "memory.parquet", "summary.json"} <= names


def test_failed_run_is_an_error_folder(tiny, tmp_path, cli, write_yaml):
    tiny["processors"]["dev-slow"]["memory_gb"] = 0.01  # device b cannot hold its work
    with pytest.raises(InputError, match="does not fit in memory"):
        sfsim.run(tiny)
    r = cli("run", write_yaml(tiny), "-q", "--out", tmp_path / "r")
    assert r.exit_code == 2
    back = sfsim.load_run(tmp_path / "r")
    assert back.status == "error" and not back.ok and "does not fit" in back.summary["error"]
    assert back.trace.empty


def test_compare_wraps_sfsim_compare(tiny):
    df = sfsim.compare(tiny, ["memsfl", "sfl_v2"], overrides={"training.rounds": 1}, seed=2)
    assert list(df["scheme"]) == ["memsfl", "sfl_v2"]
    assert (df["status"] == "ok").all() and (df["makespan_s"] > 0).all()


def test_compare_over_seeds_gives_a_row_per_scheme_and_seed(tiny):
    df = sfsim.compare(tiny, ["memsfl", "fedlora"], overrides={"training.rounds": 1},
                       seeds=[3, 4])
    assert list(zip(df["scheme"], df["seed"], strict=True)) == [
        ("memsfl", 3), ("memsfl", 4), ("fedlora", 3), ("fedlora", 4)]
    one = sfsim.compare(tiny, ["fedlora"], overrides={"training.rounds": 1}, seed=4)
    assert df.loc[3, "makespan_s"] == one.loc[0, "makespan_s"]  # the row of seed 4 is seed 4's run


@pytest.mark.parametrize("kw", [{"seeds": [1], "seed": 1}, {"seeds": []}, {"seeds": [-1]},
                                {"seeds": [True]}])
def test_compare_refuses_bad_seeds(tiny, kw):
    with pytest.raises(InputError) as e:
        sfsim.compare(tiny, ["memsfl"], **kw)
    assert e.value.key == "seeds"


def test_docs_api_example_runs(tmp_path, monkeypatch):
    """The example in docs/api.md runs as written (from a scratch folder)."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/api.md has no python example"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "docs/api.md", "exec"), namespace)
    assert (tmp_path / "runs").exists()


def test_api_names_survive_importing_the_same_named_submodules():
    code = (
        "import sfsim, sfsim.run, sfsim.compare; from sfsim.run import simulate; "
        "import importlib; m = importlib.import_module('sfsim.run'); "
        "print(sfsim.run.__module__, sfsim.compare.__module__, m.__name__, callable(simulate))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["sfsim.api", "sfsim.api", "sfsim.run", "True"]
