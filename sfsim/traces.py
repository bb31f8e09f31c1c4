"""Per-device traces as plain files: compute speed, link rate and availability over time.

A scenario's ``traces`` section names up to three files (CSV, or Parquet by the ``.parquet`` /
``.pq`` suffix), one row per change; docs/traces.md has the formats and examples:

* **compute** — ``device, time_s, speed``: a relative speed multiplier (1 = the device's
  processor as the cost model sees it, 0.5 = half as fast), piecewise constant from ``time_s`` on.
  A compute of S nominal seconds starting at t ends at the T where ``∫_t^T speed dt = S``
  (`SpeedProfile`, applied by `sfsim.engine.Sim.compute`).
* **links** — ``device, time_s, uplink_mbps, downlink_mbps``: link rates, piecewise constant.
  The device's links become `TraceLink` objects (the `sfsim.links.Link` protocol) instead of
  the scenario's channel; the channel's ``latency_ms`` still applies to each transfer.
* **availability** — ``device, start_s, end_s``: the windows when the device is online.
  `sfsim.world.World.availability` hands them to the fault model; this module only reads them.

Each device's rows start at ``time_s = 0`` and are strictly increasing in time. Without
``traces.repeat`` the last value holds forever (a device is offline after its last window);
with it each device's trace repeats with the period of its ``period_s`` column (required then,
one value per device, past its last change; a device with one row is constant and needs none).
Devices in a file must be devices of the scenario; scenario devices missing from a file keep
their nominal speed and the scenario's channel.

Everything is checked before it reaches the engine: a regular file of at most
:data:`MAX_TRACE_BYTES`, at most :data:`MAX_TRACE_ROWS` rows, the exact columns, finite and
physical values in the bounds below, sorted times. Errors name the file, the column and the row
(``error: compute.csv: speed, row 7: must be at least 0.001 and at most 1000, not -1``).
"""

from __future__ import annotations

import bisect
import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfsim.errors import InputError

#: Largest trace file read (CSV or Parquet), and most rows in one file.
MAX_TRACE_BYTES = 64 * 1024 * 1024
MAX_TRACE_ROWS = 1_000_000
#: Times (``time_s``, ``start_s``, ``end_s``, ``period_s``): 0 .. about 31.7 years.
MAX_TIME_S = 1e9
#: Relative compute speed: 1/1000 .. 1000 times nominal.
SPEED_MIN, SPEED_MAX = 1e-3, 1e3
#: Link rates in Mbit/s: 1 kbit/s .. 1 Tbit/s (as the scenario's ``uplink_mbps``).
RATE_MIN_MBPS, RATE_MAX_MBPS = 1e-3, 1e6
MB = 1e6

_KINDS: dict[str, tuple[str, ...]] = {
    "compute": ("device", "time_s", "speed"),
    "links": ("device", "time_s", "uplink_mbps", "downlink_mbps"),
    "availability": ("device", "start_s", "end_s"),
}
_BOUNDS: dict[str, tuple[float, float, bool]] = {  # column -> (low, high, low inclusive)
    "time_s": (0.0, MAX_TIME_S, True),
    "start_s": (0.0, MAX_TIME_S, True),
    "end_s": (0.0, MAX_TIME_S, True),
    "period_s": (0.0, MAX_TIME_S, False),
    "speed": (SPEED_MIN, SPEED_MAX, True),
    "uplink_mbps": (RATE_MIN_MBPS, RATE_MAX_MBPS, True),
    "downlink_mbps": (RATE_MIN_MBPS, RATE_MAX_MBPS, True),
}


# ---- piecewise-constant functions of time -------------------------------------------------------


