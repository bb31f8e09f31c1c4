"""The ``sfsim`` command line.

Every command that reads user input turns an ``InputError`` into one line on stderr,
``error: FILE: KEY: PROBLEM``, and exit status 2 — never a traceback. Sub-systems (schedulers,
profiling, plotting) add their own commands through a ``register(app)`` function.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from sfsim import __version__
from sfsim.errors import InputError

app = typer.Typer(
    name="sfsim",
    help="Simulate split / federated LLM fine-tuning over mobile devices and an edge server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Not a terminal (a pipe, a CI log): tables get 120 columns instead of rich's 80.
_WIDTH = shutil.get_terminal_size((120, 24)).columns
out_console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


def _print_version(value: bool) -> None:
    if value:
        print(f"sfsim {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="Print the sfsim version and exit."),
    ] = False,
) -> None:
    """Simulate split / federated LLM fine-tuning over mobile devices and an edge server."""

F = TypeVar("F", bound=Callable[..., Any])


def _printable(text: str) -> str:
    """``text`` safe to print: control characters and undecodable bytes escaped."""
    return "".join(
        c if c in "\n\t" or (c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF)
        else ascii(c)[1:-1]
        for c in text
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: MESSAGE`` on stderr; return the Exit to raise (status 2: bad input)."""
    err_console.print(
        f"error: {_printable(message)}", markup=False, highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Decorator: report InputError as ``error: ...`` with exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise fail(exc.message) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def about(path: Path) -> Iterator[None]:
    """Errors raised while handling ``path`` name it, if they do not name a file already."""
    try:
        yield
    except InputError as exc:
        if exc.file is None:
            exc.file = str(path)
            exc.args = (exc.message,)
        raise


#: Longest default run-folder name (the scenario's name is cut to fit).
DEFAULT_NAME_MAX = 100


def _safe_part(text: str) -> str:
    """``text`` as one portable folder-name part: ASCII letters, digits, ``_ . -`` only."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._-")
    return safe or "x"


def _default_out(
    name: str, scheme: str, scheduler: str, seed: int, taken: Collection[Path] = ()
) -> Path:
    """``runs/NAME_SCHEME_SCHEDULER_sSEED`` (``-2``, ``-3``... when taken), always under runs/.

    Every part is made safe (no separators, no ``..``, no control characters) and the name is
    at most `DEFAULT_NAME_MAX` characters, whatever the scenario's ``name`` says.
    """
    tail = "_".join(_safe_part(p) for p in (scheme, scheduler, f"s{seed}"))[:40]
    head = _safe_part(name)[: DEFAULT_NAME_MAX - len(tail) - 6]
    base = Path("runs") / f"{head}_{tail}"
    out, n = base, 2
    while os.path.lexists(out) or out in taken:
        out = base.with_name(f"{base.name}-{n}")
        n += 1
    return out


def _gb(x: float) -> str:
    return f"{x / 1e9:.3f}"


def _optional_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Headline rows for what a run reports only sometimes: energy, faults, learning."""
    rows = []
    if "total_energy_j" in summary:
        rows.append(("energy (total / server)",
                     f"{summary['total_energy_j']:.1f} J / {summary['server_energy_j']:.1f} J"))
    f = summary.get("faults") or {}
    if "samples_scheduled" in f:
        dropped = sum(f["samples_dropped"].values())
        rows.append(("devices completed / scheduled",
                     f"{f['devices_completed']} / {f['devices_scheduled']}"))
        rows.append(("samples trained / dropped", f"{f['samples_trained']} / {dropped}"))
    if f.get("transfer_paused_s") or f.get("server_extra_s"):
        rows.append(("outage pauses / server slowdown",
                     f"{f['transfer_paused_s']:.3f} s / +{f['server_extra_s']:.3f} s"))
    learned = summary.get("learning")
    if learned:
        ttt = learned.get("time_to_target_s")
        reached = "not reached" if ttt is None else f"{ttt:.3f} s"
        rows.append((f"accuracy: final / time to {learned['target_accuracy']:.0%}",
                     f"{learned['final_accuracy']:.3f} / {reached}"))
    return rows


def print_summary(summary: dict[str, Any], out: Path | None) -> None:
    """A terminal table: the headline figures, then one row per device."""
    head = Table(title=f"sfsim run: {summary['scenario']}", show_header=False)
    head.add_column("what")
    head.add_column("value", justify="right")
    rows = [
        ("scheme / scheduler", f"{summary['scheme']} / {summary['scheduler']}"),
        ("model / cost model", f"{summary['model']} / {summary['cost_model']}"),
        (
            "seed, rounds × local iterations",
            f"{summary['seed']}, {summary['rounds']} × {summary['local_iterations']}",
        ),
        ("training time (makespan)", f"{summary['makespan_s']:.3f} s"),
        ("round time (mean)", f"{sum(summary['round_s']) / len(summary['round_s']):.3f} s"),
        (
            "server busy",
            f"{summary['server_busy_s']:.3f} s ({100 * summary['server_utilisation']:.1f}%)",
        ),
        ("server peak memory", f"{_gb(summary['server_peak_bytes'])} GB"),
        (
            "uplink / downlink bytes",
            f"{summary['uplink_bytes'] / 1e6:.2f} MB / {summary['downlink_bytes'] / 1e6:.2f} MB",
        ),
    ]
    rows += _optional_rows(summary)
    for k, v in rows:
        head.add_row(k, v)
    out_console.print(head)
    dev = Table(title="devices")
    for col in (
        "device",
        "processor",
        "cut",
        "compute s",
        "uplink s",
        "downlink s",
        "queue s",
        "peak GB",
        "memory GB",
        "energy J",
    ):
        dev.add_column(col, justify="left" if col in ("device", "processor") else "right")
    for d_id, d in summary["devices"].items():
        dev.add_row(
            d_id,
            d["processor"],
            str(d["cut"]),
            f"{d['compute_s']:.3f}",
            f"{d['uplink_s']:.3f}",
            f"{d['downlink_s']:.3f}",
            f"{d['queue_wait_s']:.3f}",
            _gb(d["peak_bytes"]),
            _gb(d["memory_bytes"]),
            f"{d['energy_j']:.1f}" if "energy_j" in d else "-",
        )
    out_console.print(dev)
    phases = Table(title="where time went (summed over spans)")
    phases.add_column("phase")
    phases.add_column("seconds", justify="right")
    for ph, s in sorted(summary["time_by_phase_s"].items(), key=lambda kv: -kv[1]):
        phases.add_row(ph, f"{s:.3f}")
    out_console.print(phases)
    if summary.get("scheduler_note"):
        out_console.print(f"note: {summary['scheduler_note']}")
    if out is not None:
        out_console.print(f"run folder: {out}")


#: ``--set KEY=VALUE`` (repeatable): any scenario key, validated like the file.
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="override a scenario key (dotted; list items as devices[1].cut; value as YAML); "
        "repeatable",
    ),
]


