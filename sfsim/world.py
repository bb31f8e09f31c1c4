"""The resolved world: a validated scenario turned into engine units and concrete devices.

`build_world` runs once per simulation. It draws the generated fleet from the fleet generator,
builds each device's uplink and downlink, picks the cost model, and converts every human unit
(Mbit/s, GB, ms, dBm, MHz) to bits/s, bytes, seconds, watts and hertz. All randomness flows from one
``SeedSequence(seed)``, spawned into independent children (fleet, channel, scheduler, variability),
so the same scenario and seed always give the same world. A scenario's ``seeds`` section replaces
any of these streams by the one another seed would give (`Seeds.for_scenario`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sfsim import fleetdata
from sfsim.costs import CostModel, ModelArch, Processor, Workload, build_cost_model, get_arch
from sfsim.costs.processors import catalogue, cost_model_params, processor_from_dict
from sfsim.errors import InputError
from sfsim.links import FixedLink, Link, ShannonLink, dbm_to_w, path_loss_db
from sfsim.scenario import (
    SERVER_ID,
    ChannelCfg,
    DeviceCfg,
    FleetCfg,
    Range,
    Scenario,
    VariabilityCfg,
    shannon_problem,
)

MB = 1e6
GB = 1e9


@dataclass(frozen=True)
class Seeds:
    fleet: np.random.SeedSequence
    channel: np.random.SeedSequence
    scheduler: np.random.SeedSequence
    variability: np.random.SeedSequence
    #: Streams added later are spawned after the first four, which therefore draw what they
    #: always did: faults (dropouts, outages), data (sample counts, persistent slowdowns, traces
    #: drawn at random) and learning (the proxy model's data and initial weights).
    faults: np.random.SeedSequence
    data: np.random.SeedSequence
    learning: np.random.SeedSequence

    @classmethod
    def from_seed(cls, seed: int) -> Seeds:
        return cls(*np.random.SeedSequence(seed).spawn(7))

    @classmethod
    def for_scenario(cls, s: Scenario) -> Seeds:
        """The streams of ``s.seed``, each replaced by that of ``s.seeds.X`` where X is given.

        ``seeds.X = n`` gives stream X the values ``seed: n`` would, and a scenario without
        ``seeds`` draws exactly what it always did.
        """
        base = cls.from_seed(s.seed)
        own = {"fleet": s.seeds.fleet, "channel": s.seeds.channel,
               "scheduler": s.seeds.scheduler, "variability": s.seeds.compute,
               "faults": s.seeds.faults, "data": s.seeds.data, "learning": s.seeds.learning}
        return replace(base, **{k: getattr(cls.from_seed(v), k)
                                for k, v in own.items() if v is not None})


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    processor: Processor
    memory_bytes: float
    batch: int
    samples: int
    cut: int | None
    uplink: Link
    downlink: Link
    overhead_bytes: float
    distance_m: float | None = None
    #: A compute-speed trace (`sfsim.traces.SpeedProfile`: ``duration_s(seconds, start_s)``);
    #: None: nominal speed.
    speed_profile: Any = None
    #: Online windows from an availability trace (`sfsim.traces.Availability`); None: always on.
    availability: Any = None
    #: Persistent compute slowdown: every compute time of this device is multiplied by it
    #: (`devices[i].slowdown`, or drawn from ``variability.device``; sfsim/fleetdata.py).
    slowdown: float = 1.0


@dataclass(frozen=True)
class ServerSpec:
    processor: Processor
    memory_bytes: float
    overhead_bytes: float
    slowdown: float = 1.0  # variability.server_factor: every server compute time × it


@dataclass
class World:
    scenario: Scenario
    arch: ModelArch
    devices: list[DeviceSpec]
    server: ServerSpec
    costs: CostModel
    seeds: Seeds
    variability: VariabilityCfg
    #: A population run (``fleet.participants``): the devices as columns, from which each
    #: round's participants are drawn; ``devices`` then holds only those that took part.
    population: Population | None = None
    #: Memoised per-device costs, keyed by what they depend on (e.g. processor, batch, cut);
    #: shared by the copies ``with_devices`` makes.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    _by_id: dict[str, DeviceSpec] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {d.id: d for d in self.devices}

    def device(self, device_id: str) -> DeviceSpec:
        return self._by_id[device_id]

    @property
    def rounds(self) -> int:
        return self.scenario.training.rounds

    @property
    def local_iterations(self) -> int:
        return self.scenario.training.local_iterations

    def iterations(self, dev: DeviceSpec) -> int:
        """Local iterations device ``dev`` runs per round: ``training.local_iterations``, or
        with ``local_work: epochs`` ceil(local_epochs × samples / batch) (sfsim/fleetdata.py)."""
        t = self.scenario.training
        if t.local_work == "iterations":
            return t.local_iterations
        return fleetdata.iterations(self.scenario, dev)

    def compute_factor(self, owner: str) -> float:
        """The persistent slowdown of ``owner``'s compute (a device or the server; 1: none)."""
        if owner == SERVER_ID:
            return self.server.slowdown
        d = self._by_id.get(owner)
        return 1.0 if d is None else d.slowdown

    def speed_profile(self, owner: str) -> Any:
        """The compute-speed trace of device ``owner`` (None: nominal, or not a device)."""
        d = self._by_id.get(owner)
        return None if d is None else d.speed_profile

    def availability(self, dev: DeviceSpec | str, horizon_s: float = 1e6
                     ) -> list[tuple[float, float]] | None:
        """Device ``dev``'s online windows ``[(start_s, end_s), ...]``, sorted and disjoint.

        None: the device has no availability trace (always online). Outside its windows a device
        is offline, also after the last one; with ``traces.repeat`` the windows repeat with the
        trace's period and the list holds those that start before ``horizon_s``
        (``self.device(id).availability`` is the `sfsim.traces.Availability` itself).
        """
        spec = self.device(dev) if isinstance(dev, str) else dev
        if spec.availability is None:
            return None
        return list(spec.availability.windows_until(horizon_s))

    def workload(self, batch: int) -> Workload:
        m = self.scenario.model
        return Workload(self.arch, batch, m.seq_len, m.dtype, m.lora.rank, tuple(m.lora.targets))

    def with_devices(self, devices: list[DeviceSpec]) -> World:
        """A copy with other device specs (e.g. cuts chosen by a scheme's policy)."""
        return replace(self, devices=devices)


