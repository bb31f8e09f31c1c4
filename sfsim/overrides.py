"""Command-line overrides: ``--set KEY=VALUE`` applied to a scenario's raw YAML data.

A key is a dotted path into the scenario, with list items addressed as ``devices[1]`` or
``devices.1``; a value is parsed as YAML, so ``--set training.rounds=3`` sets an integer,
``--set channel.model=shannon`` a string and ``--set fleet.cut=[2,4]`` a list::

    sfsim run s.yaml --set training.rounds=3 --set devices[1].cut=4 \\
        --set scheduler.params.time_limit_s=5

Overrides change the data *before* validation, so an overridden scenario is checked exactly like
a file that had the value written in it. Missing mappings on the way are created
(``scheduler.params.x=1`` works on a scenario without ``params``); an index past the end of a
list, or an index into something that is not a list, is an error naming ``--set KEY``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from sfsim.errors import InputError

_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]|(\.)")


def _flag(key: str) -> str:
    return f"--set {key}"


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (values parsed as YAML; later wins)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got {item!r}", key=_flag(key or item))
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"value {text!r} is not valid YAML: {problem}",
                             key=_flag(key)) from None
        _check_finite(value, key)
        split_key(key)  # reject a malformed key now, before any file is read
        out[key] = value
    return out


def _check_finite(value: Any, key: str) -> None:
    """NaN, infinities and huge integers are refused here as they are in a scenario file."""
    try:
        from sfsim.yamlio import check_finite
    except ImportError:  # pragma: no cover - older tree without the bounded reader
        return
    try:
        check_finite(value)
    except InputError as exc:
        raise InputError(f"value {exc.problem}", key=_flag(key)) from None


def split_key(key: str) -> list[str | int]:
    """``"devices[1].cut"`` -> ``["devices", 1, "cut"]``; ``"devices.1.cut"`` -> same with "1".

    A bracketed index is an ``int``; a dotted number stays a ``str`` and is read as an index
    only when it meets a list (a mapping may have a key ``"1"``).
    """
    parts: list[str | int] = []
    pos, expect_name = 0, True
    while pos < len(key):
        m = _PART.match(key, pos)
        if m is None:
            raise InputError(f"cannot read the key at {key[pos:]!r}", key=_flag(key))
        name, index, dot = m.groups()
        if dot is not None:
            if expect_name:
                raise InputError("empty name in the key (two dots, or a leading dot)",
                                 key=_flag(key))
            expect_name = True
        elif index is not None:
            if expect_name:
                raise InputError("an index [N] must follow a name", key=_flag(key))
            parts.append(int(index))
            expect_name = False
        else:
            if not expect_name:
                raise InputError(f"missing '.' before {name!r}", key=_flag(key))
            parts.append(name.strip())
            expect_name = False
        pos = m.end()
    if not parts or expect_name:
        raise InputError("the key is empty or ends with '.'", key=_flag(key))
    return parts


def _where(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out or "(top level)"


def _index(container: list[Any], part: str | int, done: list[str | int], key: str) -> int:
    if isinstance(part, str):
        if not re.fullmatch(r"-?\d+", part):
            raise InputError(f"{_where(done)} is a list; expected an index, got {part!r}",
                             key=_flag(key))
        part = int(part)
    n = len(container)
    if not 0 <= part < n:
        has = f"indices 0..{n - 1}" if n else "it is empty"
        raise InputError(
            f"index {part} is out of range ({_where(done)} has {n} item{'' if n == 1 else 's'}; "
            f"{has}; --set changes items, it does not add them)",
            key=_flag(key),
        )
    return part


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    parts = split_key(key)
    node: Any = data
    done: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _index(node, part, done, key)
            if last:
                node[idx] = copy.deepcopy(value)
                return
            node = node[idx]
        elif isinstance(node, dict):
            if isinstance(part, int):
                raise InputError(f"{_where(done)} is a mapping, not a list; [{part}] cannot index "
                                 "it", key=_flag(key))
            if last:
                node[part] = copy.deepcopy(value)
                return
            if node.get(part) is None:  # missing (or null) on the way: create the mapping
                nxt = parts[i + 1]
                if isinstance(nxt, int):
                    raise InputError(f"{_where([*done, part])} is not a list; [{nxt}] cannot "
                                     "index it", key=_flag(key))
                node[part] = {}
            node = node[part]
        else:
            raise InputError(
                f"{_where(done)} is a {type(node).__name__} ({node!r}), not a mapping or a list",
                key=_flag(key),
            )
        done.append(part)


def apply_overrides(data: Any, overrides: Mapping[str, Any] | None) -> Any:
    """A deep copy of raw scenario data with each dotted key set to its value (in order)."""
    out = copy.deepcopy(data)
    if not overrides:
        return out
    if out is None:
        out = {}
    if not isinstance(out, dict):
        first = next(iter(overrides))
        raise InputError(f"the scenario's top level is a {type(out).__name__}, not a mapping",
                         key=_flag(first))
    for key, value in overrides.items():
        _set(out, key, value)
    return out


def canonical_key(key: str) -> str:
    """The key as validation messages spell it: ``devices.1.cut`` -> ``devices[1].cut``."""
    parts: list[str | int] = [int(p) if isinstance(p, str) and p.isdigit() else p
                              for p in split_key(key)]
    return _where(parts)


def coerce_overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    """Overrides given as a mapping of dotted keys, or as ``KEY=VALUE`` strings."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        for k in overrides:
            if not isinstance(k, str):
                raise InputError(f"override keys must be strings, got {k!r}", key="overrides")
            split_key(k)
        return dict(overrides)
    if isinstance(overrides, str):
        return parse_set([overrides])
    return parse_set(list(overrides))
