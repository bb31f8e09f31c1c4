"""sfsim instance: a run's round exported as the instance files `sfsim schedule` reads."""

from __future__ import annotations

import json

import pytest

from sfsim import api
from sfsim.instance_cli import export_round
from sfsim.schedulers import makespan
from sfsim.schedulers.instances import load_instance

from .conftest import ROOT

K2 = ROOT / "scenarios" / "scheduling" / "edge_4090_100dev_k2.yaml"
K1 = ROOT / "scenarios" / "scheduling" / "edge_a100_200dev_k1.yaml"
SMALL = {"fleet.count": 60}


def _round_span(path, r, **overrides):
    trace = api.run(path, overrides={**SMALL, **overrides}).trace
    rows = trace[trace["round"] == r]
    return float(rows[rows["phase"] == "adapter_upload"]["end_s"].max() - rows["start_s"].min())


@pytest.mark.parametrize("path", [K1, K2], ids=["k1", "k2"])
def test_schedule_reads_it_back_and_fifo_gives_the_realised_round(cli, tmp_path, path):
    out = tmp_path / "inst.json"
    res = cli("instance", path, "--round", "1", "--out", out, "--set", "fleet.count=60")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    realised = tmp_path / "inst.realised.json"
    assert info["realised"] == str(realised) and info["jobs"] == 60
    est, real = load_instance(out), load_instance(realised)
    assert [j.id for j in est.jobs] == [j.id for j in real.jobs]
    assert est.n_tasks == real.n_tasks == info["tasks"]
    res = cli("schedule", realised, "--scheduler", "fifo")
    assert res.exit_code == 0, res.output
    span = json.loads(res.output)["makespan_s"]
    assert span == pytest.approx(_round_span(path, 1), rel=1e-9, abs=1e-9)
    # fading: the realised instance differs from the estimate the scheduler planned on
    assert real != est


def test_offline_plan_replayed_on_realised_times_gives_the_realised_makespan() -> None:
    s = api.resolve(K2, overrides={**SMALL, "scheduler.name": "local_search"})
    est, real, info = export_round(s, 0)
    summary = api.run(K2, overrides={**SMALL, "scheduler.name": "local_search"}).summary
    plan = summary["plans"][0]
    assert makespan(est, plan["order"]) == pytest.approx(info["planned_makespan_s"])
    assert makespan(real, plan["order"]) == pytest.approx(plan["realised_makespan_s"], rel=1e-9)


def test_estimated_equals_realised_without_randomness(tmp_path) -> None:
    fixed = {"channel.fading": "none", "channel.shadowing_std_db": 0}
    s = api.resolve(K1, overrides={**SMALL, **fixed})
    est, real, _ = export_round(s, 0)
    for a, b in zip(est.jobs, real.jobs, strict=True):
        assert a.server_s == pytest.approx(b.server_s, rel=1e-9)
        assert a.release_s == pytest.approx(b.release_s, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--round", "5"], "--round: must be a round of the run (0..1)"),
        (["--round", "-1"], "--round: must be a round"),
        (["--seed", "-2"], "--seed: must be a non-negative integer"),
        (["--set", "training.scheme=fedlora"], "training.scheme: scheme 'fedlora' has no server"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, message) -> None:
    out = tmp_path / "inst.json"
    res = cli("instance", K1, "--out", out, "--set", "fleet.count=20", *args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_without_overwrite(cli, tmp_path) -> None:
    out = tmp_path / "inst.json"
    out.write_text("keep")
    res = cli("instance", K1, "--out", out, "--set", "fleet.count=20")
    assert res.exit_code == 2 and "already exists" in res.output
    assert out.read_text() == "keep"
    res = cli("instance", K1, "--out", out, "--set", "fleet.count=20", "--overwrite")
    assert res.exit_code == 0, res.output
    assert load_instance(out).n_tasks == 20
