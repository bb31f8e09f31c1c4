"""Compare training schemes on one scenario: one row per scheme, the same fleet and channel.

``compare`` runs a scenario once under every registered scheme (or a chosen few), each through
the ordinary `sfsim.run.resolve` / `sfsim.run.simulate` path, and reduces every run to the
counters the papers argue about:

* time: the makespan (training time) and the mean round time;
* computation: FLOPs and seconds on the devices, FLOPs on the server (from the compute spans);
* communication: bytes up and down (from the transfer spans);
* memory: the server's peak and the largest device peak;
* energy: all devices' joules and the total with the server (`sfsim.energy`).

A scheme the scenario cannot run (a device that cannot hold its work, a missing cut) is not an
error of the comparison: its row says ``skipped`` and why. ``sfsim compare`` prints the table and
writes it as Parquet and CSV. When *every* scheme was skipped there is nothing to compare: the
command prints the table, writes nothing and exits with status 2. ``--out`` never replaces an
existing ``compare.parquet`` / ``compare.csv`` without ``--overwrite``; both files are written
to temporary names and renamed into place, so a failure leaves the old ones whole.

With ``learning: {enabled: true}`` in the scenario (see docs/learning.md) every run also trains
the proxy model; the table then gains ``time_to_target_s`` (simulated seconds to the target
accuracy, empty when not reached) and ``final_accuracy`` per run, and ``--out`` also receives
``learning_curves.png`` (held-out accuracy against simulated time, one line per scheme) and
``learning_curves.parquet`` (every run's learning table with its scheme and seed).
``--seeds 1,2,3`` runs every scheme once per seed (a ``seed`` column is added); the figure then
shows the mean over seeds and its 95% confidence interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sfsim.errors import InputError

if TYPE_CHECKING:  # imported where used: `sfsim --help` must not load pandas or the engine
    import pandas as pd

    from sfsim.results import RunResult
    from sfsim.scenario import Scenario

COLUMNS = [
    "scheme", "status", "makespan_s", "round_s_mean", "device_flops", "device_compute_s",
    "server_flops", "uplink_bytes", "downlink_bytes", "link_bytes", "server_peak_bytes",
    "device_peak_max_bytes", "device_energy_j", "total_energy_j", "note",
]
#: Columns added when the runs train the proxy model (``learning.enabled``).
LEARNING_COLUMNS = ["time_to_target_s", "final_accuracy"]


def counters(result: RunResult) -> dict[str, Any]:
    """A run reduced to time, computation, communication and memory (see module docstring)."""
    s, t = result.summary, result.trace
    dev = t[t["resource"] == "device"]
    srv = t[t["resource"] == "server"]
    rounds = s["round_s"]
    return {
        "scheme": s["scheme"],
        "status": "ok",
        "makespan_s": s["makespan_s"],
        "round_s_mean": sum(rounds) / len(rounds) if rounds else 0.0,
        "device_flops": float(dev["flops"].sum()),
        "device_compute_s": float((dev["end_s"] - dev["start_s"]).sum()),
        "server_flops": float(srv["flops"].sum()),
        "uplink_bytes": s["uplink_bytes"],
        "downlink_bytes": s["downlink_bytes"],
        "link_bytes": s["uplink_bytes"] + s["downlink_bytes"],
        "server_peak_bytes": s["server_peak_bytes"],
        "device_peak_max_bytes": max(s["device_peak_bytes"].values(), default=0.0),
        "device_energy_j": s.get("device_energy_j"),  # all devices, busy + idle + radio
        "total_energy_j": s.get("total_energy_j"),  # devices and server
        "note": "",
    } | learning_counters(s)


def learning_counters(summary: dict[str, Any]) -> dict[str, Any]:
    """time_to_target_s and final_accuracy of a run that trained (else nothing)."""
    learned = summary.get("learning")
    if not isinstance(learned, dict):
        return {}
    return {"time_to_target_s": summary.get("time_to_target_s",
                                            learned.get("time_to_target_s")),
            "final_accuracy": learned.get("final_accuracy")}


def run_scheme(s: Scenario, scheme: str, **overrides: Any) -> RunResult:
    """One scheme on a scenario (``overrides``: scheduler=, seed= as for `resolve`); with
    ``learning.enabled`` the proxy model is trained too (`sfsim.api.run_resolved`)."""
    from sfsim.api import run_resolved
    from sfsim.run import resolve

    return run_resolved(resolve(s, scheme=scheme, **overrides)).result


def compare(
    s: Scenario,
    names: Sequence[str] | None = None,
    *,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    seeds: Sequence[int] | None = None,
    curves: dict[str, list[pd.DataFrame]] | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Run ``s`` under each scheme (default: all registered) and return one row per scheme.

    ``seeds``: run every scheme once per seed (a ``seed`` column is added). ``curves``: filled
    with each scheme's learning tables (one per seed) when the runs train the proxy model.
    """
    import pandas as pd

    from sfsim.schemes import scheme_class, schemes

    names = list(names) if names else list(schemes())
    for n in names:
        scheme_class(n, key="--schemes")  # fail early, listing the known names
    rows = []
    runs: list[tuple[str, int | None]] = [(n, sd) for n in names
                                          for sd in (seeds if seeds else [None])]
    for n, sd in runs:
        extra = {"seed": sd} if sd is not None else {}
        try:
            result = run_scheme(s, n, **(overrides | extra))
            row = counters(result)
            frame = getattr(result, "learning", None)
            if curves is not None and frame is not None:
                frame = frame.assign(scheme=n, seed=result.summary.get("seed", sd))
                frame.attrs["target_accuracy"] = (result.summary.get("learning") or {}).get(
                    "target_accuracy")
                curves.setdefault(n, []).append(frame)
        except InputError as exc:
            row = {c: None for c in COLUMNS} | {"scheme": n, "status": "skipped",
                                                "note": exc.problem}
        if seeds:
            row = {"scheme": n, "seed": sd} | row
        rows.append(row)
        if on_row is not None:
            on_row(row)
    columns = ["scheme", "seed", *COLUMNS[1:]] if seeds else list(COLUMNS)
    if any(c in r for r in rows for c in LEARNING_COLUMNS):
        columns = [*columns[:-1], *LEARNING_COLUMNS, columns[-1]]
    return pd.DataFrame(rows, columns=columns)


