"""Sweeps: one base scenario, many variations, run on local processes or a Dask cluster.

A sweep file names a base scenario and what to vary::

    base: ../quickstart.yaml          # a scenario file (relative to this file) or an inline mapping
    set:                              # fixed changes to the base, for every run
      variability: {compute: lognormal, sigma: 0.2}
    grid:                             # every combination (cartesian product), keys in file order
      training.local_iterations: [1, 2, 4]
    zip:                              # lists of equal length, varied together
      devices[0].uplink_mbps: [20, 60]
      devices[1].uplink_mbps: [10, 40]
    schemes: [memsfl, sfl_v2]         # shorthands for training.scheme, scheduler.name and seed
    schedulers: [fifo, schrage]
    seeds: {count: 5, start: 0}       # or a list: [1, 2, 3]

Each point of the sweep is the base with the point's values applied as overrides
(`sfsim.overrides.apply_overrides`), validated exactly like a scenario file and resolved with
`sfsim.run.resolve`. A combination that does not validate is a row with status ``invalid``; a run
that fails (e.g. does not fit in memory) is a row with status ``error``; neither stops the sweep.

**Keys and resuming.** A run's key is a hash of its resolved scenario YAML and the sfsim version.
Each finished run is recorded as ``OUT/rows/<key>.json``, written to a temporary file and renamed
into place, after its run folder ``OUT/runs/<key>/`` (itself written atomically). Killing a sweep
loses at most the runs in flight; running the same sweep again skips every run whose row exists
and says how many it skipped. Runs that crashed on an internal error (status ``crashed``) are
retried.

**Tables.** ``results.parquet`` has one row per point in expansion order (grid, then zip, then
scheme, then scheduler, then seed, the last varying fastest): ``run`` (the key), ``config`` (the
configuration's index, the same for every seed), the swept keys as columns, ``scheme``,
``scheduler``, ``seed``, ``status``, ``error``, the summary's scalar figures and finally
``wall_s``, the only column that changes from one execution to the next. ``aggregate.parquet``
and ``aggregate.csv`` have one row per configuration: ``n`` (successful seeds), ``n_failed`` and,
for each figure, ``FIELD_mean`` and ``FIELD_ci95`` (half-width of the 95 % Student-t confidence
interval of the mean over seeds; NaN with fewer than two seeds). Both tables are rebuilt from the
rows and replaced atomically at the end of every sweep, so they are identical whatever the
backend and the number of workers.

This module's top level imports only the standard library and typer: the CLI loads it at start-up.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sfsim.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from sfsim.results import RunResult

#: Columns of the results table before the swept keys and after them (figures follow).
LEAD_COLUMNS = ("run", "config")
RUN_COLUMNS = ("scheme", "scheduler", "seed", "status", "error")
#: Summary figures every row carries (NaN for runs that did not finish), in this order; other
#: numeric top-level scalars of the summary follow in name order.
FIGURES = (
    "makespan_s",
    "round_s_mean",
    "round_s_max",
    "server_busy_s",
    "server_utilisation",
    "server_peak_bytes",
    "device_peak_max_bytes",
    "uplink_bytes",
    "downlink_bytes",
    "n_devices",
    "rounds",
    "local_iterations",
)
#: Columns that are not the same from one execution to the next (left out of comparisons).
WALL_COLUMNS = ("wall_s",)
_NOT_FIGURES = {"key", "seed", "wall_s", "version", *RUN_COLUMNS}
#: Statuses that count as finished when a sweep is resumed.
FINISHED = ("ok", "error")
MAX_DEFAULT_WORKERS = 8


# ---- the sweep file -----------------------------------------------------------------------------


@cache
def _spec_model() -> Any:
    """The pydantic model of a sweep file (built on first use: pydantic is not imported at
    start-up)."""
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    class Seeds(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = Field(gt=0)
        start: int = Field(default=0, ge=0)

    class SweepSpec(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str = "sweep"
        description: str = ""
        base: str | dict[str, Any]
        set: dict[str, Any] = Field(default_factory=dict)
        grid: dict[str, list[Any]] = Field(default_factory=dict)
        zip: dict[str, list[Any]] = Field(default_factory=dict)
        schemes: list[str] | None = Field(default=None, min_length=1)
        schedulers: list[str] | None = Field(default=None, min_length=1)
        seeds: list[Annotated[int, Field(ge=0)]] | Seeds | None = None

        @model_validator(mode="after")
        def _check(self) -> SweepSpec:
            for section in ("grid", "zip"):
                for k, v in getattr(self, section).items():
                    if not k.strip():
                        raise _SpecError(section, "a key may not be empty")
                    if not v:
                        raise _SpecError(f"{section}.{k}", "needs at least one value")
            lengths = {k: len(v) for k, v in self.zip.items()}
            if len(set(lengths.values())) > 1:
                detail = ", ".join(f"{k}: {n}" for k, n in lengths.items())
                raise _SpecError("zip", f"lists must have equal lengths ({detail})")
            both = sorted(set(self.grid) & set(self.zip))
            if both:
                raise _SpecError(f"zip.{both[0]}", "is also in grid; sweep a key in one place")
            for short, key in (("schemes", "training.scheme"), ("schedulers", "scheduler.name"),
                               ("seeds", "seed")):
                if getattr(self, short) is not None and (key in self.grid or key in self.zip):
                    where = "grid" if key in self.grid else "zip"
                    raise _SpecError(f"{where}.{key}", f"is also given by `{short}`; use one")
            if isinstance(self.seeds, list) and len(set(self.seeds)) != len(self.seeds):
                raise _SpecError("seeds", "lists a seed twice")
            return self

    return SweepSpec


class _SpecError(ValueError):
    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


@dataclass
class Sweep:
    """A validated sweep: the base scenario data and the points to run."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    zipped: dict[str, list[Any]]
    schemes: list[str | None]
    schedulers: list[str | None]
    seeds: list[int | None]
    file: str = "<sweep>"
    text: str | None = None  # the sweep file's text, copied into the output folder

    @property
    def swept_keys(self) -> list[str]:
        return [*self.grid, *self.zipped]

    def points(self) -> Iterator[tuple[int, dict[str, Any], str | None, str | None, int | None]]:
        """(configuration index, overrides, scheme, scheduler, seed), seeds varying fastest."""
        combos = list(itertools.product(*self.grid.values())) if self.grid else [()]
        n_zip = len(next(iter(self.zipped.values()))) if self.zipped else 1
        config = 0
        for combo in combos:
            for i in range(n_zip):
                values = dict(zip(self.grid, combo, strict=True))
                values.update({k: v[i] for k, v in self.zipped.items()})
                for scheme in self.schemes:
                    for sched in self.schedulers:
                        for seed in self.seeds:
                            yield config, values, scheme, sched, seed
                        config += 1