@dataclass(frozen=True)
class Piecewise:
    """``values[k]`` on ``[times[k], times[k+1])``, ``times[0] = 0``, all values > 0.

    Without a period the last value holds forever; with one, the function repeats with it
    (``period > times[-1]``). ``cum[k]`` is the integral from 0 to ``times[k]`` and ``cum[-1]``
    the integral over one period (with a period).
    """

    times: np.ndarray
    values: np.ndarray
    period: float | None = None
    cum: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends = np.append(self.times[1:], self.period if self.period is not None else np.nan)
        widths = ends - self.times
        cum = np.concatenate(([0.0], np.cumsum(self.values[:-1] * widths[:-1])))
        if self.period is not None:
            cum = np.append(cum, cum[-1] + self.values[-1] * widths[-1])
        object.__setattr__(self, "cum", cum)

    @property
    def constant(self) -> bool:
        return len(self.values) == 1

    def _piece(self, phase: float) -> int:
        return int(np.searchsorted(self.times, phase, side="right")) - 1

    def value_at(self, t: float) -> float:
        phase = t % self.period if self.period is not None else t
        return float(self.values[max(self._piece(phase), 0)])

    def mean(self) -> float:
        """The time average over one period, or from 0 to the last change (no period)."""
        if self.constant:
            return float(self.values[0])
        if self.period is not None:
            return float(self.cum[-1] / self.period)
        return float(self.cum[-1] / self.times[-1])

    def span_end(self, amount: float, start: float) -> tuple[float, float | None]:
        """(T, f) with ``∫_start^T f = amount``; ``f``: the value when one piece holds it all.

        When the amount fits in the piece that holds ``start`` the caller may use
        ``amount / f`` as the duration (no rounding from ``start + x - start``); else f is None.
        """
        phase, base = start, 0.0
        if self.period is not None:
            n = math.floor(start / self.period)
            base = n * self.period
            phase = start - base
            if phase >= self.period:  # rounding at a period's edge
                base, phase = base + self.period, 0.0
        k = max(self._piece(phase), 0)
        last = len(self.values) - 1
        end = self.times[k + 1] if k < last else (self.period if self.period is not None
                                                  else math.inf)
        rate = float(self.values[k])
        room = (end - phase) * rate
        if amount <= room:
            return start + amount / rate, rate
        left = amount - room
        if self.period is None:  # the rest from piece k + 1 on (k < last: end is finite)
            target = float(self.cum[k + 1]) + left
            j = min(int(np.searchsorted(self.cum, target, side="right")) - 1, last)
            return float(self.times[j] + (target - self.cum[j]) / self.values[j]), None
        rest = float(self.cum[-1] - self.cum[k + 1])  # the rest of this period
        if left <= rest:
            target = float(self.cum[k + 1]) + left
            j = min(int(np.searchsorted(self.cum[:-1], target, side="right")) - 1, last)
            return float(base + self.times[j] + (target - self.cum[j]) / self.values[j]), None
        left -= rest
        base += self.period
        per = float(self.cum[-1])
        whole = math.floor(left / per)
        left -= whole * per
        base += whole * self.period
        if left <= 0.0:
            return base, None
        j = min(int(np.searchsorted(self.cum[:-1], left, side="right")) - 1, last)
        return float(base + self.times[j] + (left - self.cum[j]) / self.values[j]), None


class SpeedProfile:
    """A device's relative compute speed over time (``DeviceSpec.speed_profile``)."""

    __slots__ = ("speed",)

    def __init__(self, speed: Piecewise):
        self.speed = speed

    def duration_s(self, seconds: float, start_s: float) -> float:
        """Wall time of ``seconds`` of nominal work started at ``start_s``."""
        if seconds <= 0:
            return 0.0
        end, speed = self.speed.span_end(seconds, start_s)
        return seconds / speed if speed is not None else end - start_s

    def mean_speed(self) -> float:
        return self.speed.mean()

    def __repr__(self) -> str:
        return f"SpeedProfile({len(self.speed.values)} pieces, period={self.speed.period})"


@dataclass(frozen=True)
class TraceLink:
    """A link whose rate follows a trace (`sfsim.links.Link`): bits integrated over the pieces.

    ``expected_rate_bps`` (what planners assume) is the trace's time-average rate: over one
    period with ``repeat``, else from 0 to its last change (a constant trace: its rate). It is
    what a long transfer at a random start sees; a short one sees the rate of its piece.
    """

    rate: Piecewise  # bit/s
    latency_s: float = 0.0

    def duration_s(self, nbytes: float, start_s: float) -> float:
        if nbytes <= 0:
            return 0.0
        bits = 8.0 * nbytes
        t = start_s + self.latency_s
        end, rate = self.rate.span_end(bits, t)
        if rate is not None:
            return self.latency_s + bits / rate
        return end - start_s

    def rate_bps(self, t_s: float) -> float:
        """The rate at time ``t_s``."""
        return self.rate.value_at(t_s)

    def expected_rate_bps(self) -> float:
        return self.rate.mean()


