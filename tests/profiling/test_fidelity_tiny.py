"""``sfsim fidelity --tiny``: a smoke test in seconds against a profile measured in the same run
(issue 10: it took minutes and compared toy models with a profile that does not exist)."""

from __future__ import annotations

import json
import warnings

import pytest
import typer
from typer.testing import CliRunner

from sfsim.profiling.fidelity import PHASES, FidelityResult, smoke_problems

ARGS = ["fidelity", "--tiny", "--json", "--iters", "3", "--warmup", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    from sfsim.cli import app

    return app


def test_tiny_compares_with_the_session_profile_only(app: typer.Typer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no analytic fallback is consulted any more
        result = CliRunner().invoke(app, ARGS)
    assert result.exit_code == 0, result.output
    assert "fidelity --tiny: ok" in result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    for r in rows:
        assert r["median_abs_error_shipped"] is None  # toy shapes have no shipped profile
        assert r["predicted_iteration_shipped_s"] is None
        for p in PHASES:
            ph = r["phases"][p]
            assert ph["measured_s"] > 0 and ph["predicted_s"] > 0
            assert ph["predicted_shipped_s"] is None and ph["error_shipped"] is None


def test_tiny_table_says_there_is_no_shipped_profile(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, [a for a in ARGS if a != "--json"])
    assert result.exit_code == 0, result.output
    assert "no shipped profile of this model: session profile only" in result.stdout
    assert "%" in result.stdout


def test_smoke_problems_name_what_is_missing() -> None:
    ok = FidelityResult("m", 3, 1, 2, 16, 4)
    ok.measured_s = {p: [1e-3, 2e-3] for p in PHASES}
    ok.quiet = [True, True]
    ok.predicted_s = dict.fromkeys(PHASES, 1.5e-3)
    assert smoke_problems([ok]) == []
    bad = FidelityResult("m", 3, 2, 2, 16, 4)
    bad.measured_s = {p: [1e-3] for p in PHASES} | {"device_bwd": [float("nan")]}
    bad.quiet = [True]
    bad.predicted_s = {p: 1e-3 for p in PHASES if p != "server_opt"}
    problems = smoke_problems([ok, bad])
    assert len(problems) == 3
    for expected in ("m cut 2: phase device_bwd not measured",
                     "m cut 2: phase server_opt has no session-profile prediction",
                     "m cut 2: the iteration error is not finite"):
        assert any(expected in p for p in problems), (expected, problems)


def test_tiny_exits_1_when_the_smoke_test_fails(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sfsim.profiling.fidelity as fidelity

    monkeypatch.setattr(fidelity, "smoke_problems", lambda results: ["x cut 1: broken"])
    result = CliRunner().invoke(app, ARGS)
    assert result.exit_code == 1
    assert "error: fidelity --tiny: x cut 1: broken" in result.output
