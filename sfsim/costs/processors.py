"""Processor classes: the catalogue in ``sfsim/data/processors.yaml`` plus scenario-defined ones.

Each entry gives peak FLOP/s per dtype, memory bandwidth and capacity with its public source;
human units (TFLOP/s, GB/s, GB) are converted to FLOP/s and bytes here, once.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from sfsim.costs.base import Processor


def processor_from_dict(name: str, d: dict[str, Any]) -> Processor:
    return Processor(
        name=name,
        kind=str(d["kind"]),
        peak_flops={k: float(v) * 1e12 for k, v in d["peak_tflops"].items()},
        mem_bw_bytes_s=float(d["mem_bw_gbps"]) * 1e9,
        memory_bytes=float(d["memory_gb"]) * 1e9,
        efficiency=float(d["efficiency"]),
        source=str(d.get("source", "")).strip(),
        notes=str(d.get("notes", "")).strip(),
    )


@cache
def catalogue() -> dict[str, Processor]:
    """The shipped processor classes, by name."""
    text = resources.files("sfsim.data").joinpath("processors.yaml").read_text()
    raw: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return {name: processor_from_dict(name, d) for name, d in raw.items()}