def _parse_error(file: str, err: Any) -> InputError:
    """The first problem pydantic found in a sweep file, as ``FILE: KEY: PROBLEM``."""
    from sfsim.scenario import validation_messages

    errors = err.errors()
    for e in errors:
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _SpecError):
            return InputError(ctx_err.problem, file=file, key=ctx_err.key)
    msgs = validation_messages(err)
    # `seeds` is a list or a {count, start} mapping: report the branch the input chose, not
    # "Input should be a valid list" for a mapping with a bad count.
    wrong_type = {"list_type", "model_type", "model_attributes_type", "dict_type"}
    for (key, problem), e in zip(msgs, errors, strict=False):
        if e["type"] in wrong_type and any(
            o["loc"][:1] == e["loc"][:1] and o["type"] not in wrong_type for o in errors
        ):
            continue
        key = key.replace("seeds.Seeds", "seeds")  # the union branch's class name
        if problem.startswith("unknown key") and "." not in key:
            problem = ("unknown key; a sweep file has base, set, grid, zip, schemes, "
                       "schedulers, seeds, name, description")
        return InputError(problem, file=file, key=key)
    key, problem = msgs[0]
    return InputError(problem, file=file, key=key)


def load_sweep(spec: str | Path | Mapping[str, Any], *, file: str | Path | None = None) -> Sweep:
    """Read and validate a sweep (a file, or already-parsed data); raise InputError if bad."""
    from pydantic import ValidationError

    from sfsim.yamlio import load_yaml, loads_yaml, read_user_file

    text = None
    if isinstance(spec, str | Path):
        path = Path(spec)
        file = path
        text = read_user_file(path, what="sweep file")
        data = loads_yaml(text, file=path)
        here = path.parent
    else:
        data, here = copy.deepcopy(dict(spec)), Path.cwd()
    fname = str(file) if file is not None else "<sweep>"
    if not isinstance(data, dict):
        raise InputError("a sweep file is a mapping with at least `base`", file=fname)
    if "base" not in data:
        raise InputError("missing: a sweep needs `base` (a scenario file or mapping)",
                         file=fname, key="base")
    try:
        m = _spec_model().model_validate(data)
    except ValidationError as err:
        raise _parse_error(fname, err) from None
    from sfsim.scenario import anchor_paths

    if isinstance(m.base, str):
        base_path = here / m.base
        try:
            base = load_yaml(base_path, what="scenario file")
        except InputError as exc:
            raise InputError(f"the base scenario: {exc.message}", file=fname, key="base") from None
        if not isinstance(base, dict):
            raise InputError(f"the base scenario {str(base_path)!r} is not a mapping",
                             file=fname, key="base")
        base = anchor_paths(base, base_path.parent)  # trace paths: relative to the base file
    else:
        base = anchor_paths(m.base, here)
    if m.set:
        try:
            base = _apply(base, m.set)
        except InputError as exc:
            key = (exc.key or "").removeprefix("--set ")
            raise InputError(exc.problem, file=fname, key=f"set.{key}") from None
    seeds: list[int | None]
    if m.seeds is None:
        seeds = [None]
    elif isinstance(m.seeds, list):
        seeds = list(m.seeds)
    else:
        seeds = list(range(m.seeds.start, m.seeds.start + m.seeds.count))
    return Sweep(
        name=m.name, base=base, grid=dict(m.grid), zipped=dict(m.zip),
        schemes=list(m.schemes) if m.schemes else [None],
        schedulers=list(m.schedulers) if m.schedulers else [None],
        seeds=seeds, file=fname, text=text,
    )


