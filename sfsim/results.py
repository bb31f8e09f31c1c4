"""Results: flat tables from the trace and the memory ledger, a summary, and the run folder.

The trace and the memory events become two pandas DataFrames (one row per span / per event);
everything in ``summary.json`` is derived from them, so a plot or a notebook that reads the
Parquet files sees exactly what the summary reports. A run folder is written to a temporary
sibling and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sfsim import __version__
from sfsim.engine import EVENT_COLUMNS, SERVER, EventLog, MemEvent, MemoryLedger, Span, Trace
from sfsim.engine import MEMORY_COLUMNS as _MEMORY_FIELDS

if TYPE_CHECKING:
    from sfsim.scenario import Scenario
from sfsim.engine import TRACE_COLUMNS as _TRACE_FIELDS
from sfsim.errors import InputError

TRACE_COLUMNS = list(_TRACE_FIELDS)
MEMORY_COLUMNS = list(_MEMORY_FIELDS)
_TRACE_DTYPES = {
    "round": "int64",
    "iteration": "int64",
    "start_s": "float64",
    "end_s": "float64",
    "bytes": "float64",
    "flops": "float64",
}
_MEMORY_DTYPES = {"seq": "int64", "time_s": "float64", "delta_bytes": "float64"}
_EVENT_DTYPES = {"time_s": "float64", "round": "int64", "iteration": "int64", "value": "float64"}


def _frame(columns: dict[str, list[Any]], dtypes: dict[str, str]) -> pd.DataFrame:
    """A DataFrame built column by column: numbers go through NumPy, strings through pandas."""
    data: dict[str, Any] = {}
    for name, values in columns.items():
        dtype = dtypes.get(name)
        data[name] = np.array(values, dtype=dtype) if dtype else values
    return pd.DataFrame(data, columns=list(columns))


def trace_frame(spans: Trace | list[Span]) -> pd.DataFrame:
    """One row per span, in the order the spans were recorded."""
    if not isinstance(spans, Trace):
        cols: dict[str, list[Any]] = {c: [getattr(s, c) for s in spans] for c in TRACE_COLUMNS}
    else:
        cols = spans.columns()
    return _frame(cols, _TRACE_DTYPES)


def memory_frame(events: MemoryLedger | list[MemEvent]) -> pd.DataFrame:
    """One row per allocate / free event, with each owner's running total (``level_bytes``)."""
    if not isinstance(events, MemoryLedger):
        cols: dict[str, list[Any]] = {c: [getattr(e, c) for e in events] for c in MEMORY_COLUMNS}
    else:
        cols = events.columns()
    df = _frame(cols, _MEMORY_DTYPES)
    df["level_bytes"] = df.groupby("owner")["delta_bytes"].cumsum()
    return df


def events_frame(log: EventLog) -> pd.DataFrame:
    """One row per training event (`sfsim.engine.EventLog`), in the order they were logged."""
    return _frame(log.columns(), _EVENT_DTYPES)


def empty_events() -> pd.DataFrame:
    return _frame({c: [] for c in EVENT_COLUMNS}, _EVENT_DTYPES)


def peak_bytes(memory: pd.DataFrame) -> dict[str, float]:
    """Peak total level per owner (events applied in the order they happened)."""
    if memory.empty:
        return {}
    return {str(k): float(v) for k, v in memory.groupby("owner")["level_bytes"].max().items()}


def peak_breakdown(memory: pd.DataFrame, owner: str) -> dict[str, float]:
    """Level per memory kind at the moment ``owner`` reached its peak."""
    m = memory[memory["owner"] == owner]
    if m.empty:
        return {}
    at = m["level_bytes"].idxmax()
    upto = m.loc[:at]
    by_kind = upto.groupby("kind")["delta_bytes"].sum()
    return {str(k): float(v) for k, v in by_kind.items() if abs(v) > 0}


