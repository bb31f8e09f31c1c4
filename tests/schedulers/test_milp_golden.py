"""The MILP's LP text for tiny instances, compared with golden files.

The model is part of the documented behaviour: a change to it must be deliberate. To refresh
the golden files on purpose, run::

    SFSIM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/schedulers/test_milp_golden.py

and review the diff of ``tests/schedulers/golden/*.lp`` before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sfsim.schedulers import Instance, Job
from sfsim.schedulers.milp import build_model

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SFSIM_UPDATE_GOLDEN") == "1"

CASES = {
    "milp_single": Instance((Job.single("a", 0.0, 2.0, 1.0), Job.single("b", 1.0, 1.0, 3.0))),
    "milp_chain": Instance(
        (Job("a", 0.0, (1.0, 2.0), (3.0,), 0.5), Job.single("b", 0.5, 1.5, 1.0))
    ),
}


def _lp_text(instance: Instance, tmp_path: Path) -> str:
    model = build_model(instance, upper_bound_s=10.0, lower_bound_s=4.0)
    path = tmp_path / "model.lp"
    model.prob.writeLP(str(path))
    return path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_lp_text_matches_golden(case: str, tmp_path: Path) -> None:
    text = _lp_text(CASES[case], tmp_path)
    golden = GOLDEN / f"{case}.lp"
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}; create it with SFSIM_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{case}: model changed; see this module's docstring"


def test_lp_text_is_deterministic(tmp_path: Path) -> None:
    a = _lp_text(CASES["milp_chain"], tmp_path)
    b = _lp_text(CASES["milp_chain"], tmp_path)
    assert a == b
