"""Tiny scenarios built in code for the scheme tests, and helpers to run them."""

from __future__ import annotations

import copy
from typing import Any

from sfsim.results import RunResult
from sfsim.run import resolve, simulate
from sfsim.scenario import parse_scenario
from sfsim.schemes import schemes

ALL_SCHEMES = sorted(schemes())

#: Two devices of round-number speed on GPT-2 small, short sequences: each run takes milliseconds.
BASE: dict[str, Any] = {
    "name": "schemes-tiny",
    "seed": 5,
    "model": {"arch": "gpt2", "seq_len": 32, "lora": {"rank": 4, "targets": ["q", "v"]}},
    "processors": {
        "fast": {"kind": "device", "peak_tflops": {"fp32": 1.0}, "mem_bw_gbps": 100,
                 "memory_gb": 8, "efficiency": 1.0},
        "slow": {"kind": "device", "peak_tflops": {"fp32": 0.1}, "mem_bw_gbps": 10,
                 "memory_gb": 8, "efficiency": 1.0},
        "srv": {"kind": "server", "peak_tflops": {"fp32": 10.0}, "mem_bw_gbps": 1000,
                "memory_gb": 80, "efficiency": 1.0},
    },
    "devices": [
        {"id": "a", "processor": "fast", "batch_size": 2, "cut": 2, "uplink_mbps": 100,
         "overhead_mb": 0},
        {"id": "b", "processor": "slow", "batch_size": 1, "cut": 4, "uplink_mbps": 20,
         "overhead_mb": 0},
    ],
    "server": {"processor": "srv", "overhead_mb": 0},
    "channel": {"model": "fixed", "downlink_mbps": 100, "latency_ms": 1},
    "training": {"scheme": "memsfl", "rounds": 2, "local_iterations": 3},
    "scheduler": {"name": "fifo"},
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def run(d: dict[str, Any], **overrides: Any) -> RunResult:
    return simulate(resolve(parse_scenario(d), **overrides))


def identical(n: int, **device: Any) -> dict[str, Any]:
    """The base scenario with n identical devices (all like device ``a``)."""
    d = base()
    d["devices"] = [{**d["devices"][0], **device, "id": f"d{i}"} for i in range(n)]
    return d


def spans(result: RunResult, resource: str):
    t = result.trace
    return t[t["resource"] == resource]


def static_server(result: RunResult):
    """The server's memory laid out at t = 0, by kind."""
    m = result.memory
    return m[(m["owner"] == "server") & (m["time_s"] == 0)].groupby("kind")["delta_bytes"].sum()