def _draw(value: float | Range | list[Any] | None, rng: np.random.Generator) -> Any:
    if isinstance(value, Range):
        return float(rng.uniform(value.min, value.max))
    if isinstance(value, list):
        return value[int(rng.integers(len(value)))]
    return value


def _mix_counts(f: FleetCfg) -> tuple[list[str], np.ndarray]:
    """Devices per processor class: ``count`` split by the mix weights, by largest remainder."""
    names = list(f.mix)
    weights = np.array([f.mix[n] for n in names], dtype=float)
    exact = weights / weights.sum() * f.count
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: f.count - counts.sum()]:
        counts[i] += 1
    return names, counts


def _fleet_devices(f: FleetCfg, rng: np.random.Generator, taken: set[str],
                   drawn: np.ndarray | None = None) -> list[DeviceCfg]:
    """Draw the generated fleet: processor classes by largest remainder, then shuffled.

    ``drawn``: the sample counts when ``fleet.samples`` is a distribution (`_sample_counts`);
    they come from the data seed, so the fleet seed draws what it draws for a fixed count.
    """
    names, counts = _mix_counts(f)
    classes = [n for n, c in zip(names, counts, strict=True) for _ in range(c)]
    rng.shuffle(classes)
    out = []
    width = len(str(f.count - 1))
    for i, proc in enumerate(classes):
        dev_id = f"{f.id_prefix}{i:0{width}d}"
        if dev_id in taken:
            raise InputError(
                f"generated device id {dev_id!r} clashes with an explicit device",
                key="fleet.id_prefix",
            )
        if drawn is None:
            assert isinstance(f.samples, int | Range)
            samples = _draw(f.samples, rng)
        else:
            samples = int(drawn[i])
        out.append(
            DeviceCfg(
                id=dev_id,
                processor=proc,
                batch_size=_draw(f.batch_size, rng),
                samples=round(samples),
                cut=_draw(f.cut, rng),
                uplink_mbps=_draw(f.uplink_mbps, rng),
                downlink_mbps=_draw(f.downlink_mbps, rng),
                distance_m=_draw(f.distance_m, rng),
                overhead_mb=f.overhead_mb,
            )
        )
    return out


