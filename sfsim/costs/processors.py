"""Processor classes: the catalogue in ``sfsim/data/processors.yaml`` plus scenario-defined ones.

Each entry gives peak FLOP/s per dtype, memory bandwidth and capacity, and busy / idle power,
with its public source; human units (TFLOP/s, GB/s, GB) are converted to FLOP/s and bytes here,
once.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from sfsim.costs.base import Processor

#: Busy and idle watts of a scenario-defined processor that gives none, by kind. ASSUMPTION: the
#: order of a phone SoC under GPU load, and of a data-centre GPU (A100 SXM's 400 W TDP).
DEFAULT_POWER_W = {"device": (8.0, 0.8), "server": (400.0, 50.0)}


def processor_from_dict(name: str, d: dict[str, Any]) -> Processor:
    """A `Processor` from catalogue / scenario units; power left out takes `DEFAULT_POWER_W`."""
    kind = str(d["kind"])
    busy = d.get("power_busy_w")
    idle = d.get("power_idle_w")
    default_note = ""
    if busy is None or idle is None:
        dflt_busy, dflt_idle = DEFAULT_POWER_W.get(kind, DEFAULT_POWER_W["device"])
        busy = dflt_busy if busy is None else busy
        idle = min(dflt_idle, float(busy)) if idle is None else idle
        default_note = f"assumption: sfsim's default power for a {kind} (DEFAULT_POWER_W)"
    return Processor(
        name=name,
        kind=kind,
        peak_flops={k: float(v) * 1e12 for k, v in d["peak_tflops"].items()},
        mem_bw_bytes_s=float(d["mem_bw_gbps"]) * 1e9,
        memory_bytes=float(d["memory_gb"]) * 1e9,
        efficiency=float(d["efficiency"]),
        source=str(d.get("source", "")).strip(),
        notes=str(d.get("notes", "")).strip(),
        power_busy_w=float(busy),
        power_idle_w=float(idle),
        power_source=str(d.get("power_source") or default_note).strip(),
    )


@cache
def catalogue() -> dict[str, Processor]:
    """The shipped processor classes, by name."""
    text = resources.files("sfsim.data").joinpath("processors.yaml").read_text()
    raw: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return {name: processor_from_dict(name, d) for name, d in raw.items()}


#: The processor a profile is taken to be measured on when neither the scenario
#: (``costs.reference``) nor the profile's metadata (``<model>.json`` "processor") names one.
DEFAULT_REFERENCE = "cpu-ref-2core"


def cost_model_params(
    model: str, profile_dir: str | None, reference: str | None, arch: str,
    procs: dict[str, Processor],
) -> dict[str, Any]:
    """Keyword arguments of `sfsim.costs.build_cost_model` for a scenario's ``costs`` section.

    For the profiled model the reference processor is ``reference`` (``costs.reference``) when
    given, else the ``processor`` named in the metadata of ``arch``'s profile, else
    :data:`DEFAULT_REFERENCE`; it is looked up in ``procs`` (the catalogue and the scenario's
    own processors). An unknown name is an InputError naming ``costs.reference``.
    """
    from sfsim.errors import InputError

    if model != "profiled":
        return {}
    params: dict[str, Any] = {"profile_dir": profile_dir} if profile_dir else {}
    name, where = reference, ""
    if name is None:
        from sfsim.costs.profiled import measured_on

        meta_name, meta_file = measured_on(profile_dir, arch)
        if meta_name is not None:
            name, where = meta_name, f" (named by the profile's metadata {meta_file})"
    if name is None:
        name = DEFAULT_REFERENCE
    if name not in procs:
        known = ", ".join(sorted(procs))
        raise InputError(f"unknown processor {name!r}{where}; known: {known}",
                         key="costs.reference")
    if profile_dir is None and name != DEFAULT_REFERENCE:
        raise InputError(f"sfsim ships profiles measured on {DEFAULT_REFERENCE} only; set "
                         f"costs.profile_dir to a folder measured on {name!r}",
                         key="costs.reference")
    params["reference"] = procs[name]
    return params
