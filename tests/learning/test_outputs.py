"""Learning outputs (issue 13): the accuracy-vs-simulated-time figure of `sfsim plot`, the
per-scheme curves of `sfsim compare` (mean and 95% CI over seeds) and time_to_target_s in the
comparison table. Learning tables are built here with the columns `sfsim.learning` writes, so
these tests check the outputs whatever the learner computes."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from sfsim.cli import app
from sfsim.plotting.learning import NEEDS, band, compare_curves, first_reach, held, load_learning

from ..plotting.conftest import QUICKSTART, image_stats
from ..schemes.common import base

RUNNER = CliRunner()


def fake_learning(times: list[float], accuracy: list[float], *, steps: int = 30,
                  seed: int = 0) -> pd.DataFrame:
    """A learning table: `steps` training rows spread over the run, eval rows at `times`."""
    rng = np.random.default_rng(seed)
    end = max(times)
    train = pd.DataFrame({
        "time_s": np.linspace(0.0, end, steps), "round": np.arange(steps) // 10,
        "step": np.arange(steps), "device": [f"d{i % 3}" for i in range(steps)],
        "train_loss": 2.0 * np.exp(-np.arange(steps) / 10) + rng.uniform(0, 0.1, steps),
        "eval_accuracy": np.nan, "eval_loss": np.nan,
    })
    ev = pd.DataFrame({
        "time_s": times, "round": range(len(times)), "step": -1, "device": "",
        "train_loss": np.nan, "eval_accuracy": accuracy,
        "eval_loss": [1.0 - a for a in accuracy],
    })
    df = pd.concat([train, ev], ignore_index=True).sort_values("time_s", kind="stable")
    return df[list(NEEDS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "quickstart"
    res = RUNNER.invoke(app, ["run", str(QUICKSTART), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def test_plot_draws_learning_png_when_the_folder_has_learning(run_dir: Path,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    fake_learning([1.0, 2.0, 3.0, 4.0], [0.3, 0.5, 0.7, 0.8]).to_parquet(
        folder / "learning.parquet", index=False)
    res = RUNNER.invoke(app, ["plot", str(folder)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (folder / "plots").iterdir())
    assert names == ["gantt.png", "learning.png", "memory.png", "rounds.png"]
    w, h, ink, std = image_stats(folder / "plots" / "learning.png")
    assert w >= 400 and h >= 300 and 0.03 < ink < 0.95 and std > 0.05

    res = RUNNER.invoke(app, ["plot", str(folder), "--figures", "learning", "--format", "svg",
                              "--out", str(tmp_path / "svg")])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "svg").iterdir()] == ["learning.svg"]
    assert "simulated time" in (tmp_path / "svg" / "learning.svg").read_text()


def test_plot_without_learning_keeps_three_figures_and_refuses_learning(run_dir: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "figs"
    res = RUNNER.invoke(app, ["plot", str(run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["gantt.png", "memory.png", "rounds.png"]

    res = RUNNER.invoke(app, ["plot", str(run_dir), "--figures", "learning", "--out",
                              str(tmp_path / "none")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ")
    assert str(run_dir / "learning.parquet") in res.stderr
    assert "learning" in res.stderr and "enabled" in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "none" / "learning.png").exists()


@pytest.mark.parametrize("damage, words", [
    (lambda df: df.drop(columns=["eval_accuracy"]), "missing column(s) eval_accuracy"),
    (lambda df: df.assign(eval_accuracy=df["eval_accuracy"] * 5), "eval_accuracy"),
    (lambda df: df.assign(time_s=-df["time_s"] - 1), "time_s"),
])
def test_a_damaged_learning_file_is_a_user_error(run_dir: Path, tmp_path: Path, damage: Any,
                                                 words: str) -> None:
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    damage(fake_learning([1.0, 2.0], [0.4, 0.9])).to_parquet(folder / "learning.parquet")
    res = RUNNER.invoke(app, ["plot", str(folder), "--figures", "learning"])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and words in res.stderr
    (folder / "learning.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="cannot read Parquet"):
        load_learning(folder)


def test_held_accuracy_and_first_reach() -> None:
    df = fake_learning([1.0, 2.0, 4.0], [0.2, 0.6, 0.9])
    got = held(df, np.array([0.5, 1.0, 1.5, 3.9, 4.0, 10.0]))
    assert np.isnan(got[0])
    assert list(got[1:]) == [0.2, 0.2, 0.6, 0.9, 0.9]
    assert first_reach(df, 0.6) == 2.0
    assert first_reach(df, 0.95) is None


def test_band_is_mean_and_student_t_interval_over_seeds() -> None:
    accs = [[0.2, 0.5], [0.4, 0.7], [0.3, 0.9]]
    frames = [fake_learning([1.0, 2.0], a, seed=i) for i, a in enumerate(accs)]
    b = band(frames, np.array([0.5, 1.0, 2.0]))
    assert b["runs"].tolist() == [0, 3, 3]
    assert np.isnan(b["mean"].iloc[0])
    late = np.array([a[1] for a in accs])
    half = stats.t.ppf(0.975, 2) * late.std(ddof=1) / np.sqrt(3)
    assert b["mean"].iloc[2] == pytest.approx(late.mean())
    assert b["hi"].iloc[2] - b["mean"].iloc[2] == pytest.approx(half)
    assert b["mean"].iloc[2] - b["lo"].iloc[2] == pytest.approx(half)
    one = band(frames[:1], np.array([2.0]))
    assert one["lo"].iloc[0] == one["hi"].iloc[0] == 0.5  # one run: no band


def test_compare_curves_one_line_per_scheme_with_bands() -> None:
    curves = {
        "memsfl": [fake_learning([1.0, 2.0, 3.0], [0.3, 0.6, 0.8], seed=s) for s in range(3)],
        "fedlora": [fake_learning([2.0, 4.0, 6.0], [0.2, 0.4, 0.7 + 0.05 * s], seed=s)
                    for s in range(3)],
        "my_scheme": [fake_learning([1.5, 5.0], [0.5, 0.6])],
    }
    fig, table = compare_curves(curves, target=0.6)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "memsfl (mean of 3 seeds, 95% CI)" in labels and "my_scheme" in labels
    assert len(ax.collections) == 2  # a band for each scheme with several seeds
    assert set(table["scheme"]) == set(curves)
    assert ax.get_xlim()[1] == pytest.approx(6.0)
    fed = table[table["scheme"] == "fedlora"]
    assert fed["mean"].iloc[-1] == pytest.approx(0.75)
    drawn = fed.dropna()
    assert len(drawn) > 200 and (drawn["hi"] >= drawn["lo"]).all()


def _with_learning(real: Any) -> Any:
    """Wrap `run_scheme` so each run carries a learning table and summary keys (as a run with
    learning on does), the numbers depending on scheme and seed."""
    def run(s: Any, scheme: str, **overrides: Any) -> Any:
        res = real(s, scheme, **overrides)
        seed = overrides.get("seed") or 0
        reach = 2.0 + len(scheme) + seed
        frame = fake_learning([1.0, reach, reach + 1.0], [0.1, 0.6, 0.7], seed=seed)
        summary = dict(res.summary) | {
            "time_to_target_s": reach,
            "learning": {"target_accuracy": 0.6, "time_to_target_s": reach,
                         "final_accuracy": 0.7}}
        return SimpleNamespace(summary=summary, trace=res.trace, learning=frame)
    return run


def test_compare_writes_time_to_target_and_curves(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    cmp = importlib.import_module("sfsim.compare")

    monkeypatch.setattr(cmp, "run_scheme", _with_learning(cmp.run_scheme))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(base()))
    out = tmp_path / "cmp"
    res = RUNNER.invoke(app, ["compare", str(scenario), "--schemes", "memsfl,fedlora,sfl_v2",
                              "--seeds", "1,2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "compare.csv")
    assert list(df["scheme"]) == ["memsfl", "memsfl", "fedlora", "fedlora", "sfl_v2", "sfl_v2"]
    assert list(df["seed"]) == [1, 2] * 3
    assert list(df["time_to_target_s"]) == [2.0 + len(n) + sd for n in ("memsfl", "fedlora",
                                                                         "sfl_v2")
                                            for sd in (1, 2)]
    assert (df["final_accuracy"] == 0.7).all()
    assert "time_to_target_s" in pd.read_parquet(out / "compare.parquet").columns
    curves = pd.read_parquet(out / "learning_curves.parquet")
    assert sorted(set(curves["scheme"])) == ["fedlora", "memsfl", "sfl_v2"]
    assert set(curves["seed"]) == {1, 2}
    _, _, ink, _ = image_stats(out / "learning_curves.png")
    assert ink > 0.03
    # the files are not replaced without --overwrite
    res = RUNNER.invoke(app, ["compare", str(scenario), "--schemes", "memsfl", "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_compare_without_learning_keeps_its_columns(tmp_path: Path) -> None:
    from sfsim.compare import COLUMNS, compare
    from sfsim.scenario import parse_scenario

    df = compare(parse_scenario(base()), ["memsfl"])
    assert list(df.columns) == COLUMNS


def test_bad_seeds_are_user_errors(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(base()))
    for args, words in ((["--seeds", "1,x"], "--seeds"), (["--seeds", "1,1"], "distinct"),
                        (["--seeds", "1,2", "--seed", "3"], "either --seed or --seeds")):
        res = RUNNER.invoke(app, ["compare", str(scenario), "--schemes", "memsfl", *args])
        assert res.exit_code == 2, res.output
        assert words in res.output and "Traceback" not in res.output


def test_real_learning_runs_give_curves_and_times(tmp_path: Path) -> None:
    """End to end with the learner: `sfsim run` + `sfsim plot`, and `sfsim compare` of two
    schemes over two seeds on a tiny fleet."""
    d = base()
    d["training"].update(rounds=3, local_iterations=2)
    d["learning"] = {"enabled": True, "blocks": 2, "hidden": 32, "heads": 2, "seq_len": 8,
                     "eval_samples": 64, "target_accuracy": 0.3}
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(d))
    run = tmp_path / "run"
    res = RUNNER.invoke(app, ["run", str(scenario), "--out", str(run), "-q"])
    assert res.exit_code == 0, res.output
    res = RUNNER.invoke(app, ["plot", str(run), "--figures", "learning"])
    assert res.exit_code == 0, res.output
    assert (run / "plots" / "learning.png").is_file()

    out = tmp_path / "cmp"
    res = RUNNER.invoke(app, ["compare", str(scenario), "--schemes", "memsfl,fedlora",
                              "--seeds", "1,2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "compare.parquet")
    assert {"time_to_target_s", "final_accuracy", "seed"} <= set(df.columns)
    assert df["final_accuracy"].between(0, 1).all()
    curves = pd.read_parquet(out / "learning_curves.parquet")
    assert set(zip(curves["scheme"], curves["seed"], strict=True)) == {
        ("memsfl", 1), ("memsfl", 2), ("fedlora", 1), ("fedlora", 2)}
    for (scheme, seed), frame in curves.groupby(["scheme", "seed"]):
        row = df[(df["scheme"] == scheme) & (df["seed"] == seed)].iloc[0]
        assert first_reach(frame, 0.3) == (None if pd.isna(row["time_to_target_s"])
                                           else row["time_to_target_s"])
