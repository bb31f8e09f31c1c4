"""``sfsim instance``: export one round of a run as scheduling instances for ``sfsim schedule``.

The scenario is simulated (event loop, full trace) and, for round R, two instance files in the
format of `sfsim.schedulers.instances` are written:

* the **estimated** instance: exactly what the round's scheduler was handed (release, server
  times, lags and tails as the scheme and the scenario's estimator see them), captured at the
  point where the server's queue is built for that round;
* the **realised** instance: the same jobs with the times the event loop realised, read off the
  trace, relative to the round's start: ``release_s`` = end of the first uplink; ``server_s[k]``
  = server forward + backward of iteration k; ``lag_s[k]`` = from the end of server task k to the
  arrival (uplink end) of task k+1; ``tail_s`` = from the end of the last server task to the end
  of the device's adapter upload.

On the realised instance, ``sfsim schedule --scheduler fifo`` gives the round's realised makespan
(to the last adapter upload, FedAvg excluded) of a FIFO run, since FIFO serves tasks in arrival
order exactly as the server did. Only schemes with a sequential server queue (memsfl, sfl_v2,
splitlora, ...) have an instance.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sfsim.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from sfsim.scenario import Scenario
    from sfsim.schedulers.base import Instance

SERVER_PHASES = ("server_fwd", "server_bwd")

#: ``--set KEY=VALUE`` (as ``sfsim run``'s; declared here so that importing this module does not
#: import `sfsim.cli`, which imports this module to register the command).
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE",
                 help="override a scenario key (dotted, value as YAML); repeatable"),
]


@contextmanager
def _capture_instances() -> Iterator[dict[int, Instance]]:
    """Record the instance each round's server queue is built from (round -> instance)."""
    from sfsim.server import ServerQueue

    seen: dict[int, Instance] = {}
    original = ServerQueue.__dict__["for_round"]

    def for_round(cls: Any, sim: Any, round: int, *args: Any, **kwargs: Any) -> Any:
        instance = kwargs.get("instance", args[2] if len(args) > 2 else None)
        if instance is not None:
            seen.setdefault(round, instance)
        return original.__func__(cls, sim, round, *args, **kwargs)

    ServerQueue.for_round = classmethod(for_round)  # type: ignore[method-assign,assignment]
    try:
        yield seen
    finally:
        ServerQueue.for_round = original  # type: ignore[method-assign]


def realised_instance(trace: pd.DataFrame, round: int, order_hint: Instance) -> Instance:
    """Round ``round`` of a trace as an instance of realised times (see the module docstring)."""
    from sfsim.schedulers.base import Instance, Job

    rows = trace[trace["round"] == round]
    t0 = float(rows["start_s"].min())
    jobs = []
    for est in order_hint.jobs:
        d = rows[rows["device"] == est.id]
        k = est.k
        up = d[d["phase"] == "uplink_activations"].groupby("iteration")["end_s"].max()
        srv = d[d["phase"].isin(SERVER_PHASES)]
        busy = (srv["end_s"] - srv["start_s"]).groupby(srv["iteration"]).sum()
        done = srv.groupby("iteration")["end_s"].max()
        upload = d[d["phase"] == "adapter_upload"]["end_s"]
        if len(up) != k or len(done) != k or upload.empty:
            raise InputError(f"device {est.id!r} has no complete trace in round {round}",
                             key="--round")
        jobs.append(Job(
            id=est.id,
            release_s=float(up[0]) - t0,
            server_s=tuple(float(busy[i]) for i in range(k)),
            lag_s=tuple(float(up[i + 1] - done[i]) for i in range(k - 1)),
            tail_s=float(upload.max() - done[k - 1]),
        ))
    return Instance(tuple(jobs))


def export_round(s: Scenario, round: int) -> tuple[Instance, Instance, dict[str, Any]]:
    """Simulate ``s`` and return round ``round``'s (estimated, realised) instances and figures."""
    from sfsim.run import simulate

    if not 0 <= round < s.training.rounds:
        raise InputError(f"must be a round of the run (0..{s.training.rounds - 1}), got {round}",
                         key="--round")
    with _capture_instances() as seen:
        result = simulate(s)
    if round not in seen:
        raise InputError(f"scheme {s.training.scheme!r} has no server queue to schedule",
                         key="training.scheme")
    estimated = seen[round]
    realised = realised_instance(result.trace, round, estimated)
    info: dict[str, Any] = {"round": round, "scheduler": result.summary.get("scheduler")}
    for p in result.summary.get("plans", []):
        if p.get("round") == round:
            info.update({k: v for k, v in p.items()  # figures only, not the orders
                         if k != "round" and not isinstance(v, list | dict)})
    return estimated, realised, info


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder (never half-written)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("folder does not exist", file=folder)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _realised_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.realised{out.suffix or '.json'}")


def register(app: typer.Typer) -> None:
    """Add ``sfsim instance`` to the command line."""
    from sfsim.cli import about, user_errors

    @app.command("instance")
    @user_errors
    def instance_cmd(
        scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
        round_: Annotated[int, typer.Option("--round", help="round to export (from 0)")] = 0,
        estimator: Annotated[str | None, typer.Option(
            help="the scheduler's estimator (scheduler.estimator), where sfsim has one")] = None,
        out: Annotated[Path, typer.Option(
            help="estimated instance JSON; the realised one goes to OUT-stem.realised.json")
        ] = Path("instance.json"),
        realised: Annotated[Path | None, typer.Option(
            help="where to write the realised instance (default: next to --out)")] = None,
        seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
        scheduler: Annotated[str | None, typer.Option(help="override the scheduler")] = None,
        set_: SetOption = None,
        overwrite: Annotated[bool, typer.Option(help="replace existing files")] = False,
    ) -> None:
        """Write round R's scheduling instance (estimated and realised) for `sfsim schedule`."""
        from sfsim import api
        from sfsim.overrides import parse_set
        from sfsim.schedulers.instances import instance_to_dict

        if seed is not None and seed < 0:
            raise InputError("must be a non-negative integer", key="--seed")
        sets = parse_set(set_ or [])
        if estimator is not None:
            from sfsim.scenario import SchedulerCfg

            if "estimator" not in SchedulerCfg.model_fields:
                raise InputError("this sfsim has no scheduler.estimator", key="--estimator")
            sets = {**sets, "scheduler.estimator": estimator}
        real_out = realised if realised is not None else _realised_path(out)
        if real_out.resolve() == out.resolve():
            raise InputError("must differ from --out", key="--realised")
        for path in (out, real_out):
            if path.exists() and not overwrite:
                raise InputError("already exists (pass --overwrite to replace it)", file=path)
        with about(scenario):
            resolved = api.resolve(scenario, scheduler=scheduler, seed=seed, overrides=sets)
            est, real, info = export_round(resolved, round_)
        _write_atomic(out, instance_to_dict(est))
        _write_atomic(real_out, instance_to_dict(real))
        typer.echo(json.dumps({"estimated": str(out), "realised": str(real_out),
                               "jobs": len(est.jobs), "tasks": est.n_tasks, **info}, indent=2))