def union_length_s(spans: pd.DataFrame) -> float:
    """Time covered by at least one span (spans may overlap, e.g. a processor-shared server)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(zip(spans["start_s"], spans["end_s"], strict=True)):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def time_by_phase(trace: pd.DataFrame) -> dict[str, float]:
    d = (trace["end_s"] - trace["start_s"]).groupby(trace["phase"]).sum()
    return {str(k): float(v) for k, v in d.items()}


def link_bytes(trace: pd.DataFrame) -> dict[str, dict[str, float]]:
    t = trace[trace["resource"].isin(["uplink", "downlink"])]
    out: dict[str, dict[str, float]] = {}
    sums = t.groupby(["device", "resource"])["bytes"].sum()
    for row in sums.reset_index().itertuples(index=False):
        dev, res, b = str(row[0]), str(row[1]), float(row[2])
        out.setdefault(dev, {"uplink": 0.0, "downlink": 0.0})[res] = b
    return out


_PER_DEVICE_RESOURCES = {
    "compute_s": "device",
    "uplink_s": "uplink",
    "downlink_s": "downlink",
    "queue_wait_s": "server_queue",
    "server_s": "server",
}


def duration_by_device_resource(trace: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Summed span durations per (device, resource), in one pass over the trace.

    Rows are grouped by a stable sort, so each group's durations are summed in trace order by
    NumPy's pairwise sum: the same figures, to the last bit, as summing each device's filtered
    rows one device at a time.
    """
    if trace.empty:
        return {}
    dev_codes, dev_names = pd.factorize(trace["device"])
    res_codes, res_names = pd.factorize(trace["resource"])
    keys = dev_codes.astype(np.int64) * len(res_names) + res_codes
    dur = (trace["end_s"] - trace["start_s"]).to_numpy(dtype=np.float64)
    order = np.argsort(keys, kind="stable")
    keys, dur = keys[order], dur[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(keys)]))
    devices = [str(x) for x in dev_names]  # index once: Arrow-backed indexes are slow per item
    resources = [str(x) for x in res_names]
    out: dict[tuple[str, str], float] = {}
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        d, r = divmod(int(keys[a]), len(res_names))
        out[(devices[d], resources[r])] = float(dur[a:b].sum())
    return out


class RunResult:
    """One run's summary, trace and memory frames, and its resolved scenario.

    The scenario may be given as YAML text or as the resolved ``Scenario``; in the second case
    its YAML is dumped on first use (writing the folder), not while simulating: on a 10,000-device
    fleet the dump costs as much as the whole event loop.
    """

    __slots__ = ("_scenario", "_scenario_yaml", "events", "learning", "memory", "summary",
                 "trace")

    def __init__(
        self,
        summary: dict[str, Any],
        trace: pd.DataFrame,
        memory: pd.DataFrame,
        scenario: str | Scenario,
        events: pd.DataFrame | None = None,
        learning: pd.DataFrame | None = None,
    ) -> None:
        self.summary = summary
        self.trace = trace
        self.memory = memory
        #: training events (`sfsim.engine.EventLog`): aggregations, drops, server updates
        self.events = events if events is not None else empty_events()
        #: the proxy model's learning curve (`sfsim.learning`), when the scenario asked for it
        self.learning = learning
        self._scenario = None if isinstance(scenario, str) else scenario
        self._scenario_yaml = scenario if isinstance(scenario, str) else None

    @property
    def scenario_yaml(self) -> str:
        if self._scenario_yaml is None:
            from sfsim.scenario import dump_scenario

            assert self._scenario is not None
            self._scenario_yaml = dump_scenario(self._scenario)
        return self._scenario_yaml

    def with_trace(self, trace: pd.DataFrame) -> RunResult:
        """The same result with another trace table (the scenario is not dumped for it)."""
        source = self._scenario_yaml if self._scenario_yaml is not None else self._scenario
        assert source is not None
        return RunResult(self.summary, trace, self.memory, source, self.events, self.learning)

    def __repr__(self) -> str:
        return (f"RunResult(status={self.summary.get('status')!r}, spans={len(self.trace)}, "
                f"memory_events={len(self.memory)})")


