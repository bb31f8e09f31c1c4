"""The scenario file: a YAML description of one experiment, validated once at load.

A scenario names the model (architecture, dtype, sequence length, LoRA), the devices (an explicit
list and/or a generated fleet), the server, the channel, the training scheme, the scheduler and the
seed. Human units (Mbit/s, GB, ms, dBm) appear only here; `sfsim.build` converts them to bits/s,
bytes and seconds once. Unknown keys are errors, and every error names the file and the key path::

    error: x.yaml: devices[2].cut: cut layer 14 is beyond the model depth (gpt2 has 12 blocks)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sfsim.costs.arch import LORA_TARGETS, get_arch
from sfsim.costs.processors import catalogue
from sfsim.errors import InputError
from sfsim.yamlio import check_finite, load_yaml

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]

# Physical bounds on every number a scenario may give (docs/limits.md lists them). NaN and
# infinities are refused before these, by sfsim.yamlio and by `allow_inf_nan=False` below.
MAX_DEVICES = 10_000
MAX_POPULATION = 10_000_000  # a population (fleet.participants) is never expanded: only columns
SERVER_ID = "server"  # the engine's owner name for the edge server (sfsim.engine.SERVER)
MIN_LINK_BPS = 1e3  # a link slower than 1 kbit/s (on average) is refused
Rate = Annotated[float, Field(ge=1e-3, le=1e6)]  # Mbit/s: 1 kbit/s .. 1 Tbit/s
Distance = Annotated[float, Field(ge=1.0, le=100_000.0)]  # m: 1 m .. 100 km
MemoryGB = Annotated[float, Field(ge=1e-6, le=1e5)]  # GB: 1 kB .. 100 TB
OverheadMB = Annotated[float, Field(ge=0, le=1e7)]  # MB: 0 .. 10 TB
Batch = Annotated[int, Field(ge=1, le=65_536)]
Samples = Annotated[int, Field(ge=1, le=10**9)]
Cut = Annotated[int, Field(ge=1, le=10_000)]  # also checked against the model depth
PowerDbm = Annotated[float, Field(ge=-50.0, le=60.0)]  # transmit power: 10 nW .. 1 kW
SmallInt = Annotated[int, Field(ge=1, le=1024)]
Iterations = Annotated[int, Field(ge=1, le=1_000_000)]
Weight = Annotated[float, Field(ge=1e-6, le=1e6)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Slowdown = Annotated[float, Field(ge=1e-3, le=1e3)]  # a persistent compute-time factor


def _safe_id(v: str, *, what: str = "an id", max_len: int = 64) -> str:
    """Ids (devices, processors, prefixes) are short, printable and free of path separators."""
    if not v or len(v) > max_len:
        raise ValueError(f"{what} must have 1 to {max_len} characters, not {len(v)}")
    bad = sorted({ch for ch in v if not (ch.isascii() and (ch.isalnum() or ch in "_.:@+-"))})
    if bad:
        raise ValueError(
            f"{what} {v!r} may use only letters, digits and _ . : @ + -, not {''.join(bad)!r}"
        )
    return v


def _printable(v: str, *, what: str, max_len: int) -> str:
    if len(v) > max_len:
        raise ValueError(f"{what} is {len(v)} characters long; at most {max_len}")
    if any(not (ch.isprintable() or ch in "\n\t") for ch in v):
        raise ValueError(f"{what} contains control characters")
    return v


class Section(BaseModel):
    """Base of every section: unknown keys and silent type coercion are errors.

    Strict: a boolean or a string is never taken for a number (``rounds: true``, ``rounds: '3'``
    and ``uplink_mbps: yes`` are errors); an integer is accepted where a float is expected.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, validate_default=True, allow_inf_nan=False
    )


class LoraCfg(Section):
    rank: Annotated[int, Field(ge=1, le=65_536)] = 8
    alpha: Annotated[float, Field(gt=0, le=1e6)] = 16.0
    targets: list[str] = Field(default_factory=lambda: ["q", "v"], min_length=1, max_length=16)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"


class ModelCfg(Section):
    arch: Annotated[str, Field(max_length=64)] = "gpt2"
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    seq_len: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    lora: LoraCfg = Field(default_factory=LoraCfg)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        get_arch(v)  # raises ValueError listing the known names
        return v

    @model_validator(mode="after")
    def _targets_and_length(self) -> ModelCfg:
        arch = get_arch(self.arch)
        bad = [t for t in self.lora.targets if t not in LORA_TARGETS[arch.family]]
        if bad:
            raise ValueError(
                f"lora.targets {bad} not in {arch.family} blocks; "
                f"choose from {list(LORA_TARGETS[arch.family])}"
            )
        if self.seq_len > arch.max_positions:
            raise ValueError(f"seq_len {self.seq_len} exceeds {arch.name}'s {arch.max_positions}")
        return self