def resolved_devices(s: Scenario) -> list[DeviceCfg]:
    """Explicit devices followed by the generated fleet (drawn from the fleet generator).

    For a population (``fleet.participants``) this expands every device of the population:
    only on request, since a run draws its participants without expanding anything.
    """
    devices = list(s.devices)
    seeds = Seeds.for_scenario(s)
    if s.fleet is not None and s.fleet.participants is not None:
        pop = Population.draw(s, seeds, {})
        return [pop.device_cfg(i) for i in range(pop.size)]
    if s.fleet is not None:
        rng = np.random.default_rng(seeds.fleet)
        counts = _sample_counts(s.fleet, seeds)
        devices += _fleet_devices(s.fleet, rng, {d.id for d in devices}, counts)
    devices = _with_slowdowns(s, devices, seeds)  # drawn before a trim: a prefix keeps its draws
    if s.fleet is not None and s.fleet.target_utilisation is not None:  # keep the prefix that
        from sfsim.fleet_target import trim_to_target  # meets the target

        devices = trim_to_target(s, devices, len(s.devices))
    if s.fleet is not None:  # a generated fleet's counts are drawn now: the limit on the work
        fleetdata.check_epoch_work(s, [d.samples for d in devices], [d.batch_size for d in devices])
    return devices


def _sample_counts(f: FleetCfg, seeds: Seeds) -> np.ndarray | None:
    """A fleet's sample counts when ``fleet.samples`` is a distribution (data seed), else None."""
    if isinstance(f.samples, int | Range):
        return None
    return fleetdata.draw_sample_counts(
        f.samples, f.count, _child_seed(seeds.data, fleetdata.SAMPLES_KEY))


def _slowdowns(s: Scenario, n: int, seeds: Seeds) -> np.ndarray | None:
    """One persistent slowdown per device of the scenario (None: ``variability.device`` none)."""
    return fleetdata.draw_slowdowns(
        s.variability.device, n, _child_seed(seeds.data, fleetdata.SLOWDOWN_KEY))


def _with_slowdowns(s: Scenario, devices: list[DeviceCfg], seeds: Seeds) -> list[DeviceCfg]:
    """Devices (explicit first, then generated) with their drawn slowdown where none is given."""
    drawn = _slowdowns(s, len(devices), seeds)
    if drawn is None:
        return devices
    return [d if d.slowdown is not None else d.model_copy(update={"slowdown": float(x)})
            for d, x in zip(devices, drawn.tolist(), strict=True)]


def _column(value: float | Range | list[Any] | None, n: int, rng: np.random.Generator,
            dtype: type = float) -> np.ndarray:
    """One attribute for ``n`` generated devices (NaN or 0 where the scenario leaves it unset)."""
    if isinstance(value, Range):
        return rng.uniform(value.min, value.max, size=n)
    if isinstance(value, list):
        return np.asarray(value, dtype=dtype)[rng.integers(len(value), size=n)]
    fill = (np.nan if dtype is float else 0) if value is None else value
    return np.full(n, fill, dtype=dtype)