def _fmt(v: Any, scale: float, digits: int) -> str:
    import pandas as pd

    return "-" if v is None or pd.isna(v) else f"{v / scale:.{digits}f}"


#: ``--set KEY=VALUE`` on ``sfsim compare`` (as on ``sfsim run``; see `sfsim.overrides`).
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="override a scenario key (as for sfsim run); repeatable")]


def register(app: typer.Typer) -> None:
    """Add ``sfsim compare`` to the command line."""
    from rich.table import Table

    from sfsim.cli import out_console, user_errors

    @app.command("compare")
    @user_errors
    def compare_cmd(
        scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
        out: Annotated[Path | None, typer.Option(help="folder for compare.parquet / .csv")] = None,
        schemes_: Annotated[str | None, typer.Option(
            "--schemes", help="comma-separated scheme names (default: every scheme)")] = None,
        seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
        seeds: Annotated[str | None, typer.Option(
            help="comma-separated seeds: every scheme runs once per seed (learning curves: "
                 "mean and 95% CI over seeds)")] = None,
        set_: SetOption = None,
        overwrite: Annotated[bool, typer.Option(
            help="replace compare.parquet / compare.csv already in --out")] = False,
    ) -> None:
        """Run one scenario under every scheme and tabulate time, FLOPs, bytes and memory.

        Exits with status 2 when every scheme was skipped (then nothing is written).
        """
        from sfsim.api import load_scenario as load_with_overrides
        from sfsim.overrides import parse_set

        seed_list = _parse_seeds(seeds)
        if seed_list and seed is not None:
            raise InputError("give either --seed or --seeds, not both", key="--seeds")
        if out is not None:
            _check_out(out, overwrite)
        s = load_with_overrides(scenario, overrides=parse_set(set_ or []))
        names = [n.strip() for n in schemes_.split(",") if n.strip()] if schemes_ else None
        curves: dict[str, list[pd.DataFrame]] = {}
        df = compare(s, names, seed=seed, seeds=seed_list, curves=curves)
        learned = "time_to_target_s" in df.columns
        table = Table(title=f"sfsim compare: {s.name}")
        heads = ["scheme", *(["seed"] if seed_list else []), "time s", "device TFLOP",
                 "server TFLOP", "up MB", "down MB", "server peak GB", "device peak GB",
                 "device kJ", "total kJ", *(["to target s", "final acc"] if learned else []),
                 "note"]
        width = max((len(str(n)) for n in df["scheme"]), default=6)
        for h in heads:
            if h == "scheme":  # never truncated: the other columns wrap first
                table.add_column(h, no_wrap=True, min_width=width)
            else:
                table.add_column(h, justify="left" if h == "note" else "right")
        for r in df.to_dict("records"):
            note = r["note"] if r["status"] == "ok" else f"skipped: {r['note']}"
            table.add_row(r["scheme"], *([str(r["seed"])] if seed_list else []),
                          _fmt(r["makespan_s"], 1, 3),
                          _fmt(r["device_flops"], 1e12, 3), _fmt(r["server_flops"], 1e12, 3),
                          _fmt(r["uplink_bytes"], 1e6, 2), _fmt(r["downlink_bytes"], 1e6, 2),
                          _fmt(r["server_peak_bytes"], 1e9, 3),
                          _fmt(r["device_peak_max_bytes"], 1e9, 3),
                          _fmt(r["device_energy_j"], 1e3, 2), _fmt(r["total_energy_j"], 1e3, 2),
                          *([_fmt(r["time_to_target_s"], 1, 2), _fmt(r["final_accuracy"], 1, 3)]
                            if learned else []), note)
        out_console.print(table)
        if not df.empty and (df["status"] == "skipped").all():
            raise InputError(
                f"every scheme was skipped ({', '.join(df['scheme'])}); nothing to compare"
                + (f", nothing written to {out}" if out is not None else ""),
                file=str(scenario),
            )
        if out is not None:
            _check_out(out, overwrite)  # again: something may have appeared while running
            _write_tables(df, out)
            out_console.print(f"written: {out / 'compare.parquet'}, {out / 'compare.csv'}")
            if curves:
                for path in _write_curves(curves, out, title=f"{s.name}: accuracy against "
                                          "simulated time"):
                    out_console.print(f"written: {path}")