class CostsCfg(Section):
    model: Literal["analytic", "profiled"] = "analytic"
    # a folder written by `sfsim profile`; default: shipped data
    profile_dir: Annotated[str | None, Field(min_length=1, max_length=4096)] = None
    # the processor the profiles were measured on (profiled model only); default: the
    # profile's metadata (<model>.json "processor"), else cpu-ref-2core. See docs/costs.md.
    reference: Annotated[str | None, Field(min_length=1, max_length=64)] = None

    @model_validator(mode="after")
    def _reference_needs_profiles(self) -> CostsCfg:
        if self.reference is not None and self.model != "profiled":
            raise _KeyError("costs.reference", "only the profiled cost model has a reference "
                            "processor; set costs.model: profiled or leave it out")
        return self


class ProcessorCfg(Section):
    """A processor class defined in the scenario (same fields as sfsim/data/processors.yaml)."""

    kind: Literal["device", "server"]
    peak_tflops: dict[Literal["fp32", "fp16", "bf16"], Annotated[float, Field(ge=1e-6, le=1e6)]]
    mem_bw_gbps: Annotated[float, Field(ge=1e-6, le=1e6)]
    memory_gb: MemoryGB
    efficiency: Annotated[float, Field(ge=1e-3, le=1)]
    # watts while computing / idle (sfsim/energy.py); left out: DEFAULT_POWER_W by kind
    # (sfsim/costs/processors.py, an assumption)
    power_busy_w: Annotated[float, Field(ge=0.0, le=1e5)] | None = None
    power_idle_w: Annotated[float, Field(ge=0.0, le=1e5)] | None = None
    power_source: Annotated[str, Field(max_length=1000)] | None = None
    source: Annotated[str, Field(max_length=1000)] = "scenario-defined (assumption)"
    notes: Annotated[str, Field(max_length=10_000)] = ""

    @field_validator("peak_tflops")
    @classmethod
    def _has_fp32(cls, v: dict[str, float]) -> dict[str, float]:
        if "fp32" not in v:
            raise ValueError("peak_tflops needs at least an fp32 entry")
        return v

    @model_validator(mode="after")
    def _idle_below_busy(self) -> ProcessorCfg:
        if (self.power_busy_w is not None and self.power_idle_w is not None
                and self.power_idle_w > self.power_busy_w):
            raise ValueError(f"power_idle_w {self.power_idle_w} exceeds power_busy_w "
                             f"{self.power_busy_w}")
        return self


class DeviceCfg(Section):
    id: str = Field(min_length=1)
    processor: str = Field(max_length=64)
    memory_gb: MemoryGB | None = None  # default: the processor class's memory
    batch_size: Batch = 4
    samples: Samples = 1000
    cut: Cut | None = None  # blocks on the device; None: scheme default
    uplink_mbps: Rate | None = None  # fixed-rate channel: overrides channel.uplink_mbps
    downlink_mbps: Rate | None = None
    distance_m: Distance | None = None  # shannon channel: overrides channel.distance_m
    overhead_mb: OverheadMB = 200.0  # framework/runtime memory (assumption)
    # persistent compute slowdown of this device (its compute times × slowdown); unset: drawn
    # from variability.device (1 with model none). Resolved scenarios write the drawn value.
    slowdown: Slowdown | None = None

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        _safe_id(v, what="a device id")
        if v == SERVER_ID:
            raise ValueError(f"device id {v!r} is reserved for the edge server; choose another")
        return v


class Range(Section):
    """A uniform range; each fleet field checks both ends against its own bounds."""

    min: NonNegFloat
    max: NonNegFloat

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class LognormalSamples(Section):
    """Sample counts drawn per device: round(median · e^(σz)), z ~ N(0, 1), at least 1."""

    dist: Literal["lognormal"]
    median: Annotated[float, Field(ge=1.0, le=1e9)]
    sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 1.0


class DirichletSamples(Section):
    """Sample counts: ``total`` split by Dirichlet(α, …, α) proportions, rounded, at least 1."""

    dist: Literal["dirichlet"]
    total: Annotated[int, Field(ge=1, le=10**9)]
    alpha: Annotated[float, Field(ge=1e-3, le=1e3)] = 1.0


#: How a fleet's sample counts are given: one count, a uniform range, or a distribution whose
#: draws come from the scenario's data seed (sfsim/fleetdata.py).
def _samples_kind(v: Any) -> str | None:
    """Which form of `SamplesSpec` a value has (None: a ``dist`` we do not know).

    The tags are bracketed so that error paths leave them out (`validation_messages` drops
    path parts with a ``[``): ``fleet.samples.median``, not ``fleet.samples.[lognormal].median``.
    """
    if isinstance(v, dict):
        if "dist" not in v:
            return "[range]"
        return {"lognormal": "[lognormal]", "dirichlet": "[dirichlet]"}.get(str(v["dist"]))
    if isinstance(v, LognormalSamples | DirichletSamples):
        return f"[{v.dist}]"
    return "[range]" if isinstance(v, Range) else "[count]"


SamplesSpec = Annotated[
    Annotated[Samples, Tag("[count]")]
    | Annotated[Range, Tag("[range]")]
    | Annotated[LognormalSamples, Tag("[lognormal]")]
    | Annotated[DirichletSamples, Tag("[dirichlet]")],
    Discriminator(_samples_kind, custom_error_type="samples_kind",
                  custom_error_message="give a count, {min, max}, {dist: lognormal, median, "
                  "sigma} or {dist: dirichlet, total, alpha}"),
]


