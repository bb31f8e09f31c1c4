"""Fuzzing the input boundary: any scenario file gives exit 0 or 2, never a traceback.

Two generators, both seeded from the tiny scenario of conftest:

* schema mutations: set any key (known or not) to an awkward value (NaN, inf, huge or tiny
  numbers, booleans, strings, lists, mappings, None), or drop it;
* raw YAML mutations: delete or duplicate lines, swap a value for a YAML token (``.nan``,
  ``yes``, ``'3'``, an undefined alias, a tag...), nest deeply, add an alias bomb, break the
  indentation, truncate the text, write bytes that are not UTF-8.

Each input goes through ``sfsim validate`` in process: the exit status is 0 or 2, an error is one
line starting ``error:``, and it takes under a time bound. An input that validates is then run
(rounds and local iterations cut to at most 2): exit 0 or 2, and summary.json is strict JSON
(no NaN or Infinity).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sfsim.cli import app
from sfsim.run import resolve
from sfsim.scenario import dump_scenario, load_scenario, parse_scenario

from .conftest import TINY

TIME_BOUND_S = 20.0  # one validate (with its dry round) or one short run
_runner = CliRunner()
_counter = itertools.count()


def _leaf_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        out = [prefix] if prefix else []
        for k, v in data.items():
            out += _leaf_paths(v, (*prefix, k))
        return out
    if isinstance(data, list):
        out = [prefix]
        for i, v in enumerate(data):
            out += _leaf_paths(v, (*prefix, i))
        return out
    return [prefix]


_FULL = yaml.safe_load(dump_scenario(parse_scenario(TINY)))
_EXTRA = {
    "fleet": {"count": 3, "mix": {"dev-fast": 1, "dev-slow": 2}, "cut": [1, 2],
              "samples": {"min": 10, "max": 100}, "uplink_mbps": {"min": 5, "max": 50},
              "batch_size": [1, 2]},
    "limits": {"max_device_iterations": 1000},
}
PATHS = sorted(set(_leaf_paths(_FULL)) | set(_leaf_paths(_EXTRA)), key=str)
SHANNON = {"model": "shannon", "distance_m": 200, "shadowing_std_db": 4, "fading": "rayleigh",
           "coherence_ms": 5, "bandwidth_mhz": 10}

awkward = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, -1, 64, 10**6, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-320, 1e-9, 1e308, -0.0, 0.4, 1e12, float("nan"), float("inf")]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.sampled_from(["", "server", "yes", "3", "1e309", "fifo", "carlier", "milp", "shannon",
                     "lognormal", "max_fit", "balanced", "gpt2", "a/../b"]),
    st.lists(st.integers(min_value=-2, max_value=20), max_size=3),
    st.dictionaries(st.sampled_from(["min", "max", "x"]), st.floats(-1, 1e6), max_size=2),
)


def _set_path(d: Any, path: tuple[Any, ...], value: Any, drop: bool) -> None:
    cur = d
    for k in path[:-1]:
        if isinstance(cur, dict):
            cur = cur.setdefault(k, {})
            if not isinstance(cur, dict | list):
                return
        elif isinstance(cur, list) and isinstance(k, int) and k < len(cur):
            cur = cur[k]
        else:
            return
    last = path[-1]
    if isinstance(cur, dict):
        if drop:
            cur.pop(last, None)
        else:
            cur[last] = value
    elif isinstance(cur, list) and isinstance(last, int) and last < len(cur):
        if drop:
            del cur[last]
        else:
            cur[last] = value


def _get_path(d: Any, path: tuple[Any, ...]) -> Any:
    cur = d
    for k in path:
        in_dict = isinstance(cur, dict) and k in cur
        in_list = isinstance(cur, list) and isinstance(k, int) and k < len(cur)
        if not (in_dict or in_list):
            return None
        cur = cur[k]
    return cur


def _nearby(x: float) -> st.SearchStrategy[Any]:
    """A number near ``x``: scaled, shifted, of the other numeric type, or an edge value."""
    factor = st.sampled_from([0.0, 1e-12, 1e-3, 0.5, 1.0, 1.5, 2.0, 10.0, 1e3, 1e12, -1.0])
    scaled = factor.map(lambda f: x * f)
    as_int = scaled.map(lambda v: int(v) if abs(v) < 1e18 else v)
    return st.one_of(scaled, as_int, st.sampled_from([0, 1, 2, -1]))


@st.composite
def schema_mutations(draw: st.DrawFn) -> str:
    d = copy.deepcopy(TINY)
    if draw(st.booleans()):
        d["channel"] = dict(SHANNON)
    if draw(st.booleans()):
        d["fleet"] = copy.deepcopy(_EXTRA["fleet"])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        old = _get_path(d, path)
        if isinstance(old, int | float) and not isinstance(old, bool) and draw(st.booleans()):
            value = draw(_nearby(old))  # mostly plausible: these reach `run`
        else:
            value = draw(awkward)
        _set_path(d, path, value, drop=draw(st.integers(0, 6)) == 6)
    if draw(st.integers(0, 5)) == 5:
        d[draw(st.sampled_from(["extra", "training"]))] = {"unknown_key": 1}
    return yaml.safe_dump(d, allow_unicode=True)


TOKENS = [".nan", ".inf", "-.inf", "1e309", "1.0e400", "'3'", "yes", "true", "null", "~",
          "9" * 60, "[]", "{}", "*nope", "&x 1", "!!binary aGk=", "!!set {a}", "2020-01-01",
          "0x1F", "0o17", "-0", "1_000", "server", "''", '"\\0"', "[1, [2, [3]]]"]
BOMB = ["  bomb_a: &ba [x, x, x, x, x, x, x, x, x]"] + [
    f"  bomb_{c}: &b{c} [{', '.join([f'*b{p}'] * 9)}]"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
]


@st.composite
def raw_mutations(draw: st.DrawFn) -> bytes:
    base = copy.deepcopy(TINY)
    if draw(st.booleans()):
        base["channel"] = dict(SHANNON)
    lines = yaml.safe_dump(base, sort_keys=draw(st.booleans())).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.integers(0, 7))
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, lines[i])  # duplicate key or list item
        elif kind == 2 and ":" in lines[i]:
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {draw(st.sampled_from(TOKENS))}"
        elif kind == 3 and ":" in lines[i]:
            n = draw(st.sampled_from([2, 40, 70, 500, 5000]))
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {'[' * n}1{']' * n}"
        elif kind == 4:
            lines = [ln for ln in lines if not ln.startswith("scheduler:")]
            lines += ["scheduler:", "  name: fifo", "  params:"] + ["  " + b for b in BOMB]
        elif kind == 5:
            lines[i] = ("  " + lines[i]) if draw(st.booleans()) else lines[i].lstrip()
        elif kind == 6:
            lines = lines[:i]
        else:
            lines.insert(i, lines[i].split(":", 1)[0] + ": " + "1" * draw(st.integers(1, 3000)))
    text = "\n".join(lines) + "\n"
    raw = text.encode()
    if draw(st.integers(0, 9)) == 9:
        raw = raw[: len(raw) // 2] + b"\xff\xfe" + raw[len(raw) // 2 :]
    return raw


def _strict_json(path: Path) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _invoke(*args: str) -> Any:
    t0 = time.perf_counter()
    res = _runner.invoke(app, list(args), catch_exceptions=True)
    elapsed = time.perf_counter() - t0
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{args[0]} raised {res.exception!r}\n{res.output}") from (
            res.exception
        )
    assert "Traceback" not in res.output, res.output
    assert elapsed < TIME_BOUND_S, f"{args[0]} took {elapsed:.1f} s"
    return res


def _check_file(path: Path, workdir: Path) -> None:
    res = _invoke("validate", str(path))
    assert res.exit_code in (0, 2), (res.exit_code, res.output)
    event(f"validate exit {res.exit_code}")
    if res.exit_code == 2:
        assert res.output.startswith("error: "), res.output
        event(res.output.split(": ")[-1][:40].strip())
        return
    # it validates: a short run of it must not fail on input, nor write non-finite numbers
    s = resolve(load_scenario(path))
    t = s.training.model_copy(
        update={"rounds": min(s.training.rounds, 2),
                "local_iterations": min(s.training.local_iterations, 2)}
    )
    small = workdir / f"small-{next(_counter)}.yaml"
    small.write_text(dump_scenario(s.model_copy(update={"training": t})))
    out = workdir / f"run-{next(_counter)}"
    res = _invoke("run", str(small), "--out", str(out), "-q")
    assert res.exit_code in (0, 2), (res.exit_code, res.output)
    event(f"run exit {res.exit_code}")
    summary = _strict_json(out / "summary.json")
    if res.exit_code == 0:
        assert summary.get("status", "ok") == "ok", summary


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=schema_mutations())
def test_fuzz_schema(workdir: Path, text: str) -> None:
    path = workdir / f"schema-{next(_counter)}.yaml"
    path.write_text(text)
    _check_file(path, workdir)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_mutations())
def test_fuzz_raw_yaml(workdir: Path, raw: bytes) -> None:
    path = workdir / f"raw-{next(_counter)}.yaml"
    path.write_bytes(raw)
    _check_file(path, workdir)
