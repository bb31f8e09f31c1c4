"""`sfsim --help` stays fast: the CLI imports no heavy library at start-up (issue 9)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT

HEAVY = ("pandas", "pyarrow", "scipy", "matplotlib", "torch", "simpy")


def test_cli_start_up_imports_no_heavy_library() -> None:
    code = (
        "import sys, sfsim.cli; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
