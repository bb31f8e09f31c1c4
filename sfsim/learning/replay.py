"""The replay: a run's recorded dataflow applied, event by event, to the proxy model.

From the trace each training step of device u (its batch ``iteration`` of round ``round``) gets
the simulated times at which it read the weights and at which its updates landed:

* split schemes (memsfl, sfl_v2, splitlora, sfl_v1): the forward reads the weights when the
  server forward starts (the device's adapters cannot change between its own forward and then:
  only its own backward and the aggregation touch them); the server-side update lands at the end
  of the server backward, the device-side one at the end of the device backward;
* fedlora: read at the device forward's start, update at the device backward's end;
* splitfrozen, fedmobillm: read at the server forward's start, update at the end of the last
  server backward stage (or at the scheme's ``update`` event when it logs one). A forward that
  runs while another batch's backward is pending reads the older weights: the staleness the
  pipeline produced.

Gradients are computed with the weights read at the forward and applied when the update lands
(each adapter set has its own optimizer). Aggregations are the event log's ``aggregate`` rows:
a FedAvg, weighted by the logged weights, over exactly the devices listed for that round (a
dropped device is not listed), of what the scheme averages, after which every copy holds the
average. Events at the same instant apply updates, then aggregations, then forwards, then
evaluations.

Where each scheme keeps its adapters (proxy cut p_u = round(cut_u / L × blocks), at least 1 on
each side): memsfl: device adapters of blocks < p_u per device and one server set (blocks ≥ p_u
and the head) per device; sfl_v2 / splitlora: per-device device sets, ONE shared server set
(blocks ≥ min p and the head) updated in the server's order; sfl_v1: per-device device sets and
per-device server copies; memsfl and sfl_v1 average each device's whole set (device and
server parts) per layer over the devices that aggregate (model.md §4); fedlora: one full set
per device, averaged;
splitfrozen: frozen device blocks (no adapters), one shared server set; fedmobillm: frozen
backbones (depth scaled by each device's backbone), one side network with an alignment set per
backbone kind.

Evaluation (held-out accuracy and loss): split schemes and splitfrozen evaluate each device's
model (its adapters with its server set) and average weighted by samples (at most 8 models: the
devices with most samples); fedlora the server's global model (the last average); fedmobillm the
side network per backbone kind, weighted by samples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sfsim.costs.arch import get_arch
from sfsim.errors import InputError
from sfsim.learning import LEARNING_COLUMNS
from sfsim.learning.data import Task, build_task
from sfsim.learning.proxy import Params, Proxy, SideNet
from sfsim.learning.uplink import Uplink, n_taps
from sfsim.results import RunResult
from sfsim.scenario import Scenario
from sfsim.world import Seeds

SPLIT = ("memsfl", "sfl_v2", "splitlora", "sfl_v1")
SCHEMES = (*SPLIT, "fedlora", "splitfrozen", "fedmobillm")
MAX_EVAL_MODELS = 8
# priorities of events at the same instant
_UPDATE, _AGGREGATE, _FORWARD, _EVAL = 0, 1, 2, 3


@contextlib.contextmanager
def deterministic_torch() -> Iterator[None]:
    """One thread and deterministic kernels while the replay runs (restored after)."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


class ParamSet:
    """A set of trainable tensors with its own optimizer (one per copy a scheme keeps)."""

    def __init__(self, init: Params, names: list[str], optimizer: str, lr: float):
        self.p: Params = {n: init[n].clone().requires_grad_(True) for n in names}
        params = list(self.p.values())
        if optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr)
        elif optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=lr)
        else:
            self.opt = torch.optim.Adam(params, lr=lr)

    def apply(self, grads: dict[str, torch.Tensor]) -> None:
        for n, t in self.p.items():
            t.grad = grads.get(n)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