class FleetCfg(Section):
    """A generated fleet: `count` devices drawn from a processor mix with the fleet generator."""

    count: Annotated[int, Field(ge=1, le=MAX_POPULATION)]  # above MAX_DEVICES: needs participants
    mix: dict[str, Weight] = Field(min_length=1, max_length=1000)  # processor -> relative weight
    id_prefix: str = "dev"
    # a list: one value drawn per device
    batch_size: Annotated[Batch | list[Batch], Field(union_mode="left_to_right")] = 4
    samples: SamplesSpec = 1000
    cut: Cut | Annotated[list[Cut], Field(min_length=1, max_length=10_000)] | None = None
    uplink_mbps: Annotated[Rate | Range | None, Field(union_mode="left_to_right")] = None
    downlink_mbps: Annotated[Rate | Range | None, Field(union_mode="left_to_right")] = None
    distance_m: Annotated[Distance | Range | None, Field(union_mode="left_to_right")] = None
    overhead_mb: OverheadMB = 200.0

    @field_validator("id_prefix")
    @classmethod
    def _prefix_ok(cls, v: str) -> str:
        return _safe_id(v, what="fleet.id_prefix", max_len=32) if v else v

    @field_validator("batch_size")
    @classmethod
    def _batches_ok(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, list) and not v:
            raise ValueError("an empty list: give at least one batch size")
        return v

    @model_validator(mode="after")
    def _ranges_in_bounds(self) -> FleetCfg:
        """A range may only produce values its field accepts (checked at load, both ends)."""
        for name, bound in (("samples", Samples), ("uplink_mbps", Rate),
                            ("downlink_mbps", Rate), ("distance_m", Distance)):
            r = getattr(self, name)
            if not isinstance(r, Range):
                continue
            for end in ("min", "max"):
                value = getattr(r, end)
                if name == "samples":  # drawn values are rounded to whole samples
                    value = round(value)
                try:
                    TypeAdapter(bound).validate_python(value)
                except ValidationError as exc:
                    problem = exc.errors()[0]["msg"]
                    raise _KeyError(f"fleet.{name}.{end}", f"{problem} (got {getattr(r, end)})"
                                    ) from None
        return self
    # A population: only `participants` devices (explicit and generated together) take part in
    # each round, drawn afresh per round with the fleet seed; `weighted` draws in proportion to
    # `samples` (without replacement). Unset: every device takes part in every round.
    participants: Annotated[int, Field(ge=1, le=MAX_DEVICES)] | None = None
    sampling: Literal["uniform", "weighted"] = "uniform"
    # Draw `count` devices, then keep the smallest prefix whose estimated server utilisation
    # reaches this target (split schemes; `count` is the maximum). See sfsim/fleet_target.py.
    target_utilisation: Annotated[float, Field(gt=0.0, le=1.0)] | None = None


class ServerCfg(Section):
    processor: Annotated[str, Field(max_length=64)] = "a100-80gb-sxm"
    memory_gb: MemoryGB | None = None
    overhead_mb: OverheadMB = 1000.0  # CUDA context and allocator slack (assumption)


class PathLossCfg(Section):
    """Path loss in dB = a + b·log10(d_km) (3GPP TR 36.814 macro: 128.1 + 37.6·log10 d)."""

    a_db: Annotated[float, Field(ge=0.0, le=300.0)] = 128.1
    b_db: Annotated[float, Field(ge=0.0, le=100.0)] = 37.6


class RadioCfg(Section):
    """A device radio's power draw while transmitting / receiving (sfsim/energy.py).

    Defaults: ASSUMPTION, of the order of LTE smartphone measurements (Huang et al., MobiSys
    2012: about 1.3 W in the connected state, more when sending); see docs/costs.md.
    """

    tx_w: Annotated[float, Field(ge=0.0, le=1e3)] = 2.5
    rx_w: Annotated[float, Field(ge=0.0, le=1e3)] = 1.5


class ChannelCfg(Section):
    model: Literal["fixed", "shannon"] = "fixed"
    latency_ms: Annotated[float, Field(ge=0.0, le=60_000.0)] = 0.0
    # fixed-rate links
    uplink_mbps: Rate = 100.0
    downlink_mbps: Rate = 200.0
    # Shannon links: rate = B·log2(1 + P·g / (N0·B)) per device, on a dedicated band
    bandwidth_mhz: Annotated[float, Field(ge=1e-3, le=1e5)] = 20.0  # 1 kHz .. 100 GHz
    device_tx_power_dbm: PowerDbm = 23.0
    server_tx_power_dbm: PowerDbm = 33.0
    noise_psd_dbm_hz: Annotated[float, Field(ge=-230.0, le=-100.0)] = -174.0
    distance_m: Distance = 100.0
    path_loss: PathLossCfg = Field(default_factory=PathLossCfg)
    shadowing_std_db: Annotated[float, Field(ge=0.0, le=30.0)] = 0.0
    fading: Literal["rayleigh", "none"] = "rayleigh"
    coherence_ms: Annotated[float, Field(ge=1e-3, le=1e9)] = 10.0  # 1 µs .. ~11.6 days
    radio: RadioCfg = Field(default_factory=RadioCfg)  # energy only: never changes a time
    # Shared cell (sfsim/channel.py, docs/channel.md): "dedicated" gives each device its own band;
    # "shared" makes concurrent uploads (downloads) divide the cell: "equal" fixes a transfer's
    # rate at its start to 1/n of its link's, "fluid" re-divides the band B/n on every change.
    access: Literal["dedicated", "shared"] = "dedicated"
    sharing: Literal["equal", "fluid"] = "equal"
    # The round's averaged adapters go down as one broadcast per group of equal adapters, at the
    # rate of the worst receiver's downlink (split schemes, fedlora).
    broadcast_downlink: bool = False


