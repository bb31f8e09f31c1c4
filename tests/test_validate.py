"""`validate` runs every check `run` runs, short of simulating: validate ok => run does not fail.

Each case below is a scenario that `run` refuses with exit status 2. `validate` must refuse it
too, with a message naming the key; and a scenario that validates must run.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sfsim.errors import InputError
from sfsim.preflight import preflight
from sfsim.run import resolve
from sfsim.scenario import load_scenario, parse_scenario
from sfsim.schedulers import get_scheduler
from sfsim.schedulers.registry import scheduler_from_scenario
from sfsim.yamlio import MAX_DEPTH, loads_json, loads_yaml


def _set(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    cur: Any = d
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    last = keys[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return d


def _exit_2(result: Any, *needles: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    assert text.startswith("error: "), text
    for n in needles:
        assert n in text, (n, text)


# (edits, key named, words of the problem): run refuses each of these at input time.
RUN_REJECTS = [
    ({"training.scheme": "nope"}, "training.scheme", "unknown scheme"),
    ({"scheduler.name": "nope"}, "scheduler.name", "unknown scheduler"),
    ({"scheduler.params": {"foo": 1}}, "scheduler.params.foo", "does not take"),
    ({"scheduler": {"name": "carlier", "params": {"time_limit_s": "abc"}}},
     "scheduler.params.time_limit_s", "valid number"),
    ({"scheduler": {"name": "carlier"}, "training.local_iterations": 2},
     "scheduler", "single-task"),
    ({"devices.1.memory_gb": 0.01}, "devices", "device 'b'"),
    ({"server.memory_gb": 0.1}, "server", "the server"),
    ({"devices.0.cut": None}, "cut", "needs a cut layer"),
]


@pytest.mark.parametrize(("edits", "key", "problem"), RUN_REJECTS)
def test_validate_rejects_what_run_rejects(tiny, write_yaml, cli, tmp_path, edits, key, problem):
    for path, value in edits.items():
        _set(tiny, path, value)
    scenario = write_yaml(tiny)
    out = tmp_path / "out"
    run = cli("run", scenario, "--out", out, "-q")
    assert run.exit_code == 2, run.output  # the premise: run refuses it
    _exit_2(cli("validate", scenario), str(scenario), key, problem)


def test_validate_ok_then_run_ok(tiny, write_yaml, cli, tmp_path):
    for scheme in ("memsfl", "sfl_v2", "sfl_v1", "fedlora", "splitfrozen"):
        tiny["training"]["scheme"] = scheme
        scenario = write_yaml(tiny, f"{scheme}.yaml")
        v = cli("validate", scenario)
        assert v.exit_code == 0, v.output
        r = cli("run", scenario, "--out", tmp_path / scheme, "-q")
        assert r.exit_code == 0, r.output


def test_validate_catches_a_mid_round_server_peak(tiny):
    """Set-up fits on the server but a round's activations do not: the dry round finds it."""
    s = resolve(parse_scenario(tiny))
    report = preflight(s)
    setup_peak = report.world.server.memory_bytes  # 40 GB: fits
    assert setup_peak > 0
    # find a server memory between the set-up level and the run's peak
    from sfsim.run import simulate

    res = simulate(s)
    peak = res.summary["server_peak_bytes"]
    tight = dict(tiny, server={**tiny["server"], "memory_gb": (peak - 1e6) / 1e9})
    with pytest.raises(InputError, match="server"):
        preflight(resolve(parse_scenario(tight)))
    with pytest.raises(InputError, match="server"):
        simulate(resolve(parse_scenario(tight)))


def test_scheduler_params_are_typed():
    with pytest.raises(InputError) as exc:
        scheduler_from_scenario("carlier", {"time_limit_s": "abc"})
    assert exc.value.key == "scheduler.params.time_limit_s"
    with pytest.raises(InputError) as exc:
        scheduler_from_scenario("carlier", {"max_nodes": True})  # a bool is not an int
    assert exc.value.key == "scheduler.params.max_nodes"
    with pytest.raises(InputError, match="parameter time_limit_s: Input should be a valid"):
        get_scheduler("carlier", time_limit_s="abc")  # outside a scenario: no key path
    with pytest.raises(InputError):
        get_scheduler("milp", warm_start="yes")
    with pytest.raises(InputError):
        get_scheduler("carlier", max_nodes=1.5)
    # an int for a float, a list for a tuple: accepted and converted
    assert get_scheduler("carlier", time_limit_s=3).time_limit_s == 3.0  # type: ignore[attr-defined]
    ls = get_scheduler("local_search", starts=["fifo"])
    assert ls.starts == ("fifo",)  # type: ignore[attr-defined]


# ---- the input boundary -------------------------------------------------------------------------