# ---- expanding the points into runs -------------------------------------------------------------


@dataclass
class Point:
    index: int
    config: int
    values: dict[str, Any]
    scheme: str | None
    scheduler: str | None
    seed: int | None
    key: str = ""
    scenario_yaml: str | None = None  # None: the combination is invalid
    error: str | None = None
    row: dict[str, Any] = field(default_factory=dict)


def run_key(scenario_yaml: str) -> str:
    """A run's identity: its resolved scenario and the sfsim version."""
    from sfsim import __version__

    return hashlib.sha256(f"{__version__}\n{scenario_yaml}".encode()).hexdigest()[:20]


def _apply(base: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    from sfsim.overrides import apply_overrides

    return apply_overrides(copy.deepcopy(base), values) if values else copy.deepcopy(base)


def _check_keys(sweep: Sweep) -> None:
    """A swept key that no scenario can have is a mistake in the sweep file (exit 2)."""
    from sfsim.scenario import parse_scenario

    for section, table in (("grid", sweep.grid), ("zip", sweep.zipped)):
        for k, values in table.items():
            for v in values:
                try:
                    data = _apply(sweep.base, {k: v})
                except InputError as exc:  # e.g. devices[9] in a scenario with two devices
                    raise InputError(exc.problem, file=sweep.file, key=f"{section}.{k}") from None
                try:
                    parse_scenario(data, file=sweep.file)
                except InputError as exc:
                    unknown = exc.problem.startswith("unknown key") or exc.key is None
                    if unknown and (exc.key is None or exc.key == k or k.startswith(exc.key)):
                        raise InputError(f"not a scenario key ({exc.problem})", file=sweep.file,
                                         key=f"{section}.{k}") from None


def expand(sweep: Sweep) -> list[Point]:
    """Every point of the sweep, resolved (or marked invalid) and keyed."""
    from sfsim.run import resolve
    from sfsim.scenario import dump_scenario, parse_scenario

    try:
        parse_scenario(copy.deepcopy(sweep.base), file=f"{sweep.file}: base")
    except InputError as exc:
        where = f": {exc.key}" if exc.key and exc.key != "(top level)" else ""
        raise InputError(exc.problem, file=sweep.file, key="base" + where) from None
    _check_keys(sweep)
    points = []
    for i, (config, values, scheme, sched, seed) in enumerate(sweep.points()):
        p = Point(i, config, values, scheme, sched, seed)
        try:
            s = parse_scenario(_apply(sweep.base, values), file=sweep.file)
            s = resolve(s, scheme=scheme, scheduler=sched, seed=seed)
            p.scheme, p.scheduler, p.seed = s.training.scheme, s.scheduler.name, s.seed
            p.scenario_yaml = dump_scenario(s)
            p.key = run_key(p.scenario_yaml)
        except InputError as exc:
            key = exc.key.removeprefix("--set ") if exc.key else None
            p.error = ": ".join(x for x in (key, exc.problem) if x)
            ident = json.dumps([values, scheme, sched, seed], sort_keys=True, default=str)
            p.key = "invalid-" + hashlib.sha256(ident.encode()).hexdigest()[:12]
        points.append(p)
    return points


# ---- running one scenario (in a worker) ---------------------------------------------------------


def figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar figures of a run's summary that go into the results table."""
    rounds = list(summary.get("round_s") or [])
    peaks = summary.get("device_peak_bytes") or {}
    out: dict[str, Any] = {
        "makespan_s": summary.get("makespan_s"),
        "round_s_mean": sum(rounds) / len(rounds) if rounds else None,
        "round_s_max": max(rounds) if rounds else None,
        "server_busy_s": summary.get("server_busy_s"),
        "server_utilisation": summary.get("server_utilisation"),
        "server_peak_bytes": summary.get("server_peak_bytes"),
        "device_peak_max_bytes": max(peaks.values()) if peaks else None,
        "uplink_bytes": summary.get("uplink_bytes"),
        "downlink_bytes": summary.get("downlink_bytes"),
        "n_devices": summary.get("n_devices"),
        "rounds": summary.get("rounds"),
        "local_iterations": summary.get("local_iterations"),
    }
    for k in sorted(summary):
        v = summary[k]
        if k in out or k in _NOT_FIGURES or isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            out[k] = v
    return out


def run_one(scenario_yaml: str, want_result: bool) -> tuple[dict[str, Any], RunResult | None]:
    """Simulate one resolved scenario: (its row, and its result if ``want_result``).

    Never raises for a failed run: the row says ``error`` (the user's input cannot run) or
    ``crashed`` (an internal error, with the exception) and the sweep goes on.
    """
    import yaml

    from sfsim.run import simulate
    from sfsim.scenario import Scenario

    t0 = time.perf_counter()
    s = Scenario.model_validate(yaml.safe_load(scenario_yaml))
    result: RunResult | None
    try:
        result = simulate(s)
        row: dict[str, Any] = {"status": "ok", "error": None, **figures(result.summary)}
    except InputError as exc:
        row = {"status": "error", "error": exc.message}
        result = _failed_result(s, exc.message)
    except Exception as exc:
        row = {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}
        detail = "".join(traceback.format_exception(exc))
        result = _failed_result(s, detail)
    row["wall_s"] = time.perf_counter() - t0
    return row, (result if want_result else None)


def _failed_result(s: Any, message: str) -> RunResult:
    from sfsim.api import failed_run

    return failed_run(s, message).result


# ---- the output folder --------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temporary sibling, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean_leftovers(out: Path) -> None:
    """Remove temporary files and folders a killed sweep left behind (never finished ones)."""
    for folder in (out, out / "rows", out / "runs"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and (p.name.endswith(".tmp") or p.is_dir()):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def _read_row(path: Path) -> dict[str, Any] | None:
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and "status" in row else None


def _write_folder(folder: Path, result: RunResult, trace: str) -> None:
    """The run folder, exactly as `sfsim.Run.write` (and so ``sfsim run``) writes it."""
    from sfsim.api import Run

    Run(result).write(folder, overwrite=True, trace=trace)


def _value_column(values: list[Any]) -> list[Any]:
    """A swept key's values as one Parquet-friendly column (JSON text when types are mixed)."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present):
        return values
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return values
    if all(isinstance(v, str) for v in present):
        return values
    return [None if v is None else json.dumps(v, sort_keys=True) for v in values]


def results_frame(sweep: Sweep, points: list[Point]) -> pd.DataFrame:
    """The results table: one row per point, in expansion order (see the module docstring)."""
    import pandas as pd

    figure_cols: list[str] = list(FIGURES)
    for p in points:
        figure_cols += [k for k in p.row if k not in figure_cols and k not in _NOT_FIGURES
                        and k not in ("status", "error")]
    extra = sorted(figure_cols[len(FIGURES):])
    figure_cols = [*FIGURES, *extra]
    cols: dict[str, list[Any]] = {
        "run": [p.key for p in points],
        "config": [p.config for p in points],
    }
    for k in sweep.swept_keys:
        cols[k] = _value_column([p.values.get(k) for p in points])
    cols["scheme"] = [p.scheme for p in points]
    cols["scheduler"] = [p.scheduler for p in points]
    cols["seed"] = [p.seed for p in points]
    cols["status"] = [p.row.get("status", "invalid") for p in points]
    cols["error"] = [p.row.get("error", p.error) for p in points]
    for k in figure_cols:
        cols[k] = [p.row.get(k) for p in points]
    cols["wall_s"] = [p.row.get("wall_s") for p in points]
    df = pd.DataFrame(cols)
    df["seed"] = df["seed"].astype("Int64")
    for k in [*figure_cols, "wall_s"]:
        present = [v for v in cols[k] if v is not None]
        whole = bool(present) and all(isinstance(v, int) for v in present)
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("Int64" if whole else "float64")
    return df


def aggregate(results: pd.DataFrame, swept_keys: Iterable[str]) -> pd.DataFrame:
    """Mean and 95 % Student-t CI half-width over seeds, per configuration (successful runs)."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    keys = [k for k in swept_keys if k in results.columns]
    lead = ["config", *keys, "scheme", "scheduler"]
    cols = list(results.columns)
    figure_cols = [c for c in cols[cols.index("error") + 1:] if c not in WALL_COLUMNS]
    rows = []
    for config, g in results.groupby("config", sort=True):
        ok = g[g["status"] == "ok"]
        n = len(ok)
        row: dict[str, Any] = {c: g[c].iloc[0] for c in lead}
        row["config"] = int(str(config))
        row["n"] = n
        row["n_failed"] = len(g) - n
        t = float(stats.t.ppf(0.975, n - 1)) if n >= 2 else math.nan
        for c in figure_cols:
            x = ok[c].to_numpy(dtype=float, na_value=np.nan)
            x = x[np.isfinite(x)]
            mean = float(x.mean()) if len(x) else math.nan
            if len(x) < 2:
                ci = math.nan
            elif x.min() == x.max():  # no spread (no randomness): exactly 0, not rounding noise
                ci = 0.0
            else:
                ci = t * float(x.std(ddof=1)) / math.sqrt(len(x))
            row[f"{c}_mean"] = mean
            row[f"{c}_ci95"] = ci
        rows.append(row)
    return pd.DataFrame(rows)


def _write_tables(out: Path, results: pd.DataFrame, agg: pd.DataFrame) -> None:
    import io

    for name, df in (("results.parquet", results), ("aggregate.parquet", agg)):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        _atomic_write(out / name, buf.getvalue())
    _atomic_write(out / "aggregate.csv", agg.to_csv(index=False).encode())


# ---- running a sweep ----------------------------------------------------------------------------


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def _outcome(fut: Any) -> tuple[dict[str, Any], RunResult | None]:
    """A finished future's (row, result); a worker that died (killed, out of memory) or a lost
    connection makes a ``crashed`` row, retried when the sweep is run again."""
    try:
        row, result = fut.result()
    except Exception as exc:
        return {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}, None
    return row, result


def _executions(todo: list[Point], want: bool, workers: int, dask: str | Any | None
                ) -> Iterator[tuple[Point, dict[str, Any], RunResult | None]]:
    """Run ``todo`` and yield each point with its outcome as runs finish (in any order)."""
    if dask is not None:
        from distributed import Client, as_completed

        client = dask if isinstance(dask, Client) else Client(dask, set_as_default=False)
        try:
            futures = {
                client.submit(run_one, p.scenario_yaml, want, key=f"sfsim-run-{p.key}",
                              pure=False): p
                for p in todo
            }
            for fut in as_completed(futures, loop=client.loop):
                row, result = _outcome(fut)
                yield futures[fut], row, result
        finally:
            if client is not dask:
                client.close()
        return
    if workers <= 1 or len(todo) <= 1:
        for p in todo:
            assert p.scenario_yaml is not None
            row, result = run_one(p.scenario_yaml, want)
            yield p, row, result
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import as_completed as done_first

    # "spawn": fresh interpreters, so a parent with threads (a progress bar, a Dask client) is
    # never forked mid-lock; each worker pays the import of sfsim once.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
        jobs = {pool.submit(run_one, str(p.scenario_yaml), want): p for p in todo}
        try:
            for fut in done_first(jobs):
                row, result = _outcome(fut)
                yield jobs[fut], row, result
        except BaseException:
            for fut in jobs:
                fut.cancel()
            raise


def run_sweep(
    spec_or_path: str | Path | Mapping[str, Any] | Sweep,
    out: str | Path,
    *,
    workers: int | None = None,
    dask: str | Any | None = None,
    folders: bool = True,
    trace: str = "parquet",
    overrides: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> pd.DataFrame:
    """Run a sweep into ``out`` and return its results table (see the module docstring).

    ``workers``: local processes (default: the CPU count, at most 8; 1 runs in this process).
    ``dask``: the address of a running ``dask.distributed`` scheduler (or a ``Client``); runs go
    there instead. ``folders``: write ``out/runs/<key>/`` per run. ``trace``: what a run folder
    keeps of the trace (``parquet``; ``json`` adds the Perfetto ``trace.json``; ``none``).
    ``overrides``: applied to the base scenario before the sweep's own values (``--set``).
    ``progress``: draw a bar with ETA (default: when stderr is a terminal); ``quiet``: no
    messages. The returned frame's ``attrs`` hold ``ran``, ``skipped`` and ``failed`` counts.
    """
    from sfsim.progress import progress as bar_for

    sweep = spec_or_path if isinstance(spec_or_path, Sweep) else load_sweep(spec_or_path)
    from sfsim.api import parse_trace

    parse_trace(trace)  # a bad choice fails before anything runs
    if workers is not None and workers < 1:
        raise InputError("must be at least 1", key="--workers")
    if overrides:
        sweep = copy.copy(sweep)
        try:
            sweep.base = _apply(sweep.base, overrides)
        except InputError as exc:
            raise InputError(exc.problem, key=f"--set {exc.key}" if exc.key else "--set") from None
    points = expand(sweep)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", file=out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    if folders:
        (out / "runs").mkdir(exist_ok=True)
    _clean_leftovers(out)
    if sweep.text is not None:
        _atomic_write(out / "sweep.yaml", sweep.text.encode())
    else:
        import yaml

        spec = {"name": sweep.name, "base": sweep.base, "grid": sweep.grid, "zip": sweep.zipped,
                "schemes": sweep.schemes, "schedulers": sweep.schedulers, "seeds": sweep.seeds}
        _atomic_write(out / "sweep.yaml", yaml.safe_dump(spec, sort_keys=False).encode())

    by_key: dict[str, list[Point]] = {}
    todo: list[Point] = []
    skipped = 0
    for p in points:
        if p.scenario_yaml is None:
            p.row = {"status": "invalid", "error": p.error}
            continue
        if p.key in by_key:  # the same resolved scenario twice: run once
            by_key[p.key].append(p)
            continue
        by_key[p.key] = [p]
        row = _read_row(out / "rows" / f"{p.key}.json")
        done = row is not None and row["status"] in FINISHED
        if done and folders and not (out / "runs" / p.key / "summary.json").exists():
            done = False
        if done:
            assert row is not None
            p.row = row
            skipped += 1
        else:
            todo.append(p)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    if skipped:
        say(f"sweep {sweep.name}: skipped {skipped} finished run(s) already in {out}")
    n_workers = workers or default_workers()
    backend = f"dask at {dask}" if dask is not None else (
        "this process" if n_workers <= 1 or len(todo) <= 1 else f"{n_workers} processes")
    if todo:
        say(f"sweep {sweep.name}: running {len(todo)} run(s) on {backend}")
    with bar_for(len(todo), f"sweep {sweep.name}", enabled=False if quiet else progress) as bar:
        for p, row, result in _executions(todo, folders, n_workers, dask):
            if folders and result is not None:
                _write_folder(out / "runs" / p.key, result, trace)
            row = {"key": p.key, **row}
            _atomic_write(out / "rows" / f"{p.key}.json",
                          (json.dumps(row, sort_keys=True) + "\n").encode())
            p.row = row
            bar.advance()
    for same in by_key.values():
        for p in same[1:]:
            p.row = same[0].row
    results = results_frame(sweep, points)
    agg = aggregate(results, sweep.swept_keys)
    _write_tables(out, results, agg)
    failed = int((results["status"] != "ok").sum())
    say(f"sweep {sweep.name}: {len(points)} point(s), {len(todo)} run, {skipped} skipped, "
        f"{failed} failed; tables in {out}")
    results.attrs.update({"ran": len(todo), "skipped": skipped, "failed": failed})
    return results


# ---- the command line ---------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add ``sfsim sweep`` and ``sfsim plot-sweep`` to the command line."""

    @app.command("sweep")
    def sweep_cmd(
        sweep_file: Annotated[Path, typer.Argument(help="sweep YAML file")],
        out: Annotated[Path, typer.Option("--out", help="output folder (resumable)")],
        workers: Annotated[int | None, typer.Option(
            help="local worker processes (default: CPU count, at most 8; 1: in this process)")
        ] = None,
        dask: Annotated[str | None, typer.Option(
            "--dask", help="address of a running dask.distributed scheduler")] = None,
        no_folders: Annotated[bool, typer.Option(
            "--no-folders", help="write only the tables, no per-run folders")] = False,
        trace: Annotated[str, typer.Option(
            help="trace files of each run folder: parquet, json, parquet,json or none")
        ] = "parquet",
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="override a base scenario key: KEY=VALUE (repeatable)")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or messages")
                         ] = False,
    ) -> None:
        """Run a sweep: a base scenario over a grid of keys, schemes, schedulers and seeds."""
        from sfsim.cli import fail

        try:
            overrides = None
            if set_:
                from sfsim.overrides import parse_set

                overrides = parse_set(set_)
            results = run_sweep(sweep_file, out, workers=workers, dask=dask,
                                folders=not no_folders, trace=trace, overrides=overrides,
                                quiet=quiet)
        except InputError as exc:
            raise fail(exc.message) from None
        except OSError as exc:  # e.g. a Dask address that does not answer
            raise fail(f"{dask or out}: {exc}") from None
        if results.attrs.get("failed") and not quiet:
            print(f"{results.attrs['failed']} run(s) failed; see the status and error columns "
                  f"of {out / 'results.parquet'}", file=sys.stderr)

    @app.command("plot-sweep")
    def plot_sweep_cmd(
        sweep_dir: Annotated[Path, typer.Argument(help="folder written by `sfsim sweep`")],
        x: Annotated[str, typer.Option("--x", help="swept key on the x axis")],
        y: Annotated[str, typer.Option("--y", help="summary figure, e.g. makespan_s")],
        hue: Annotated[str | None, typer.Option(
            help="one line per value of: scheme, scheduler or a swept key")] = None,
        where: Annotated[list[str] | None, typer.Option(
            help="keep configurations with KEY=VALUE (repeatable)")] = None,
        out: Annotated[Path | None, typer.Option(
            help="image file (default: SWEEP_DIR/plots/Y_vs_X.png)")] = None,
        log_x: Annotated[bool, typer.Option("--log-x", help="logarithmic x axis")] = False,
    ) -> None:
        """Plot a summary figure against a swept key, one line per hue value, 95 % CI bars."""
        from sfsim.cli import fail

        try:
            from sfsim.plotting.sweep import plot_sweep_folder

            path = plot_sweep_folder(sweep_dir, x=x, y=y, hue=hue, where=where or [], out=out,
                                     log_x=log_x)
        except InputError as exc:
            raise fail(exc.message) from None
        print(path)

