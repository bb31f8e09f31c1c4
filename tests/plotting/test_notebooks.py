"""The tutorial notebooks execute cleanly (nbclient, kernel python3) and are committed clean."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from ..conftest import load_module
from .conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_write_a_scheduler.ipynb", "03_memory_analysis.ipynb",
         "04_faults_and_learning.ipynb"]
TIMEOUT_S = 300  # per cell; each notebook takes seconds


def _execute(nb: nbformat.NotebookNode) -> None:
    client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    _execute(nb)  # raises CellExecutionError (with the traceback) on the first failing cell
    assert not _errors(nb)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "every notebook shows at least one figure"


def test_scheduler_notebook_runs_twice_in_one_kernel() -> None:
    """Re-running the notebook (same kernel) must not clash with its own registration."""
    nb = nbformat.read(NOTEBOOKS / "02_write_a_scheduler.ipynb", as_version=4)
    again = [nbformat.from_dict(json.loads(json.dumps(c))) for c in nb.cells]
    for i, cell in enumerate(again):
        cell["id"] = f"again-{i:02d}"
    nb.cells = nb.cells + again
    _execute(nb)
    assert not _errors(nb)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "already registered in this kernel" in text


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_and_up_to_date(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    builder = load_module(NOTEBOOKS / "build_notebooks.py", "_build_notebooks")
    built = nbformat.writes(builder.build(name)).rstrip("\n")
    assert built == (NOTEBOOKS / name).read_text().rstrip("\n"), (
        "the notebook differs from notebooks/build_notebooks.py; run that script")