class PipelineCfg(Section):
    """Streaming schemes (splitfrozen, fedmobillm): how far devices may run ahead of the server."""

    buffer_batches: SmallInt = 2  # a device's forward outputs not yet consumed by the server
    max_inflight: SmallInt = 2  # splitfrozen: batches forwarded on the server, backward pending
    backward_chunk_blocks: SmallInt = 1  # splitfrozen: blocks per backward stage
    barrier: bool = False  # splitfrozen: drain the pipeline at every round (docs/async.md)


class FedMobiLLMCfg(Section):
    """fedmobillm: which frozen backbone each device runs, and the server's side network."""

    backbones: list[str] = Field(default_factory=list)  # empty: model.arch's family, up to it
    backbone_policy: Literal["largest_fit", "by_processor"] = "largest_fit"
    by_processor: dict[str, str] = Field(default_factory=dict)  # processor class -> backbone
    taps: SmallInt = 4  # backbone layers whose outputs are uploaded (evenly spaced, last included)
    side_ratio: Annotated[float, Field(gt=0, le=1)] = 0.125  # side width / model.arch hidden

    @field_validator("backbones")
    @classmethod
    def _known_backbones(cls, v: list[str]) -> list[str]:
        for name in v:
            get_arch(name)
        return v


class CompressionCfg(Section):
    """Activation compression on the uplink (sfsim/compression.py, docs/async.md).

    Off by default."""

    activations: Literal["none", "fp16", "int8"] = "none"  # quantisation of uplinked activations
    tokens: Literal["all", "topk", "pooled"] = "all"  # fedmobillm only: tokens kept per sample
    keep_tokens: SmallInt | None = None  # tokens: topk (required there, at most model.seq_len)
    layers: Literal["all", "sampled"] = "all"  # fedmobillm only: "sampled" uploads sampled_taps
    sampled_taps: SmallInt | None = None  # layers: sampled (required there, at most taps)


class TrainingCfg(Section):
    scheme: Annotated[str, Field(min_length=1, max_length=64)] = "memsfl"
    rounds: Iterations = 1
    local_iterations: Iterations = 1
    # Local work per round: "iterations" (every device runs local_iterations), or "epochs" (device
    # u runs ceil(local_epochs × samples_u / batch_u) iterations; local_epochs unset: 1 epoch).
    local_work: Literal["iterations", "epochs"] = "iterations"
    local_epochs: Annotated[float, Field(ge=1e-6, le=1e4)] | None = None
    # Split schemes: "fixed" uses each device's `cut`; for devices without one, "max_fit" takes
    # the largest cut their memory holds, "balanced" evens device-side times at the slowest
    # device's, "min_time" picks the balanced cuts of least estimated round time (schemes/cuts.py),
    # "joint" chooses cuts and server order together (schedulers/joint.py).
    cut_policy: Literal["fixed", "max_fit", "balanced", "min_time", "joint"] = "fixed"
    pipeline: PipelineCfg = Field(default_factory=PipelineCfg)
    fedmobillm: FedMobiLLMCfg = Field(default_factory=FedMobiLLMCfg)
    compression: CompressionCfg = Field(default_factory=CompressionCfg)
    # Faults (sfsim/faults.py, docs/faults.md): devices still working this long after the round
    # starts are cut off (a `deadline` drop); "partial" FedAvg's the devices that finished, "all"
    # waits for every device that did not drop (a deadline needs "partial").
    round_deadline_s: Annotated[float, Field(gt=0.0, le=1e7)] | None = None
    aggregation: Literal["all", "partial"] = "all"


class RollingCfg(Section):
    """``scheduler.dispatch: rolling``: re-solve the round's remaining tasks at each dispatch.

    ``budget_s`` caps each re-solve: it is passed as ``time_limit_s`` to a scheduler that takes
    one (carlier, milp, local_search). With ``charge_solve_time`` the server spends a
    deterministic ``solve_cost_s`` per re-solve (the budget when left out) before it serves.
    """

    budget_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 1.0
    charge_solve_time: bool = False
    solve_cost_s: Annotated[float, Field(ge=0.0, le=3600.0)] | None = None