def summarize(
    trace: pd.DataFrame,
    memory: pd.DataFrame,
    round_bounds: list[tuple[float, float]],
    header: dict[str, Any],
    devices: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    peaks = peak_bytes(memory)
    links = link_bytes(trace)
    busy_s = union_length_s(trace[trace["resource"] == "server"])
    makespan = round_bounds[-1][1] if round_bounds else 0.0
    busy = duration_by_device_resource(trace)
    per_device = {}
    for dev_id, info in devices.items():
        per_device[dev_id] = {
            **info,
            **{
                field: busy.get((dev_id, resource), 0.0)
                for field, resource in _PER_DEVICE_RESOURCES.items()
            },
            "peak_bytes": peaks.get(dev_id, 0.0),
            **links.get(dev_id, {"uplink": 0.0, "downlink": 0.0}),
        }
    return {
        **header,
        "status": "ok",
        "error": None,
        "makespan_s": makespan,
        "round_s": [e - s for s, e in round_bounds],
        "round_bounds_s": [list(b) for b in round_bounds],
        "server_peak_bytes": peaks.get(SERVER, 0.0),
        "server_peak_breakdown": peak_breakdown(memory, SERVER),
        "device_peak_bytes": {d: peaks.get(d, 0.0) for d in devices},
        "uplink_bytes": float(trace.loc[trace["resource"] == "uplink", "bytes"].sum()),
        "downlink_bytes": float(trace.loc[trace["resource"] == "downlink", "bytes"].sum()),
        "server_busy_s": busy_s,
        "server_utilisation": busy_s / makespan if makespan > 0 else 0.0,
        "time_by_phase_s": time_by_phase(trace),
        "devices": per_device,
    }


# ---- the run folder -----------------------------------------------------------------------------
#
# Semantics (the safety rules of a run folder):
#
# * Marker: every folder written here holds ``.sfsim-run`` (JSON: format, sfsim version, time).
#   ``overwrite`` replaces only a folder with that marker; a folder without it, a file, a link or
#   a special file at ``out`` is refused with an InputError (exit status 2).
# * Atomic: the folder is built in a hidden temporary sibling ``.sfsim-tmp-<h>-<pid>-<rand>``
#   and renamed into place. With ``overwrite``, the old folder is first renamed into a hidden
#   ``.sfsim-old-<h>-<pid>-<rand>/run`` (the file ``target`` there holds its name), the new one
#   renamed in, and only then the old one deleted.
# * Failed runs: a result whose summary status is not ``ok`` never replaces a successful folder:
#   it is written to ``out`` when nothing is there (or, with ``overwrite``, when the folder there
#   is itself a failed run), else to the first free ``OUT.failed-<n>`` (n = 1, 2, ...).
# * Lock: writers of ``out`` hold an exclusive ``fcntl.flock`` on the sibling file
#   ``.sfsim-lock-<h>`` (``<h>``: 16 hex digits of the SHA-256 of the folder name). A second
#   writer does not wait: it gets :class:`RunFolderBusy` (exit status 2). ``claim_run_folder``
#   takes the lock for a whole run (before simulating), so the loser of a race has computed
#   nothing and the winner's folder is whole.
# * Stale temporaries (a writer killed with ``kill -9``): each write first removes the hidden
#   temporaries of its parent folder whose lock nobody holds (a temporary exists only while its
#   writer holds the lock); an ``old`` copy whose folder is missing is renamed back, not deleted.
# * Permissions: folders get ``0o777 & ~umask`` (``mkdtemp`` alone would give 0700).

MARKER = ".sfsim-run"
MARKER_FORMAT = 1
_TMP, _OLD, _LOCK = ".sfsim-tmp-", ".sfsim-old-", ".sfsim-lock-"
_STALE = re.compile(r"^\.sfsim-(tmp|old)-([0-9a-f]{16})-\d+-")
_NAME_MAX = 255  # bytes in one path component (Linux, macOS)
_held: dict[str, tuple[int, int, int]] = {}  # lock path -> (fd, owning thread, depth)
_held_guard = threading.Lock()


class RunFolderBusy(InputError):
    """Another writer holds the run folder's lock."""


class RunFolderExists(InputError):
    """The run folder exists and may not be replaced."""


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _lock_path(out: Path) -> Path:
    return out.parent / f"{_LOCK}{_name_hash(out.name)}"


def _lock_file(path: Path, shown: Path) -> bool:
    """Take the exclusive lock at ``path``; False when another writer holds it.

    Re-entrant within one thread. The lock file is removed on release; a lock taken on a file
    that was unlinked meanwhile is retried, so two writers never hold two different files.
    """
    key = str(path)
    with _held_guard:
        if key in _held:
            fd, owner, depth = _held[key]
            if owner != threading.get_ident():
                return False
            _held[key] = (fd, owner, depth + 1)
            return True
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise _os_error(exc, shown) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise _os_error(exc, shown) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was unlinked by a releasing writer: take the new one
    with _held_guard:
        _held[key] = (fd, threading.get_ident(), 1)
    return True


def _unlock_file(path: Path) -> None:
    key = str(path)
    with _held_guard:
        fd, owner, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, owner, depth - 1)
            return
        del _held[key]
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(fd)


