"""The channel: shared cell (equal split, processor-sharing fluid), fading's long-run rate,
broadcast downlink of common adapters (sfsim/channel.py, docs/channel.md)."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest

from sfsim.engine import Sim
from sfsim.errors import InputError
from sfsim.links import ShannonLink
from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario
from sfsim.world import build_world
from tests.conftest import TINY

MBPS = 1e6


def fleet(n: int, *, up_mbps: list[float] | None = None, **channel: Any) -> dict[str, Any]:
    """TINY with ``n`` identical fast devices (uplink rates ``up_mbps``, default 100 Mbit/s)."""
    d = copy.deepcopy(TINY)
    rates = up_mbps or [100.0] * n
    d["devices"] = [
        {"id": f"d{i}", "processor": "dev-fast", "batch_size": 1, "cut": 2,
         "uplink_mbps": rates[i], "overhead_mb": 0}
        for i in range(n)
    ]
    d["channel"] = {"model": "fixed", "downlink_mbps": 100, "latency_ms": 0, **channel}
    return d


def sim_for(d: dict[str, Any]) -> Sim:
    return Sim(build_world(resolve(Scenario.model_validate(d))))


def spans(sim: Sim) -> dict[str, tuple[float, float, float]]:
    return {sp.device: (sp.start_s, sp.end_s, sp.bytes) for sp in sim.trace.spans}


def upload_all(sim: Sim, sizes: dict[str, float], starts: dict[str, float] | None = None) -> None:
    def one(dev: str, nbytes: float, at: float):  # type: ignore[no-untyped-def]
        if at > 0:
            yield sim.env.timeout(at)
        yield from sim.send(dev, "uplink", "up", nbytes, round=0)

    for dev, nbytes in sizes.items():
        sim.env.process(one(dev, nbytes, (starts or {}).get(dev, 0.0)))
    sim.env.run()


# ---- equal split ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_equal_split_gives_each_of_n_uploads_one_nth(n: int) -> None:
    nbytes = 1.0e6  # 0.08 s alone at 100 Mbit/s
    alone = sim_for(fleet(n))
    upload_all(alone, {"d0": nbytes})
    dedicated = alone.trace.spans[0].end_s - alone.trace.spans[0].start_s
    assert dedicated == pytest.approx(0.08)
    shared = sim_for(fleet(n, access="shared", sharing="equal"))
    upload_all(shared, {f"d{i}": nbytes for i in range(n)})
    got = spans(shared)
    assert len(got) == n
    for start, end, b in got.values():
        assert start == 0.0 and b == nbytes
        assert end - start == pytest.approx(n * dedicated, rel=1e-12)


def test_equal_split_rate_is_fixed_at_the_start() -> None:
    # d0 starts alone (full rate, 0.08 s); d1 starts at 0.04 s and sees n = 2 (0.16 s); d0 keeps
    # its rate: the equal model never re-divides a transfer already going.
    sim = sim_for(fleet(2, access="shared", sharing="equal"))
    upload_all(sim, {"d0": 1.0e6, "d1": 1.0e6}, starts={"d1": 0.04})
    got = spans(sim)
    assert got["d0"][:2] == pytest.approx((0.0, 0.08))
    assert got["d1"][:2] == pytest.approx((0.04, 0.20))


def test_dedicated_is_unchanged_by_concurrency() -> None:
    sim = sim_for(fleet(3))
    upload_all(sim, {f"d{i}": 1.0e6 for i in range(3)})
    assert all(end == pytest.approx(0.08) for _, end, _ in spans(sim).values())


# ---- fluid (processor sharing) ----------------------------------------------------------------


def test_fluid_short_and_long_hand_checked() -> None:
    # 100 Mbit/s cell, both start at 0: short 1 MB (8 Mbit), long 3 MB (24 Mbit).
    # Together each gets 50 Mbit/s: the short ends at 8/50 = 0.16 s, the long has sent 8 Mbit
    # by then; alone it does the remaining 16 Mbit at 100 Mbit/s: ends at 0.16 + 0.16 = 0.32 s.
    sim = sim_for(fleet(2, access="shared", sharing="fluid"))
    upload_all(sim, {"d0": 1.0e6, "d1": 3.0e6})
    got = spans(sim)
    assert got["d0"] == pytest.approx((0.0, 0.16, 1.0e6), rel=1e-12)
    assert got["d1"] == pytest.approx((0.0, 0.32, 3.0e6), rel=1e-12)


def test_fluid_late_arrival_hand_checked() -> None:
    # d0 (2 MB = 16 Mbit) alone at 100 Mbit/s from 0; d1 (1 MB) joins at 0.08 s when d0 has
    # 8 Mbit left; both at 50: d0 and d1 each need 8 Mbit -> both end at 0.08 + 0.16 = 0.24 s.
    sim = sim_for(fleet(2, access="shared", sharing="fluid"))
    upload_all(sim, {"d0": 2.0e6, "d1": 1.0e6}, starts={"d1": 0.08})
    got = spans(sim)
    assert got["d0"][1] == pytest.approx(0.24, rel=1e-12)
    assert got["d1"][:2] == pytest.approx((0.08, 0.24), rel=1e-12)


def test_fluid_conserves_the_cell_rate_when_always_busy() -> None:
    # Unequal sizes and links of different rates all start at 0: per-link shares, so the cell is
    # busy until the last ends. Check: sum over transfers of bits / its link's rate = busy time
    # (each moment the shares of the n active transfers add up to a whole cell).
    rates = [100.0, 50.0, 20.0, 80.0]
    sizes = {"d0": 3.0e6, "d1": 1.0e6, "d2": 0.5e6, "d3": 2.0e6}
    sim = sim_for(fleet(4, up_mbps=rates, access="shared", sharing="fluid"))
    upload_all(sim, sizes)
    busy = max(end for _, end, _ in spans(sim).values())
    work = sum(8 * sizes[f"d{i}"] / (rates[i] * MBPS) for i in range(4))
    assert busy == pytest.approx(work, rel=1e-9)
    # equal links: total bits / busy time = the cell's rate
    sim = sim_for(fleet(3, access="shared", sharing="fluid"))
    upload_all(sim, {"d0": 0.7e6, "d1": 2.5e6, "d2": 1.1e6})
    busy = max(end for _, end, _ in spans(sim).values())
    assert 8 * (0.7e6 + 2.5e6 + 1.1e6) / busy == pytest.approx(100 * MBPS, rel=1e-9)


def test_fluid_shannon_band_split_raises_the_snr() -> None:
    # No fading: two equal transfers on B/2 each, SNR over B/2 doubles.
    ch = {"model": "shannon", "fading": "none", "bandwidth_mhz": 1.0, "distance_m": 200.0,
          "access": "shared", "sharing": "fluid"}
    d = fleet(2, **ch)
    for dev in d["devices"]:
        dev.pop("uplink_mbps")
    sim = sim_for(d)
    link = sim.world.device("d0").uplink
    assert isinstance(link, ShannonLink)
    nbytes = 1.0e5
    upload_all(sim, {"d0": nbytes, "d1": nbytes})
    import math

    rate = link.bandwidth_hz / 2 * math.log2(1 + 2 * link.mean_snr)
    for start, end, _ in spans(sim).values():
        assert end - start == pytest.approx(8 * nbytes / rate, rel=1e-9)


def test_fluid_refuses_link_outages() -> None:
    d = fleet(2, access="shared", sharing="fluid")
    d["faults"] = {"link_outage": {"rate_per_hour": 1.0}}
    with pytest.raises(InputError, match=r"channel\.sharing"):
        sim_for(d)


# ---- fading: the long-run rate through the simulator -------------------------------------------


def _fading(n: int, **extra: Any) -> dict[str, Any]:
    d = fleet(n, model="shannon", fading="rayleigh", bandwidth_mhz=1.0, coherence_ms=1.0,
              distance_m=300.0, **extra)
    for dev in d["devices"]:
        dev.pop("uplink_mbps")
    return d


def test_fading_long_run_rate_matches_the_ergodic_rate() -> None:
    """Back-to-back transfers through Sim.send: total bits / total time within 2% of E[rate]."""
    sim = sim_for(_fading(1))
    link = sim.world.device("d0").uplink
    assert isinstance(link, ShannonLink) and link.fading
    nbytes = 2_000.0  # 16 kbit: about one coherence block per transfer
    count = 6_000

    def chain():  # type: ignore[no-untyped-def]
        for _ in range(count):
            yield from sim.send("d0", "uplink", "up", nbytes, round=0)

    sim.env.process(chain())
    sim.env.run()
    measured = 8 * nbytes * count / sim.now
    ergodic = link.ergodic_rate_bps()
    assert measured == pytest.approx(ergodic, rel=0.02)
    # and it is not the no-fading rate (Jensen: fading lowers the mean rate)
    assert abs(measured / link.expected_rate_bps() - 1) > 0.02


def test_fluid_fading_long_run_rate_matches_the_shared_ergodic_rate() -> None:
    """Two always-busy transfers in a fluid cell: each moves at E[(B/2)·log2(1 + 2·SNR·X)]."""
    from sfsim.links import ergodic_rate_bps

    sim = sim_for(_fading(2, access="shared", sharing="fluid"))
    link = sim.world.device("d0").uplink
    nbytes = 4.0e6
    upload_all(sim, {"d0": nbytes, "d1": nbytes})
    expected = ergodic_rate_bps(link.bandwidth_hz / 2, 2 * link.mean_snr)
    first_end = min(end for _, end, _ in spans(sim).values())
    assert first_end > 1000 * link.coherence_s  # many blocks
    for dev in ("d0", "d1"):
        start, end, _ = spans(sim)[dev]
        if end == first_end:
            assert 8 * nbytes / (end - start) == pytest.approx(expected, rel=0.02)


# ---- broadcast downlink ---------------------------------------------------------------------


def _broadcast_run(broadcast: bool, scheme: str = "fedlora") -> Any:
    d = fleet(3, up_mbps=[100.0, 100.0, 100.0], broadcast_downlink=broadcast)
    d["devices"][2]["downlink_mbps"] = 20.0  # the worst receiver
    d["training"]["scheme"] = scheme
    d["training"]["rounds"] = 2
    return simulate(resolve(Scenario.model_validate(d)))


@pytest.mark.parametrize("scheme", ["fedlora", "memsfl", "sfl_v1"])
def test_broadcast_is_one_send_at_the_worst_receivers_rate(scheme: str) -> None:
    res = _broadcast_run(True, scheme)
    trace = res.trace
    down = trace[trace["phase"] == "adapter_download"]
    assert len(down) == 3 * 2
    nbytes = float(down["bytes"].iloc[0])
    for _, rows in down.groupby("round"):
        assert rows["start_s"].nunique() == 1 and rows["end_s"].nunique() == 1
        dur = float(rows["end_s"].iloc[0] - rows["start_s"].iloc[0])
        assert dur == pytest.approx(8 * nbytes / (20 * MBPS), rel=1e-12)  # the worst: 20 Mbit/s
    assert res.summary["broadcast_bytes"] == pytest.approx(2 * nbytes)  # once per round
    unicast = _broadcast_run(False, scheme)
    assert "broadcast_bytes" not in unicast.summary
    udown = unicast.trace[unicast.trace["phase"] == "adapter_download"]
    assert float(udown["bytes"].sum()) == pytest.approx(float(down["bytes"].sum()))


def test_unknown_or_bad_channel_keys_are_refused() -> None:
    for bad in ({"access": "cell"}, {"sharing": "tdma"}, {"broadcast_downlink": "yes"}):
        d = fleet(1, **bad)
        with pytest.raises(Exception, match=r"access|sharing|broadcast"):
            Scenario.model_validate(d)


# ---- interrupts, fading under equal split, determinism ----------------------------------------


@pytest.mark.parametrize("sharing", ["equal", "fluid"])
def test_an_interrupted_upload_records_its_part_and_frees_the_cell(sharing: str) -> None:
    import simpy

    sim = sim_for(fleet(2, access="shared", sharing=sharing))

    def victim():  # type: ignore[no-untyped-def]
        with contextlib.suppress(simpy.Interrupt):
            yield from sim.send("d0", "uplink", "up", 1.0e6, round=0)

    proc = sim.env.process(victim())
    other = sim.env.process(sim.send("d1", "uplink", "up", 1.0e6, round=0))

    def dropper():  # type: ignore[no-untyped-def]
        yield sim.env.timeout(0.04)
        proc.interrupt("drop")

    sim.env.process(dropper())
    sim.env.run()
    assert other.processed
    got = spans(sim)
    # both at 50 Mbit/s until 0.04 s: d0 sent 2 Mbit (0.25 MB)
    assert got["d0"] == pytest.approx((0.0, 0.04, 0.25e6), rel=1e-9)
    if sharing == "fluid":  # d1 alone from 0.04 s: 6 Mbit left at 100 Mbit/s
        assert got["d1"][1] == pytest.approx(0.04 + 0.06, rel=1e-9)
    else:  # equal: d1 keeps the rate it started with
        assert got["d1"][1] == pytest.approx(0.16, rel=1e-12)


def test_equal_split_on_a_fading_link_moves_n_times_the_bits() -> None:
    sim = sim_for(_fading(2, access="shared", sharing="equal"))
    nbytes = 3.0e4
    upload_all(sim, {"d0": nbytes, "d1": nbytes})
    for dev, (start, end, _) in spans(sim).items():
        link = sim.world.device(dev).uplink
        assert end - start == link.duration_s(2 * nbytes, start)


def test_cached_fading_power_is_the_fading_power() -> None:
    link = sim_for(_fading(1)).world.device("d0").uplink
    assert isinstance(link, ShannonLink)
    for block in (0, 1, 63, 64, 65, 1000, 123_457):
        assert link.cached_fading_power(block) == link.fading_power(block)


@pytest.mark.parametrize("sharing", ["equal", "fluid"])
def test_shared_runs_are_deterministic(sharing: str) -> None:
    d = _fading(3, access="shared", sharing=sharing, broadcast_downlink=True)
    d["training"]["scheme"] = "memsfl"
    d["training"]["rounds"] = 2
    a = simulate(resolve(Scenario.model_validate(copy.deepcopy(d))))
    b = simulate(resolve(Scenario.model_validate(copy.deepcopy(d))))
    assert a.trace.equals(b.trace)
    assert a.summary["makespan_s"] == b.summary["makespan_s"]


def test_fluid_refuses_a_trace_link_before_the_run(tmp_path: Any) -> None:
    (tmp_path / "links.csv").write_text(
        "device,time_s,uplink_mbps,downlink_mbps\nd0,0,50,100\nd0,1,10,100\n"
    )
    d = fleet(1, access="shared", sharing="fluid")
    d["traces"] = {"links": str(tmp_path / "links.csv")}
    with pytest.raises(InputError, match="TraceLink"):
        sim_for(d)