class SchedulerCfg(Section):
    name: Annotated[str, Field(min_length=1, max_length=64)] = "fifo"
    params: dict[str, Any] = Field(default_factory=dict, max_length=64)
    # How the server uses the scheduler (sfsim/server.py): "auto" is "online" for a scheduler
    # that dispatches online and "strict" otherwise; see docs/schedulers.md, "Dispatch modes".
    dispatch: Literal["auto", "strict", "priority", "online", "rolling"] = "auto"
    rolling: RollingCfg = Field(default_factory=RollingCfg)
    # What the scheduler is told about each task (sfsim/estimators.py; docs/schedulers.md,
    # "Estimates and realisations"), and the time limit of each round's ex-post optimum.
    estimator: Literal["mean", "mean_snr", "quantile", "last", "oracle"] = "mean"
    quantile_p: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    ewma_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    ex_post_time_limit_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 2.0


class DeviceSlowdownCfg(Section):
    """A persistent per-device slowdown, drawn once per device from the data seed (median 1).

    ``variability.device: none`` is short for ``{model: none}``.
    """

    model: Literal["none", "lognormal"] = "none"
    sigma: Annotated[float, Field(ge=0.0, le=2.0)] = 0.5

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data


class VariabilityCfg(Section):
    """Per-phase compute slowdown: none, or a log-normal factor with median 1.

    Beside it, persistent factors (sfsim/fleetdata.py): ``device`` draws one per device for the
    whole run, ``server_factor`` multiplies every compute time of the server.
    """

    compute: Literal["none", "lognormal"] = "none"
    sigma: Annotated[float, Field(ge=0.0, le=2.0)] = 0.1  # factor e^(σz): σ ≤ 2 stays finite
    device: DeviceSlowdownCfg = Field(default_factory=DeviceSlowdownCfg)
    server_factor: Annotated[float, Field(ge=1.0, le=1e3)] = 1.0


class DropoutCfg(Section):
    """Per device and round: the chance it drops before the round, and during it."""

    before: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    during: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class EpisodesCfg(Section):
    """Poisson episodes: ``rate_per_hour`` starts per hour, exponential durations."""

    rate_per_hour: Annotated[float, Field(ge=0.0, le=3600.0)] = 0.0
    mean_duration_s: Annotated[float, Field(gt=0.0, le=86_400.0)] = 10.0


class ServerSlowdownCfg(EpisodesCfg):
    """Server slowdown episodes: inside one, the server computes ``factor`` times slower."""

    factor: Annotated[float, Field(ge=1.0, le=1e3)] = 2.0


class FaultsCfg(Section):
    """Faults drawn from the faults seed (sfsim/faults.py, docs/faults.md); all off by default."""

    dropout: DropoutCfg = Field(default_factory=DropoutCfg)
    link_outage: EpisodesCfg = Field(default_factory=EpisodesCfg)  # per device: link down
    server_slowdown: ServerSlowdownCfg = Field(default_factory=ServerSlowdownCfg)
    # devices follow traces.availability: offline at a round's start, a device drops before it;
    # going offline during a round, it drops then
    availability: bool = False


class SeedsCfg(Section):
    """A seed per source of randomness; each one left out follows the scenario's ``seed``.

    ``seeds.X: n`` gives stream X exactly the draws ``seed: n`` would give it, so a fleet drawn
    with one seed can be replayed under the channel noise, compute variability or scheduler
    randomness of another (``seed: 1`` with ``seeds: {channel: 2}``).
    """

    fleet: Seed | None = None  # the generated fleet and a population's participants
    channel: Seed | None = None  # shadowing and fading of Shannon links
    compute: Seed | None = None  # compute variability (``variability.compute``)
    scheduler: Seed | None = None  # randomised scheduling rules
    faults: Seed | None = None  # dropouts, link outages, server slowdowns (``faults``)
    data: Seed | None = None  # sample counts, persistent device slowdowns (docs/data.md)
    learning: Seed | None = None  # the learning proxy's data and initial weights


class LimitsCfg(Section):
    """Bounds on the work of one run, checked at load. Raise them on purpose for a huge run."""

    # rounds × local_iterations × devices taking part in a round
    max_device_iterations: Annotated[int, Field(ge=1, le=10**12)] = 1_000_000


TracePath = Annotated[str, Field(min_length=1, max_length=4096)]


class TracesCfg(Section):
    """Per-device traces as plain files (sfsim/traces.py, docs/traces.md); all off by default.

    A relative path in a scenario file is relative to that file's folder (`anchor_paths`);
    given any other way (``--set``, a dict), to the current folder. Paths are kept absolute.
    """

    compute: TracePath | None = None  # device, time_s, speed
    links: TracePath | None = None  # device, time_s, uplink_mbps, downlink_mbps
    availability: TracePath | None = None  # device, start_s, end_s
    repeat: bool = False  # loop each device's trace with its period_s (else the last value holds)

    @field_validator("compute", "links", "availability")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _printable(v, what="a trace path", max_len=4096)
        return str(Path(v).expanduser().absolute())


class SyntheticDataCfg(Section):
    """The shipped task (sfsim/learning/data.py): labels from a fixed random teacher network."""

    kind: Literal["synthetic"] = "synthetic"
    classes: Annotated[int, Field(ge=2, le=256)] = 4
    # non-IID: Dirichlet(alpha) skew per device over classes or over token distributions
    alpha: Annotated[float, Field(ge=1e-3, le=1e3)] = 0.5
    skew: Literal["classes", "tokens"] = "classes"