def _os_error(exc: OSError, path: Path) -> InputError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENAMETOOLONG:
        reason = f"name too long (at most {_NAME_MAX} bytes per folder name)"
    return InputError(f"cannot write the run folder: {reason}", file=path)


def _check_name(out: Path) -> None:
    if out.name in ("", ".", ".."):
        raise InputError("not a folder name; give a path such as runs/my-run", file=out)
    if "\x00" in str(out):
        raise InputError("contains a NUL character", file=repr(str(out)))
    if len(out.name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
        raise InputError(
            f"folder name too long (at most {_NAME_MAX} bytes)", file=out.name[:40] + "..."
        )


def _ensure_parent(out: Path) -> None:
    parent = out.parent
    for p in (parent, *parent.parents):
        if p.is_symlink() and not p.exists():
            raise InputError("is a dangling symbolic link", file=p)
        if p.exists():
            if not p.is_dir():
                raise InputError("is a file, not a folder; cannot hold a run folder", file=p)
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, parent) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("cannot write the run folder: folder is not writable", file=parent)


def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def _check_replaceable(out: Path) -> None:
    """An existing ``out`` may be replaced only when it is a folder sfsim wrote."""
    if out.is_symlink():
        raise RunFolderExists("is a symbolic link; refusing to replace it", file=out)
    if not out.is_dir():
        raise RunFolderExists("exists and is not a folder; refusing to replace it", file=out)
    if not _is_run_folder(out):
        raise RunFolderExists(
            f"exists and is not a run folder written by sfsim (no {MARKER} marker); "
            "refusing to replace it: choose another --out",
            file=out,
        )


