"""Build the tutorial notebooks from the cell sources below (committed without outputs).

Run ``python notebooks/build_notebooks.py`` after editing a cell here; never edit the
``.ipynb`` files by hand. Cell ids are fixed, so rebuilding unchanged sources gives identical
files, and ``tests/plotting/test_notebooks.py`` checks that the committed notebooks match this
script and execute cleanly (``nbclient``, kernel ``python3``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
%matplotlib inline
import tempfile
from pathlib import Path

import pandas as pd

# The repository root: the folder above this notebook that holds scenarios/.
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "scenarios").is_dir())
OUT = Path(tempfile.mkdtemp(prefix="sfsim-notebook-"))  # run folders go here, not in the repo
pd.set_option("display.width", 120)'''

QUICKSTART = [
    "# sfsim quickstart: run, read, plot\n\n"
    "This notebook runs the README's quickstart scenario (three heterogeneous devices fine-tune "
    "GPT-2 small with LoRA under memory-efficient split federated learning), reads its summary "
    "and trace, and draws the three figures `sfsim plot` makes. Everything here also works from "
    "the shell: `sfsim run scenarios/quickstart.yaml --out runs/quickstart` then "
    "`sfsim plot runs/quickstart`.",
    SETUP,
    "## 1. Run the scenario\n\n`resolve` applies overrides and expands the fleet; `simulate` "
    "runs it on the SimPy clock; `write_run_folder` writes the same folder `sfsim run` writes "
    "(with `trace.json` for Perfetto from `sfsim.export`).",
    '''\
from sfsim.export import RUN_WRITERS
from sfsim.results import write_run_folder
from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario

scenario = resolve(load_scenario(ROOT / "scenarios" / "quickstart.yaml"))
result = simulate(scenario)
run_dir = write_run_folder(OUT / "quickstart", result, RUN_WRITERS)
sorted(p.name for p in run_dir.iterdir())''',
    "## 2. Read the summary\n\nEvery figure in `summary.json` is derived from the trace and the "
    "memory ledger, so the tables below and the summary always agree.",
    '''\
s = result.summary
print(f"training time {s['makespan_s']:.3f} s over {s['rounds']} rounds; "
      f"server busy {100 * s['server_utilisation']:.1f}% of the time")
print(f"server peak memory {s['server_peak_bytes'] / 1e9:.2f} GB")
pd.DataFrame(s["devices"]).T[["processor", "cut", "compute_s", "uplink_s", "queue_wait_s",
                              "peak_bytes"]]''',
    "## 3. Read the trace\n\nOne row per span: a compute step, a transfer, or a wait in the "
    "server queue.",
    '''\
trace = result.trace.assign(duration_s=result.trace["end_s"] - result.trace["start_s"])
print(trace.head(8).to_string())
trace.groupby(["resource", "phase"])["duration_s"].agg(["count", "sum"])''',
    "## 4. Plot\n\nThe figure functions take DataFrames and return `(figure, data behind it)`. "
    "`load_run` reads a run folder back exactly as `sfsim plot` does.",
    '''\
from sfsim.plotting import gantt, load_run, memory_timeline, round_breakdown

run = load_run(run_dir)
fig, layout = gantt(run.trace, run.devices, round_bounds=run.round_bounds)
print("lanes:", layout.lanes)
fig''',
    '''\
fig, levels = memory_timeline(run.memory, ["server", *run.devices], end_s=run.end_s)
print("server kinds:", list(levels["server"].columns))
fig''',
    '''\
fig, per_round = round_breakdown(run.trace, run.round_bounds)
print(per_round.round(3).to_string())
fig''',
    "## 5. The same from the command line\n\n`sfsim plot RUN_DIR` writes `gantt.png`, "
    "`memory.png` and `rounds.png` into `RUN_DIR/plots`; open `RUN_DIR/trace.json` in "
    "https://ui.perfetto.dev to browse every span.",
    '''\
import json
import subprocess
import sys

done = subprocess.run([sys.executable, "-m", "sfsim.cli", "plot", str(run_dir)],
                      capture_output=True, text=True, check=True)
print(done.stdout)
events = json.loads((run_dir / "trace.json").read_text())["traceEvents"]
print(len(events), "trace events;", sorted({e["ph"] for e in events}), "event types")''',
]

SCHEDULER = [
    "# Write a scheduler\n\n"
    "Each round the edge server gets one job per device: it is released at `release_s` "
    "(device forward + uplink), needs the server for `server_s[k]` seconds per local iteration, "
    "and after its last server task still needs `tail_s` (downlink, device backward, adapter "
    "upload). A scheduler orders the jobs. Here we write one, register it, run a scenario with "
    "it, and compare it with the built-ins and with the optimum (Carlier's branch and bound).",
    SETUP,
    "## 1. The scheduler\n\nSubclass `Scheduler`, give it a unique `name` and a one-line "
    "`description`, and implement `order` (an offline plan: each job id once per server "
    "task). This one serves jobs in order of their *rest of work* (server time plus tail), "
    "longest first — Jackson's rule with the server time added.",
    '''\
import numpy as np

from sfsim.schedulers import Instance, Job, Scheduler, available, get_scheduler, makespan, register


class LongestRestFirst(Scheduler):
    name = "nb_longest_rest_first"  # unique: no built-in or plugin uses it
    description = "Notebook example: longest server time + tail first (static)."

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        ranked = sorted(instance.jobs, key=lambda j: (-(sum(j.server_s) + j.tail_s), j.id))
        passes = max(job.k for job in instance.jobs)
        return [j.id for k in range(passes) for j in ranked if k < j.k]


# The registry refuses a second class under a taken name, and re-running this cell makes a
# new class object; so register only once per Python process.
if LongestRestFirst.name not in available():
    register(LongestRestFirst)
else:
    print(f"{LongestRestFirst.name!r} is already registered in this kernel; keeping that one")
get_scheduler(LongestRestFirst.name)''',
    "## 2. Try it on a hand-made round\n\n`makespan(instance, order)` evaluates an order on the "
    "estimated times, exactly as the engine replays an offline plan.",
    '''\
inst = Instance((
    Job.single("a", release_s=0.0, server_s=4.0, tail_s=1.0),
    Job.single("b", release_s=1.0, server_s=2.0, tail_s=6.0),
    Job.single("c", release_s=2.0, server_s=3.0, tail_s=3.0),
    Job.single("d", release_s=5.0, server_s=1.0, tail_s=2.0),
))
rng = np.random.default_rng(0)
rows = []
for name in available():
    sched = get_scheduler(name)
    if not sched.supports_chains and not inst.is_single:
        continue
    order = sched.order(inst, rng)
    rows.append({"scheduler": name, "order": " ".join(order), "makespan_s": makespan(inst, order)})
pd.DataFrame(rows).sort_values("makespan_s").reset_index(drop=True)''',
    "## 3. Run a scenario with it\n\nTen devices, one local iteration, a modest edge GPU and "
    "fast links, so the server is the bottleneck and the order matters. `resolve(..., "
    "scheduler=NAME)` swaps the scheduler exactly like `sfsim run --scheduler NAME`.",
    '''\
from sfsim.run import resolve, simulate
from sfsim.scenario import parse_scenario

procs = ["jetson-orin-nano-8gb", "snapdragon-8-gen-3", "raspberry-pi-5-8gb", "jetson-agx-orin-64gb"]
base = parse_scenario({
    "name": "scheduler-demo", "seed": 0,
    "model": {"arch": "gpt2", "seq_len": 128},
    "processors": {"edge-gpu": {"kind": "server", "peak_tflops": {"fp32": 2.0},
                                "mem_bw_gbps": 300, "memory_gb": 24, "efficiency": 0.5}},
    "server": {"processor": "edge-gpu"},
    "devices": [{"id": f"d{i}", "processor": procs[i % 4], "batch_size": (2, 4, 8)[i % 3],
                 "cut": 1 + (i * 5) % 6, "uplink_mbps": (100, 200, 400, 150, 300)[i % 5]}
                for i in range(10)],
    "channel": {"model": "fixed", "downlink_mbps": 200, "latency_ms": 5},
    "training": {"scheme": "memsfl", "rounds": 1, "local_iterations": 1},
})
results = {}
for name in available():
    results[name] = simulate(resolve(base, scheduler=name)).summary["makespan_s"]
table = pd.Series(results, name="makespan_s").sort_values().to_frame()
table["vs_optimum"] = table["makespan_s"] / results["carlier"]
table''',
    '''\
from sfsim.plotting import new_figure

fig = new_figure(7, 3.5)
ax = fig.add_subplot()
colors = ["#e8605c" if n == LongestRestFirst.name else "#4c9be8" for n in table.index]
ax.barh(table.index, table["makespan_s"], color=colors)
ax.axvline(results["carlier"], color="#2e9e5b", linestyle="--", label="optimum (carlier)")
ax.set_xlabel("makespan (s)")
ax.legend()
fig''',
    "Reading the result: the exact schedulers (`carlier`, `milp`) reach the optimum; "
    "Schrage's rule, which looks at who is *ready* when the server frees up, comes close; "
    "static sorts such as ours ignore release times, so the server idles waiting for a job "
    "that is first in the plan but last to arrive. Try making `order` release-aware.",
    "## 4. Making it permanent\n\nPut the class in a package, decorate it with "
    "`@sfsim.schedulers.register`, and expose it through the `sfsim.schedulers` entry-point "
    "group in your `pyproject.toml` (`nb_longest_rest_first = \"my_pkg.rules:LongestRestFirst\"`);"
    " then `sfsim run scenario.yaml --scheduler nb_longest_rest_first` finds it. See "
    "`docs/schedulers.md`.",
]

MEMORY = [
    "# Memory analysis across schemes and cut layers\n\n"
    "The engine keeps a ledger of allocate / free events per owner (each device and the "
    "server) and kind (weights, adapters, gradients, optimizer, activations, boundary, cache, "
    "overhead). Here we compare what the server and the devices hold, over time and at their "
    "peaks, for every registered scheme and for a range of cut layers.",
    SETUP,
    "## 1. Every scheme on the quickstart scenario\n\nA scheme that cannot run the scenario "
    "(say, a device runs out of memory) raises an `InputError`; we note it and go on.",
    '''\
from sfsim.errors import InputError
from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario
from sfsim.schemes import schemes

base = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
base = base.model_copy(update={"training": base.training.model_copy(update={"rounds": 1})})
runs = {}
for name in schemes():
    try:
        runs[name] = simulate(resolve(base, scheme=name))
    except InputError as exc:
        print(f"{name}: cannot run this scenario: {exc.message}")
pd.DataFrame({n: {"training time s": r.summary["makespan_s"],
                  "server peak GB": r.summary["server_peak_bytes"] / 1e9,
                  "largest device peak GB": max(r.summary["device_peak_bytes"].values()) / 1e9}
              for n, r in runs.items()}).T''',
    "## 2. The server's memory over time, per scheme",
    '''\
from sfsim.plotting import memory_timeline

name = next(iter(runs))
r = runs[name]
fig, levels = memory_timeline(r.memory, ["server", *r.summary["devices"]],
                              title=f"Memory in use — {name}")
fig''',
    '''\
from matplotlib.patches import Patch

from sfsim.engine import MEMORY_KINDS
from sfsim.plotting import new_figure
from sfsim.plotting.memory import memory_levels
from sfsim.plotting.style import kind_color

fig = new_figure(10, 2.4 * len(runs))
axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
shown = set()  # every kind drawn in any panel goes in the one legend
for ax, (name, r) in zip(axes, runs.items(), strict=True):
    lv = memory_levels(r.memory, "server", end_s=r.summary["makespan_s"]) / 1e9
    ax.stackplot(lv.index, lv.T.to_numpy(), step="post",
                 colors=[kind_color(k) for k in lv.columns])
    shown.update(k for k in lv.columns if (lv[k] > 0).any())
    ax.set_title(f"server — {name}", loc="left")
    ax.set_ylabel("GB")
kinds = [k for k in MEMORY_KINDS if k in shown] + sorted(shown - set(MEMORY_KINDS))
fig.legend(handles=[Patch(facecolor=kind_color(k), edgecolor="#888888", label=k) for k in kinds],
           loc="outside right upper", fontsize=8, frameon=False)
axes[-1].set_xlabel("simulated time (s)")
fig''',
    "## 3. What is in memory at the peak\n\n`peak_table` gives the bytes of each kind at the "
    "moment each owner reached its peak (the same numbers as `server_peak_breakdown` in "
    "`summary.json`).",
    '''\
from sfsim.plotting import peak_table

peaks = pd.concat({n: peak_table(r.memory) / 1e9 for n, r in runs.items()},
                  names=["scheme", "owner"])
peaks.round(4)''',
    "## 4. Cut layers\n\nA device that keeps more blocks (a larger cut) holds more weights and "
    "activations; the server holds less. One `memsfl` run per cut, all devices on the same cut.",
    '''\
rows = {}
for cut in (1, 3, 5, 7, 9, 11):
    devices = [d.model_copy(update={"cut": cut}) for d in base.devices]
    s = resolve(base.model_copy(update={"devices": devices}), scheme="memsfl")
    try:
        r = simulate(s)
    except InputError as exc:
        print(f"cut {cut}: {exc.message}")
        continue
    table = peak_table(r.memory) / 1e9
    rows[cut] = {"server": table.loc["server"].sum(),
                 "phone": table.loc["phone"].sum(),
                 "training time s": r.summary["makespan_s"]}
by_cut = pd.DataFrame(rows).T
by_cut.index.name = "cut"
by_cut''',
    '''\
fig = new_figure(7, 3.5)
ax = fig.add_subplot()
ax.plot(by_cut.index, by_cut["server"], marker="o", label="server peak")
ax.plot(by_cut.index, by_cut["phone"], marker="s", label="phone peak")
ax.set_xlabel("cut (blocks on the device)")
ax.set_ylabel("GB")
ax.legend()
fig''',
]

FAULTS_LEARNING = [
    "# Faults, a shared cell, and what is learned\n\n"
    "Real fleets drop out and share spectrum, and a faster round is only worth having if the "
    "model still learns. This notebook runs the ten-device `memsfl_10dev` scenario with devices "
    "dropping out mid-round, then in one shared cell instead of a band per device, and finally "
    "trains the small learning proxy along the quickstart's runs under four schemes to compare "
    "accuracy over simulated time (docs/faults.md, docs/channel.md, docs/learning.md).",
    SETUP,
    "## 1. Dropouts and what they cost\n\nEach device drops out *during* each round with "
    "probability p, at a random time in its round. The `faults` block of the summary accounts "
    "for every scheduled sample: trained, or dropped with its reason, plus the compute and bytes "
    "the dropped devices spent for nothing. Three seeds per rate, mean and 95% CI.",
    '''\
import sfsim
from sfsim.stats import mean_ci

TEN = ROOT / "scenarios" / "memsfl_10dev.yaml"
rows = []
for p in (0.0, 0.2, 0.4):
    for seed in (1, 2, 3):
        run = sfsim.run(TEN, overrides={"seed": seed, "faults.dropout.during": p,
                                        "training.aggregation": "partial"})
        f = run.summary["faults"]
        rows.append({"p": p, "seed": seed, "makespan_s": run.summary["makespan_s"],
                     "completed": f["devices_completed"] / f["devices_scheduled"],
                     "samples_trained": f["samples_trained"],
                     "samples_dropped": sum(f["samples_dropped"].values()),
                     "wasted_device_s": f["wasted_device_s"], "reconciles": f["reconciles"]})
table = pd.DataFrame(rows)
summary = table.groupby("p").agg(
    makespan_s=("makespan_s", lambda x: "{:.2f} ± {:.2f}".format(*mean_ci(x))),
    completed=("completed", "mean"), samples_trained=("samples_trained", "mean"),
    samples_dropped=("samples_dropped", "mean"), wasted_device_s=("wasted_device_s", "mean"))
print("every run reconciles its samples:", bool(table["reconciles"].all()))
summary''',
    "Reading the event log: it says who dropped, when, and how many samples went with them.",
    '''\
events = run.events  # the last run above: p = 0.4, seed 3
events[events["kind"] == "drop"].head(8)''',
    "## 2. One shared cell\n\nWith `channel.access: shared` all uploads divide one cell: "
    "`equal` fixes a transfer's share when it starts, `fluid` re-divides it at every start, end "
    "and fading boundary (processor sharing).",
    '''\
cells = {}
modes = {"dedicated": {},
         "shared, equal": {"channel.access": "shared", "channel.sharing": "equal"},
         "shared, fluid": {"channel.access": "shared", "channel.sharing": "fluid"}}
for label, over in modes.items():
    s = sfsim.run(TEN, overrides=over).summary
    cells[label] = {"makespan_s": s["makespan_s"],
                    "uplink_s (all devices)": sum(d["uplink_s"] for d in s["devices"].values()),
                    "total_energy_j": s["total_energy_j"]}
pd.DataFrame(cells).T.round(2)''',
    "## 3. What is learned\n\n`learning.enabled` trains a small proxy of the model's family "
    "(random frozen base weights, LoRA, a synthetic non-IID task) by replaying each run: every "
    "update at its simulated time, in the server's order, with the staleness the run produced. "
    "`scenarios/learning/quickstart_learning.yaml` is the quickstart fleet with 60 steps per "
    "device; a narrower proxy (`learning.hidden: 32`) keeps each run to a few seconds. The "
    "accuracies are the proxy's, and two seeds are only a glimpse (docs/learning.md has ten).",
    '''\
LEARNING = ROOT / "scenarios" / "learning" / "quickstart_learning.yaml"
schemes = ["memsfl", "sfl_v2", "splitfrozen", "fedmobillm"]
rows, curves = [], {}
for scheme in schemes:
    for seed in (1, 2):
        run = sfsim.run(LEARNING, scheme=scheme, overrides={"seed": seed, "learning.hidden": 32})
        learned = run.summary["learning"]
        rows.append({"scheme": scheme, "seed": seed, "makespan_s": run.summary["makespan_s"],
                     "time_to_target_s": learned["time_to_target_s"],
                     "final_accuracy": learned["final_accuracy"]})
        if seed == 1:
            curves[scheme] = run.learning
columns = ["makespan_s", "time_to_target_s", "final_accuracy"]
pd.DataFrame(rows).groupby("scheme")[columns].mean()''',
    '''\
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3.5))
for scheme, curve in curves.items():
    ev = curve[curve["eval_accuracy"].notna()]
    ax.step(ev["time_s"], ev["eval_accuracy"], where="post", label=scheme)
ax.axhline(0.4, color="grey", linestyle="--", linewidth=1, label="target")
ax.set_xlabel("simulated time (s)")
ax.set_ylabel("held-out accuracy (seed 1)")
ax.legend()
fig''',
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_write_a_scheduler.ipynb": SCHEDULER,
    "03_memory_analysis.ipynb": MEMORY,
    "04_faults_and_learning.ipynb": FAULTS_LEARNING,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` with fixed cell ids and no outputs."""
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    stem = name.split("_")[0]
    for i, src in enumerate(NOTEBOOKS[name]):
        make = new_markdown_cell if _is_markdown(src) else new_code_cell
        cell = make(src)
        cell.id = f"nb{stem}-{i:02d}"
        nb.cells.append(cell)
    return nb


def _is_markdown(src: str) -> bool:
    """Markdown cells start with a heading or are prose (code cells start with code)."""
    return src.startswith(("# ", "## ", "Reading "))


def write_all(folder: Path = HERE) -> list[Path]:
    paths = []
    for name in NOTEBOOKS:
        path = folder / name
        nbformat.write(build(name), str(path))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Write the tutorial notebooks (without outputs) from the cell sources in "
        "this script; run it after editing a cell, never edit the .ipynb files by hand.",
    )
    parser.add_argument("folder", nargs="?", type=Path, default=HERE,
                        help=f"where to write the notebooks (default: {HERE})")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder}: not a folder")
    for p in write_all(args.folder):
        print(p)


if __name__ == "__main__":
    main()