class NpyDataCfg(Section):
    """A user's tokenised data: token ids int [N, seq] and labels int [N] as .npy files."""

    kind: Literal["npy"]
    tokens: Annotated[str, Field(min_length=1, max_length=4096)]
    labels: Annotated[str, Field(min_length=1, max_length=4096)]
    alpha: Annotated[float, Field(ge=1e-3, le=1e3)] = 0.5  # Dirichlet skew over classes

    @field_validator("tokens", "labels")
    @classmethod
    def _absolute(cls, v: str) -> str:
        _printable(v, what="a data path", max_len=4096)
        return str(Path(v).expanduser().absolute())


def _data_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        return {"synthetic": "[synthetic]", "npy": "[npy]"}.get(str(v.get("kind", "synthetic")))
    return f"[{v.kind}]" if isinstance(v, SyntheticDataCfg | NpyDataCfg) else None


LearningData = Annotated[
    Annotated[SyntheticDataCfg, Tag("[synthetic]")] | Annotated[NpyDataCfg, Tag("[npy]")],
    Discriminator(_data_kind, custom_error_type="data_kind",
                  custom_error_message="give {kind: synthetic, ...} or "
                                       "{kind: npy, tokens, labels}"),
]


class LearningCfg(Section):
    """A small proxy model trained along the simulated dataflow (sfsim/learning; off by default).

    Bounds keep a run small: the proxy is a stand-in for the scenario's model, not the model.
    """

    enabled: bool = False
    blocks: Annotated[int, Field(ge=2, le=48)] = 4
    hidden: Annotated[int, Field(ge=8, le=1024)] = 64
    heads: Annotated[int, Field(ge=1, le=64)] = 4
    vocab: Annotated[int, Field(ge=8, le=65_536)] = 256
    seq_len: Annotated[int, Field(ge=2, le=1024)] = 32
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 3e-3
    optimizer: Literal["adam", "adamw", "sgd"] | None = None  # None: model.lora.optimizer
    lora_rank: Annotated[int, Field(ge=1, le=256)] = 8
    eval_every_s: Annotated[float, Field(gt=0.0, le=1e9)] | None = None  # None: each round end
    eval_every_steps: Annotated[int, Field(ge=1, le=10**9)] | None = None
    eval_samples: Annotated[int, Field(ge=8, le=100_000)] = 256
    target_accuracy: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    # each device's shard holds min(samples, this) examples (its batches cycle over them)
    max_samples_per_device: Annotated[int, Field(ge=1, le=1_000_000)] = 4096
    data: LearningData = Field(default_factory=SyntheticDataCfg)

    @model_validator(mode="after")
    def _consistent(self) -> LearningCfg:
        if self.hidden % self.heads:
            raise _KeyError("learning.heads", f"{self.heads} heads do not divide hidden "
                                              f"{self.hidden}")
        if self.eval_every_s is not None and self.eval_every_steps is not None:
            raise _KeyError("learning.eval_every_steps", "give eval_every_s or "
                            "eval_every_steps, not both")
        return self


def anchor_paths(data: Any, folder: Path) -> Any:
    """Raw scenario data with relative ``traces`` (and ``learning.data`` .npy) paths made
    relative to ``folder``."""
    data = _anchor_learning_data(data, folder)
    traces = data.get("traces") if isinstance(data, dict) else None
    if not isinstance(traces, dict):
        return data
    fixed = dict(traces)
    for key in ("compute", "links", "availability"):
        v = fixed.get(key)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            fixed[key] = str(folder.absolute() / v)
    return {**data, "traces": fixed}


def _anchor_learning_data(data: Any, folder: Path) -> Any:
    learning = data.get("learning") if isinstance(data, dict) else None
    if not isinstance(learning, dict) or not isinstance(learning.get("data"), dict):
        return data
    fixed = dict(learning["data"])
    for key in ("tokens", "labels"):
        v = fixed.get(key)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            fixed[key] = str(folder.absolute() / v)
    return {**data, "learning": {**learning, "data": fixed}}