BOUNDARY = [
    ("training.rounds", True, "training.rounds", "valid integer"),
    ("training.rounds", "3", "training.rounds", "valid integer"),
    ("training.rounds", "1e309", "training.rounds", "valid integer"),
    ("devices.0.uplink_mbps", "yes", "devices[0].uplink_mbps", "valid number"),
    ("devices.0.id", "server", "devices[0].id", "reserved"),
    ("devices.0.id", "a/b", "devices[0].id", "may use only"),
    ("devices.0.id", "x" * 65, "devices[0].id", "1 to 64"),
    ("devices.0.memory_gb", float("inf"), "devices[0].memory_gb", "finite"),
    ("devices.0.memory_gb", float("nan"), "devices[0].memory_gb", "finite"),
    ("channel", {"model": "shannon", "device_tx_power_dbm": -1000}, "channel.device_tx_power_dbm",
     "greater than"),
    ("channel", {"model": "shannon", "distance_m": 1e12}, "channel.distance_m", "less than"),
    ("channel", {"model": "shannon", "shadowing_std_db": 1e6}, "channel.shadowing_std_db",
     "less than"),
    ("channel", {"model": "shannon", "path_loss": {"a_db": float("nan")}},
     "channel.path_loss.a_db", "finite"),
    ("channel", {"model": "shannon", "latency_ms": float("inf")}, "channel.latency_ms", "finite"),
    ("channel", {"model": "shannon", "bandwidth_mhz": 1e-12}, "channel.bandwidth_mhz",
     "greater than"),
    ("channel", {"model": "shannon", "coherence_ms": 1e-9}, "channel.coherence_ms",
     "greater than"),
    ("processors.dev-fast.efficiency", 1e-320, "processors.dev-fast.efficiency", "greater than"),
    ("variability", {"compute": "lognormal", "sigma": 1000}, "variability.sigma", "less than"),
    ("training.rounds", 10**9, "training.rounds", "less than"),
    ("fleet", {"count": 10**18, "mix": {"dev-fast": 1}, "cut": 2}, "fleet.count", "less than"),
    ("fleet", {"count": 3, "mix": {"dev-fast": 1}, "cut": 2, "samples": {"min": 0, "max": 0.4}},
     "fleet.samples.min", "greater than"),
    ("fleet", {"count": 3, "mix": {"dev-fast": 1}, "cut": 2,
               "uplink_mbps": {"min": 0, "max": 0}}, "fleet.uplink_mbps.min", "greater than"),
    ("fleet", {"count": 3, "mix": {"dev-fast": 1}, "cut": 2,
               "downlink_mbps": {"min": 1, "max": float("inf")}}, "fleet.downlink_mbps.max",
     "finite"),
    ("fleet", {"count": 3, "mix": {"dev-fast": 1}, "cut": []}, "fleet.cut", "at least 1"),
    ("fleet", {"count": 5, "mix": {"dev-fast": 1e308, "dev-slow": 1e308}, "cut": 2},
     "fleet.mix.dev-fast", "less than"),
    ("name", "a\0b", "name", "control characters"),
]


@pytest.mark.parametrize(("path", "value", "key", "problem"), BOUNDARY)
def test_input_boundary(tiny, write_yaml, cli, path, value, key, problem):
    _set(tiny, path, value)
    scenario = write_yaml(tiny)
    _exit_2(cli("validate", scenario), str(scenario), key, problem)


def test_link_physics_derived_rate_is_checked(tiny):
    """Each input in range, but together a link that could never carry a batch."""
    tiny["channel"] = {"model": "shannon", "device_tx_power_dbm": -50, "distance_m": 100_000,
                       "bandwidth_mhz": 0.001}
    with pytest.raises(InputError) as exc:
        parse_scenario(tiny)
    assert exc.value.key == "channel.distance_m"
    assert "below 1000 bit/s" in exc.value.problem


def test_work_bound_and_its_override(tiny):
    tiny["training"]["rounds"] = 600_000  # × 1 iteration × 2 devices = 1.2 M device iterations
    with pytest.raises(InputError) as exc:
        parse_scenario(tiny)
    assert exc.value.key == "training.rounds"
    assert "limits.max_device_iterations" in exc.value.problem
    tiny["limits"] = {"max_device_iterations": 2_000_000}
    assert parse_scenario(tiny).training.rounds == 600_000


def test_fleet_count_is_exact_with_any_weights(tiny):
    tiny["fleet"] = {"count": 5, "mix": {"dev-fast": 1e6, "dev-slow": 1e-6}, "cut": 2}
    s = resolve(parse_scenario(tiny))
    assert len(s.devices) == 2 + 5


# ---- the YAML layer -----------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *[
            f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ],
    ]
)


def test_alias_bomb_fails_fast(write_yaml, cli):
    text = "scheduler:\n  name: fifo\n  params:\n" + "\n".join(
        "    " + line for line in ALIAS_BOMB.splitlines()
    )
    assert len(text) < 1500
    path = write_yaml(text)
    t0 = time.perf_counter()
    _exit_2(cli("validate", path), "expands to more than")
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: a\nname: b\n", "duplicate key 'name'"),
        ("training: {rounds: 1, rounds: 2}\n", "duplicate key 'rounds'"),
        ("a: " + "[" * 100_000, f"deeper than {MAX_DEPTH}"),
        ("seed: " + "9" * 5000 + "\n", "digits"),
        ("seed: !!binary aGVsbG8=\n", "not allowed"),
        ("training: {rounds: .nan}\ndevices: []\n", "finite"),
    ],
)
def test_yaml_limits(write_yaml, cli, text, needle):
    path = write_yaml(text)
    _exit_2(cli("validate", path), str(path), needle)


