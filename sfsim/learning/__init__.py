"""Learning on the simulated clock (issue 13): a small proxy model trained along a run's dataflow.

The simulator core never imports this package, and this package imports torch only inside
`learn` (through `sfsim.learning.replay`), so a timing-only run never loads torch.

`learn(result, scenario)` replays what the simulation recorded (``result.trace`` and
``result.events``) on a small proxy model of the scenario's architecture family: every training
step happens at the simulated time the trace gives, with the device's own data, in the order the
server processed it; aggregations combine exactly the devices the event log lists, with their
weights. The result is a table with `LEARNING_COLUMNS`:

* one row per applied training step (``step`` counts them from 0, ``device`` the device whose
  batch it was, ``train_loss`` the loss of that batch), ``eval_*`` NaN;
* one row per evaluation (``step`` -1, ``device`` ""), ``eval_accuracy`` / ``eval_loss`` on the
  held-out set (drawn IID), ``train_loss`` NaN.

Rows are sorted by ``time_s`` (stable). See docs/learning.md for what is real and what is a proxy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from sfsim.results import RunResult
    from sfsim.scenario import Scenario

__all__ = ["LEARNING_COLUMNS", "attach", "learn", "learning_summary", "time_to_target"]

LEARNING_COLUMNS = ("time_s", "round", "step", "device", "train_loss", "eval_accuracy",
                    "eval_loss")


def learn(result: RunResult, scenario: Scenario) -> pd.DataFrame:
    """Train the proxy along ``result``'s recorded dataflow; one row per step and evaluation.

    ``scenario`` is the resolved scenario that produced ``result`` (its ``learning`` section
    configures the proxy, whether or not ``enabled`` is set). Same scenario and seed: the same
    table, to the last bit. Raises InputError for data that cannot be used (e.g. a bad .npy).
    """
    from sfsim.learning.replay import replay

    return replay(result, scenario).frame()


def time_to_target(frame: pd.DataFrame, target: float) -> float | None:
    """The first simulated time at which held-out accuracy is at least ``target`` (None: never)."""
    ev = frame[frame["eval_accuracy"].notna()]
    hit = ev[ev["eval_accuracy"] >= target]
    return None if hit.empty else float(hit["time_s"].iloc[0])


def learning_summary(frame: pd.DataFrame, target: float) -> dict[str, Any]:
    """What the run summary says of the learning: target, time to it, final accuracy, counts."""
    ev = frame[frame["eval_accuracy"].notna()]
    steps = frame[frame["step"] >= 0]
    final_acc = float(ev["eval_accuracy"].iloc[-1]) if not ev.empty else math.nan
    final_loss = float(ev["eval_loss"].iloc[-1]) if not ev.empty else math.nan
    return {
        "target_accuracy": float(target),
        "time_to_target_s": time_to_target(frame, target),
        "final_accuracy": final_acc,
        "final_eval_loss": final_loss,
        "best_accuracy": float(ev["eval_accuracy"].max()) if not ev.empty else math.nan,
        "steps": len(steps),
        "evaluations": len(ev),
    }


def attach(result: RunResult, scenario: Scenario) -> RunResult:
    """Run `learn` and put its table on ``result.learning`` and its figures in the summary
    (``summary["learning"]`` and the top-level ``time_to_target_s``). Returns ``result``."""
    frame = learn(result, scenario)
    result.learning = frame
    info = learning_summary(frame, scenario.learning.target_accuracy)
    result.summary["learning"] = info
    result.summary["time_to_target_s"] = info["time_to_target_s"]
    return result