class Scenario(Section):
    name: str = "scenario"
    description: Annotated[str, Field(max_length=10_000)] = ""
    seed: Seed = 0
    seeds: SeedsCfg = Field(default_factory=SeedsCfg)
    model: ModelCfg = Field(default_factory=ModelCfg)
    costs: CostsCfg = Field(default_factory=CostsCfg)
    processors: dict[str, ProcessorCfg] = Field(default_factory=dict)
    devices: list[DeviceCfg] = Field(default_factory=list)
    fleet: FleetCfg | None = None
    server: ServerCfg = Field(default_factory=ServerCfg)
    channel: ChannelCfg = Field(default_factory=ChannelCfg)
    training: TrainingCfg = Field(default_factory=TrainingCfg)
    scheduler: SchedulerCfg = Field(default_factory=SchedulerCfg)
    variability: VariabilityCfg = Field(default_factory=VariabilityCfg)
    limits: LimitsCfg = Field(default_factory=LimitsCfg)
    traces: TracesCfg = Field(default_factory=TracesCfg)
    learning: LearningCfg = Field(default_factory=LearningCfg)
    faults: FaultsCfg = Field(default_factory=FaultsCfg)

    def processor_names(self) -> set[str]:
        return set(catalogue()) | set(self.processors)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        return _printable(v, what="name", max_len=1000)

    @field_validator("processors")
    @classmethod
    def _processor_names_ok(cls, v: dict[str, ProcessorCfg]) -> dict[str, ProcessorCfg]:
        for name in v:
            _safe_id(name, what="a processor name")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        if not self.devices and self.fleet is None:
            raise ValueError("no devices: give a `devices` list, a `fleet`, or both")
        known = self.processor_names()
        ids: set[str] = set()
        depth = get_arch(self.model.arch).n_layers
        for i, d in enumerate(self.devices):
            if d.id in ids:
                raise _KeyError(f"devices[{i}].id", f"duplicate device id {d.id!r}")
            ids.add(d.id)
            if d.processor not in known:
                raise _KeyError(f"devices[{i}].processor", _unknown_processor(d.processor, known))
            if d.cut is not None and d.cut >= depth:
                raise _KeyError(f"devices[{i}].cut", _cut_msg(d.cut, self.model.arch, depth))
        if self.fleet is not None:
            for name in self.fleet.mix:
                if name not in known:
                    raise _KeyError(f"fleet.mix.{name}", _unknown_processor(name, known))
            cuts = self.fleet.cut if isinstance(self.fleet.cut, list) else [self.fleet.cut]
            for c in cuts:
                if c is not None and c >= depth:
                    raise _KeyError("fleet.cut", _cut_msg(c, self.model.arch, depth))
            population = len(self.devices) + self.fleet.count
            if self.fleet.participants is not None and self.fleet.participants > population:
                raise _KeyError("fleet.participants", f"{self.fleet.participants} participants "
                                f"per round but the population has only {population} devices")
            if self.fleet.target_utilisation is not None and self.fleet.participants is not None:
                raise _KeyError("fleet.target_utilisation", "not with fleet.participants (a "
                                "population draws its participants per round)")
        if self.server.processor not in known:
            raise _KeyError("server.processor", _unknown_processor(self.server.processor, known))
        self._check_backbones(known)
        self._check_work()
        self._check_links()
        t = self.training
        if t.round_deadline_s is not None and t.aggregation != "partial":
            raise _KeyError("training.round_deadline_s", "a deadline cuts late devices off, so "
                            "the round aggregates only those that finished: set "
                            "training.aggregation: partial")
        if self.faults.availability and self.traces.availability is None:
            raise _KeyError("faults.availability", "true, but no traces.availability file gives "
                            "the windows")
        return self

    def _check_work(self) -> None:
        """Device count and rounds × iterations × devices stay within the documented limits."""
        n = len(self.devices) + (self.fleet.count if self.fleet is not None else 0)
        population = self.fleet is not None and self.fleet.participants is not None
        if n > MAX_DEVICES and not population:
            raise _KeyError("devices", f"{n} devices in all; at most {MAX_DEVICES}")
        per_round = n
        participants = getattr(self.fleet, "participants", None) if self.fleet else None
        if isinstance(participants, int):
            per_round = min(n, participants)
        t = self.training
        if t.local_work == "epochs":
            self._check_epochs()
            return
        if t.local_epochs is not None:
            raise _KeyError("training.local_epochs", "set, but training.local_work is "
                            "'iterations'; add local_work: epochs, or leave local_epochs out")
        work = t.rounds * t.local_iterations * per_round
        if work > self.limits.max_device_iterations:
            raise _KeyError(
                "training.rounds",
                f"{t.rounds} rounds × {t.local_iterations} local iterations × {per_round} "
                f"devices = {work} device iterations, above the limit of "
                f"{self.limits.max_device_iterations}; lower them, or raise "
                "limits.max_device_iterations if you mean it",
            )

    def _check_epochs(self) -> None:
        """Epochs: the limit on the explicit devices' work (a generated fleet's counts are drawn
        at build, and checked there: `sfsim.fleetdata.check_epoch_work`)."""
        if self.fleet is not None or not self.devices:
            return
        from sfsim.fleetdata import epoch_work_problem

        problem = epoch_work_problem(self, [d.samples for d in self.devices],
                                     [d.batch_size for d in self.devices])
        if problem:
            raise _KeyError("training.local_epochs", problem)

    def _check_links(self) -> None:
        """Every link's average rate is finite and at least MIN_LINK_BPS (checked at load)."""
        ch = self.channel
        if ch.model == "fixed":
            return  # fixed rates are bounded field by field
        # the farthest distance each device can have, with the key that sets it
        where: list[tuple[str, float]] = [("channel.distance_m", ch.distance_m)]
        where += [(f"devices[{i}].distance_m", d.distance_m)
                  for i, d in enumerate(self.devices) if d.distance_m is not None]
        if self.fleet is not None and self.fleet.distance_m is not None:
            fd = self.fleet.distance_m
            where.append(("fleet.distance_m", fd.max if isinstance(fd, Range) else fd))
        for key, dist in where:
            for side, power in (("uplink", ch.device_tx_power_dbm),
                                ("downlink", ch.server_tx_power_dbm)):
                problem = shannon_problem(ch, dist, power)
                if problem:
                    raise _KeyError(key, f"{side} at {dist:g} m: {problem}")

    def _check_backbones(self, known: set[str]) -> None:
        fm = self.training.fedmobillm
        family = get_arch(self.model.arch).family
        for name in fm.backbones:
            if get_arch(name).family != family:
                raise _KeyError("training.fedmobillm.backbones",
                                f"backbone {name!r} is not of {self.model.arch}'s family {family}")
        for proc, name in fm.by_processor.items():
            key = f"training.fedmobillm.by_processor.{proc}"
            if proc not in known:
                raise _KeyError(key, _unknown_processor(proc, known))
            try:
                arch = get_arch(name)
            except ValueError as exc:
                raise _KeyError(key, str(exc)) from None
            if arch.family != family:
                raise _KeyError(key, f"backbone {name!r} is not of {self.model.arch}'s family "
                                     f"{family}")


