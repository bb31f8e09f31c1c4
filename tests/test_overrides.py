"""``--set KEY=VALUE``: parsing, dotted keys and list indices, validation like the file, exit 2."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfsim.errors import InputError
from sfsim.overrides import apply_overrides, canonical_key, parse_set, split_key


def test_parse_set_types_values_as_yaml():
    got = parse_set(["training.rounds=3", "channel.model=shannon", "fleet.cut=[2, 4]",
                     "server.memory_gb=40.5", "devices[0].cut=null", "name=a=b"])
    assert got == {"training.rounds": 3, "channel.model": "shannon", "fleet.cut": [2, 4],
                   "server.memory_gb": 40.5, "devices[0].cut": None, "name": "a=b"}


@pytest.mark.parametrize("item, key", [
    ("training.rounds", "--set training.rounds"),  # no '='
    ("=3", "--set =3"),
    ("training.rounds=[1, 2", "--set training.rounds"),  # bad YAML
    ("training..rounds=1", "--set training..rounds"),
    ("devices[x].cut=1", "--set devices[x].cut"),
    ("devices.[1]=1", "--set devices.[1]"),
])
def test_parse_set_errors_name_the_key(item, key):
    with pytest.raises(InputError) as e:
        parse_set([item])
    assert e.value.key == key


def test_parse_set_refuses_non_finite_values():
    with pytest.raises(InputError) as e:
        parse_set(["channel.device_tx_power_dbm=.nan"])
    assert e.value.key == "--set channel.device_tx_power_dbm"


def test_split_key():
    assert split_key("devices[1].cut") == ["devices", 1, "cut"]
    assert split_key("devices.1.cut") == ["devices", "1", "cut"]
    assert split_key("a[0][2]") == ["a", 0, 2]
    assert canonical_key("devices.1.cut") == "devices[1].cut"


def test_apply_overrides_sets_nested_keys_and_copies(tiny):
    before = repr(tiny)
    out = apply_overrides(tiny, {"training.rounds": 3, "devices[1].cut": 4, "devices.0.cut": 5,
                                 "scheduler.params.time_limit_s": 5,
                                 "variability.compute": "lognormal"})
    assert repr(tiny) == before  # the input is not touched
    assert out["training"]["rounds"] == 3
    assert [d["cut"] for d in out["devices"]] == [5, 4]
    assert out["scheduler"]["params"] == {"time_limit_s": 5}  # created on the way
    assert out["variability"] == {"compute": "lognormal"}
    # a value that is a mutable object is copied, not shared between runs
    v = {"min": 1, "max": 2}
    out2 = apply_overrides({}, {"a.b": v})
    out2["a"]["b"]["min"] = 9
    assert v["min"] == 1


@pytest.mark.parametrize("key, words", [
    ("devices[2].cut", "index 2 is out of range (devices has 2 items"),
    ("devices.7.cut", "index 7 is out of range"),
    ("training[0]", "training is a mapping, not a list"),
    ("training.rounds.x", "training.rounds is a int"),
    ("devices.first.cut", "devices is a list; expected an index"),
    ("fleet[0]", "fleet is not a list"),
])
def test_apply_overrides_refuses_bad_paths(tiny, key, words):
    with pytest.raises(InputError) as e:
        apply_overrides(tiny, {key: 1})
    assert e.value.key == f"--set {key}"
    assert words in e.value.problem


def test_overridden_scenario_is_validated_like_a_file(tiny):
    import sfsim

    s = sfsim.load_scenario(tiny, overrides={"training.rounds": 4, "devices.1.cut": 3})
    assert s.training.rounds == 4 and s.devices[1].cut == 3
    s = sfsim.load_scenario(tiny, overrides=["training.rounds=5"])
    assert s.training.rounds == 5
    with pytest.raises(InputError) as e:
        sfsim.load_scenario(tiny, overrides={"training.rounds": 0})
    assert e.value.key == "training.rounds" and "--set training.rounds=0" in e.value.problem
    with pytest.raises(InputError) as e:
        sfsim.load_scenario(tiny, overrides={"devices.1.cut": 40})
    assert e.value.key == "devices[1].cut" and "--set devices.1.cut" in e.value.problem
    with pytest.raises(InputError) as e:
        sfsim.load_scenario(tiny, overrides={"training.roundz": 2})
    assert e.value.key == "training.roundz" and "unknown key" in e.value.problem


def test_cli_set_on_run_and_validate(cli, tiny, write_yaml, tmp_path):
    p = write_yaml(tiny)
    r = cli("validate", p, "--set", "training.rounds=2", "--set", "devices[0].cut=3")
    assert r.exit_code == 0, r.output
    r = cli("run", p, "-q", "--out", tmp_path / "r", "--set", "training.rounds=2",
            "--set", "devices[0].cut=3")
    assert r.exit_code == 0, r.output
    import json

    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["rounds"] == 2 and s["devices"]["a"]["cut"] == 3
    assert "cut: 3" in (tmp_path / "r" / "scenario.resolved.yaml").read_text()


@pytest.mark.parametrize("cmd", ["validate", "run", "compare"])
@pytest.mark.parametrize("item, starts", [
    ("training.rounds=-1", "training.rounds: "),
    ("devices[5].cut=2", "--set devices[5].cut: index 5 is out of range"),
    ("training.rounds", "--set training.rounds: expected KEY=VALUE"),
    ("scheduler.name=[", "--set scheduler.name: value '[' is not valid YAML"),
])
def test_cli_set_errors_exit_2_naming_the_key(cli, tiny, write_yaml, tmp_path, cmd, item,
                                              starts):
    p = write_yaml(tiny)
    extra = ["--out", str(tmp_path / "o")] if cmd == "run" else []
    r = cli(cmd, p, "--set", item, *extra)
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and starts in line, line
    assert "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_index_into_an_empty_list():
    with pytest.raises(InputError, match="it is empty"):
        apply_overrides({"devices": []}, {"devices[0].cut": 2})


_names = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
_values = st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab", max_size=3)


@given(st.lists(st.tuples(_names, st.integers(0, 2)), min_size=1, max_size=4), _values,
       st.data())
def test_set_then_read_back_and_nothing_else_changes(path, value, data):
    """Build data holding a path of mappings and lists, set its end, read it back."""
    root: dict = {"other": {"keep": 1}}
    node: Any = root
    key = ""
    for i, (name, n_items) in enumerate(path):
        last = i == len(path) - 1
        use_list = n_items > 0 and not last
        key += ("." if key else "") + name
        if use_list:
            idx = data.draw(st.integers(0, n_items - 1))
            items = [{"#": j} for j in range(n_items)]  # "#" is never a generated name
            node[name] = items
            key += data.draw(st.sampled_from([f"[{idx}]", f".{idx}"]))
            node = items[idx]
        elif not last:
            node = node.setdefault(name, {})
    before = copy.deepcopy(root)
    out = apply_overrides(root, {key: value})
    assert root == before  # the input is untouched
    got: Any = out
    for p in split_key(key):
        got = got[int(p)] if isinstance(got, list) else got[p]
    assert got == value
    assert out["other"] == {"keep": 1}