def _child_seed(parent: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The seed ``parent.spawn`` would give as child ``key`` (without spawning the others)."""
    return np.random.SeedSequence(
        parent.entropy, spawn_key=(*parent.spawn_key, *key), pool_size=parent.pool_size
    )


#: Spawn key, under the fleet seed, of the stream that draws each round's participants. No other
#: stream is spawned from the fleet seed, so adding it changes no existing draw.
PARTICIPATION_KEY = 1


@dataclass
class Population:
    """A scenario's devices as columns: explicit devices first, then the generated fleet.

    Nothing per device is built until a device takes part in a round: ``spec(i)`` makes its
    `DeviceSpec` (processor, links) on demand and keeps it, so a device keeps its channel state
    from one participation to the next. Set-up cost is a few numpy columns, whatever the size.

    The generated columns are drawn attribute by attribute from the fleet seed, so a population
    does not reproduce, device for device, the fleet a scenario without ``participants`` draws.
    """

    scenario: Scenario
    explicit: list[DeviceCfg]
    classes: list[str]  # processor class names; ``processor`` indexes into it
    processor: np.ndarray  # int, one per generated device
    batch: np.ndarray  # int
    samples: np.ndarray  # int, explicit devices included (sampling weights)
    cut: np.ndarray  # int, 0: unset
    uplink_mbps: np.ndarray  # float, NaN: unset
    downlink_mbps: np.ndarray
    distance_m: np.ndarray
    participation: np.random.SeedSequence
    channel: np.random.SeedSequence
    procs: dict[str, Processor]
    #: persistent slowdowns of the generated devices (``variability.device``); None: none drawn
    slowdown: np.ndarray | None = None
    _specs: dict[int, DeviceSpec] = field(default_factory=dict, repr=False)
    _cum: np.ndarray | None = field(default=None, repr=False)  # cumulative samples (weighted)

    @classmethod
    def draw(cls, s: Scenario, seeds: Seeds, procs: dict[str, Processor]) -> Population:
        f = s.fleet
        assert f is not None
        rng = np.random.default_rng(seeds.fleet)
        names, counts = _mix_counts(f)
        proc = rng.permutation(np.repeat(np.arange(len(names)), counts))
        n = f.count
        drawn = _sample_counts(f, seeds)  # a distribution: from the data seed, not this rng
        if drawn is None:
            assert isinstance(f.samples, int | Range)
            samples = np.rint(_column(f.samples, n, rng)).astype(np.int64)
        else:
            samples = drawn
        explicit = _with_slowdowns(s, list(s.devices), seeds)
        slowdown = _slowdowns(s, len(explicit) + n, seeds)
        pop = cls(
            scenario=s,
            explicit=explicit,
            classes=names,
            processor=proc,
            batch=_column(f.batch_size, n, rng, int).astype(np.int64),
            samples=np.concatenate([[d.samples for d in s.devices], samples]).astype(np.int64),
            cut=_column(f.cut, n, rng, int).astype(np.int64),
            uplink_mbps=_column(f.uplink_mbps, n, rng),
            downlink_mbps=_column(f.downlink_mbps, n, rng),
            distance_m=_column(f.distance_m, n, rng),
            participation=_child_seed(seeds.fleet, PARTICIPATION_KEY),
            channel=seeds.channel,
            procs=procs,
            slowdown=None if slowdown is None else slowdown[len(explicit):],
        )
        pop._check_ids()
        if s.training.local_work == "epochs":
            fleetdata.check_epoch_work(s, pop.samples, pop.batch_column(), f.participants)
        return pop

    def batch_column(self) -> np.ndarray:
        """Every device's batch size, explicit devices first."""
        return np.concatenate([[d.batch_size for d in self.explicit], self.batch]
                              ).astype(np.int64)

    @property
    def size(self) -> int:
        return len(self.explicit) + len(self.processor)

    def device_id(self, i: int) -> str:
        if i < len(self.explicit):
            return self.explicit[i].id
        f = self.scenario.fleet
        assert f is not None
        return f"{f.id_prefix}{i - len(self.explicit):0{len(str(f.count - 1))}d}"

    def _check_ids(self) -> None:
        f = self.scenario.fleet
        assert f is not None
        width = len(str(f.count - 1))
        for d in self.explicit:
            tail = d.id.removeprefix(f.id_prefix)
            if d.id.startswith(f.id_prefix) and tail.isdigit() and len(tail) == width \
                    and int(tail) < f.count:
                raise InputError(
                    f"generated device id {d.id!r} clashes with an explicit device",
                    key="fleet.id_prefix",
                )

    def device_cfg(self, i: int) -> DeviceCfg:
        """Device ``i`` as a scenario entry (generated ones built without re-validation)."""
        if i < len(self.explicit):
            return self.explicit[i]
        f = self.scenario.fleet
        assert f is not None
        j = i - len(self.explicit)

        def opt(col: np.ndarray) -> float | None:
            return None if np.isnan(col[j]) else float(col[j])

        return DeviceCfg.model_construct(
            id=self.device_id(i),
            processor=self.classes[int(self.processor[j])],
            memory_gb=None,
            batch_size=int(self.batch[j]),
            samples=int(self.samples[i]),
            cut=int(self.cut[j]) or None,
            uplink_mbps=opt(self.uplink_mbps),
            downlink_mbps=opt(self.downlink_mbps),
            distance_m=opt(self.distance_m),
            overhead_mb=f.overhead_mb,
            slowdown=None if self.slowdown is None else float(self.slowdown[j]),
        )

    def spec(self, i: int) -> DeviceSpec:
        """Device ``i``'s spec, built the first time it is asked for."""
        if i not in self._specs:
            seed = _child_seed(self.channel, i)  # as build_world seeds device i's links
            self._specs[i] = _device_spec(self.device_cfg(i), self.scenario, self.procs, seed)
        return self._specs[i]

    def participants(self, r: int) -> np.ndarray:
        """Indices of round ``r``'s participants, ascending (a seeded draw per round)."""
        f = self.scenario.fleet
        assert f is not None and f.participants is not None
        k, n = f.participants, self.size
        rng = np.random.default_rng(_child_seed(self.participation, r))
        if f.sampling == "uniform":
            chosen = rng.choice(n, size=k, replace=False)
        elif 10 * k <= n:
            chosen = self._weighted_draws(rng, k)
        else:
            # Many participants: the k smallest of Exp(1) / w (Efraimidis & Spirakis), the same
            # distribution as the draws below, linear in the population.
            keys = rng.exponential(size=n) / self.samples
            chosen = np.argpartition(keys, k - 1)[:k] if k < n else np.arange(n)
        return np.sort(chosen)

    def _weighted_draws(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """k devices in proportion to `samples`, without replacement (successive sampling).

        Draws with replacement from the cumulative weights and skips devices already drawn:
        each accepted draw is in proportion to the weights of those not yet drawn. A round
        costs O(k log N); the cumulative sum is computed once.
        """
        if self._cum is None:
            self._cum = np.cumsum(self.samples, dtype=np.float64)
        cum = self._cum
        chosen: dict[int, None] = {}
        while len(chosen) < k:
            u = rng.uniform(0.0, cum[-1], size=k - len(chosen))
            for i in np.searchsorted(cum, u, side="right").tolist():
                if len(chosen) < k:
                    chosen.setdefault(min(i, len(cum) - 1))
        return np.fromiter(chosen, dtype=np.int64, count=k)

    def round_devices(self, r: int) -> list[DeviceSpec]:
        return [self.spec(int(i)) for i in self.participants(r)]


def _links(d: DeviceCfg, ch: ChannelCfg, seeds: list[np.random.SeedSequence]) -> tuple[Link, Link]:
    latency_s = ch.latency_ms / 1e3
    if ch.model == "fixed":
        up = (d.uplink_mbps or ch.uplink_mbps) * MB
        down = (d.downlink_mbps or ch.downlink_mbps) * MB
        fixed: tuple[Link, Link] = (FixedLink(up, latency_s), FixedLink(down, latency_s))
        return fixed
    distance = d.distance_m or ch.distance_m
    loss_db = path_loss_db(distance, ch.path_loss.a_db, ch.path_loss.b_db)
    shadow_rng = np.random.default_rng(seeds[0])
    shadow_db = float(shadow_rng.normal(0.0, ch.shadowing_std_db)) if ch.shadowing_std_db else 0.0
    loss_db += shadow_db
    for side, power in (("uplink", ch.device_tx_power_dbm), ("downlink", ch.server_tx_power_dbm)):
        problem = shannon_problem(ch, distance, power, extra_loss_db=shadow_db)
        if problem:  # the mean is checked at load; a shadowing draw can still sink a link
            raise InputError(f"device {d.id!r}'s {side} (shadowing draw {shadow_db:+.1f} dB): "
                             f"{problem}", key="channel.shadowing_std_db")
    gain = 10.0 ** (-loss_db / 10.0)
    common = dict(
        bandwidth_hz=ch.bandwidth_mhz * 1e6,
        noise_psd_w_hz=dbm_to_w(ch.noise_psd_dbm_hz),
        path_gain=gain,
        coherence_s=ch.coherence_ms / 1e3,
        fading=ch.fading == "rayleigh",
        latency_s=latency_s,
    )
    up_link = ShannonLink(tx_power_w=dbm_to_w(ch.device_tx_power_dbm), seed=seeds[1], **common)
    down_link = ShannonLink(tx_power_w=dbm_to_w(ch.server_tx_power_dbm), seed=seeds[2], **common)
    return up_link, down_link


def _device_spec(
    d: DeviceCfg, s: Scenario, procs: dict[str, Processor], seed: np.random.SeedSequence
) -> DeviceSpec:
    """One device in engine units, its links seeded from ``seed``."""
    up, down = _links(d, s.channel, seed.spawn(3))
    proc = procs[d.processor]
    return DeviceSpec(
        id=d.id,
        processor=proc,
        memory_bytes=(d.memory_gb * GB) if d.memory_gb else proc.memory_bytes,
        batch=d.batch_size,
        samples=d.samples,
        cut=d.cut,
        uplink=up,
        downlink=down,
        overhead_bytes=d.overhead_mb * MB,
        distance_m=d.distance_m
        or (s.channel.distance_m if s.channel.model == "shannon" else None),
        slowdown=1.0 if d.slowdown is None else d.slowdown,
    )


def _traced(s: Scenario, devices: list[DeviceSpec]) -> list[DeviceSpec]:
    """``devices`` with the speed, links and windows of the scenario's traces (sfsim.traces)."""
    from sfsim.traces import load_traces

    if s.fleet is not None and s.fleet.participants is not None:
        raise InputError("traces are not supported with fleet.participants (a population) yet",
                         key="traces")
    traces = load_traces(s.traces, latency_s=s.channel.latency_ms / 1e3)
    traces.check_devices(d.id for d in devices)
    return [traces.apply(d) for d in devices]


def build_world(s: Scenario) -> World:
    """Resolve a validated scenario into devices, links, server and cost model.

    A population scenario (``fleet.participants``) builds no device here: its devices stay
    columns (`Population`) and each round's participants are built when they take part.
    """
    seeds = Seeds.for_scenario(s)
    procs = dict(catalogue())
    procs.update({n: processor_from_dict(n, p.model_dump()) for n, p in s.processors.items()})
    population = None
    devices = []
    if s.fleet is not None and s.fleet.participants is not None:
        population = Population.draw(s, seeds, procs)
    else:
        cfgs = resolved_devices(s)
        link_seeds = seeds.channel.spawn(len(cfgs))
        devices = [_device_spec(d, s, procs, ss) for d, ss in zip(cfgs, link_seeds, strict=True)]
    if s.traces.compute or s.traces.links or s.traces.availability:
        devices = _traced(s, devices)
    sproc = procs[s.server.processor]
    server = ServerSpec(
        processor=sproc,
        memory_bytes=(s.server.memory_gb * GB) if s.server.memory_gb else sproc.memory_bytes,
        overhead_bytes=s.server.overhead_mb * MB,
        slowdown=s.variability.server_factor,
    )
    params = cost_model_params(s.costs.model, s.costs.profile_dir, s.costs.reference,
                               s.model.arch, procs)
    costs = build_cost_model(s.costs.model, **params)
    return World(s, get_arch(s.model.arch), devices, server, costs, seeds, s.variability,
                 population)
