"""``sfsim traces import-fedscale``: FedScale's device traces as sfsim trace files.

FedScale (github.com/SymbioticLab/FedScale, ``benchmark/dataset/data/device_info/README.md``)
ships two pickled dictionaries keyed by client id:

* ``client_device_capacity``: ``{'computation': ms per sample, 'communication': kbit/s}``;
* ``client_behave_trace``: ``{'duration', 'inactive': [...], 'finish_time', 'active': [...],
  'model'}``; FedScale counts a client online while ``active[i] <= t mod finish_time <=
  inactive[i]`` (``fedscale/cloud/internal/client_metadata.py``, ``is_active``).

The mapping (docs/traces.md, "FedScale"): device ``i`` of ``--devices N`` is ``PREFIX<i>``, with
``i`` zero-padded as a generated fleet's ids are (``fleet.count: N``, ``fleet.id_prefix``), and
takes the i-th sampled capacity client and the i-th sampled behaviour client (sampled without
replacement with ``--seed``; FedScale pairs the two files independently too).

* ``computation`` → ``speed = reference_ms / computation`` (``--reference-ms``, default the median
  over the sampled clients, so the median client runs at the scenario processor's nominal speed);
* ``communication`` → ``uplink_mbps = downlink_mbps = communication · 1024 / 10⁶`` (FedScale
  divides kbits of ``bytes / 1024 · 8`` by it, one rate for pull and push);
* ``active`` / ``inactive`` → availability windows, ``finish_time`` → ``period_s`` (windows of
  zero length are dropped, overlapping or touching ones merged; the counts are printed).

The pickles are read with a restricted unpickler that builds only plain dicts, lists, tuples,
numbers, strings, booleans and None: a pickle that names any class or function (the way a
malicious pickle runs code) is refused before anything is built from it.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from sfsim.errors import InputError
from sfsim.yamlio import read_user_bytes

MAX_PICKLE_BYTES = 512 * 1024 * 1024
MAX_IMPORT_DEVICES = 10_000  # the scenario's device limit (sfsim.scenario.MAX_DEVICES)


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle encodes natively (dict, list, tuple, str, int, float, bool, None).

    Every class or function a pickle may name goes through ``find_class``; it refuses them all,
    so no constructor, ``__reduce__`` payload or ``__setstate__`` ever runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"the pickle asks for {module}.{name}; only plain dicts, lists, numbers and strings "
            "are read (a pickle that names a class or function may run code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_plain_pickle(path: str | Path) -> Any:
    """Unpickle a regular file of at most MAX_PICKLE_BYTES, allowing builtins only."""
    p = Path(path)
    raw = read_user_bytes(p, what="pickle file", max_bytes=MAX_PICKLE_BYTES)
    try:
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"refused: {exc}", file=p) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            RecursionError, OverflowError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable pickle ({type(exc).__name__}: {exc})",
                         file=p) from None


def _number(v: Any, path: Path, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(f"must be a number, not {type(v).__name__}", file=path, key=key)
    x = float(v)
    if not math.isfinite(x):
        raise InputError(f"{v!r} is not a finite number", file=path, key=key)
    return x


def _entries(data: Any, path: Path, need: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    if not isinstance(data, dict) or not data:
        raise InputError("expected a non-empty dict of client id -> entry", file=path)
    for cid, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(f"an entry must be a dict, not {type(entry).__name__}", file=path,
                             key=f"client {cid!r}")
        for k in need:
            if k not in entry:
                raise InputError(f"missing {k!r}", file=path, key=f"client {cid!r}")
    return data


def _sample(keys: list[Any], n: int | None, seed: int, path: Path) -> list[Any]:
    import numpy as np

    try:
        keys = sorted(keys)
    except TypeError:
        keys = sorted(keys, key=repr)
    if n is None:
        if len(keys) > MAX_IMPORT_DEVICES:
            raise InputError(f"{len(keys)} clients; pass --devices N (at most "
                             f"{MAX_IMPORT_DEVICES})", file=path)
        return keys
    if n > len(keys):
        raise InputError(f"--devices {n}: the file has only {len(keys)} clients", file=path)
    picks = np.random.default_rng(seed).choice(len(keys), size=n, replace=False)
    return [keys[int(i)] for i in picks]


@dataclass
class Imported:
    """What an import wrote, for the summary line."""

    files: list[Path] = field(default_factory=list)
    devices: int = 0
    reference_ms: float | None = None
    dropped_windows: int = 0
    merged_windows: int = 0


def _windows(entry: dict[str, Any], path: Path, key: str, out: Imported
             ) -> tuple[list[tuple[float, float]], float]:
    active, inactive = entry["active"], entry["inactive"]
    if not isinstance(active, list | tuple) or not isinstance(inactive, list | tuple):
        raise InputError("'active' and 'inactive' must be lists", file=path, key=key)
    if len(active) != len(inactive):
        raise InputError(f"'active' has {len(active)} times, 'inactive' {len(inactive)}",
                         file=path, key=key)
    period = _number(entry["finish_time"], path, f"{key}: finish_time")
    if not 0 < period <= 1e9:
        raise InputError(f"finish_time {period:g} s is not in (0, 1e9]", file=path, key=key)
    windows: list[tuple[float, float]] = []
    last_start = -math.inf
    for i, (a0, b0) in enumerate(zip(active, inactive, strict=True)):
        a = _number(a0, path, f"{key}: active[{i}]")
        b = _number(b0, path, f"{key}: inactive[{i}]")
        if not 0 <= a <= b <= period:
            raise InputError(f"window {i} [{a:g}, {b:g}] is not inside [0, finish_time "
                             f"{period:g}]", file=path, key=key)
        if a < last_start:
            raise InputError(f"active times are not sorted (active[{i}] = {a:g})", file=path,
                             key=key)
        last_start = a
        if b == a:
            out.dropped_windows += 1
        elif windows and a <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(b, windows[-1][1]))
            out.merged_windows += 1
        else:
            windows.append((a, b))
    if not windows:
        raise InputError("no availability window of positive length", file=path, key=key)
    return windows, period


def _device_ids(prefix: str, n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def import_fedscale(capacity: Path | None, behaviour: Path | None, out_dir: Path, *,
                    devices: int | None = None, seed: int = 0,
                    reference_ms: float | None = None, prefix: str = "dev",
                    overwrite: bool = False) -> Imported:
    """Convert FedScale pickles into ``compute.csv``, ``links.csv``, ``availability.csv`` and
    ``clients.csv`` (device -> FedScale client ids) in ``out_dir``; see the module docstring."""
    import pandas as pd

    from sfsim.scenario import _safe_id
    from sfsim.traces import RATE_MAX_MBPS, RATE_MIN_MBPS, SPEED_MAX, SPEED_MIN

    if capacity is None and behaviour is None:
        raise InputError("give --capacity, --behaviour or both", key="import-fedscale")
    if devices is not None and not 1 <= devices <= MAX_IMPORT_DEVICES:
        raise InputError(f"must be 1 .. {MAX_IMPORT_DEVICES}, not {devices}", key="--devices")
    if reference_ms is not None and not (math.isfinite(reference_ms) and 0 < reference_ms
                                         <= 1e9):
        raise InputError(f"must be a time in ms in (0, 1e9], not {reference_ms}",
                         key="--reference-ms")
    try:
        _safe_id(prefix, what="--prefix", max_len=32)
    except ValueError as exc:
        raise InputError(str(exc), key="--prefix") from None
    result = Imported()
    frames: dict[str, pd.DataFrame] = {}
    clients: dict[str, list[Any]] = {}
    n = devices
    if capacity is not None:
        cap = _entries(load_plain_pickle(capacity), capacity, ("computation", "communication"))
        picked = _sample(list(cap), n, seed, capacity)
        n = len(picked)
        comp = [_number(cap[c]["computation"], capacity, f"client {c!r}: computation")
                for c in picked]
        comm = [_number(cap[c]["communication"], capacity, f"client {c!r}: communication")
                for c in picked]
        for c, x in zip(picked, comp, strict=True):
            if not x > 0:
                raise InputError(f"computation must be > 0 ms per sample, not {x:g}",
                                 file=capacity, key=f"client {c!r}")
        ref = reference_ms if reference_ms is not None else float(pd.Series(comp).median())
        result.reference_ms = ref
        ids = _device_ids(prefix, n)
        speed = [ref / x for x in comp]
        mbps = [x * 1024.0 / 1e6 for x in comm]
        for c, s, r in zip(picked, speed, mbps, strict=True):
            if not SPEED_MIN <= s <= SPEED_MAX:
                raise InputError(f"speed {s:.3g} (reference {ref:g} ms / computation) is outside "
                                 f"{SPEED_MIN:g} .. {SPEED_MAX:g}; choose --reference-ms",
                                 file=capacity, key=f"client {c!r}")
            if not RATE_MIN_MBPS <= r <= RATE_MAX_MBPS:
                raise InputError(f"communication {r * 1e6 / 1024:g} kbit/s is {r:.3g} Mbit/s, "
                                 f"outside {RATE_MIN_MBPS:g} .. {RATE_MAX_MBPS:g}",
                                 file=capacity, key=f"client {c!r}")
        zeros = [0.0] * n
        frames["compute.csv"] = pd.DataFrame({"device": ids, "time_s": zeros, "speed": speed})
        frames["links.csv"] = pd.DataFrame({"device": ids, "time_s": zeros,
                                            "uplink_mbps": mbps, "downlink_mbps": mbps})
        clients["capacity_client"] = picked
    if behaviour is not None:
        beh = _entries(load_plain_pickle(behaviour), behaviour,
                       ("active", "inactive", "finish_time"))
        picked_b = _sample(list(beh), n, seed + 1 if capacity is not None else seed, behaviour)
        n = len(picked_b)
        ids = _device_ids(prefix, n)
        rows: dict[str, list[Any]] = {"device": [], "start_s": [], "end_s": [], "period_s": []}
        for dev, c in zip(ids, picked_b, strict=True):
            windows, period = _windows(beh[c], behaviour, f"client {c!r}", result)
            for a, b in windows:
                rows["device"].append(dev)
                rows["start_s"].append(a)
                rows["end_s"].append(b)
                rows["period_s"].append(period)
        frames["availability.csv"] = pd.DataFrame(rows)
        clients["behaviour_client"] = picked_b
    assert n is not None
    frames["clients.csv"] = pd.DataFrame({"device": _device_ids(prefix, n),
                                          **{k: [str(c) for c in v] for k, v in clients.items()}})
    result.devices = n
    result.files = _write_all(frames, out_dir, overwrite)
    return result


def _write_all(frames: dict[str, Any], out_dir: Path, overwrite: bool) -> list[Path]:
    """Write every file to a temporary name, then rename: all files or none are replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("exists and is not a folder", file=out_dir, key="--out")
    targets = [out_dir / name for name in frames]
    taken = [t for t in targets if os.path.lexists(t)]
    if taken and not overwrite:
        raise InputError(f"{taken[0].name} exists; pass --overwrite to replace it",
                         file=out_dir, key="--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    try:
        for (name, frame), target in zip(frames.items(), targets, strict=True):
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
            temps.append((Path(tmp_name), target))
            with os.fdopen(fd, "w", newline="") as fh:
                frame.to_csv(fh, index=False)
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    return targets


def register(app: typer.Typer) -> None:
    """Add ``sfsim traces import-fedscale`` to the command line."""
    from sfsim.cli import user_errors

    traces_app = typer.Typer(help="Trace files: compute speed, link rate, availability.",
                             no_args_is_help=True)
    app.add_typer(traces_app, name="traces")

    @traces_app.command("import-fedscale")
    @user_errors
    def import_cmd(
        out: Annotated[Path, typer.Option("--out", help="folder for the CSV files")],
        capacity: Annotated[Path | None, typer.Option(
            "--capacity", help="FedScale client_device_capacity pickle")] = None,
        behaviour: Annotated[Path | None, typer.Option(
            "--behaviour", help="FedScale client_behave_trace pickle")] = None,
        devices: Annotated[int | None, typer.Option(
            "--devices", help="sample N clients (default: all, at most 10,000)")] = None,
        seed: Annotated[int, typer.Option("--seed", help="seed of the client sample")] = 0,
        reference_ms: Annotated[float | None, typer.Option(
            "--reference-ms", help="ms per sample that maps to speed 1 (default: median)")
        ] = None,
        prefix: Annotated[str, typer.Option(
            "--prefix", help="device id prefix (as fleet.id_prefix)")] = "dev",
        overwrite: Annotated[bool, typer.Option(help="replace existing files")] = False,
    ) -> None:
        """Convert FedScale device traces into sfsim trace CSVs (docs/traces.md)."""
        if seed < 0:
            raise InputError(f"must be >= 0, not {seed}", key="--seed")
        r = import_fedscale(capacity, behaviour, out, devices=devices, seed=seed,
                            reference_ms=reference_ms, prefix=prefix, overwrite=overwrite)
        ref = f"; reference {r.reference_ms:g} ms/sample = speed 1" if r.reference_ms else ""
        windows = (f"; windows: {r.dropped_windows} of zero length dropped, "
                   f"{r.merged_windows} merged") if behaviour is not None else ""
        print(f"{r.devices} devices{ref}{windows}")
        for f in r.files:
            print(f"wrote {f}")