@dataclass
class Step:
    """One training step of ``device``'s batch (round, iteration) and when its parts happen."""

    round: int
    device: str
    iteration: int
    read_s: float
    server_s: float | None  # the server-side update lands (None: no server part)
    device_s: float | None  # the device-side update lands (None: no device part)
    batch: int = 0  # the device's batch number (its steps in (round, iteration) order)
    grads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    loss: float = math.nan


def _steps(scheme: str, trace: pd.DataFrame, events: pd.DataFrame) -> list[Step]:
    """The training steps the trace records, with their read and update times."""
    key = ["round", "device", "iteration"]
    t = trace[trace["iteration"] >= 0]
    if scheme == "fedmobillm":  # one step per server pass, matched by order (`_side_steps`)
        return _side_steps(t, events)

    def first_start(phase: str) -> pd.Series:
        return t[t["phase"] == phase].groupby(key)["start_s"].min()

    def last_end(phase: str) -> pd.Series:
        return t[t["phase"] == phase].groupby(key)["end_s"].max()

    Times = dict[tuple[int, str, int], float]

    def as_dict(series: pd.Series) -> Times:
        out: Times = {}
        for idx, v in series.items():
            t: Any = idx
            out[(int(t[0]), str(t[1]), int(t[2]))] = float(v)
        return out

    srv_up: Times | None = None
    dev_up: Times | None = None
    if scheme == "fedlora":
        read, dev_up = as_dict(first_start("device_fwd")), as_dict(last_end("device_bwd"))
    else:
        read, srv_up = as_dict(first_start("server_fwd")), as_dict(last_end("server_bwd"))
        dev_up = as_dict(last_end("device_bwd")) if scheme in SPLIT else None
        upd = events[events["kind"] == "update"] if len(events) else events
        if scheme == "splitfrozen" and len(upd):
            # the scheme's own record of when each update landed: the n-th update event of a
            # device is its n-th server update in time (the events' round and iteration
            # labels may count batches differently from the trace's)
            for dev, g in upd.groupby("device", sort=False):
                mine = sorted((v, k) for k, v in srv_up.items() if k[1] == dev)
                logged = sorted(float(x) for x in g["time_s"])
                if len(mine) == len(logged):
                    for (_, k), v in zip(mine, logged, strict=True):
                        srv_up[k] = v
    out = []
    for k, r_s in read.items():
        s_up = None if srv_up is None else srv_up.get(k)
        d_up = None if dev_up is None else dev_up.get(k)
        if srv_up is not None and s_up is None:
            continue  # never served (e.g. the device dropped): nothing learned
        if srv_up is None and d_up is None:
            continue
        out.append(Step(k[0], k[1], k[2], r_s, s_up, d_up))
    per_dev: dict[str, int] = {}
    for s in sorted(out, key=lambda s: (s.device, s.round, s.iteration)):
        s.batch = per_dev.get(s.device, 0)
        per_dev[s.device] = s.batch + 1
    return out


def _side_steps(t: pd.DataFrame, events: pd.DataFrame) -> list[Step]:
    """fedmobillm's server steps: each device's n-th server forward and n-th server backward (the
    server is sequential; with no round barrier a batch's round and iteration labels need not be
    unique). The batch is the n-th ``update`` event's (the cached batch the scheme trained on)
    when the log has one per step, else the step's number."""
    srv = t[t["resource"] == "server"]
    upd = events[events["kind"] == "update"] if len(events) else events
    out = []
    for dev, g in srv.groupby("device", sort=False):
        fwd = g[g["phase"] == "server_fwd"].sort_values("start_s", kind="stable")
        bwd = g[g["phase"] == "server_bwd"].sort_values("end_s", kind="stable")
        n = min(len(fwd), len(bwd))
        mine = upd[upd["device"] == dev].sort_values("time_s", kind="stable") if len(upd) else upd
        batches = (list(mine["iteration"]) if len(mine) == n and len(mine)
                   else list(range(n)))
        for i in range(n):
            f, b = fwd.iloc[i], bwd.iloc[i]
            out.append(Step(int(b["round"]), str(dev), int(b["iteration"]), float(f["start_s"]),
                            float(b["end_s"]), None, batch=int(batches[i])))
    return out