def test_non_regular_files_are_refused_without_blocking(tmp_path, cli):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(cli("validate", fifo)), daemon=True)
    t.start()
    t.join(10)
    assert done, "validate blocked on a FIFO"
    _exit_2(done[0], "not a regular file")
    if Path("/dev/zero").exists():
        _exit_2(cli("validate", "/dev/zero"), "not a regular file")
    _exit_2(cli("validate", tmp_path), "is a folder")


def test_oversized_file_is_refused(tmp_path, cli):
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write("# " + "x" * (11 * 1024 * 1024) + "\n")
    _exit_2(cli("validate", big), "at most")


def test_unreadable_file(tmp_path, cli):
    p = tmp_path / "locked.yaml"
    p.write_text("name: x\n")
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):  # root reads anything
            pytest.skip("running as root")
        _exit_2(cli("validate", p), "cannot read")
    finally:
        p.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_loads_json_limits():
    for text, needle in [("[" * 100_000, "deeper"), ('{"a": NaN}', "finite"),
                         ('{"a": 1e999}', "finite"), ('{"a": ' + "1" * 400 + "}", "digits")]:
        with pytest.raises(InputError, match=needle):
            loads_json(text)
    assert loads_json('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}


def test_merge_keys_still_work():
    data = loads_yaml("base: &b {x: 1}\nother: {<<: *b, y: 2}\n")
    assert data["other"] == {"x": 1, "y": 2}


SHIPPED = sorted(p for p in (Path(__file__).resolve().parents[1] / "scenarios").rglob("*.yaml")
                 if "sweeps" not in p.parts)


def test_every_shipped_scenario_loads():
    assert len(SHIPPED) >= 25  # the scenario folders are found
    for p in SHIPPED:
        assert load_scenario(p).name


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_scenario_validates(path, cli):
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.output


# ---- damaged profile CSVs -----------------------------------------------------------------------


def _profile(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "prof"
    folder.mkdir(exist_ok=True)
    (folder / "gpt2.csv").write_text(text)
    return folder


HEADER = "op,batch,seq,rank,targets,dtype,median_s\n"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("block_fwd,1,32,0,,fp32,abc\n", "column 'median_s'"),
        ("block_fwd,1,32,0,,fp32,nan\n", "column 'median_s'"),
        ("block_fwd,1,32,0,,fp32,-1\n", "column 'median_s'"),
        ("block_fwd,x,32,0,,fp32,0.1\n", "column 'batch'"),
        ("block_fwd,1,32,0,,fp64,0.1\n", "column 'dtype'"),
        ("nope,1,32,0,,fp32,0.1\n", "column 'op'"),
        ("block_fwd,1,32\n", "row too short"),
        ("block_fwd,1,32,0,,fp32,0.1,9,9\n", "more fields"),
        ("", "no data rows"),
        ("block_fwd,1,3\x002,0,,fp32,0.1\n", "column 'seq'"),
        ("block_fwd,1,32,0,,fp32,0.1\n\"unterminated\n", "line 3: column 'op'"),
    ],
)
def test_damaged_profile_csv(tiny, tmp_path, write_yaml, cli, body, needle):
    folder = _profile(tmp_path, HEADER + body)
    tiny["costs"] = {"model": "profiled", "profile_dir": str(folder)}
    scenario = write_yaml(tiny)
    _exit_2(cli("validate", scenario), "gpt2.csv", needle)
    _exit_2(cli("run", scenario, "--out", tmp_path / "o", "-q"), "gpt2.csv", needle)


def test_binary_profile_csv(tiny, tmp_path, write_yaml, cli):
    folder = _profile(tmp_path, "")
    (folder / "gpt2.csv").write_bytes(b"\xff\xfe\x00garbage")
    tiny["costs"] = {"model": "profiled", "profile_dir": str(folder)}
    _exit_2(cli("validate", write_yaml(tiny)), "gpt2.csv")


def test_summary_is_strict_json(tiny, write_yaml, cli, tmp_path):
    tiny["variability"] = {"compute": "lognormal", "sigma": 2.0}
    tiny["training"]["rounds"] = 3
    out = tmp_path / "run"
    assert cli("run", write_yaml(tiny), "--out", out, "-q").exit_code == 0

    def refuse(name: str) -> None:
        raise ValueError(name)

    json.loads((out / "summary.json").read_text(), parse_constant=refuse)


def test_schedule_refuses_deep_and_non_finite_instance_json(tmp_path, cli):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    _exit_2(cli("schedule", deep), "nesting deeper than")
    huge = tmp_path / "huge.json"
    huge.write_text('{"jobs": [{"id": "a", "release_s": ' + "9" * 5000 + ', "server_s": 1}]}')
    _exit_2(cli("schedule", huge), "digits")
