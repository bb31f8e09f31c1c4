"""Command-line commands of the scheduling layer, added to the main ``sfsim`` app.

``register(app)`` adds three commands to a ``typer.Typer`` app:

* ``schedulers [--json]``: every known scheduler (built-in and plugin) with its description;
* ``schedule INSTANCE.json --scheduler NAME [--time-limit S] [--seed N] [--param KEY=VALUE]``:
  solve one instance file and print a JSON object with ``scheduler``, ``order``,
  ``makespan_s``, ``lower_bound_s``, ``optimal``, ``solve_s`` (and ``gap``, ``status``);
* ``bench-schedulers``: the benchmark of ``benchmark.py``; writes a CSV/Parquet table, a
  summary and a PNG plot, and prints the summary as a table.

Bad input (unknown scheduler or parameter, bad instance file) prints ``error: <message>`` on
stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sfsim.errors import InputError

# numpy and the schedulers (PuLP, SciPy) are imported inside the commands: `sfsim --help` must
# not load them.

T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn an InputError into ``error: ...`` on stderr and exit status 2."""
    try:
        return fn()
    except InputError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: Largest instance size ``bench-schedulers`` accepts (``--sizes``).
MAX_BENCH_SIZE = 100_000


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options: VALUE is JSON (bounded like instance files) or a bare word."""
    from sfsim.yamlio import loads_json

    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param needs KEY=VALUE, got {item!r}")
        if _BARE_WORD.fullmatch(raw) and raw not in ("true", "false", "null"):
            params[key] = raw  # a bare word is a string
        else:
            params[key] = loads_json(raw, file=f"--param {key}")
    return params


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise InputError(f"must be a non-negative integer, got {seed}", key="--seed")


def _check_time_limit(seconds: float | None) -> None:
    if seconds is not None and not (0 < seconds < math.inf):
        raise InputError(f"must be a positive finite number of seconds, got {seconds}",
                         key="--time-limit")


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} needs comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{option} needs positive integers, got {text!r}")
    return values


def schedulers_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {name, description, ...}.")
    ] = False,
) -> None:
    """List the available schedulers with a one-line description each."""
    from sfsim.schedulers.registry import accepted_params, available, scheduler_class

    names = _guard(available)
    if as_json:
        rows = []
        for name, text in names.items():
            cls = scheduler_class(name)
            rows.append({"name": name, "description": text, "online": bool(cls.online),
                         "supports_chains": bool(cls.supports_chains),
                         "params": accepted_params(cls)})
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("scheduler", "description", "online", "chains")
    for name, text in names.items():
        cls = scheduler_class(name)
        online = "yes" if cls.online else ("option" if "online" in accepted_params(cls) else "no")
        table.add_row(name, text, online, "yes" if cls.supports_chains else "no")
    Console().print(table)


def schedule_command(
    instance: Annotated[Path, typer.Argument(help="Instance JSON file.")],
    scheduler: Annotated[
        str, typer.Option("--scheduler", "-s", help="Scheduler name.")
    ] = "schrage",
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Seconds (milp, carlier, local_search).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scheduler's generator.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (JSON value), repeatable.")
    ] = None,
) -> None:
    """Solve one instance file with one scheduler and print the result as JSON."""

    def run() -> dict[str, Any]:
        _check_seed(seed)
        _check_time_limit(time_limit)
        params = _parse_params(param or [])
        if time_limit is not None:
            params["time_limit_s"] = time_limit
        import numpy as np

        from sfsim.schedulers.instances import load_instance
        from sfsim.schedulers.result import solve

        inst = load_instance(instance)
        res = solve(scheduler, inst, np.random.default_rng(seed), **params)
        return {**res.to_dict(), "gap": res.gap}

    typer.echo(json.dumps(_guard(run), indent=2))


def bench_command(
    sizes: Annotated[str, typer.Option(help="Comma-separated numbers of devices.")] = (
        "5,10,20,50,100,1000"
    ),
    reps: Annotated[int, typer.Option(help="Instances per size and family.")] = 5,
    families: Annotated[str, typer.Option(help="Comma-separated: low, high, wide.")] = (
        "low,high,wide"
    ),
    schedulers: Annotated[str, typer.Option(help="Comma-separated scheduler names.")] = (
        "fifo,random,spt,lpt,longest_tail,schrage,local_search,carlier,milp"
    ),
    k: Annotated[int, typer.Option(help="Server tasks per device (chains when > 1).")] = 1,
    milp_max_n: Annotated[int, typer.Option(help="Run milp only up to this n.")] = 40,
    time_limit: Annotated[float, typer.Option(help="Seconds per milp/carlier solve.")] = 20.0,
    milp_solver: Annotated[str, typer.Option(help="milp solver: cbc or highs.")] = "cbc",
    seed: Annotated[int, typer.Option(help="Root seed of instances and schedulers.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/bench-schedulers"),
) -> None:
    """Benchmark schedulers on random instance families: gap to the optimum and solve time."""
    from sfsim.schedulers import benchmark

    def run() -> Any:
        _check_seed(seed)
        _check_time_limit(time_limit)
        size_list = _int_list(sizes, "--sizes")
        if max(size_list) > MAX_BENCH_SIZE:
            raise InputError(f"at most {MAX_BENCH_SIZE} devices per instance, got "
                             f"{max(size_list)}", key="--sizes")
        fams = [f.strip() for f in families.split(",") if f.strip()]
        bad = sorted(set(fams) - set(benchmark.FAMILIES))
        if bad:
            raise InputError(f"--families: unknown {bad}; valid: {', '.join(benchmark.FAMILIES)}")
        names = [s.strip() for s in schedulers.split(",") if s.strip()]
        for name in names:
            from sfsim.schedulers.registry import scheduler_class

            scheduler_class(name)  # unknown names fail before any work
        if reps < 1 or k < 1:
            raise InputError("--reps and --k must be at least 1")
        return benchmark.run(
            size_list,
            reps,
            names,
            families=fams,
            k=k,
            milp_max_n=milp_max_n,
            time_limit_s=time_limit,
            milp_solver=milp_solver,
            seed=seed,
            progress=lambda msg: typer.echo(msg, err=True),
        )

    df = _guard(run)
    paths = benchmark.write(df, out)
    _print_summary(benchmark.summarise(df))
    for path in paths:
        typer.echo(f"wrote {path}")


def _print_summary(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "n", "family", "scheduler", "mean gap %", "max gap %", "proven opt", "median solve s"
    )
    for row in summary.itertuples(index=False):
        table.add_row(
            str(row.n),
            row.family,
            row.scheduler,
            f"{row.mean_gap_pct:.3f}",
            f"{row.max_gap_pct:.3f}",
            f"{row.proven_optimal:.0%}",
            f"{row.median_solve_s:.4f}",
        )
    Console(width=max(Console().width, 100)).print(table)


def register(app: typer.Typer) -> None:
    """Add the scheduling commands to ``app``."""
    app.command("schedulers")(schedulers_command)
    app.command("schedule")(schedule_command)
    app.command("bench-schedulers")(bench_command)
