"""The Python API: load a scenario, run it, read a run folder back, compare schemes, sweep.

``import sfsim`` exposes the names below (loaded on first use, so ``import sfsim`` stays cheap)::

    import sfsim

    run = sfsim.run("examples/quickstart.yaml", scheme="memsfl", seed=3,
                    overrides={"training.rounds": 2})
    run.summary["makespan_s"]          # the summary.json dict
    run.trace, run.memory              # pandas DataFrames (trace.parquet, memory.parquet)
    run.write("runs/quick")            # the same folder `sfsim run --out runs/quick` writes
    again = sfsim.load_run("runs/quick")

The command line is a thin layer over these functions: ``sfsim run`` calls :func:`resolve`,
:func:`run_resolved` and :meth:`Run.write` with the same defaults, so a folder written from
Python and one written by the CLI differ only in wall-clock fields (``summary.json``'s
``wall_s``, ``finished_at`` in a failed run's summary, the completion marker's ``written_at``).
See docs/api.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfsim import __version__
from sfsim.errors import InputError
from sfsim.overrides import apply_overrides, canonical_key, coerce_overrides

if TYPE_CHECKING:
    import pandas as pd

    from sfsim.results import RunResult
    from sfsim.scenario import Scenario

__all__ = [
    "DEFAULT_TRACE",
    "TRACE_FORMATS",
    "Run",
    "compare",
    "failed_run",
    "load_run",
    "load_scenario",
    "parse_trace",
    "resolve",
    "run",
    "run_resolved",
    "run_writers",
    "sweep",
]

Overrides = Mapping[str, Any] | Iterable[str] | None

#: Trace files a run folder may get: ``parquet`` (trace.parquet) and ``json`` (trace.json,
#: Chrome Trace Event format for Perfetto). ``summary.json``, ``memory.parquet`` and
#: ``scenario.resolved.yaml`` are always written.
TRACE_FORMATS = ("parquet", "json")
#: What ``sfsim run`` and :meth:`Run.write` write unless told otherwise.
DEFAULT_TRACE = "parquet,json"


# ---- scenarios ----------------------------------------------------------------------------------


def _read_data(path: Path) -> Any:
    """Raw YAML data of a scenario file, read with the same checks as `load_scenario`."""
    try:
        from sfsim.yamlio import load_yaml
    except ImportError:  # pragma: no cover - older tree without the bounded reader
        import yaml

        if not path.is_file():
            raise InputError("no such file" if not path.exists() else "is not a file",
                             file=path) from None
        try:
            return yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read: {exc}", file=path) from None
    return load_yaml(path, what="scenario file")


def _note_override(exc: InputError, overrides: Mapping[str, Any]) -> InputError:
    """Say which ``--set`` produced a validation error at (or under) an overridden key."""
    if exc.key is None:
        return exc
    for k in overrides:
        c = canonical_key(k)
        if exc.key == c or exc.key.startswith((c + ".", c + "[")) or c.startswith(exc.key + "."):
            exc.problem = f"{exc.problem} (set by --set {k}={json.dumps(overrides[k])})"
            exc.args = (exc.message,)
            break
    return exc


def load_scenario(source: Any, *, overrides: Overrides = None) -> Scenario:
    """A validated scenario from a YAML file, a dict of raw data, or a `Scenario`.

    ``overrides`` maps dotted keys to values (``{"training.rounds": 3, "devices[1].cut": 4}``)
    or is a list of ``"KEY=VALUE"`` strings as for ``--set``; they are applied to the raw data
    before validation, so a bad value is reported exactly as in a file (InputError naming the
    key).
    """
    from sfsim.scenario import Scenario, parse_scenario
    from sfsim.scenario import load_scenario as load_file

    sets = coerce_overrides(overrides)
    if isinstance(source, Scenario):
        if not sets:
            return source
        data, file = source.model_dump(mode="json"), "<scenario>"
    elif isinstance(source, Mapping):
        data, file = dict(source), "<dict>"
    elif isinstance(source, str | os.PathLike):
        if not sets:
            return load_file(Path(source))
        from sfsim.scenario import anchor_paths

        file = str(source)
        data = anchor_paths(_read_data(Path(source)), Path(source).parent)
    else:
        raise InputError(
            f"expected a scenario file path, a dict or a Scenario, not {type(source).__name__}"
        )
    try:
        data = apply_overrides(data, sets)
    except InputError as exc:
        exc.file = exc.file or file
        exc.args = (exc.message,)
        raise
    try:
        return parse_scenario(data, file=file)
    except InputError as exc:
        raise _note_override(exc, sets) from None


def resolve(
    source: Any,
    *,
    scheme: str | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    overrides: Overrides = None,
) -> Scenario:
    """The scenario ready to run: overrides applied, the fleet expanded (`sfsim.run.resolve`)."""
    from sfsim.run import resolve as resolve_scenario

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InputError(f"must be a non-negative integer, not {seed!r}", key="seed")
    s = load_scenario(source, overrides=overrides)
    try:
        return resolve_scenario(s, scheme=scheme, scheduler=scheduler, seed=seed)
    except InputError as exc:
        if exc.file is None and isinstance(source, str | os.PathLike):
            exc.file = str(source)
            exc.args = (exc.message,)
        raise


# ---- runs ---------------------------------------------------------------------------------------


def parse_trace(trace: str | Iterable[str] | None) -> frozenset[str]:
    """``"parquet,json"`` / ``["json"]`` / ``"none"`` -> the set of trace formats to write.

    A collection (``{"json"}``, ``[]``) lists the formats itself; empty means none.
    """
    if trace is None:
        trace = DEFAULT_TRACE
    items = trace.split(",") if isinstance(trace, str) else list(trace)
    names = [str(n).strip().lower() for n in items if str(n).strip()]
    if not isinstance(trace, str) and not items:
        return frozenset()
    if not names:
        raise InputError("give parquet, json, both (parquet,json) or none", key="--trace")
    if "none" in names:
        if len(names) > 1:
            raise InputError("'none' cannot be combined with other formats", key="--trace")
        return frozenset()
    bad = [n for n in names if n not in TRACE_FORMATS]
    if bad:
        raise InputError(
            f"unknown trace format {bad[0]!r}; choose from parquet, json, none", key="--trace"
        )
    return frozenset(names)


def _drop_trace_parquet(folder: Path, result: RunResult) -> None:
    (Path(folder) / "trace.parquet").unlink(missing_ok=True)


def run_writers(trace: str | Iterable[str] | None = DEFAULT_TRACE) -> list[Callable[..., Any]]:
    """The run-folder writers for a trace choice: the one place API and CLI pick them."""
    from sfsim.export import write_chrome_trace

    formats = parse_trace(trace)
    writers: list[Callable[..., Any]] = []
    if "json" in formats:
        writers.append(write_chrome_trace)
    if "parquet" not in formats:
        writers.append(_drop_trace_parquet)
    return writers


class Run:
    """One simulation's results: ``summary`` (dict), ``trace`` and ``memory`` (DataFrames),
    ``scenario_yaml`` (the resolved scenario as YAML) and ``scenario`` (parsed from it)."""

    def __init__(self, result: RunResult, scenario: Scenario | None = None, *,
                 folder: Path | None = None, has_trace: bool = True) -> None:
        self.result = result
        self._scenario = scenario
        self._has_trace = has_trace
        #: The folder this run was read from or last written to (None if neither).
        self.folder = folder

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary

    @property
    def trace(self) -> pd.DataFrame:
        """One row per span (trace.parquet's columns)."""
        if not self._has_trace:
            raise InputError(
                "this run folder has no trace.parquet (it was written with --trace json or none)",
                file=self.folder,
            )
        return self.result.trace

    @property
    def memory(self) -> pd.DataFrame:
        """One row per memory event, with each owner's running level (memory.parquet)."""
        return self.result.memory

    @property
    def events(self) -> pd.DataFrame:
        """Training events: aggregations, drops, server updates (`sfsim.engine.EventLog`)."""
        return self.result.events

    @property
    def learning(self) -> pd.DataFrame | None:
        """The proxy model's learning curve (learning.parquet; None without ``learning``)."""
        return self.result.learning

    @property
    def scenario_yaml(self) -> str:
        return self.result.scenario_yaml

    @property
    def scenario(self) -> Scenario:
        """The resolved scenario (re-runs to the same result)."""
        if self._scenario is None:
            import yaml

            from sfsim.scenario import parse_scenario

            where = self.folder / "scenario.resolved.yaml" if self.folder else "<run>"
            self._scenario = parse_scenario(yaml.safe_load(self.scenario_yaml), file=where)
        return self._scenario

    @property
    def status(self) -> str:
        """``"ok"``, or ``"error"`` for a run that could not complete (see ``summary["error"]``)."""
        return str(self.summary.get("status", "ok"))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def write(self, folder: str | os.PathLike[str], *, overwrite: bool = False,
              trace: str | Iterable[str] | None = DEFAULT_TRACE) -> Path:
        """Write the run folder (as ``sfsim run --out FOLDER`` does) and return its path.

        ``trace`` picks the trace files: ``"parquet,json"`` (default), ``"parquet"``, ``"json"``
        or ``"none"``. An existing folder is replaced only with ``overwrite``, and never by a
        failed run (see `sfsim.results.write_run_folder`). Returns where the folder went.
        """
        from sfsim.results import write_run_folder

        out = Path(folder)
        formats = parse_trace(trace)
        if self.ok and out.exists() and not overwrite:  # (a failed run goes to OUT.failed-N)
            raise InputError("already exists; choose another folder or pass overwrite=True",
                             file=out)
        result = self.result
        if not self._has_trace and formats:
            raise InputError("this run has no trace to write; use trace='none'", file=self.folder)
        if not self.ok:
            writers: list[Callable[..., Any]] = []  # a failed run has no trace to export
        else:
            writers = run_writers(formats)
        if not formats:  # nothing of the trace is kept: skip writing a large trace.parquet
            import pandas as pd

            from sfsim.results import TRACE_COLUMNS

            result = result.with_trace(pd.DataFrame(columns=TRACE_COLUMNS))
        self.folder = write_run_folder(out, result, writers, overwrite=overwrite)
        return self.folder

    def __repr__(self) -> str:
        s = self.summary
        what = (f"{s.get('scenario')!r}, {s.get('scheme')}/{s.get('scheduler')}, "
                f"seed {s.get('seed')}")
        if not self.ok:
            return f"<sfsim.Run {what}: {self.status}>"
        return f"<sfsim.Run {what}: makespan {s.get('makespan_s', float('nan')):.3f} s>"


def error_summary(s: Scenario, message: str) -> dict[str, Any]:
    """The summary of a run that could not complete (status ``error``)."""
    return {
        "scenario": s.name,
        "scheme": s.training.scheme,
        "scheduler": s.scheduler.name,
        "seed": s.seed,
        "rounds": s.training.rounds,
        "status": "error",
        "error": message,
        "version": __version__,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def failed_run(resolved: Scenario, message: str) -> Run:
    """A `Run` recording that ``resolved`` could not run (its folder says status ``error``)."""
    import pandas as pd

    from sfsim.results import RunResult
    from sfsim.scenario import dump_scenario

    result = RunResult(error_summary(resolved, message), pd.DataFrame(), pd.DataFrame(),
                       dump_scenario(resolved))
    return Run(result, resolved)


def run_resolved(resolved: Scenario, *, progress: bool | None = False) -> Run:
    """Simulate an already resolved scenario (raises InputError when it cannot run).

    ``progress``: True draws a bar per round on stderr, None draws it only on a terminal.
    """
    from sfsim.progress import progress as bar_for
    from sfsim.progress import round_callback
    from sfsim.run import simulate

    with bar_for(resolved.training.rounds, f"simulating {resolved.name}",
                 enabled=progress) as bar:
        result = simulate(resolved, on_round=round_callback(bar))
    if resolved.learning.enabled:  # torch is imported only here, and only when asked for
        from sfsim.learning import attach

        attach(result, resolved)
    return Run(result, resolved)


def run(
    scenario_or_path: Any,
    *,
    scheme: str | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    overrides: Overrides = None,
    progress: bool | None = False,
) -> Run:
    """Run one simulation and return its `Run` (nothing is written until ``Run.write``).

    ``scenario_or_path``: a scenario file, a dict of raw scenario data, or a `Scenario`.
    ``scheme``/``scheduler``/``seed`` override the scenario's (as ``--scheme`` etc. do);
    ``overrides`` sets any key (as ``--set`` does). Bad input or a scenario that cannot run
    (e.g. does not fit in memory) raises `sfsim.errors.InputError`.
    """
    resolved = resolve(scenario_or_path, scheme=scheme, scheduler=scheduler, seed=seed,
                       overrides=overrides)
    return run_resolved(resolved, progress=progress)


def load_run(folder: str | os.PathLike[str]) -> Run:
    """Read a run folder (written by ``sfsim run`` or `Run.write`) back into a `Run`.

    ``trace`` is read from trace.parquet; a folder written without it (``--trace json`` or
    ``none``) loads, but ``Run.trace`` then raises InputError.
    """
    import pandas as pd

    from sfsim.results import RunResult

    p = Path(folder)
    if not p.is_dir():
        raise InputError("no such run folder" if not p.exists() else "is not a folder", file=p)
    summary_path = p / "summary.json"
    if not summary_path.is_file():
        raise InputError("not a run folder (no summary.json)", file=p)
    try:
        summary = json.loads(summary_path.read_text())
        scenario_yaml = (p / "scenario.resolved.yaml").read_text()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the run folder: {exc}", file=p) from None

    def frame(name: str) -> pd.DataFrame:
        f = p / name
        return pd.read_parquet(f) if f.is_file() else pd.DataFrame()

    ok = summary.get("status", "ok") == "ok"
    has_trace = (p / "trace.parquet").is_file() or not ok
    result = RunResult(summary, frame("trace.parquet"), frame("memory.parquet"), scenario_yaml,
                       frame("events.parquet") if (p / "events.parquet").is_file() else None,
                       frame("learning.parquet") if (p / "learning.parquet").is_file() else None)
    return Run(result, folder=p, has_trace=has_trace)


# ---- many runs ----------------------------------------------------------------------------------


def compare(
    scenario_or_path: Any,
    schemes: Sequence[str] | None = None,
    *,
    scheduler: str | None = None,
    seed: int | None = None,
    overrides: Overrides = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    seeds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Run one scenario under each scheme (default: all) and return one row per scheme.

    The columns are `sfsim.compare.COLUMNS` (time, FLOPs, bytes, memory); a scheme the scenario
    cannot run gets status ``skipped`` and the reason in ``note``. ``seeds``: every scheme runs
    once per seed, one row each, with a ``seed`` column (``seed`` and ``seeds`` exclude each other).
    """
    from sfsim.compare import compare as compare_schemes

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InputError(f"must be a non-negative integer, not {seed!r}", key="seed")
    if seeds is not None:
        if seed is not None:
            raise InputError("give `seed` or `seeds`, not both", key="seeds")
        if not seeds or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                            for v in seeds):
            raise InputError(f"must be a non-empty list of non-negative integers, not {seeds!r}",
                             key="seeds")
    s = load_scenario(scenario_or_path, overrides=overrides)
    kw: dict[str, Any] = {}
    if scheduler is not None:
        kw["scheduler"] = scheduler
    if seed is not None:
        kw["seed"] = seed
    return compare_schemes(s, schemes, on_row=on_row, seeds=seeds, **kw)


def sweep(*args: Any, **kwargs: Any) -> Any:
    """Run a sweep (a base scenario × grid × seeds); see `sfsim.sweep.run_sweep` and docs/api.md.

    Arguments are passed to `sfsim.sweep.run_sweep` unchanged.
    """
    from sfsim.sweep import run_sweep

    return run_sweep(*args, **kwargs)
