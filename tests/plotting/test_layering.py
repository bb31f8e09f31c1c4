"""The simulator core never imports matplotlib; only sfsim.plotting and analysis/ do."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import sfsim.cli, sfsim.run, sfsim.results, sfsim.export, sfsim.progress
from sfsim.cli import app
assert 'plot' in {c.name or c.callback.__name__ for c in app.registered_commands}
bad = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')
print(bad[:3])
sys.exit(1 if bad else 0)
"""


def test_core_and_cli_start_without_matplotlib() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


TORCH_CHECK = """
import sys
import sfsim, sfsim.cli, sfsim.run, sfsim.results, sfsim.api, sfsim.scenario
run = sfsim.run('scenarios/quickstart.yaml')  # a timing-only run (learning off)
assert run.learning is None
bad = sorted(m for m in sys.modules
             if m.split('.')[0] == 'torch' or m.startswith('sfsim.learning'))
print(bad[:3])
sys.exit(1 if bad else 0)
"""


def test_core_and_timing_runs_never_import_torch_or_the_learner() -> None:
    """torch lives in sfsim.learning only, and the core never imports sfsim.learning."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", TORCH_CHECK], capture_output=True, text=True,
                          cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
