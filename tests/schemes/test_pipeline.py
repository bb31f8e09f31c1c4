"""Timing models: splitfrozen's streaming pipeline and sfl_v1's shared server."""

from __future__ import annotations

import pytest

from sfsim.run import resolve
from sfsim.scenario import parse_scenario
from sfsim.schemes.split import split_costs
from sfsim.schemes.splitfrozen import frozen_costs
from sfsim.world import build_world

from .common import base, identical, run, spans


def _dev(res, dev: str, resource: str):
    return spans(res, resource).query("device == @dev").sort_values("start_s")


def test_splitfrozen_devices_stream_without_waiting_for_the_server():
    d = base()
    # room for every batch of the run: rounds no longer drain the pipeline (docs/async.md)
    d["training"]["pipeline"] = {"buffer_batches": 6}
    res = run(d, scheme="splitfrozen")
    for dev in ("a", "b"):
        fwd, up = _dev(res, dev, "device"), _dev(res, dev, "uplink")
        for r in set(fwd["round"]):
            f = fwd[fwd["round"] == r]["start_s"].to_numpy()
            e = fwd[fwd["round"] == r]["end_s"].to_numpy()
            u = up[up["round"] == r]
            # with buffer room, each forward starts the moment the previous one ends
            assert f[1:] == pytest.approx(e[:-1])
            # and overlaps the previous batch's upload
            assert (f[1:] < u["end_s"].to_numpy()[:-1]).all()


def test_a_full_buffer_makes_the_device_wait_for_the_server():
    d = base()
    d["devices"][1]["uplink_mbps"] = 10000  # b's uploads are instant: only credits stop it
    d["training"]["pipeline"] = {"buffer_batches": 1}
    res = run(d, scheme="splitfrozen")
    fwd = _dev(res, "b", "device")
    srv_fwd = res.trace.query("phase == 'server_fwd' and device == 'b'").sort_values("start_s")
    for r in set(fwd["round"]):
        starts = fwd[fwd["round"] == r]["start_s"].to_numpy()
        consumed = srv_fwd[srv_fwd["round"] == r]["end_s"].to_numpy()
        # one credit: batch k+1 starts only after the server has consumed batch k
        assert (starts[1:] >= consumed[:-1] - 1e-12).all()


def _interleaved(res) -> int:
    """How often a forward runs between two backward stages of one batch on the server."""
    srv = spans(res, "server").sort_values("start_s")
    count, open_batches = 0, set()
    for row in srv.itertuples():
        key = (row.round, row.device, row.iteration)
        if row.phase == "server_fwd":
            count += bool(open_batches)
        else:
            open_batches.add(key)
        if row.phase == "server_bwd" and _last_stage(srv, row):
            open_batches.discard(key)
    return count


def _last_stage(srv, row) -> bool:
    same = srv[(srv["round"] == row.round) & (srv["device"] == row.device)
               & (srv["iteration"] == row.iteration) & (srv["phase"] == "server_bwd")]
    return row.end_s == same["end_s"].max()


def test_decomposed_backward_lets_arrivals_in_and_conserves_server_work():
    d = base()
    d["processors"]["srv"]["peak_tflops"] = {"fp32": 1.0}  # a server about as busy as the devices
    world = build_world(resolve(parse_scenario(d)))
    n = d["training"]["rounds"] * d["training"]["local_iterations"]
    work = n * sum(frozen_costs(world, dev, dev.cut, 1).srv_s for dev in world.devices)
    one = max(frozen_costs(world, dev, dev.cut, 1).saved_bytes for dev in world.devices)
    runs = {}
    for inflight, chunk in ((1, 1), (2, 1), (2, 100)):
        # rounds drained (barrier): the queue-wait ordering below is a property of each
        # round's fill and drain, which continuous pipelining (docs/async.md) blurs
        d["training"]["pipeline"] = {"max_inflight": inflight, "backward_chunk_blocks": chunk,
                                     "barrier": True}
        res = runs[inflight, chunk] = run(d, scheme="splitfrozen")
        srv = spans(res, "server")
        # decomposing the backward changes the order of the work, never its amount
        assert (srv["end_s"] - srv["start_s"]).sum() == pytest.approx(work)
        assert res.summary["server_busy_s"] == pytest.approx(work)
        acts = res.memory.query("owner == 'server' and kind == 'activations'")
        assert acts["delta_bytes"].cumsum().max() <= inflight * one
    # one batch in flight, or an undivided backward: no arrival gets in before a backward ends
    assert _interleaved(runs[1, 1]) == 0
    assert _interleaved(runs[2, 100]) == 0
    # per-block stages with room for a second batch: arrivals are consumed mid-backward
    assert _interleaved(runs[2, 1]) > 0

    def wait(res) -> float:
        return float(res.trace.query("phase == 'queue_wait'").eval("end_s - start_s").sum())

    assert wait(runs[2, 1]) < wait(runs[2, 100]) < wait(runs[1, 1])


def test_sfl_v1_serves_devices_concurrently_and_conserves_work():
    d = identical(3, cut=2)
    res = run(d, scheme="sfl_v1")
    world = build_world(resolve(parse_scenario(d)))
    srv = spans(res, "server")
    work = srv.query("phase != 'aggregate'")
    overlapping = sum(
        1 for a in work.itertuples() for b in work.itertuples()
        if a.Index < b.Index and a.start_s < b.end_s and b.start_s < a.end_s
    )
    assert overlapping > 0  # three identical devices arrive together and share the server
    c = split_costs(world, world.devices[0], 2)
    iters = d["training"]["rounds"] * d["training"]["local_iterations"] * 3
    agg = srv.query("phase == 'aggregate'")
    total_work = iters * (c.srv_fwd_s + c.srv_bwd_s) + (agg["end_s"] - agg["start_s"]).sum()
    assert res.summary["server_busy_s"] == pytest.approx(total_work, rel=1e-9)
    # a one-at-a-time server does the same training work, one device after another
    seq = spans(run(d, scheme="sfl_v2"), "server").query("phase != 'aggregate'")
    assert (seq["end_s"] - seq["start_s"]).sum() == pytest.approx(
        iters * (c.srv_fwd_s + c.srv_bwd_s), rel=1e-9)