@dataclass(frozen=True)
class Availability:
    """A device's online windows ``[(start_s, end_s), ...]``, sorted and disjoint.

    Without a period the device is offline after its last window; with one, the windows repeat
    every ``period_s`` (all of them lie in ``[0, period_s]``).
    """

    windows: tuple[tuple[float, float], ...]
    period_s: float | None = None

    def online(self, t: float) -> bool:
        phase = t % self.period_s if self.period_s is not None else t
        k = bisect.bisect_right(self.windows, (phase, math.inf)) - 1  # last window starting <= t
        return k >= 0 and phase < self.windows[k][1]

    def windows_until(self, horizon_s: float) -> list[tuple[float, float]]:
        """The windows that start before ``horizon_s`` (repeated ones included, merged)."""
        if self.period_s is None:
            return [w for w in self.windows if w[0] < horizon_s]
        out: list[tuple[float, float]] = []
        n = 0
        limit = MAX_TRACE_ROWS
        while n * self.period_s < horizon_s:
            for a, b in self.windows:
                s, e = a + n * self.period_s, b + n * self.period_s
                if s >= horizon_s:
                    break
                if out and out[-1][1] >= s:  # a window that runs over the period's end
                    out[-1] = (out[-1][0], e)
                else:
                    out.append((s, e))
                if len(out) > limit:
                    raise InputError(f"more than {limit} availability windows before "
                                     f"{horizon_s:g} s; ask for a shorter horizon",
                                     key="traces.availability")
            n += 1
        return out


# ---- reading and checking files -----------------------------------------------------------------


def _where(col: str, row: int | None = None) -> str:
    return f"{col}, row {row}" if row is not None else col


def _read_table(path: Path, kind: str) -> dict[str, np.ndarray]:
    """The file's columns (device as str, the rest float64), checked for shape and size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError("no such file", file=path, key=f"traces.{kind}") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file; need a {kind} trace (CSV or Parquet)", file=path)
    if st.st_size > MAX_TRACE_BYTES:
        raise InputError(f"is {st.st_size} bytes; a trace file may be at most "
                         f"{MAX_TRACE_BYTES} bytes", file=path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        raw = _read_parquet(path)
    elif suffix == ".csv":
        raw = _read_csv(path)
    else:
        raise InputError(f"unknown trace format {suffix or '(no suffix)'!r}: name the file "
                         ".csv or .parquet", file=path)
    required = _KINDS[kind]
    allowed = (*required, "period_s")
    names = list(raw)
    for col in required:
        if col not in names:
            raise InputError(f"missing column (a {kind} trace has columns "
                             f"{', '.join(required)}[, period_s]; found {', '.join(names)})",
                             file=path, key=col)
    for col in names:
        if col not in allowed:
            raise InputError(f"unknown column (a {kind} trace has columns "
                             f"{', '.join(allowed)})", file=path, key=str(col))
    n = len(raw["device"])
    if n == 0:
        raise InputError("no rows", file=path)
    if n > MAX_TRACE_ROWS:
        raise InputError(f"{n} rows; a trace file may have at most {MAX_TRACE_ROWS}", file=path)
    out: dict[str, np.ndarray] = {"device": _devices(raw["device"], path)}
    for col in names:
        if col != "device":
            out[col] = _numbers(raw[col], col, path)
    return out


def _read_csv(path: Path) -> dict[str, Sequence[Any]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                            skipinitialspace=True, nrows=MAX_TRACE_ROWS + 1, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not a CSV file: not UTF-8 text ({exc.reason} at byte {exc.start})",
                         file=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise InputError(f"not a readable CSV file: {first}", file=path) from None
    if frame.columns.duplicated().any() or any(str(c).startswith("Unnamed:") for c in
                                               frame.columns):
        raise InputError(f"bad header {list(map(str, frame.columns))}: every column needs a "
                         "distinct name", file=path)
    return {str(c).strip(): frame[c].tolist() for c in frame.columns}


def _read_parquet(path: Path) -> dict[str, Sequence[Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        if meta.num_rows > MAX_TRACE_ROWS:
            raise InputError(f"{meta.num_rows} rows; a trace file may have at most "
                             f"{MAX_TRACE_ROWS}", file=path)
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise InputError(f"not a readable Parquet file: {first}", file=path) from None
    out: dict[str, Sequence[Any]] = {}
    for name in table.column_names:
        col = table.column(name)
        if name == "device":
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                    or pa.types.is_integer(col.type)):
                raise InputError(f"must hold device ids (text), not {col.type}", file=path,
                                 key="device")
        elif not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise InputError(f"must hold numbers, not {col.type}", file=path, key=name)
        out[name] = col.to_pylist()
    return out


def _devices(values: Sequence[Any], path: Path) -> np.ndarray:
    from sfsim.scenario import _safe_id

    ids = ["" if v is None else str(v).strip() for v in values]
    for dev in dict.fromkeys(ids):  # each distinct id once; the first bad one by its row
        try:
            _safe_id(dev, what="a device id")
        except ValueError as exc:
            raise InputError(str(exc), file=path, key=_where("device", ids.index(dev) + 1)
                             ) from None
    return np.array(ids, dtype=object)


def _numbers(values: Sequence[Any], col: str, path: Path) -> np.ndarray:
    lo, hi, inclusive = _BOUNDS[col]
    if not any(isinstance(v, bool) for v in values):
        try:  # the whole column at once; the loop below finds the first bad row
            arr = np.asarray(values, dtype=np.float64)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and bool(np.all(np.isfinite(arr))) and bool(np.all(arr <= hi)) \
                and bool(np.all(arr >= lo if inclusive else arr > lo)):
            return arr
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if isinstance(v, bool):
            x = math.nan
        elif isinstance(v, int | float):
            x = float(v)
        else:
            try:
                x = float(str(v).strip())
            except ValueError:
                x = math.nan
        if not math.isfinite(x):
            raise InputError(f"{v!r} is not a finite number", file=path, key=_where(col, i + 1))
        if x > hi or x < lo or (x == lo and not inclusive):
            rel = "at least" if inclusive else "above"
            raise InputError(f"must be {rel} {lo:g} and at most {hi:g}, not {x:g}", file=path,
                             key=_where(col, i + 1))
        out[i] = x
    return out


def _groups(devices: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each device, in file order (devices in order of first appearance)."""
    import pandas as pd

    codes, uniques = pd.factorize(devices)
    order = np.argsort(codes, kind="stable")
    cuts = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {str(d): order[cuts[i]:cuts[i + 1]] for i, d in enumerate(uniques)}