@app.command()
@user_errors
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    out: Annotated[
        Path | None, typer.Option(help="run folder to write (default: runs/...)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    scheduler: Annotated[str | None, typer.Option(help="override the scheduler")] = None,
    scheme: Annotated[str | None, typer.Option(help="override the training scheme")] = None,
    set_: SetOption = None,
    trace: Annotated[
        str,
        typer.Option(
            metavar="{parquet,json,none}",
            help="trace files in the run folder: parquet, json (Perfetto), both "
            "(parquet,json) or none",
        ),
    ] = "parquet,json",
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out folder")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no summary table")] = False,
) -> None:
    """Simulate a scenario: print a summary and write a run folder."""
    from sfsim import api
    from sfsim.overrides import parse_set

    if seed is not None and seed < 0:
        raise InputError("must be a non-negative integer", key="--seed")
    sets = parse_set(set_ or [])
    api.parse_trace(trace)
    with about(scenario):
        resolved = api.resolve(
            scenario, scheme=scheme, scheduler=scheduler, seed=seed, overrides=sets
        )
    # The folder is claimed (checked and locked) before simulating: a second run to the same
    # folder fails at once, and the rules of `sfsim.results.write_run_folder` apply.
    claim = _claim_out(out, overwrite, resolved)
    out = claim.out
    with claim:
        try:
            with about(scenario):
                result = api.run_resolved(resolved, progress=False if quiet else None)
        except InputError as exc:
            folder = api.failed_run(resolved, exc.message).write(
                out, overwrite=overwrite, trace=trace
            )
            raise fail(f"{exc.message} (run folder with status 'error': {folder})") from None
        except Exception as exc:  # an internal bug: still leave a self-describing folder
            folder = _write_crash_folder(resolved, exc, out, overwrite)
            raise fail(
                f"internal error ({type(exc).__name__}: {exc}); traceback in "
                f"{folder / 'error.log'}",
                code=1,
            ) from None
        folder = result.write(out, overwrite=overwrite, trace=trace)
    if not quiet:
        print_summary(result.summary, folder)


def _claim_out(out: Path | None, overwrite: bool, resolved: Any) -> Any:
    """Claim ``--out``, or the first free default folder under runs/ (see `_default_out`)."""
    from sfsim.results import RunFolderBusy, RunFolderExists, claim_run_folder

    if out is not None:
        return claim_run_folder(out, overwrite=overwrite)
    parts = (resolved.name, resolved.training.scheme, resolved.scheduler.name, resolved.seed)
    taken: set[Path] = set()
    for _ in range(1000):  # another run may take the name first: move on to the next one
        candidate = _default_out(*parts, taken=taken)
        try:
            return claim_run_folder(candidate)
        except (RunFolderBusy, RunFolderExists):
            taken.add(candidate)
    raise InputError("no free default run folder under runs/; pass --out")


