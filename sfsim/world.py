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

from sfsim.costs import CostModel, ModelArch, Processor, Workload, build_cost_model, get_arch
from sfsim.costs.processors import catalogue, processor_from_dict
from sfsim.errors import InputError
from sfsim.links import FixedLink, Link, ShannonLink, dbm_to_w, path_loss_db
from sfsim.scenario import ChannelCfg, DeviceCfg, FleetCfg, Range, Scenario, VariabilityCfg

MB = 1e6
GB = 1e9


@dataclass(frozen=True)
class Seeds:
    fleet: np.random.SeedSequence
    channel: np.random.SeedSequence
    scheduler: np.random.SeedSequence
    variability: np.random.SeedSequence

    @classmethod
    def from_seed(cls, seed: int) -> Seeds:
        fleet, channel, scheduler, variability = np.random.SeedSequence(seed).spawn(4)
        return cls(fleet, channel, scheduler, variability)

    @classmethod
    def for_scenario(cls, s: Scenario) -> Seeds:
        """The streams of ``s.seed``, each replaced by that of ``s.seeds.X`` where X is given.

        ``seeds.X = n`` gives stream X the values ``seed: n`` would, and a scenario without
        ``seeds`` draws exactly what it always did.
        """
        base = cls.from_seed(s.seed)
        own = {"fleet": s.seeds.fleet, "channel": s.seeds.channel,
               "scheduler": s.seeds.scheduler, "variability": s.seeds.compute}
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


@dataclass(frozen=True)
class ServerSpec:
    processor: Processor
    memory_bytes: float
    overhead_bytes: float


@dataclass
class World:
    scenario: Scenario
    arch: ModelArch
    devices: list[DeviceSpec]
    server: ServerSpec
    costs: CostModel
    seeds: Seeds
    variability: VariabilityCfg
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


def _fleet_devices(f: FleetCfg, rng: np.random.Generator, taken: set[str]) -> list[DeviceCfg]:
    """Draw the generated fleet: processor classes by largest remainder, then shuffled."""
    names = list(f.mix)
    weights = np.array([f.mix[n] for n in names], dtype=float)
    exact = weights / weights.sum() * f.count
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: f.count - counts.sum()]:
        counts[i] += 1
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
        samples = _draw(f.samples, rng)
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
    """Explicit devices followed by the generated fleet (drawn from the fleet generator)."""
    devices = list(s.devices)
    if s.fleet is not None:
        rng = np.random.default_rng(Seeds.for_scenario(s).fleet)
        devices += _fleet_devices(s.fleet, rng, {d.id for d in devices})
    return devices


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
    loss_db += float(shadow_rng.normal(0.0, ch.shadowing_std_db)) if ch.shadowing_std_db else 0.0
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


def build_world(s: Scenario) -> World:
    """Resolve a validated scenario into devices, links, server and cost model."""
    seeds = Seeds.for_scenario(s)
    procs = dict(catalogue())
    procs.update({n: processor_from_dict(n, p.model_dump()) for n, p in s.processors.items()})
    cfgs = resolved_devices(s)
    link_seeds = seeds.channel.spawn(len(cfgs))
    devices = []
    for d, ss in zip(cfgs, link_seeds, strict=True):
        up, down = _links(d, s.channel, ss.spawn(3))
        proc = procs[d.processor]
        devices.append(
            DeviceSpec(
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
            )
        )
    sproc = procs[s.server.processor]
    server = ServerSpec(
        processor=sproc,
        memory_bytes=(s.server.memory_gb * GB) if s.server.memory_gb else sproc.memory_bytes,
        overhead_bytes=s.server.overhead_mb * MB,
    )
    params = {"profile_dir": s.costs.profile_dir} if s.costs.profile_dir else {}
    costs = build_cost_model(s.costs.model, **params)
    return World(s, get_arch(s.model.arch), devices, server, costs, seeds, s.variability)
