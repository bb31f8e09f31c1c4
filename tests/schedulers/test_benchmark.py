"""Benchmark families and runner; the core does not import matplotlib."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sfsim.schedulers import benchmark


@pytest.mark.parametrize("family", sorted(benchmark.FAMILIES))
def test_families_have_the_documented_means(family: str) -> None:
    inst = benchmark.random_instance(4000, family, np.random.default_rng(0))
    server = np.array([j.server_s[0] for j in inst.jobs])
    release = np.array([j.release_s for j in inst.jobs])
    assert server.mean() == pytest.approx(1.0, rel=0.08)
    assert release.mean() == pytest.approx(2000.0, rel=0.08)
    assert (server >= 0).all() and (release >= 0).all()


def test_chain_family() -> None:
    inst = benchmark.random_instance(6, "high", np.random.default_rng(1), k=3)
    assert all(j.k == 3 and len(j.lag_s) == 2 for j in inst.jobs)


def test_run_reference_and_gaps() -> None:
    df = benchmark.run([6], 2, ["fifo", "schrage", "carlier"], families=["wide"], seed=1)
    assert len(df) == 2 * 3
    assert df["reference_is_optimum"].all()
    assert (df["gap_pct"] >= 0).all()
    assert (df.loc[df.scheduler == "carlier", "gap_pct"] == 0).all()
    again = benchmark.run([6], 2, ["fifo", "schrage", "carlier"], families=["wide"], seed=1)
    assert df["makespan_s"].tolist() == again["makespan_s"].tolist()
    summary = benchmark.summarise(df)
    assert set(summary.scheduler) == {"fifo", "schrage", "carlier"}


def test_chains_skip_carlier() -> None:
    df = benchmark.run([3], 1, ["schrage", "carlier", "milp"], families=["low"], k=2)
    assert set(df.scheduler) == {"schrage", "milp"}


def test_core_does_not_import_matplotlib() -> None:
    code = (
        "import sys, numpy as np; import sfsim.schedulers as s; "
        "from sfsim.schedulers import benchmark, cli, result; "
        "result.solve('milp', benchmark.random_instance(5, 'low', np.random.default_rng(0))); "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
