"""The engine on a tiny scenario followed by hand, and invariants on larger ones."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest

from sfsim.costs import AnalyticCostModel, Op, Workload, get_arch
from sfsim.costs import footprint as fp
from sfsim.costs.processors import processor_from_dict
from sfsim.run import resolve, simulate
from sfsim.scenario import parse_scenario

from .conftest import ROOT, TINY


def run_dict(d, **overrides):
    return simulate(resolve(parse_scenario(d), **overrides))


def test_tiny_memsfl_by_hand(tiny):
    """Follow every span of a 2-device round by hand: makespan, bytes and peak memory, exactly."""
    res = run_dict(tiny)
    arch = get_arch("gpt2")
    L, h, V = arch.n_layers, arch.hidden, arch.vocab
    cm = AnalyticCostModel()
    procs = {n: processor_from_dict(n, p) for n, p in TINY["processors"].items()}
    srv = procs["srv"]

    def t(op: Op, b: int, proc) -> float:
        return cm.time_s(op, Workload(arch, b, 32, "fp32", 4, ("q", "v")), proc)

    rank, seq = 4, 32
    devs = {"a": (2, 2, procs["dev-fast"], 100e6), "b": (1, 6, procs["dev-slow"], 10e6)}
    release, server_p, tail, adapter_bytes, up_bytes = {}, {}, {}, {}, {}
    for name, (b, c, proc, up_bps) in devs.items():
        boundary = b * seq * h * 4  # fp32 hidden state
        labels = b * seq * 8  # int64 token ids
        up_bytes[name] = boundary + labels
        adapter_bytes[name] = c * rank * (2 * h + 2 * h) * 4  # q and v: r·(h_in + h_out), fp32
        fwd = t(Op.EMBED_FWD, b, proc) + c * t(Op.BLOCK_FWD, b, proc)
        bwd = (
            t(Op.BLOCK_BWD_NO_INPUT_GRAD, b, proc)
            + (c - 1) * t(Op.BLOCK_BWD, b, proc)
            + c * t(Op.OPT_STEP, b, proc)
        )
        release[name] = fwd + 8 * up_bytes[name] / up_bps
        n = L - c
        server_p[name] = (
            n * t(Op.BLOCK_FWD, b, srv)
            + t(Op.HEAD_FWD, b, srv)
            + t(Op.HEAD_BWD, b, srv)
            + n * t(Op.BLOCK_BWD, b, srv)
            + n * t(Op.OPT_STEP, b, srv)
        )
        tail[name] = 8 * boundary / 100e6 + bwd + 8 * adapter_bytes[name] / up_bps
    # FIFO on one server: serve in arrival order, never two at once.
    free_at, done = 0.0, {}
    for name in sorted(release, key=release.get):
        start = max(free_at, release[name])
        free_at = start + server_p[name]
        done[name] = free_at + tail[name]
    total_adapters = sum(adapter_bytes.values())
    aggregate_s = 2 * (total_adapters / 4) / 10e12
    broadcast_s = max(8 * a / 100e6 for a in adapter_bytes.values())
    makespan = max(done.values()) + aggregate_s + broadcast_s

    s = res.summary
    assert s["makespan_s"] == pytest.approx(makespan, rel=1e-12)
    assert s["round_s"] == [pytest.approx(makespan, rel=1e-12)]
    assert s["uplink_bytes"] == sum(up_bytes.values()) + total_adapters
    down = sum(b * seq * h * 4 for b, *_ in devs.values()) + total_adapters
    assert s["downlink_bytes"] == down

    # Device peak: during its backward everything is allocated at once.
    for name, (b, c, _, _) in devs.items():
        w = Workload(arch, b, seq, "fp32", rank, ("q", "v"))
        weights = ((V + 1024) * h + c * (12 * h * h + 13 * h)) * 4
        lora = c * rank * 4 * h * 4
        static = weights + lora + 2 * lora  # adapters + Adam's two moments
        # the lowest block's input (the embedding output) needs no gradient, so it keeps less
        acts = (fp.block_saved_activation_bytes(w, input_grad=False)
                + (c - 1) * fp.block_saved_activation_bytes(w))
        dynamic = acts + 2 * b * seq * h * 4 + lora  # + grads
        assert s["device_peak_bytes"][name] == static + dynamic, name
    # Server peak: the full model, each device's server-side LoRA + Adam state, plus the
    # device in service (b arrives long after a has left: releases are far apart).
    assert release["b"] > release["a"] + server_p["a"] + 8 * 2 * 32 * h * 4 / 100e6
    full = arch.total_params() * 4
    lora_srv = sum((L - c) * rank * 4 * h * 4 for _, c, _, _ in devs.values())
    static = full + 3 * lora_srv

    def in_service(name: str) -> float:
        b, c, _, _ = devs[name]
        w = Workload(arch, b, seq, "fp32", rank, ("q", "v"))
        acts = (L - c) * fp.block_saved_activation_bytes(w) + b * seq * (h * 4 + V * 4)
        return acts + (L - c) * rank * 4 * h * 4 + up_bytes[name]

    expected = static + max(in_service("a"), adapter_bytes["a"] + in_service("b"))
    assert s["server_peak_bytes"] == expected


def _no_overlap(df: pd.DataFrame) -> bool:
    df = df.sort_values(["start_s", "end_s"])
    return bool((df["start_s"].to_numpy()[1:] >= df["end_s"].to_numpy()[:-1] - 1e-12).all())


SCENARIOS = ["quickstart.yaml", "memsfl_10dev.yaml"]


@pytest.fixture(
    scope="module", params=[(s, sch) for s in SCENARIOS for sch in ("fifo", "random", "schrage")]
)
def run(request):
    from sfsim.scenario import load_scenario

    name, sched = request.param
    return simulate(resolve(load_scenario(ROOT / "scenarios" / name), scheduler=sched))


def test_server_never_runs_two_jobs_at_once(run):
    server = run.trace[run.trace["resource"] == "server"]
    assert len(server) > 0
    assert _no_overlap(server)


def test_device_spans_never_overlap(run):
    for (_dev, res), spans in run.trace.groupby(["device", "resource"]):
        if res in ("device", "uplink", "downlink"):
            assert _no_overlap(spans), (_dev, res)


def test_rounds_end_after_their_last_tail(run):
    bounds = run.summary["round_bounds_s"]
    for r, (start, end) in enumerate(bounds):
        spans = run.trace[run.trace["round"] == r]
        assert spans["start_s"].min() >= start - 1e-12
        assert spans["end_s"].max() == pytest.approx(end, abs=1e-12)
        tails = spans[spans["phase"] == "adapter_upload"]
        assert len(tails) == run.summary["n_devices"]
        assert (tails["end_s"] <= end).all()
    # rounds follow one another
    for (_, e1), (s2, _) in itertools.pairwise(bounds):
        assert s2 == pytest.approx(e1)


def test_every_iteration_visits_the_server_once(run):
    s = run.summary
    server = run.trace[run.trace["phase"] == "server_fwd"]
    assert len(server) == s["n_devices"] * s["rounds"] * s["local_iterations"]
    per = server.groupby(["round", "device"]).size()
    assert (per == s["local_iterations"]).all()


def test_byte_counters_equal_trace(run):
    t = run.trace
    assert run.summary["uplink_bytes"] == t.loc[t["resource"] == "uplink", "bytes"].sum()
    assert run.summary["downlink_bytes"] == t.loc[t["resource"] == "downlink", "bytes"].sum()


def test_memory_returns_to_static_level(run):
    """Everything allocated during a round is freed by its end (no leaks in the ledger)."""
    m = run.memory
    static = m["kind"].isin(["weights", "adapters", "optimizer", "overhead"])
    at_zero = m[(m["time_s"] == 0.0) & static].groupby("owner")["delta_bytes"].sum()
    final = m.groupby("owner")["delta_bytes"].sum()
    pd.testing.assert_series_equal(final.sort_index(), at_zero.sort_index(), check_names=False)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_seed_same_results(scenario, tmp_path, cli):
    outs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        assert (
            cli(
                "run", ROOT / "scenarios" / scenario, "--out", out, "-q", "--scheduler", "random"
            ).exit_code
            == 0
        )
        outs.append(out)
    s0, s1 = (json.loads((o / "summary.json").read_text()) for o in outs)
    s0.pop("wall_s"), s1.pop("wall_s")
    assert s0 == s1
    pd.testing.assert_frame_equal(
        pd.read_parquet(outs[0] / "trace.parquet"), pd.read_parquet(outs[1] / "trace.parquet")
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(outs[0] / "memory.parquet"), pd.read_parquet(outs[1] / "memory.parquet")
    )
    assert (outs[0] / "scenario.resolved.yaml").read_text() == (
        outs[1] / "scenario.resolved.yaml"
    ).read_text()


def test_other_seed_other_results():
    from sfsim.scenario import load_scenario

    s = load_scenario(ROOT / "scenarios" / "memsfl_10dev.yaml")
    a = simulate(resolve(s, seed=1, scheduler="random")).summary
    b = simulate(resolve(s, seed=2, scheduler="random")).summary
    assert a["makespan_s"] != b["makespan_s"]


def test_resolved_scenario_reruns_identically(tmp_path, cli):
    out = tmp_path / "r"
    assert cli("run", ROOT / "scenarios" / "memsfl_10dev.yaml", "--out", out, "-q").exit_code == 0
    again = tmp_path / "again"
    assert cli("run", out / "scenario.resolved.yaml", "--out", again, "-q").exit_code == 0
    s0, s1 = (json.loads((o / "summary.json").read_text()) for o in (out, again))
    for k in ("makespan_s", "round_s", "server_peak_bytes", "device_peak_bytes", "uplink_bytes"):
        assert s0[k] == s1[k], k


def test_memsfl_server_memory_vs_sfl_v2(tiny):
    """memsfl: one full model + per-device server-side adapter state; sfl_v2: the shared
    server-side part (blocks above the lowest cut + head) with ONE adapter set."""
    arch = get_arch("gpt2")
    L, h, V = arch.n_layers, arch.hidden, arch.vocab
    lora_block = 4 * 4 * h * 4  # rank 4, q and v, fp32
    state = 3 * lora_block  # adapters + two Adam moments
    mem = run_dict(tiny)
    v2 = run_dict(tiny, scheme="sfl_v2")
    assert v2.summary["scheduler"] == "fifo"

    def static(res):
        m = res.memory
        return m[(m["owner"] == "server") & (m["time_s"] == 0)].groupby("kind")["delta_bytes"].sum()

    sm, sv = static(mem), static(v2)
    assert sm["weights"] == arch.total_params() * 4
    assert sm["adapters"] + sm["optimizer"] == ((L - 2) + (L - 6)) * state
    c_min = 2
    head = (2 * h + V * h) * 4  # final LayerNorm + the (tied) head matrix
    assert sv["weights"] == (L - c_min) * (12 * h * h + 13 * h) * 4 + head
    assert sv["adapters"] + sv["optimizer"] == (L - c_min) * state
    # Adding a device grows memsfl's server memory by that device's adapter state only.
    more = dict(tiny)
    more["devices"] = [*tiny["devices"], {**tiny["devices"][0], "id": "c", "cut": 3}]
    grown = static(run_dict(more))
    assert grown["weights"] == sm["weights"]
    assert (grown["adapters"] + grown["optimizer"]) - (sm["adapters"] + sm["optimizer"]) == (
        L - 3
    ) * state
    # the peak includes the activations of the device in service, on top of the static part
    assert mem.summary["server_peak_bytes"] > sm.sum()


# ---- property tests over random small scenarios --------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

device_st = st.fixed_dictionaries(
    {
        "processor": st.sampled_from(["dev-fast", "dev-slow"]),
        "batch_size": st.integers(1, 4),
        "cut": st.integers(1, 11),
        "uplink_mbps": st.floats(1, 500),
        "downlink_mbps": st.floats(1, 500),
    }
)


def _random_scenario(devices, k, scheduler, rounds=1):
    d = {**TINY, "devices": [{**dev, "id": f"d{i}", "overhead_mb": 0}
                             for i, dev in enumerate(devices)]}
    d["training"] = {"scheme": "memsfl", "rounds": rounds, "local_iterations": k}
    d["scheduler"] = {"name": scheduler}
    return d


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.lists(device_st, min_size=1, max_size=6),
    k=st.integers(1, 3),
    scheduler=st.sampled_from(["fifo", "random", "schrage", "spt", "lpt", "longest_tail"]),
    scheme=st.sampled_from(["memsfl", "sfl_v2"]),
)
def test_invariants_on_random_scenarios(devices, k, scheduler, scheme):
    res = run_dict(_random_scenario(devices, k, scheduler), scheme=scheme)
    t = res.trace
    assert _no_overlap(t[t["resource"] == "server"])
    for (_, r), spans in t.groupby(["device", "resource"]):
        if r in ("device", "uplink", "downlink"):
            assert _no_overlap(spans)
    assert t["end_s"].max() == pytest.approx(res.summary["makespan_s"])
    assert len(t[t["phase"] == "server_fwd"]) == len(devices) * k
    # every server task starts after its activations arrived and ends before its gradient leaves
    up = t[t["phase"] == "uplink_activations"].set_index(["device", "iteration"])
    srv = t[t["phase"] == "server_fwd"].set_index(["device", "iteration"])
    down = t[t["phase"] == "downlink_gradients"].set_index(["device", "iteration"])
    assert (srv["start_s"] >= up.loc[srv.index, "end_s"] - 1e-12).all()
    assert (down["start_s"] >= srv.loc[down.index, "end_s"] - 1e-12).all()


@settings(max_examples=25, deadline=None)
@given(devices=st.lists(device_st, min_size=1, max_size=5), faster=st.floats(1.01, 10))
def test_a_faster_uplink_never_delays_a_release(devices, faster):
    """Device 0's first activations reach the server no later when its uplink is faster."""
    base = run_dict(_random_scenario(devices, 1, "fifo")).trace
    quick = [dict(devices[0], uplink_mbps=devices[0]["uplink_mbps"] * faster), *devices[1:]]
    fast = run_dict(_random_scenario(quick, 1, "fifo")).trace

    def release(t):
        up = t[(t["phase"] == "uplink_activations") & (t["device"] == "d0")]
        return up["end_s"].min()

    assert release(fast) <= release(base) + 1e-12
