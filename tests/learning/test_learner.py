"""The learning core (issue 13): the proxy follows each scheme's recorded dataflow.

Small proxy settings so each replay takes about a second (torch is imported once per process).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import sfsim
from sfsim.errors import InputError
from sfsim.learning import LEARNING_COLUMNS, learn, time_to_target
from sfsim.learning.replay import ParamSet, Replay, replay

from ..plotting.conftest import QUICKSTART

SMALL = {"learning.enabled": True, "learning.hidden": 32, "learning.blocks": 4,
         "learning.eval_samples": 64, "learning.seq_len": 16}


def sim(scheme: str, *, learning: bool = False, **over: Any) -> sfsim.Run:
    overrides = {**SMALL, "learning.enabled": learning, **over}
    return sfsim.run(QUICKSTART, scheme=scheme, overrides=overrides)


def trace_server_order(trace: pd.DataFrame, scheme: str = "") -> list[tuple[int, str, int]]:
    """(round, device, iteration) in the order their last server backward ended (fedmobillm:
    each server backward, one per step)."""
    bwd = trace[trace["phase"] == "server_bwd"]
    if scheme == "fedmobillm":
        b = bwd.sort_values("end_s", kind="stable")
        return [(int(r), str(d), int(i)) for r, d, i in
                zip(b["round"], b["device"], b["iteration"], strict=True)]
    last = bwd.groupby(["round", "device", "iteration"])["end_s"].max().reset_index()
    last = last.sort_values(["end_s", "round", "device", "iteration"], kind="stable")
    return [(int(r), str(d), int(i)) for r, d, i in
            zip(last["round"], last["device"], last["iteration"], strict=True)]


def test_memsfl_server_updates_follow_the_scheduler_order() -> None:
    orders = {}
    ten = Path(QUICKSTART).parent / "memsfl_10dev.yaml"
    for sched in ("fifo", "schrage"):
        run = sfsim.run(ten, scheduler=sched,
                        overrides={**SMALL, "learning.enabled": False, "training.rounds": 2,
                                   "training.local_iterations": 2})
        learner = replay(run.result, run.scenario)
        expected = trace_server_order(run.trace)
        assert learner.server_order == expected
        assert len(expected) == 2 * 10 * 2
        orders[sched] = expected
    assert orders["fifo"] != orders["schrage"]  # the order differs, and the learner follows it


@pytest.mark.parametrize("scheme", ["sfl_v2", "splitfrozen", "fedmobillm"])
def test_shared_server_updates_in_trace_order(scheme: str) -> None:
    run = sim(scheme, **{"training.local_iterations": 4})
    learner = replay(run.result, run.scenario)
    expected = trace_server_order(run.trace, scheme)
    assert learner.server_order == expected and len(expected) == 3 * 3 * 4
    # a step's row comes when its last update lands: the server's, when the device has none
    frame = learner.frame()
    steps = frame[frame["step"] >= 0]
    if scheme != "sfl_v2":
        assert list(steps["device"]) == [d for _, d, _ in expected]
    else:
        dev_bwd = run.trace[run.trace["phase"] == "device_bwd"].sort_values("end_s")
        assert list(steps["device"]) == list(dev_bwd["device"])


def one_device(rounds: int) -> dict[str, Any]:
    s = sfsim.load_scenario(QUICKSTART).model_dump(mode="json")
    s["devices"] = s["devices"][:1]
    s["training"].update(scheme="fedlora", rounds=rounds, local_iterations=1)
    return s


def test_fedlora_one_device_equals_centralised_training_step_for_step() -> None:
    over = {**SMALL, "learning.data": {"kind": "synthetic", "alpha": 1000.0}}
    run = sfsim.run(one_device(6), overrides=over)
    learner = replay(run.result, run.scenario)
    steps = learner.frame().query("step >= 0")
    assert len(steps) == 6
    # plain centralised training of the same proxy on the same batches
    with torch.no_grad():
        init = learner.proxy.init_trainable()
    central = ParamSet(init, list(init), learner.opt, learner.cfg.lr)
    losses = []
    for k in range(6):
        tokens, labels = learner.batch_of("orin-nano", k)
        loss = F.cross_entropy(learner.proxy.logits(tokens, central.p), labels)
        loss.backward()
        central.opt.step()
        central.opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    np.testing.assert_allclose(steps["train_loss"].to_numpy(), losses, rtol=1e-6)
    for n, t in central.p.items():
        torch.testing.assert_close(learner.global_p[n], t.detach(), rtol=1e-6, atol=1e-7)
    # and it trained: the parameters moved
    assert any(not torch.equal(init[n], t.detach()) for n, t in central.p.items())


def test_fedavg_over_identical_devices_equals_one_device(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Replay.batch_of

    def same_data(self: Replay, d: str, number: int) -> Any:  # every device: device 0's batches
        return real(self, self.devices[0], number)

    monkeypatch.setattr(Replay, "batch_of", same_data)
    one = one_device(3)
    one["training"]["local_iterations"] = 2
    three = copy.deepcopy(one)
    three["devices"] = [{**one["devices"][0], "id": i} for i in ("orin-nano", "x1", "x2")]
    out = []
    for s in (one, three):
        run = sfsim.run(s, overrides=SMALL | {"learning.enabled": False})
        out.append(replay(run.result, run.scenario))
    assert len(out[1].frame().query("step >= 0")) == 3 * len(out[0].frame().query("step >= 0"))
    for n, t in out[0].global_p.items():
        torch.testing.assert_close(out[1].global_p[n], t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scheme", ["memsfl", "sfl_v2", "splitlora", "sfl_v1", "fedlora",
                                    "splitfrozen", "fedmobillm"])
def test_every_scheme_learns_above_chance(scheme: str) -> None:
    run = sim(scheme, learning=True, **{"training.rounds": 8, "training.local_iterations": 10,
                                        "learning.lr": 0.01, "learning.eval_samples": 256,
                                        "learning.data": {"kind": "synthetic", "alpha": 10.0}})
    frame = run.learning
    assert frame is not None and list(frame.columns) == list(LEARNING_COLUMNS)
    ev = frame[frame["eval_accuracy"].notna()]
    assert ev["time_s"].iloc[0] == 0.0 and ev["time_s"].iloc[-1] == run.summary["makespan_s"]
    assert (frame["time_s"].diff().dropna() >= 0).all()
    chance = 1 / 4
    assert ev["eval_accuracy"].iloc[-1] > chance + 0.1, ev["eval_accuracy"].tolist()
    info = run.summary["learning"]
    assert info["final_accuracy"] == ev["eval_accuracy"].iloc[-1]
    assert info["steps"] == 3 * 8 * 10
    assert run.summary["time_to_target_s"] == time_to_target(frame, info["target_accuracy"])


def test_same_seed_same_curve_other_seed_other_curve() -> None:
    a = sim("sfl_v2", learning=True).learning
    b = sim("sfl_v2", learning=True).learning
    assert a is not None and b is not None
    pd.testing.assert_frame_equal(a, b)
    c = sfsim.run(QUICKSTART, scheme="sfl_v2", seed=2, overrides=SMALL).learning
    assert c is not None and not c.equals(a)


def test_time_to_target() -> None:
    f = pd.DataFrame({"time_s": [0.0, 1.0, 2.0, 3.0], "eval_accuracy": [0.1, np.nan, 0.7, 0.9]})
    assert time_to_target(f, 0.6) == 2.0
    assert time_to_target(f, 0.95) is None


def test_run_folder_has_learning_parquet_and_summary(tmp_path: Path) -> None:
    run = sim("memsfl", learning=True)
    out = run.write(tmp_path / "r", trace="none")
    back = sfsim.load_run(out)
    assert back.learning is not None
    pd.testing.assert_frame_equal(back.learning, run.learning)
    assert set(back.summary["learning"]) >= {"target_accuracy", "time_to_target_s",
                                             "final_accuracy"}
    assert "time_to_target_s" in back.summary
    plain = sim("memsfl")
    assert plain.learning is None and "learning" not in plain.summary
    plain.write(tmp_path / "p", trace="none")
    assert not (tmp_path / "p" / "learning.parquet").exists()


def test_npy_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    tokens = (rng.integers(0, 20, (600, 16)) + 20 * labels[:, None]) % 64
    np.save(tmp_path / "t.npy", tokens)
    np.save(tmp_path / "l.npy", labels)
    data = {"kind": "npy", "tokens": str(tmp_path / "t.npy"), "labels": str(tmp_path / "l.npy")}
    run = sim("fedlora", learning=True, **{"learning.data": data, "learning.vocab": 64,
                                           "training.rounds": 4, "training.local_iterations": 8,
                                           "learning.lr": 0.01})
    ev = run.learning.query("step < 0") if run.learning is not None else None
    assert ev is not None and ev["eval_accuracy"].iloc[-1] > 0.5
    np.save(tmp_path / "l.npy", labels[:10])
    with pytest.raises(InputError) as err:
        sim("fedlora", learning=True, **{"learning.data": data, "learning.vocab": 64})
    assert err.value.key == "learning.data.labels"
    np.save(tmp_path / "l.npy", labels)
    with pytest.raises(InputError) as err:
        sim("fedlora", learning=True, **{"learning.data": data, "learning.vocab": 8})
    assert err.value.key == "learning.data.tokens"


@pytest.mark.parametrize("key, value", [
    ("learning.hidden", 3), ("learning.heads", 5), ("learning.lr", 0), ("learning.blocks", 1),
    ("learning.eval_every_steps", 0), ("learning.data", {"kind": "images"}),
    ("learning.data.alpha", -1.0), ("learning.target_accuracy", 1.5), ("learning.typo", 1),
])
def test_bad_learning_config_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(InputError) as err:
        sfsim.load_scenario(QUICKSTART, overrides={key: value})
    assert err.value.key is not None and err.value.key.startswith(key.rsplit(".", 1)[0])
    assert key.split(".")[1] in str(err.value)


def test_eval_every_s_and_steps_not_both() -> None:
    with pytest.raises(InputError) as err:
        sfsim.load_scenario(QUICKSTART, overrides={"learning.eval_every_s": 1.0,
                                                   "learning.eval_every_steps": 3})
    assert err.value.key == "learning.eval_every_steps"


def test_eval_schedules() -> None:
    f = sim("memsfl", learning=True, **{"learning.eval_every_steps": 4}).learning
    assert f is not None
    assert (f.query("step < 0")["time_s"] > 0).sum() == 18 // 4 + 1  # every 4 steps and the end
    g = sim("memsfl", learning=True, **{"learning.eval_every_s": 0.5}).learning
    assert g is not None
    t = g.query("step < 0")["time_s"].to_numpy()
    assert t[0] == 0.0 and np.allclose(t[1:-1], 0.5 * np.arange(1, len(t) - 1))


def test_learn_function_matches_attached_frame() -> None:
    run = sim("splitfrozen", learning=True)
    again = learn(run.result, run.scenario)
    pd.testing.assert_frame_equal(again, run.learning)


def test_partial_aggregation_averages_only_the_listed_devices() -> None:
    s = sfsim.load_scenario(QUICKSTART).model_dump(mode="json")
    s["devices"] = s["devices"][:2]
    s["training"].update(scheme="fedlora", rounds=1, local_iterations=3)
    run = sfsim.run(s, overrides=SMALL | {"learning.enabled": False})
    ev = run.events
    agg = ev[ev["kind"] == "aggregate"]
    assert sorted(agg["device"]) == ["orin-nano", "phone"]

    def global_after(events: pd.DataFrame) -> tuple[Replay, dict[str, torch.Tensor]]:
        learner = replay(run.result.__class__(run.summary, run.trace, run.memory,
                                              run.scenario_yaml, events), run.scenario)
        return learner, learner.global_p

    _, avg = global_after(ev)
    _, got = global_after(ev.drop(index=agg.index[agg["device"] == "phone"]))
    local = replay(run.result.__class__(run.summary, run.trace, run.memory, run.scenario_yaml,
                                        ev[ev["kind"] != "aggregate"]), run.scenario)
    w = dict(zip(agg["device"], agg["value"], strict=True))
    for n, t in got.items():  # one device listed: the average is its own update, exactly
        assert torch.equal(t, local.dev["orin-nano"].p[n].detach())
        expect = ((w["orin-nano"] * local.dev["orin-nano"].p[n].detach().double()
                   + w["phone"] * local.dev["phone"].p[n].detach().double())
                  / (w["orin-nano"] + w["phone"])).float()
        torch.testing.assert_close(avg[n], expect)


def test_dropped_devices_never_enter_the_learners_aggregation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    real = Replay.aggregate

    def spy(self: Replay, r: int, weights: dict[str, float]) -> None:
        seen.append((r, dict(weights)))
        real(self, r, weights)

    monkeypatch.setattr(Replay, "aggregate", spy)
    path = Path(QUICKSTART).parent / "faults" / "dropout_during.yaml"
    run = sfsim.run(path, overrides=SMALL | {"learning.enabled": False, "training.rounds": 3})
    ev = run.events
    drops = ev[ev["kind"] == "drop"]
    assert len(drops), "the scenario should drop someone"
    replay(run.result, run.scenario)
    assert seen
    for r, weights in seen:
        listed = ev[(ev["kind"] == "aggregate") & (ev["round"] == r)]
        assert weights == dict(zip(listed["device"], listed["value"], strict=True))
        dropped = set(drops[drops["round"] == r]["device"])
        assert not dropped & set(weights)


def test_npy_paths_in_a_scenario_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    s = sfsim.load_scenario(QUICKSTART).model_dump(mode="json")
    s["learning"] = {"data": {"kind": "npy", "tokens": "data/t.npy", "labels": "data/l.npy"}}
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(s))
    loaded = sfsim.load_scenario(tmp_path / "s.yaml")
    assert loaded.learning.data.tokens == str(tmp_path / "data" / "t.npy")  # type: ignore[union-attr]
    assert loaded.learning.data.labels == str(tmp_path / "data" / "l.npy")  # type: ignore[union-attr]


def test_pipelined_staleness_changes_what_is_learned() -> None:
    """splitfrozen with room for several batches in flight: a forward reads weights that a
    pending backward has not updated yet (as the trace orders them), and the curve differs."""
    from sfsim.learning.replay import _steps

    losses, stale = {}, {}
    for inflight in (1, 3):
        run = sim("splitfrozen", **{"training.local_iterations": 6,
                                    "training.pipeline.max_inflight": inflight,
                                    "training.pipeline.buffer_batches": 3})
        steps = sorted(_steps("splitfrozen", run.trace, run.events),
                       key=lambda s: s.server_s or 0.0)
        # a step is stale when it read the weights before the previous update landed
        stale[inflight] = sum(b.read_s < (a.server_s or 0.0)
                              for a, b in itertools.pairwise(steps))
        frame = replay(run.result, run.scenario).frame()
        losses[inflight] = frame.query("step >= 0")["train_loss"].to_numpy()
    assert stale[1] == 0 and stale[3] > 0
    assert len(losses[1]) == len(losses[3]) and not np.array_equal(losses[1], losses[3])


@pytest.mark.parametrize("scheme", ["memsfl", "sfl_v1"])
def test_per_device_sets_are_averaged_per_layer_across_the_cut(scheme: str) -> None:
    """model.md §4: every device owns a full adapter set (device part + server part); FedAvg runs
    per layer over the devices, whichever side of each device's cut the layer is on."""
    s = sfsim.load_scenario(QUICKSTART).model_dump(mode="json")
    s["devices"] = s["devices"][:3]
    for d, cut in zip(s["devices"], (1, 2, 3), strict=True):  # three different cuts
        d["cut"] = cut
    s["training"].update(scheme=scheme, rounds=1, local_iterations=2)
    s["model"]["arch"] = "gpt2"
    run = sfsim.run(s, overrides=SMALL | {"learning.enabled": False, "learning.blocks": 6})
    learner = replay(run.result, run.scenario)
    owned = {d: {**learner.dev[d].p, **learner.srv[d].p} for d in learner.dev}
    assert len({learner.cut[d] for d in owned}) > 1  # the proxy cuts differ too
    names = set.intersection(*(set(p) for p in owned.values()))
    assert names == set.union(*(set(p) for p in owned.values()))  # each set is whole
    first, *rest = owned.values()
    for n in names:
        for other in rest:
            torch.testing.assert_close(other[n], first[n], rtol=0, atol=0)
    # and the round did train: the average differs from the initial weights
    init = learner.proxy.init_trainable()
    assert any(not torch.equal(first[n].detach(), init[n]) for n in names)


def test_a_population_learns_from_each_rounds_participants_only() -> None:
    """fleet.participants: only the drawn devices train, each round's FedAvg lists them, and
    the learner steps once per participant batch."""
    path = Path(QUICKSTART).parent / "population_100k.yaml"
    run = sfsim.run(path, overrides={**SMALL, "learning.enabled": True, "fleet.count": 40,
                                     "fleet.participants": 4, "training.rounds": 3,
                                     "training.local_iterations": 1})
    participants = run.summary["participants"]
    assert len(participants) == 3 and all(len(p) == 4 for p in participants)
    frame = run.learning
    steps = frame[frame["step"] >= 0]
    assert len(steps) == 3 * 4  # rounds × participants × K
    for r, ids in enumerate(participants):
        assert set(steps.loc[steps["round"] == r, "device"]) == set(ids)
    assert frame["eval_accuracy"].notna().sum() >= 3  # one evaluation per round at least