def _write_crash_folder(resolved: Any, exc: Exception, out: Path, overwrite: bool) -> Path:
    """The run folder of a run that hit an internal error: status error, with error.log."""
    from sfsim import api
    from sfsim.results import write_run_folder

    first = (str(exc).splitlines() or [""])[0]
    failed = api.failed_run(
        resolved, f"internal error ({type(exc).__name__}: {first}); traceback in error.log"
    )
    return write_run_folder(
        out, failed.result, [lambda folder, _r: crash_log(exc, folder)], overwrite=overwrite
    )


@app.command()
@user_errors
def validate(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    set_: SetOption = None,
) -> None:
    """Check a scenario file: exit 0 when valid, 2 with a message naming the key when not."""
    from sfsim import api
    from sfsim.overrides import parse_set
    from sfsim.preflight import preflight

    sets = parse_set(set_ or [])
    with about(scenario):
        s = api.resolve(scenario, overrides=sets)
        report = preflight(s)  # every check `run` makes, short of simulating the run
    out_console.print(
        f"ok: {scenario} ({_device_count(s)}, scheme {s.training.scheme}, "
        f"model {s.model.arch})"
    )
    for note in report.notes:
        out_console.print(f"note: {note}", markup=False, highlight=False)


@app.command("schemes")
@user_errors
def list_schemes(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {name, description, ...}.")
    ] = False,
) -> None:
    """List the training schemes (built-in and from installed plugins)."""
    from sfsim.schemes import scheme_class, schemes

    items = schemes()
    if as_json:
        rows = []
        for k, v in items.items():
            cls = scheme_class(k)
            rows.append({"name": k, "description": v, "uses_scheduler": cls.uses_scheduler,
                         "fixed_scheduler": cls.fixed_scheduler, "module": cls.__module__})
        print(json.dumps(rows, indent=2))
        return
    t = Table("scheme", "description")
    for k, v in items.items():
        t.add_row(k, v)
    out_console.print(t)


@app.command()
def version() -> None:
    """Print the sfsim version."""
    print(__version__)


def _register_subcommands() -> None:
    for mod_name in (
        "sfsim.schedulers.cli",
        "sfsim.profiling.cli",
        "sfsim.plotting.cli",
        "sfsim.compare",
        "sfsim.sweep",
        "sfsim.instance_cli",
        "sfsim.traces_cli",
    ):
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod_name.startswith(exc.name):
                raise
            continue
        register = getattr(mod, "register", None)
        if register is not None:
            register(app)


_register_subcommands()


def crash_log(exc: BaseException, folder: Path | None = None) -> Path | None:
    """Write ``exc``'s traceback to a log file and return its path (None if it cannot).

    The log goes into ``folder`` (``error.log``) when given, else to a new file
    ``sfsim-crash-*.log`` in the system temporary folder (``$TMPDIR``, else /tmp).
    """
    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException:  # out of memory or recursion while formatting
        text = f"{type(exc).__name__}: (traceback could not be formatted)\n"
    header = f"sfsim {__version__}: {' '.join(sys.argv)}\n\n"
    try:
        if folder is not None:
            path = folder / "error.log"
            path.write_text(header + text)
            return path
        fd, name = tempfile.mkstemp(prefix="sfsim-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(header + text)
        return Path(name)
    except BaseException:  # a log is best effort
        return None


def _internal_error(exc: BaseException) -> int:
    """Report an unexpected exception as one line plus a log file; the exit status (1)."""
    log = crash_log(exc)
    where = f"traceback in {log}" if log else "no log could be written"
    first = (str(exc).splitlines() or [""])[0][:200]
    with contextlib.suppress(BaseException):  # stderr itself failed: nothing more to do
        fail(f"internal error ({type(exc).__name__}: {first}); {where}", code=1)
    return 1


def main() -> None:
    """The ``sfsim`` entry point: every failure becomes exit status 2 (input) or 1 (internal).

    Commands report their own input errors; this is the last resort for anything that escapes
    a command: an InputError is still ``error: ...`` with status 2, anything else (a bug, a
    RecursionError, a MemoryError) is one line with status 1 and the traceback in a log file.
    """
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except InputError as exc:
        fail(exc.message)
        sys.exit(2)
    except BaseException as exc:  # the last resort: never a bare traceback
        sys.exit(_internal_error(exc))


def _device_count(s: Any) -> str:  # a resolved Scenario (not imported here: start-up time)
    """How many devices a resolved scenario runs (a population stays a generator)."""
    if s.fleet is not None and s.fleet.participants is not None:
        return f"{len(s.devices) + s.fleet.count} devices, {s.fleet.participants} per round"
    return f"{len(s.devices)} devices"


if __name__ == "__main__":
    main()