def _parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds 1,2,3`` -> [1, 2, 3] (distinct whole numbers >= 0)."""
    if not text:
        return None
    try:
        seeds = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"expected comma-separated whole numbers, got {text!r}",
                         key="--seeds") from None
    if not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
        raise InputError(f"expected distinct whole numbers >= 0, got {text!r}", key="--seeds")
    return seeds


def _write_curves(curves: dict[str, list[pd.DataFrame]], out: Path, *, title: str) -> list[Path]:
    """learning_curves.parquet (every run's table) and learning_curves.png, renamed in place."""
    import os

    import pandas as pd

    from sfsim.plotting.learning import compare_curves

    frames = [f for fs in curves.values() for f in fs]
    target = None
    for f in frames:
        if isinstance(f.attrs.get("target_accuracy"), int | float):
            target = float(f.attrs["target_accuracy"])
    fig, _ = compare_curves(curves, target=target, title=title)
    paths = [out / name for name in CURVE_FILES]
    tmp = [out / f".{p.name}.{os.getpid()}.tmp" for p in paths]
    try:
        pd.concat(frames, ignore_index=True).to_parquet(tmp[0], index=False)
        fig.savefig(tmp[1], format="png", dpi=110)
        for a, b in zip(tmp, paths, strict=True):
            os.replace(a, b)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", file=str(out)) from None
    finally:
        for a in tmp:
            a.unlink(missing_ok=True)
    return paths


OUT_FILES = ("compare.parquet", "compare.csv")
#: Written beside the tables when the runs train the proxy model.
CURVE_FILES = ("learning_curves.parquet", "learning_curves.png")


def _check_out(out: Path, overwrite: bool) -> None:
    """``--out`` is a folder or absent; its tables are replaced only with ``--overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError("is not a folder; --out names the folder for compare.parquet / .csv",
                         file=str(out))
    taken = [name for name in (*OUT_FILES, *CURVE_FILES) if (out / name).exists()]
    if taken and not overwrite:
        raise InputError(
            f"already holds {', '.join(taken)}; choose another --out or pass --overwrite",
            file=str(out),
        )


def _write_tables(df: pd.DataFrame, out: Path) -> None:
    """Write both tables beside their final names, then rename them into place."""
    import os

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror}", file=str(out)) from None
    tmp = {name: out / f".{name}.{os.getpid()}.tmp" for name in OUT_FILES}
    try:
        df.to_parquet(tmp["compare.parquet"], index=False)
        df.to_csv(tmp["compare.csv"], index=False)
        for name, path in tmp.items():
            os.replace(path, out / name)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", file=str(out)) from None
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