class Replay:
    """The learner of one run: its proxy, data, parameter sets, and the table of what happened."""

    def __init__(self, result: RunResult, s: Scenario):
        self.s, self.cfg = s, s.learning
        summary = result.summary
        self.scheme = str(summary.get("scheme", s.training.scheme))
        if self.scheme not in SCHEMES:
            raise InputError(f"scheme {self.scheme!r} has no learning replay; learning knows "
                             f"{', '.join(SCHEMES)}", key="learning.enabled")
        if result.trace is None or result.trace.empty:
            raise InputError("the run has no trace to replay (closed-form or failed run)",
                             key="learning.enabled")
        arch = get_arch(s.model.arch)
        info: dict[str, Any] = summary.get("devices", {})
        cfg_devs = {d.id: d for d in s.devices}
        traced = sorted(set(result.trace["device"]) - {"server"})
        self.devices = list(info) + [d for d in traced if d not in info]
        self.samples = {d: cfg_devs[d].samples if d in cfg_devs else 1000 for d in self.devices}
        agg = result.events[result.events["kind"] == "aggregate"] if len(result.events) else None
        if agg is not None:
            for d, v in agg.groupby("device")["value"].max().items():
                if d in self.samples and str(d) not in cfg_devs:
                    self.samples[str(d)] = int(v)
        self.batch = {d: int(info.get(d, {}).get("batch") or 4) for d in self.devices}
        b = self.cfg.blocks
        self.cut = {}
        for d in self.devices:
            c = info.get(d, {}).get("cut")
            self.cut[d] = b if c is None else min(max(round(c / arch.n_layers * b), 1), b - 1)
        seeds = Seeds.for_scenario(s).learning
        data_seed, model_seed, order_seed = seeds.spawn(3)
        self.task: Task = build_task(self.cfg, self.samples, data_seed)
        self.order_seed = order_seed
        gen = torch.Generator().manual_seed(int(model_seed.generate_state(1)[0]))
        targets = [t for t in s.model.lora.targets]
        self.proxy = Proxy(family=arch.family, blocks=b, hidden=self.cfg.hidden,
                           heads=self.cfg.heads, vocab=self.task.vocab, seq_len=self.task.seq_len,
                           classes=self.task.classes, targets=targets, rank=self.cfg.lora_rank,
                           scale=s.model.lora.alpha / s.model.lora.rank, gen=gen)
        self.opt = self.cfg.optimizer or s.model.lora.optimizer
        self.uplink = Uplink.of(s, self.task.seq_len)  # training.compression, as values
        self.result = result
        self.rows: list[tuple[Any, ...]] = []
        self.server_order: list[tuple[int, str, int]] = []
        self.n_steps = 0
        self._perm: dict[tuple[str, int], np.ndarray] = {}
        self._layout(summary)
        self.test = (torch.from_numpy(self.task.test_tokens),
                     torch.from_numpy(self.task.test_labels))

    # ---- where each scheme keeps its adapters ---------------------------------------------------
    def _layout(self, summary: dict[str, Any]) -> None:
        init = self.proxy.init_trainable()
        pm, b, sc = self.proxy, self.cfg.blocks, self.scheme
        lr = self.cfg.lr

        def pset(names: list[str]) -> ParamSet:
            return ParamSet(init, names, self.opt, lr)

        self.dev: dict[str, ParamSet] = {}
        self.srv: dict[str, ParamSet] = {}  # per device (memsfl, sfl_v1)
        self.shared: ParamSet | None = None
        self.side: SideNet | None = None
        if sc in SPLIT:
            for d in self.devices:
                self.dev[d] = pset(pm.names(init, 0, self.cut[d], head=False))
            if sc in ("memsfl", "sfl_v1"):
                for d in self.devices:
                    self.srv[d] = pset(pm.names(init, self.cut[d], b, head=True))
            else:
                self.shared = pset(pm.names(init, min(self.cut.values()), b, head=True))
        elif sc == "fedlora":
            for d in self.devices:
                self.dev[d] = pset(list(init))
            self.global_p = {n: t.detach().clone() for n, t in init.items()}
        elif sc == "splitfrozen":
            self.shared = pset(pm.names(init, min(self.cut.values()), b, head=True))
        else:  # fedmobillm
            self._side_layout(summary)

    def _side_layout(self, summary: dict[str, Any]) -> None:
        from sfsim.schemes.side import tap_layers

        ref = get_arch(self.s.model.arch)
        notes = summary.get("scheme_notes", {}).get("backbones", {})
        b = self.cfg.blocks
        self.kind = {d: str(notes.get(d, ref.name)) for d in self.devices}
        depth = {k: min(max(round(get_arch(k).n_layers / ref.n_layers * b), 1), b)
                 for k in set(self.kind.values())}
        fm = self.s.training.fedmobillm
        n = min(len(tap_layers(m, n_taps(self.s))) for m in depth.values())
        self.taps = {k: tap_layers(m, n) for k, m in depth.items()}
        width = max(4, round(fm.side_ratio * self.cfg.hidden))
        self.side = SideNet(self.proxy, width, n, sorted(depth))
        init = self.side.init_trainable()
        self.shared = ParamSet(init, list(init), self.opt, self.cfg.lr)

    # ---- data -----------------------------------------------------------------------------
    def batch_of(self, d: str, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        toks, labels = self.task.shards[d]
        n, bs = len(labels), self.batch[d]
        per_epoch = max(1, math.ceil(n / bs))
        if self.scheme == "fedmobillm":  # cached batches: the same ones again, no reshuffle
            epoch, pos, perm = 0, number % per_epoch, np.arange(n)
        else:
            epoch, pos = divmod(number, per_epoch)
            key = (d, epoch)
            if key not in self._perm:
                i = self.devices.index(d)
                rng = np.random.default_rng([int(self.order_seed.generate_state(1)[0]), i, epoch])
                self._perm[key] = rng.permutation(n)
            perm = self._perm[key]
        idx = perm[np.arange(pos * bs, pos * bs + bs) % n]
        return torch.from_numpy(toks[idx]), torch.from_numpy(labels[idx])

    # ---- one step --------------------------------------------------------------------------
    def _sets(self, d: str) -> dict[str, ParamSet]:
        out: dict[str, ParamSet] = {}
        if d in self.dev:
            out["device"] = self.dev[d]
        if d in self.srv:
            out["server"] = self.srv[d]
        elif self.shared is not None:
            out["server"] = self.shared
        return out

    def _logits(self, d: str, tokens: torch.Tensor, p: Params, kind: str = "") -> torch.Tensor:
        """Device d's model on ``tokens`` (fedmobillm: backbone ``kind``, default d's), with the
        server side seeing only what the uplink carries (`sfsim.learning.uplink`)."""
        if self.side is not None:
            kind = kind or self.kind[d]
            tapped = self.uplink.taps(self.proxy.taps(tokens, self.taps[kind]))
            return self.side.logits(tapped, kind, p)
        if self.scheme == "fedlora" or self.uplink.exact:
            return self.proxy.logits(tokens, p)
        return self.proxy.logits_across(tokens, p, self.cut[d], self.uplink.at_cut)

    def forward(self, step: Step) -> None:
        """Read the weights now, compute the batch's loss and gradients (applied later)."""
        sets = self._sets(step.device)
        tokens, labels = self.batch_of(step.device, step.batch)
        used = self.params_for(step.device)
        loss = F.cross_entropy(self._logits(step.device, tokens, used), labels)
        names = list(used)
        grads = torch.autograd.grad(loss, [used[n] for n in names], allow_unused=True)
        for part, ps in sets.items():
            step.grads[part] = {n: g for n, g in zip(names, grads, strict=True)
                                if g is not None and n in ps.p and ps.p[n] is used[n]}
        step.loss = float(loss.detach())

    def params_for(self, d: str) -> Params:
        """Device d's model: its device adapters below its cut, the server's from its cut up."""
        sets = self._sets(d)
        if self.side is not None:
            side = sets["server"].p
            return {n: side[n] for n in self.side.names(side, self.kind[d])}
        if self.scheme == "fedlora":
            return dict(sets["device"].p)
        cut = self.cut[d]
        out: Params = {}
        if "device" in sets:
            out.update((n, t) for n, t in sets["device"].p.items() if self._block(n) < cut)
        out.update((n, t) for n, t in sets["server"].p.items()
                   if n.startswith("head.") or self._block(n) >= cut)
        return out

    @staticmethod
    def _block(name: str) -> int:
        return int(name[1:name.index(".")]) if name.startswith("b") else -1

    def land(self, step: Step, part: str, t: float) -> None:
        sets = self._sets(step.device)
        sets[part].apply(step.grads.pop(part, {}))
        if part == "server":
            self.server_order.append((step.round, step.device, step.iteration))
        # the step is one row: when its last part lands
        if not step.grads or all(p not in sets for p in step.grads):
            self.rows.append((t, step.round, self.n_steps, step.device, step.loss,
                              math.nan, math.nan))
            self.n_steps += 1

    # ---- aggregation -----------------------------------------------------------------------
    def aggregate(self, r: int, weights: dict[str, float]) -> None:
        weights = {d: w for d, w in weights.items() if d in self.dev or d in self.srv}
        if not weights:
            return
        # What each device owns, by parameter name: memsfl and sfl_v1 give every device a full
        # adapter set (its device blocks here, the rest on the server), averaged per layer over
        # the devices that aggregate, whatever side of their cut a layer is on (model.md §4).
        owned: dict[str, dict[str, torch.Tensor]] = {d: dict(ps.p) for d, ps in self.dev.items()}
        for d, ps in self.srv.items():
            owned.setdefault(d, {}).update(ps.p)
        names = sorted({n for p in owned.values() for n in p})
        for n in names:
            having = [d for d in weights if d in owned and n in owned[d]]
            if not having:
                continue
            with torch.no_grad():
                if len(having) == 1:
                    avg = owned[having[0]][n].detach().clone()
                else:
                    w = torch.tensor([weights[d] for d in having], dtype=torch.float64)
                    stack = torch.stack([owned[d][n].detach().double() for d in having])
                    avg = ((w.view(-1, *[1] * (stack.dim() - 1)) * stack).sum(0)
                           / w.sum()).float()
                for p in owned.values():
                    if n in p:
                        p[n].copy_(avg)
        if self.scheme == "fedlora":
            any_dev = self.dev[next(iter(weights))]
            self.global_p = {n: t.detach().clone() for n, t in any_dev.p.items()}

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self, t: float, r: int) -> None:
        tokens, labels = self.test
        models: list[tuple[float, Params, str]] = []
        if self.scheme == "fedlora":
            models = [(1.0, self.global_p, "")]
        elif self.side is not None:
            by_kind: dict[str, float] = {}
            for d in self.devices:
                by_kind[self.kind[d]] = by_kind.get(self.kind[d], 0.0) + self.samples[d]
            models = [(w, self.shared.p if self.shared else {}, k)
                      for k, w in sorted(by_kind.items())]
        else:
            seen: set[Any] = set()
            for d in sorted(self.devices, key=lambda d: -self.samples[d])[:MAX_EVAL_MODELS]:
                key = d if self.dev else self.cut[d]
                if key in seen:
                    continue
                seen.add(key)
                p = self.params_for(d)
                w = sum(self.samples[e] for e in self.devices
                        if (e if self.dev else self.cut[e]) == key)
                models.append((float(w), p, d))
        acc, loss, total = 0.0, 0.0, 0.0
        with torch.no_grad():
            for weight, p, tag in models:
                if self.side is not None:
                    logits = self._logits("", tokens, p, kind=tag)
                elif tag:
                    logits = self._logits(tag, tokens, p)
                else:
                    logits = self.proxy.logits(tokens, p)
                acc += weight * float((logits.argmax(1) == labels).double().mean())
                loss += weight * float(F.cross_entropy(logits, labels))
                total += weight
        self.rows.append((t, r, -1, "", math.nan, acc / total, loss / total))

    # ---- the replay ------------------------------------------------------------------------
    def run(self) -> Replay:
        res = self.result
        steps = _steps(self.scheme, res.trace, res.events)
        queue: list[tuple[float, int, int, Any]] = []
        seq = 0

        def push(t: float, prio: int, item: Any) -> None:
            nonlocal seq
            queue.append((t, prio, seq, item))
            seq += 1

        for st in sorted(steps, key=lambda s: (s.read_s, s.round, s.device, s.iteration)):
            push(st.read_s, _FORWARD, ("fwd", st))
            if st.server_s is not None:
                push(st.server_s, _UPDATE, ("server", st))
            if st.device_s is not None:
                push(st.device_s, _UPDATE, ("device", st))
        ev = res.events
        if len(ev):
            agg = ev[ev["kind"] == "aggregate"]
            for r, g in agg.groupby("round", sort=True):
                push(float(g["time_s"].max()), _AGGREGATE,
                     ("agg", int(str(r)), {str(d): float(v) for d, v in
                                           zip(g["device"], g["value"], strict=True)}))
        bounds = [tuple(b) for b in res.summary.get("round_bounds_s", [])]
        end = float(res.summary.get("makespan_s", 0.0))
        for t_eval, r in self._eval_times(bounds, end):
            push(t_eval, _EVAL, ("eval", r))
        queue.sort(key=lambda q: (q[0], q[1], q[2]))
        self.evaluate(0.0, 0)
        every = self.cfg.eval_every_steps
        last_round = 0
        for t, _, _, item in queue:
            kind = item[0]
            if kind == "fwd":
                self.forward(item[1])
                last_round = item[1].round
            elif kind in ("server", "device"):
                before = self.n_steps
                self.land(item[1], kind, t)
                if every and self.n_steps != before and self.n_steps % every == 0:
                    self.evaluate(t, item[1].round)
            elif kind == "agg":
                self.aggregate(item[1], item[2])
            else:
                self.evaluate(t, item[1] if item[1] >= 0 else last_round)
        return self

    def _eval_times(self, bounds: list[tuple[float, ...]], end: float) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        if self.cfg.eval_every_steps is not None:
            out = []
        elif self.cfg.eval_every_s is not None:
            dt = self.cfg.eval_every_s
            n = min(int(end // dt), 100_000)
            out = [((i + 1) * dt, -1) for i in range(n) if (i + 1) * dt < end]
        else:
            out = [(float(b[1]), r) for r, b in enumerate(bounds) if float(b[1]) < end]
        out.append((end, max(len(bounds) - 1, 0)))
        return out

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=list(LEARNING_COLUMNS))
        df = df.astype({"time_s": "float64", "round": "int64", "step": "int64",
                        "train_loss": "float64", "eval_accuracy": "float64",
                        "eval_loss": "float64"})
        return df.sort_values("time_s", kind="stable").reset_index(drop=True)


def replay(result: RunResult, scenario: Scenario) -> Replay:
    """Build the learner of ``result`` and replay the run (deterministic torch meanwhile)."""
    with deterministic_torch():
        torch.manual_seed(int(Seeds.for_scenario(scenario).learning.generate_state(1)[0]))
        return Replay(result, scenario).run()