def _succeeded(folder: Path) -> bool:
    """Whether an existing run folder holds a successful run (unreadable counts as success)."""
    try:
        return json.loads((folder / "summary.json").read_text()).get("status") != "error"
    except (OSError, ValueError, AttributeError):
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def clean_stale_temporaries(parent: Path) -> list[Path]:
    """Remove hidden temporaries left in ``parent`` by writers that died; returns what it removed.

    A temporary is stale when nobody holds the lock of the folder it was for. An ``old`` copy
    whose folder is missing (a writer died between its two renames) is renamed back instead.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        m = _STALE.match(entry.name)
        if m is None:
            continue
        kind, digest = m.group(1), m.group(2)
        lock = parent / f"{_LOCK}{digest}"
        try:
            if not _lock_file(lock, parent):
                continue
        except InputError:
            continue
        try:
            path = Path(entry.path)
            if kind == "old":
                target_file = path / "target"
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    target = parent / target_file.read_text().strip()
                    if (
                        target.parent == parent
                        and _name_hash(target.name) == digest
                        and not os.path.lexists(target)
                        and (path / "run").is_dir()
                    ):
                        os.rename(path / "run", target)
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                removed.append(path)
        finally:
            _unlock_file(lock)
    return removed


class RunFolderClaim:
    """The exclusive right to write ``out`` (a context manager; see :func:`claim_run_folder`)."""

    def __init__(self, out: Path, lock: Path):
        self.out = out
        self._lock: Path | None = lock

    def release(self) -> None:
        if self._lock is not None:
            _unlock_file(self._lock)
            self._lock = None

    def __enter__(self) -> RunFolderClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_folder(out: str | Path, *, overwrite: bool = False) -> RunFolderClaim:
    """Check that ``out`` can be written and take its lock, before a run starts.

    Raises :class:`RunFolderBusy` when another writer holds it, :class:`RunFolderExists` when it
    exists and ``overwrite`` is off or it is not an sfsim run folder, and InputError for a target
    that cannot be written (under a file, read-only, a name too long, a dangling link).
    `write_run_folder` called while the claim is held (same thread) reuses the lock.
    """
    out = Path(out)
    _check_name(out)
    _ensure_parent(out)
    lock = _lock_path(out)
    if not _lock_file(lock, out):
        raise RunFolderBusy(
            "another sfsim process is writing this run folder; wait for it to finish or "
            "choose another --out",
            file=out,
        )
    try:
        if os.path.lexists(out):
            _check_replaceable(out)
            if not overwrite:
                raise RunFolderExists(
                    "already exists; choose another --out or pass --overwrite", file=out
                )
    except BaseException:
        _unlock_file(lock)
        raise
    return RunFolderClaim(out, lock)


def _umask() -> int:
    with _held_guard:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _failed_target(out: Path) -> Path:
    n = 1
    while True:
        suffix = f".failed-{n}"
        name = out.name
        while len((name + suffix).encode("utf-8", "surrogateescape")) > _NAME_MAX:
            name = name[:-1]
        candidate = out.with_name(name + suffix)
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def _fill(tmp: Path, result: RunResult, writers: list[Any] | None) -> None:
    (tmp / "scenario.resolved.yaml").write_text(result.scenario_yaml)
    if not result.trace.empty or result.summary.get("status") == "ok":
        result.trace.to_parquet(tmp / "trace.parquet", index=False)
        result.memory.to_parquet(tmp / "memory.parquet", index=False)
    if not result.events.empty:
        result.events.to_parquet(tmp / "events.parquet", index=False)
    if result.learning is not None:
        result.learning.to_parquet(tmp / "learning.parquet", index=False)
    for w in writers or []:
        w(tmp, result)
    _write_json(tmp / "summary.json", result.summary)
    marker = {
        "format": MARKER_FORMAT,
        "sfsim": __version__,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(tmp / MARKER, marker)  # last: a folder with a marker is complete


def write_run_folder(
    out: Path, result: RunResult, writers: list[Any] | None = None, *, overwrite: bool = False
) -> Path:
    """Write a run folder atomically and return where it went (see the rules above).

    ``writers`` are extra callables ``f(folder: Path, result)`` (e.g. the Chrome trace exporter).
    An existing ``out`` is replaced only with ``overwrite``, only when it is an sfsim run folder,
    and only once the new folder is complete. A failed result (summary status not ``ok``) never
    replaces a successful run: it goes to ``OUT.failed-<n>`` instead, whose path is returned.
    Problems with the target are InputErrors naming it; a failing writer's error propagates and
    leaves nothing behind.
    """
    out = Path(out)
    ok = result.summary.get("status") == "ok"
    with claim_run_folder(out, overwrite=True):
        parent = out.parent
        clean_stale_temporaries(parent)
        target = out
        replace = False
        if os.path.lexists(out):
            _check_replaceable(out)
            if ok and not overwrite:
                raise RunFolderExists(
                    "already exists; choose another --out or pass --overwrite", file=out
                )
            if ok or (overwrite and not _succeeded(out)):
                replace = True
            else:
                target = _failed_target(out)
        tag = f"{_name_hash(out.name)}-{os.getpid()}-"
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{tag}", dir=parent))
            os.chmod(tmp, 0o777 & ~_umask())
        except OSError as exc:
            raise _os_error(exc, parent) from None
        old: Path | None = None
        try:
            _fill(tmp, result, writers)
            if replace:
                old = Path(tempfile.mkdtemp(prefix=f"{_OLD}{tag}", dir=parent))
                (old / "target").write_text(out.name + "\n")
                os.rename(out, old / "run")
                os.rename(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                if (old / "run").is_dir() and not os.path.lexists(out):
                    with contextlib.suppress(OSError):
                        os.rename(old / "run", out)
                shutil.rmtree(old, ignore_errors=True)
            if isinstance(exc, OSError):
                raise _os_error(exc, target) from None
            raise
    return target
