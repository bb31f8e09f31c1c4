"""Reading user files safely: bounded YAML and JSON, strict scalars, errors that name the place.

Everything sfsim reads from a user (scenario YAML, scheduler instance JSON) goes through here, so
one set of limits holds everywhere (see docs/limits.md):

* only a regular file is read (a folder, FIFO, socket or device such as ``/dev/zero`` is refused
  from its ``stat``, without opening it), and at most :data:`MAX_FILE_BYTES`;
* nesting deeper than :data:`MAX_DEPTH` is refused while parsing (no RecursionError);
* aliases may not expand the document past :data:`MAX_NODES` values (a "billion laughs" alias
  bomb fails at once, before any value is built);
* a mapping may not repeat a key (YAML would silently keep the last one);
* integers have at most :data:`MAX_INT_DIGITS` digits; NaN and infinities are refused, naming the
  key path where they sit;
* YAML-only types that have no place in a scenario (``!!binary``, ``!!set``, ``!!omap``) are
  refused; timestamps stay plain strings.

Errors are :class:`sfsim.errors.InputError` naming the file and the key path (or the line).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sfsim.errors import InputError

MAX_FILE_BYTES = 10 * 1024 * 1024  # 10 MiB
MAX_DEPTH = 64  # nested mappings / sequences
MAX_NODES = 200_000  # values in the document once aliases are expanded
MAX_INT_DIGITS = 30  # |int| < 1e30 at the YAML layer; fields set tighter bounds


class _Refused(Exception):
    """Raised inside the loader; carries the problem and where it is."""

    def __init__(self, problem: str, node: Node | None = None, key: str | None = None):
        self.problem = problem
        self.key = key
        if key is None and node is not None:
            m = node.start_mark
            self.key = f"line {m.line + 1}, column {m.column + 1}"
        super().__init__(problem)


def _where(node: Node) -> str:
    m = node.start_mark
    return f"line {m.line + 1}, column {m.column + 1}"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with a depth bound while composing and checks while constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                m = event.start_mark
                raise _Refused(
                    f"nesting deeper than {MAX_DEPTH} levels",
                    key=f"line {m.line + 1}, column {m.column + 1}",
                )
            node = super().compose_node(parent, index)
            assert node is not None
            return node
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, ScalarNode):
                    raise _Refused("a mapping key must be a plain scalar", key_node)
                k = (key_node.tag, key_node.value)
                if k in seen:
                    raise _Refused(
                        f"duplicate key {key_node.value!r} (first at {_where(seen[k])})", key_node
                    )
                seen[k] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"integer with {digits} digits (at most {MAX_INT_DIGITS})", node)
        return super().construct_yaml_int(node)

    def _timestamp_as_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def _refuse_tag(self, node: Node) -> Any:
        raise _Refused(f"YAML tag {node.tag} is not allowed in sfsim files", node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _BoundedLoader._timestamp_as_text
)
for _tag in ("binary", "set", "omap", "pairs"):
    _BoundedLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _BoundedLoader._refuse_tag)


def _expanded_size(root: Node) -> int:
    """Number of values the node graph stands for once every alias is expanded (bounded)."""
    memo: dict[int, int] = {}
    # iterative post-order: a node's size is 1 + its children's sizes (shared nodes count again)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in memo:
            continue
        if isinstance(node, ScalarNode):
            memo[id(node)] = 1
            continue
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:  # pragma: no cover - composer yields only these three
            memo[id(node)] = 1
            continue
        if done:
            total = 1 + sum(memo[id(c)] for c in children)
            memo[id(node)] = min(total, MAX_NODES + 1)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in memo)
    return memo[id(root)]


def check_finite(data: Any, path: str = "") -> None:
    """Refuse NaN/inf floats and oversized ints anywhere in ``data``, naming the key path."""
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(f"must be a finite number, not {value}", key=where or None)
        elif isinstance(value, int):
            if abs(value) >= 10**MAX_INT_DIGITS:
                raise InputError("integer too large", key=where or None)
        elif isinstance(value, dict):
            for k, v in value.items():
                stack.append((v, f"{where}.{k}" if where else str(k)))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                stack.append((v, f"{where}[{i}]"))


def read_user_bytes(path: str | Path, *, what: str = "file",
                    max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; InputError otherwise.

    The file's type is taken from ``stat`` before it is opened, so a FIFO or a device never
    blocks and never streams endlessly.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError("no such file", file=p) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=p) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a folder, not a {what}", file=p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is not a regular file (a pipe, socket or device); need a {what}", file=p)
    if st.st_size > max_bytes:
        raise InputError(f"is {st.st_size} bytes; a {what} may be at most {max_bytes} bytes",
                         file=p)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=p) from None
    if len(raw) > max_bytes:
        raise InputError(f"a {what} may be at most {max_bytes} bytes", file=p)
    return raw


def read_user_file(path: str | Path, *, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most MAX_FILE_BYTES (`read_user_bytes`)."""
    p = Path(path)
    raw = read_user_bytes(p, what=what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=p) from None


