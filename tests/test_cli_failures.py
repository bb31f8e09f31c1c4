"""Every command turns every failure into exit 2 (input) or 1 (internal, with a log): never a
bare traceback. Damaged run folders for ``plot``, absurd options for ``schedule``, and a sweep of
bad inputs over every command in a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sfsim.cli import app

from .conftest import ROOT

RUNNER = CliRunner()


def _cli(*args: object):
    return RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _input_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "Traceback" not in res.output
    for n in needles:
        assert n in res.output, (n, res.output)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "run"
    res = _cli("run", ROOT / "scenarios" / "quickstart.yaml", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    return out


def _summary(edit):
    def damage(d: Path) -> None:
        s = json.loads((d / "summary.json").read_text())
        edit(s)
        (d / "summary.json").write_text(json.dumps(s))
    return damage


def _table(name: str, edit):
    def damage(d: Path) -> None:
        edit(pd.read_parquet(d / name)).to_parquet(d / name)
    return damage


DAMAGE = {
    "summary not an object": (lambda d: (d / "summary.json").write_text("[1, 2]"),
                              "summary.json", "JSON object"),
    "summary not JSON": (lambda d: (d / "summary.json").write_text("{oops"), "summary.json",
                         "cannot read"),
    "summary deeply nested": (lambda d: (d / "summary.json").write_text("[" * 100_000),
                              "summary.json", "nested too deeply"),
    "no status": (_summary(lambda s: s.pop("status")), "did not succeed", ""),
    "devices a list": (_summary(lambda s: s.update(devices=[1, 2])), "summary.json", "devices"),
    "round bounds wrong": (_summary(lambda s: s.update(round_bounds_s=[[1]])), "summary.json",
                           "round_bounds_s"),
    "makespan a string": (_summary(lambda s: s.update(makespan_s="abc")), "summary.json",
                          "makespan_s"),
    "trace truncated": (lambda d: (d / "trace.parquet").write_bytes(
        (d / "trace.parquet").read_bytes()[:100]), "trace.parquet", "Parquet"),
    "trace missing": (lambda d: (d / "trace.parquet").unlink(), "trace.parquet", "missing"),
    "trace column missing": (_table("trace.parquet", lambda t: t.drop(columns=["end_s"])),
                             "trace.parquet", "end_s"),
    "trace times as text": (_table("trace.parquet", lambda t: t.assign(start_s="x")),
                            "trace.parquet", "start_s"),
    "trace NaN times": (_table("trace.parquet", lambda t: t.assign(end_s=float("nan"))),
                        "trace.parquet", "end_s"),
    "trace ends before start": (_table("trace.parquet", lambda t: t.assign(end_s=-1.0)),
                                "trace.parquet", "ends before it starts"),
    "trace device numbers": (_table("trace.parquet", lambda t: t.assign(device=3)),
                             "trace.parquet", "device"),
    "memory kind numbers": (_table("memory.parquet", lambda t: t.assign(kind=3)),
                            "memory.parquet", "kind"),
    "memory seq fractional": (_table("memory.parquet", lambda t: t.assign(seq=0.5)),
                              "memory.parquet", "seq"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_plot_on_a_damaged_run_folder_names_the_file(good_run, tmp_path, case):
    damage, *needles = DAMAGE[case]
    folder = tmp_path / "run"
    shutil.copytree(good_run, folder)
    damage(folder)
    res = _cli("plot", folder, "--out", tmp_path / "plots")
    _input_error(res, *[n for n in needles if n])
    assert not (tmp_path / "plots").exists()


def test_plot_tolerates_missing_optional_summary_keys(good_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(good_run, folder)
    _summary(lambda s: [s.pop(k) for k in ("devices", "round_bounds_s", "makespan_s")])(folder)
    res = _cli("plot", folder, "--out", tmp_path / "plots", "--figures", "gantt")
    assert res.exit_code == 0, res.output


@pytest.fixture
def instance(tmp_path) -> Path:
    path = tmp_path / "inst.json"
    path.write_text(json.dumps({"jobs": [
        {"id": "a", "release_s": 0, "server_s": 1, "tail_s": 1},
        {"id": "b", "release_s": 1, "server_s": 2, "tail_s": 0.5}]}))
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seed", "-1"], "--seed"),
        (["-s", "milp", "--time-limit", "-1"], "--time-limit"),
        (["-s", "milp", "--time-limit", "nan"], "--time-limit"),
        (["-s", "milp", "--time-limit", "inf"], "--time-limit"),
        (["-s", "milp", "-p", "time_limit_s=1e999"], "time_limit_s"),
        (["-p", "x=" + "9" * 5000], "--param x"),
        (["-p", "x=" + "[" * 100_000 + "]" * 100_000], "--param x"),
        (["-p", "novalue"], "KEY=VALUE"),
    ],
)
def test_schedule_rejects_absurd_options(instance, args, needle):
    _input_error(_cli("schedule", instance, *args), needle)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000,
     '{"jobs": [{"id": "a", "release_s": ' + "9" * 5000 + ', "server_s": 1, "tail_s": 1}]}',
     '{"jobs": [{"id": "a", "release_s": 1e999, "server_s": 1, "tail_s": 1}]}'],
    ids=["100000-deep", "5000-digit integer", "overflowing float"],
)
def test_schedule_rejects_absurd_instance_files(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    _input_error(_cli("schedule", path), str(path))


def test_schedule_accepts_a_huge_seed(instance):
    res = _cli("schedule", instance, "-s", "random", "--seed", str(10**40))
    assert res.exit_code == 0, res.output


def test_bench_schedulers_rejects_bad_options(tmp_path):
    for args in (["--seed", "-1"], ["--time-limit", "0"], ["--sizes", str(10**9)]):
        _input_error(_cli("bench-schedulers", "--out", tmp_path / "b", *args), args[0])


# ---- every command, in a real process: exit 0/1/2 and never a bare traceback ---------------


def _sweep_cases(tmp: Path) -> list[list[str]]:
    deep = tmp / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    missing = str(tmp / "missing.yaml")
    quick = str(ROOT / "scenarios" / "quickstart.yaml")
    return [
        ["run", str(deep)], ["validate", str(deep)], ["compare", str(deep)],
        ["run", str(fifo)], ["validate", missing], ["compare", missing, "--seed", "-1"],
        ["run", quick, "--out", str(tmp / ("x" * 300))], ["run", quick, "--seed", "-1"],
        ["run", quick, "--out", quick, "--overwrite"], ["plot", str(tmp)], ["plot", missing],
        ["schedule", missing], ["schedule", str(deep)], ["run", quick, "--scheme", ""],
        ["nosuchcommand"], ["run"],
    ]


def test_every_command_fails_cleanly_in_a_real_process(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    for args in _sweep_cases(tmp_path):
        p = subprocess.run([sys.executable, "-m", "sfsim.cli", *args], capture_output=True,
                           text=True, timeout=120, env=env, cwd=tmp_path)
        text = p.stdout + p.stderr
        assert "Traceback" not in text, (args, text)
        assert p.returncode in (0, 1, 2), (args, p.returncode, text)
        if p.returncode == 1:  # an internal error: one line and a log that exists
            line = p.stderr.strip().splitlines()[-1]
            assert "internal error" in line and Path(line.rsplit(" ", 1)[-1]).is_file(), line
