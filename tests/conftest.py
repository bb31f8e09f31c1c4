"""Shared fixtures: tiny scenarios built in code, and a CLI runner."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def load_module(path: Path, name: str) -> ModuleType:
    """Import the script at ``path`` (analysis/, notebooks/, scenarios/: not packages) as
    module ``name``, registered in ``sys.modules`` so that dataclasses and pickling work."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

#: Two devices, fixed-rate links, analytic costs on round-number processors: small enough that the
#: tests can follow every span by hand.
TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "model": {"arch": "gpt2", "seq_len": 32, "lora": {"rank": 4, "targets": ["q", "v"]}},
    "costs": {"model": "analytic"},
    "processors": {
        "dev-fast": {
            "kind": "device",
            "peak_tflops": {"fp32": 1.0},
            "mem_bw_gbps": 100,
            "memory_gb": 8,
            "efficiency": 1.0,
        },
        "dev-slow": {
            "kind": "device",
            "peak_tflops": {"fp32": 0.1},
            "mem_bw_gbps": 10,
            "memory_gb": 4,
            "efficiency": 1.0,
        },
        "srv": {
            "kind": "server",
            "peak_tflops": {"fp32": 10.0},
            "mem_bw_gbps": 1000,
            "memory_gb": 40,
            "efficiency": 1.0,
        },
    },
    "devices": [
        {
            "id": "a",
            "processor": "dev-fast",
            "batch_size": 2,
            "cut": 2,
            "uplink_mbps": 100,
            "overhead_mb": 0,
        },
        {
            "id": "b",
            "processor": "dev-slow",
            "batch_size": 1,
            "cut": 6,
            "uplink_mbps": 10,
            "overhead_mb": 0,
        },
    ],
    "server": {"processor": "srv", "overhead_mb": 0},
    "channel": {"model": "fixed", "downlink_mbps": 100, "latency_ms": 0},
    "training": {"scheme": "memsfl", "rounds": 1, "local_iterations": 1},
    "scheduler": {"name": "fifo"},
}


@pytest.fixture
def tiny() -> dict[str, Any]:
    """A fresh copy of the tiny scenario as a dict (edit freely)."""
    return copy.deepcopy(TINY)


@pytest.fixture
def write_yaml(tmp_path: Path):
    def _write(data: Any, name: str = "s.yaml") -> Path:
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return p

    return _write


@pytest.fixture
def cli():
    from sfsim.cli import app

    runner = CliRunner()

    def _invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return _invoke