def loads_yaml(text: str, *, file: str | Path = "<yaml>") -> Any:
    """Parse YAML text within the limits above; InputError naming the file and the place."""
    if len(text) > MAX_FILE_BYTES:
        raise InputError(f"YAML text longer than {MAX_FILE_BYTES} characters", file=file)
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise _Refused(
                f"the document expands to more than {MAX_NODES} values "
                "(aliases that multiply, a 'billion laughs' pattern?)",
                key="YAML",
            )
        data = loader.construct_document(node)
    except _Refused as exc:
        raise InputError(exc.problem, file=file, key=exc.key) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        kind = "YAML error" if isinstance(exc, ConstructorError) else "YAML syntax error"
        raise InputError(f"{kind}: {problem}", file=file, key=where) from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. an unhashable key
        raise InputError(f"YAML error: {exc}", file=file) from None
    finally:
        loader.dispose()
    try:
        check_finite(data)
    except InputError as exc:
        exc.file = str(file)
        exc.args = (exc.message,)
        raise
    return data


def load_yaml(path: str | Path, *, what: str = "YAML file") -> Any:
    """Read and parse a YAML file within the limits; InputError naming the file otherwise."""
    return loads_yaml(read_user_file(path, what=what), file=path)


def _json_depth_ok(text: str) -> int | None:
    """Position where bracket nesting first exceeds MAX_DEPTH (outside strings), else None."""
    depth, in_str, esc = 0, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return i
        elif ch in "]}":
            depth -= 1
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def loads_json(text: str, *, file: str | Path = "<json>", finite: bool = True) -> Any:
    """Parse JSON within the same limits (depth, size, no NaN/Infinity, no huge integers).

    ``finite=False`` lets NaN / Infinity through as floats, for a caller that checks every
    number itself with its own messages.
    """
    if len(text) > MAX_FILE_BYTES:
        raise InputError(f"JSON text longer than {MAX_FILE_BYTES} characters", file=file)
    pos = _json_depth_ok(text)
    if pos is not None:
        raise InputError(f"nesting deeper than {MAX_DEPTH} levels (at character {pos})", file=file)

    def parse_int(s: str) -> int:
        if sum(ch.isdigit() for ch in s) > MAX_INT_DIGITS:
            raise ValueError(f"integer with more than {MAX_INT_DIGITS} digits")
        return int(s)

    try:
        data = json.loads(text, parse_constant=_no_constant if finite else float,
                          parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                         file=file) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"JSON error: {exc}", file=file) from None
    if finite:
        try:
            check_finite(data)  # floats like 1e999 parse to inf
        except InputError as exc:
            exc.file = str(file)
            exc.args = (exc.message,)
            raise
    return data


def load_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """Read and parse a JSON file within the limits; InputError naming the file otherwise."""
    return loads_json(read_user_file(path, what=what), file=path)
