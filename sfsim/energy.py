"""Energy of a run, from its trace and its world: power × time, per device, server and round.

Each device draws its processor's ``power_busy_w`` while it computes (spans on resource
``device``) and ``power_idle_w`` for the rest of the run (makespan − compute time); its radio
draws ``channel.radio.tx_w`` while it sends (``uplink`` spans) and ``rx_w`` while it receives
(``downlink`` spans), on top of the processor. The server draws its processor's busy power while
it computes (the union of its ``server`` spans, which overlap when several devices share it)
and idle power otherwise. Waiting in the server queue costs a device idle power, nothing more.

A round's energy is the same sum over the round's time window ``[start, end]`` (spans clipped to
it), so the rounds add up to the total when the rounds tile the run (synchronous schemes).
A population run counts the devices that took part, idle over the whole run.

Pure numpy and pandas: no torch, and nothing here changes a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sfsim.world import World

#: Per-device energy fields of the summary, in joules.
DEVICE_FIELDS = ("energy_j", "compute_energy_j", "idle_energy_j", "radio_tx_energy_j",
                 "radio_rx_energy_j")


def _merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted intervals covering the union of ``[starts, ends]``."""
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, s.size - 1]
    return s[first], reach[last]


def _weighted_overlap(starts: np.ndarray, ends: np.ndarray, weights: np.ndarray,
                      windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """Σ_spans weight × |span ∩ window| for each window, in O((n + w) log n).

    Uses the cumulative function C(t) = Σ w·(min(t, end) − start)⁺ = Σ_{start<t} w·(t − start)
    − Σ_{end<t} w·(t − end); a window's overlap is C(end) − C(start).
    """
    if not windows:
        return np.zeros(0)
    t_lo = np.array([w[0] for w in windows], dtype=np.float64)
    t_hi = np.array([w[1] for w in windows], dtype=np.float64)
    if starts.size == 0:
        return np.zeros(len(windows))

    def ramp(points: np.ndarray, t: np.ndarray) -> np.ndarray:
        order = np.argsort(points, kind="stable")
        p, w = points[order], weights[order]
        cw = np.r_[0.0, np.cumsum(w)]
        cwp = np.r_[0.0, np.cumsum(w * p)]
        k = np.searchsorted(p, t, side="left")
        return np.asarray(t * cw[k] - cwp[k])

    def cumulative(t: np.ndarray) -> np.ndarray:
        return ramp(starts, t) - ramp(ends, t)

    return np.asarray(cumulative(t_hi) - cumulative(t_lo))


def energy_summary(
    trace: pd.DataFrame,
    world: World,
    round_bounds: Sequence[tuple[float, float]],
    device_times: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """The summary's energy figures.

    ``device_times``: per device id, its summed ``compute_s``, ``uplink_s`` and ``downlink_s``
    (the summary's per-device busy times). Returns ``devices`` (per device id: the fields of
    :data:`DEVICE_FIELDS`), ``server_energy_j``, ``server_compute_energy_j``,
    ``server_idle_energy_j``, ``device_energy_j`` (sum over devices), ``total_energy_j`` and
    ``round_energy_j`` (one figure per round window).
    """
    radio = world.scenario.channel.radio
    makespan = round_bounds[-1][1] if round_bounds else 0.0
    devices: dict[str, dict[str, float]] = {}
    for d in world.devices:
        t = device_times.get(d.id, {})
        busy = t.get("compute_s", 0.0)
        parts = {
            "compute_energy_j": d.processor.power_busy_w * busy,
            "idle_energy_j": d.processor.power_idle_w * max(makespan - busy, 0.0),
            "radio_tx_energy_j": radio.tx_w * t.get("uplink_s", 0.0),
            "radio_rx_energy_j": radio.rx_w * t.get("downlink_s", 0.0),
        }
        devices[d.id] = {"energy_j": sum(parts.values()), **parts}
    sproc = world.server.processor
    is_server = (trace["resource"] == "server").to_numpy() if len(trace) else np.zeros(0, bool)
    s_starts, s_ends = _merged(trace["start_s"].to_numpy(np.float64)[is_server],
                               trace["end_s"].to_numpy(np.float64)[is_server])
    server_busy = float((s_ends - s_starts).sum())
    server_compute = sproc.power_busy_w * server_busy
    server_idle = sproc.power_idle_w * max(makespan - server_busy, 0.0)
    device_total = sum(v["energy_j"] for v in devices.values())
    return {
        "devices": devices,
        "device_energy_j": device_total,
        "server_energy_j": server_compute + server_idle,
        "server_compute_energy_j": server_compute,
        "server_idle_energy_j": server_idle,
        "total_energy_j": device_total + server_compute + server_idle,
        "round_energy_j": round_energy_j(trace, world, round_bounds, (s_starts, s_ends)),
    }


def round_energy_j(
    trace: pd.DataFrame,
    world: World,
    round_bounds: Sequence[tuple[float, float]],
    server_intervals: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[float]:
    """Joules spent in each round's window, devices and server together.

    Idle power runs over the whole window; each span adds (busy − idle) power for a device
    compute span, the radio power for a transfer and (busy − idle) for the server's union.
    """
    if not round_bounds:
        return []
    radio = world.scenario.channel.radio
    idle_w = sum(d.processor.power_idle_w for d in world.devices)
    sproc = world.server.processor
    lengths = np.array([e - s for s, e in round_bounds], dtype=np.float64)
    total = lengths * (idle_w + sproc.power_idle_w)
    if len(trace):
        extra = {d.id: d.processor.power_busy_w - d.processor.power_idle_w for d in world.devices}
        res = trace["resource"].to_numpy(dtype=object)
        dev = trace["device"].to_numpy(dtype=object)
        starts = trace["start_s"].to_numpy(np.float64)
        ends = trace["end_s"].to_numpy(np.float64)
        weights = np.zeros(len(trace))
        on_device = res == "device"
        weights[on_device] = [extra.get(x, 0.0) for x in dev[on_device]]
        weights[res == "uplink"] = radio.tx_w
        weights[res == "downlink"] = radio.rx_w
        keep = weights != 0.0
        total += _weighted_overlap(starts[keep], ends[keep], weights[keep], round_bounds)
        if server_intervals is None:
            is_server = res == "server"
            server_intervals = _merged(starts[is_server], ends[is_server])
        s_starts, s_ends = server_intervals
        total += _weighted_overlap(s_starts, s_ends,
                                   np.full(s_starts.size, sproc.power_busy_w - sproc.power_idle_w),
                                   round_bounds)
    return [float(x) for x in total]


def span_energy_j(trace: pd.DataFrame, world: World) -> pd.Series:
    """Joules of each span's activity (idle power excluded), aligned with ``trace``'s index.

    A device compute span costs its processor's busy power × duration, an uplink (downlink) span
    the radio's transmit (receive) power × duration, a server span the server's busy power ×
    duration, scaled so that overlapping server spans (sfl_v1) add up to the union's energy;
    queue waits cost nothing here. Per device, compute and radio spans add up to the summary's
    ``compute_energy_j + radio_tx_energy_j + radio_rx_energy_j``.
    """
    if not len(trace):
        return pd.Series(np.zeros(0), index=trace.index, name="energy_j")
    radio = world.scenario.channel.radio
    busy_w = {d.id: d.processor.power_busy_w for d in world.devices}
    res = trace["resource"].to_numpy(dtype=object)
    dev = trace["device"].to_numpy(dtype=object)
    dur = (trace["end_s"] - trace["start_s"]).to_numpy(np.float64)
    power = np.zeros(len(trace))
    on_device = res == "device"
    power[on_device] = [busy_w.get(x, 0.0) for x in dev[on_device]]
    power[res == "uplink"] = radio.tx_w
    power[res == "downlink"] = radio.rx_w
    is_server = res == "server"
    if is_server.any():
        s, e = _merged(trace["start_s"].to_numpy(np.float64)[is_server],
                       trace["end_s"].to_numpy(np.float64)[is_server])
        total = float(dur[is_server].sum())
        share = float((e - s).sum()) / total if total > 0 else 0.0
        power[is_server] = world.server.processor.power_busy_w * share
    return pd.Series(power * dur, index=trace.index, name="energy_j")