def _period(cols: dict[str, np.ndarray], rows: np.ndarray, last: float, path: Path,
            repeat: bool, *, strict_after: bool) -> float | None:
    """The device's period with ``repeat`` (its ``period_s``, past ``last``); None without."""
    if not repeat or (strict_after and len(rows) == 1):  # a constant trace needs no period
        return None
    if "period_s" not in cols:
        raise InputError("traces.repeat is on: the file needs a period_s column (the length of "
                         "one period of each device's trace)", file=path, key="period_s")
    p = cols["period_s"][rows]
    bad = np.flatnonzero(p != p[0])
    if bad.size:
        raise InputError(f"one period per device: {p[bad[0]]:g} differs from {p[0]:g} on the "
                         "device's first row", file=path, key=_where("period_s", rows[bad[0]] + 1))
    period = float(p[0])
    if period < last or (strict_after and period == last):
        what = "after its last change" if strict_after else "at or after its last window's end"
        raise InputError(f"{period:g} s: the period must end {what} ({last:g} s)", file=path,
                         key=_where("period_s", rows[-1] + 1))
    return period


def _series(cols: dict[str, np.ndarray], rows: np.ndarray, path: Path) -> np.ndarray:
    times = cols["time_s"][rows]
    if times[0] != 0.0:
        raise InputError(f"a device's trace starts at time_s = 0, not {times[0]:g}",
                         file=path, key=_where("time_s", rows[0] + 1))
    bad = np.flatnonzero(np.diff(times) <= 0)
    if bad.size:
        k = bad[0] + 1
        raise InputError(f"times must increase strictly within a device ({times[k]:g} after "
                         f"{times[k - 1]:g})", file=path, key=_where("time_s", rows[k] + 1))
    return times


def load_speed(path: str | Path, repeat: bool = False) -> dict[str, SpeedProfile]:
    """A compute-speed trace: one `SpeedProfile` per device named in the file."""
    p = Path(path)
    cols = _read_table(p, "compute")
    out: dict[str, SpeedProfile] = {}
    for dev, rows in _groups(cols["device"]).items():
        times = _series(cols, rows, p)
        period = _period(cols, rows, float(times[-1]), p, repeat, strict_after=True)
        out[dev] = SpeedProfile(Piecewise(times, cols["speed"][rows].copy(), period))
    return out