class _KeyError(ValueError):
    """A cross-field problem located at a key path (turned into an InputError at load)."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


def _unknown_processor(name: str, known: set[str]) -> str:
    return f"unknown processor {name!r}; known: {', '.join(sorted(known))}"


def _cut_msg(cut: int, arch: str, depth: int) -> str:
    return (
        f"cut layer {cut} is beyond the model depth ({arch} has {depth} blocks; "
        f"a cut keeps blocks 1..cut on the device, so it must be at most {depth - 1})"
    )


# ---- loading ------------------------------------------------------------------------------------


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-after", "function-before", "constrained-int", "float", "int"}:
            continue  # pydantic's internal validator names, not user keys
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def validation_messages(err: ValidationError) -> list[tuple[str, str]]:
    """(key path, problem) for each error pydantic found, in the user's vocabulary."""
    out: list[tuple[str, str]] = []
    for e in err.errors():
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _KeyError):
            out.append((ctx_err.key, ctx_err.problem))
            continue
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see the scenario reference in README.md)"
        out.append((_key_path(loc), msg))
    return out


def parse_scenario(data: Any, *, file: str | Path = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data; raise InputError naming the file and the key."""
    if data is None:
        raise InputError(
            "the file is empty; a scenario needs at least `devices` or `fleet`", file=file
        )
    if not isinstance(data, dict):
        raise InputError(
            f"the top level must be a mapping of sections, not {type(data).__name__}", file=file
        )
    try:
        check_finite(data)  # NaN/inf and huge integers anywhere, even in free-form params
    except InputError as exc:
        raise InputError(exc.problem, file=file, key=exc.key) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        msgs = validation_messages(err)
        key, problem = msgs[0]
        extra = "".join(f"\n  also {k}: {p}" for k, p in msgs[1:])
        raise InputError(problem + extra, file=file, key=key) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (bounded and strict: see sfsim.yamlio)."""
    p = Path(path)
    return parse_scenario(anchor_paths(load_yaml(p, what="scenario file"), p.parent), file=p)


def dump_scenario(s: Scenario) -> str:
    """YAML text of a scenario with every default filled in.

    libyaml's emitter (``CSafeDumper``) when PyYAML was built with it: ~10x faster than the
    pure-Python one on a 10,000-device fleet. The two may wrap long strings differently; both
    load back to the same data.
    """
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(s.model_dump(mode="json"), Dumper=dumper, sort_keys=False)


def shannon_problem(ch: ChannelCfg, distance_m: float, tx_power_dbm: float,
                    extra_loss_db: float = 0.0) -> str | None:
    """Why a Shannon link with these inputs cannot carry data (None when it can).

    Mean SNR = P·g / (N0·B), g from the path loss at ``distance_m`` (plus ``extra_loss_db``, e.g.
    a shadowing draw). The rate B·log2(1 + SNR) must be finite and at least MIN_LINK_BPS.
    """
    import math

    bandwidth_hz = ch.bandwidth_mhz * 1e6
    loss_db = ch.path_loss.a_db + ch.path_loss.b_db * math.log10(distance_m / 1000.0)
    loss_db += extra_loss_db
    snr_db = tx_power_dbm - loss_db - ch.noise_psd_dbm_hz - 10.0 * math.log10(bandwidth_hz)
    if not math.isfinite(snr_db) or snr_db > 3000.0:
        return f"the mean SNR ({snr_db:g} dB) is not a usable number"
    rate = bandwidth_hz * math.log2(1.0 + 10.0 ** (snr_db / 10.0))
    if not math.isfinite(rate) or rate < MIN_LINK_BPS:
        return (
            f"average rate {rate:.3g} bit/s (mean SNR {snr_db:.1f} dB with "
            f"{tx_power_dbm:g} dBm, path loss {loss_db:.1f} dB, {ch.bandwidth_mhz:g} MHz) is "
            f"below {MIN_LINK_BPS:g} bit/s: a transfer would practically never end"
        )
    return None