def load_links(path: str | Path, repeat: bool = False, latency_s: float = 0.0
               ) -> dict[str, tuple[TraceLink, TraceLink]]:
    """A link-rate trace: (uplink, downlink) `TraceLink` per device named in the file."""
    p = Path(path)
    cols = _read_table(p, "links")
    out: dict[str, tuple[TraceLink, TraceLink]] = {}
    for dev, rows in _groups(cols["device"]).items():
        times = _series(cols, rows, p)
        period = _period(cols, rows, float(times[-1]), p, repeat, strict_after=True)
        up = Piecewise(times, cols["uplink_mbps"][rows] * MB, period)
        down = Piecewise(times, cols["downlink_mbps"][rows] * MB, period)
        out[dev] = (TraceLink(up, latency_s), TraceLink(down, latency_s))
    return out


def load_availability(path: str | Path, repeat: bool = False) -> dict[str, Availability]:
    """Availability windows per device named in the file (touching windows are merged)."""
    p = Path(path)
    cols = _read_table(p, "availability")
    out: dict[str, Availability] = {}
    for dev, rows in _groups(cols["device"]).items():
        starts, ends = cols["start_s"][rows], cols["end_s"][rows]
        windows: list[tuple[float, float]] = []
        for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            row = int(rows[k]) + 1
            if b <= a:
                raise InputError(f"a window ends after it starts ({b:g} <= start_s {a:g})",
                                 file=p, key=_where("end_s", row))
            if windows and a < windows[-1][1]:
                raise InputError(f"windows must be sorted and disjoint within a device ({a:g} "
                                 f"starts before the previous window's end {windows[-1][1]:g})",
                                 file=p, key=_where("start_s", row))
            if windows and a == windows[-1][1]:
                windows[-1] = (windows[-1][0], b)
            else:
                windows.append((a, b))
        period = _period(cols, rows, windows[-1][1], p, repeat, strict_after=False)
        out[dev] = Availability(tuple(windows), period)
    return out


# ---- the scenario's traces ----------------------------------------------------------------------


@dataclass
class TraceSet:
    """The traces a scenario names, loaded and checked (``traces`` section)."""

    speed: dict[str, SpeedProfile] = field(default_factory=dict)
    links: dict[str, tuple[TraceLink, TraceLink]] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # kind -> path

    @property
    def empty(self) -> bool:
        return not (self.speed or self.links or self.availability)

    def check_devices(self, known: Iterable[str]) -> None:
        """Every device a trace names is a device of the scenario."""
        ids = set(known)
        for kind, table in (("compute", self.speed), ("links", self.links),
                            ("availability", self.availability)):
            for dev in table:
                if dev not in ids:
                    shown = ", ".join(sorted(ids)[:10]) + (", ..." if len(ids) > 10 else "")
                    raise InputError(f"device {dev!r} is not in the scenario (devices: {shown})",
                                     file=self.files.get(kind), key="device")

    def apply(self, spec: Any) -> Any:
        """``spec`` (a `sfsim.world.DeviceSpec`) with its traced speed, links and windows."""
        from dataclasses import replace

        changes: dict[str, Any] = {}
        if spec.id in self.speed:
            changes["speed_profile"] = self.speed[spec.id]
        if spec.id in self.links:
            changes["uplink"], changes["downlink"] = self.links[spec.id]
        if spec.id in self.availability:
            changes["availability"] = self.availability[spec.id]
        return replace(spec, **changes) if changes else spec


_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_KEEP = 16


def _cached(loader: Any, path: str, *args: Any) -> Any:
    """``loader(path, *args)``, memoised on the file's identity (a sweep reads each file once)."""
    try:
        st = os.stat(path)
        key: tuple[Any, ...] | None = (loader.__name__, path, st.st_mtime_ns, st.st_size,
                                       st.st_ino, *args)
    except OSError:
        key = None  # the loader reports the problem
    if key is not None and key in _CACHE:
        return _CACHE[key]
    value = loader(path, *args)
    if key is not None:
        if len(_CACHE) >= _CACHE_KEEP:
            _CACHE.clear()
        _CACHE[key] = value
    return value


def load_traces(cfg: Any, latency_s: float = 0.0) -> TraceSet:
    """The files of a scenario's ``traces`` section (a `sfsim.scenario.TracesCfg`)."""
    out = TraceSet()
    if cfg.compute is not None:
        out.speed = _cached(load_speed, cfg.compute, cfg.repeat)
        out.files["compute"] = cfg.compute
    if cfg.links is not None:
        out.links = _cached(load_links, cfg.links, cfg.repeat, latency_s)
        out.files["links"] = cfg.links
    if cfg.availability is not None:
        out.availability = _cached(load_availability, cfg.availability, cfg.repeat)
        out.files["availability"] = cfg.availability
    return out
