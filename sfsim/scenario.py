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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sfsim.costs.arch import LORA_TARGETS, get_arch
from sfsim.costs.processors import catalogue
from sfsim.errors import InputError

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    """Base of every section: unknown keys and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


class LoraCfg(Section):
    rank: PosInt = 8
    alpha: PosFloat = 16.0
    targets: list[str] = Field(default_factory=lambda: ["q", "v"], min_length=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"


class ModelCfg(Section):
    arch: str = "gpt2"
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    seq_len: PosInt = 128
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
    profile_dir: str | None = None  # a folder written by `sfsim profile`; default: shipped data


class ProcessorCfg(Section):
    """A processor class defined in the scenario (same fields as sfsim/data/processors.yaml)."""

    kind: Literal["device", "server"]
    peak_tflops: dict[Literal["fp32", "fp16", "bf16"], PosFloat]
    mem_bw_gbps: PosFloat
    memory_gb: PosFloat
    efficiency: Annotated[float, Field(gt=0, le=1)]
    source: str = "scenario-defined (assumption)"
    notes: str = ""

    @field_validator("peak_tflops")
    @classmethod
    def _has_fp32(cls, v: dict[str, float]) -> dict[str, float]:
        if "fp32" not in v:
            raise ValueError("peak_tflops needs at least an fp32 entry")
        return v


class DeviceCfg(Section):
    id: str = Field(min_length=1)
    processor: str
    memory_gb: PosFloat | None = None  # default: the processor class's memory
    batch_size: PosInt = 4
    samples: PosInt = 1000
    cut: Annotated[int, Field(ge=1)] | None = None  # blocks on the device; None: scheme default
    uplink_mbps: PosFloat | None = None  # fixed-rate channel: overrides channel.uplink_mbps
    downlink_mbps: PosFloat | None = None
    distance_m: PosFloat | None = None  # shannon channel: overrides channel.distance_m
    overhead_mb: NonNegFloat = 200.0  # framework/runtime memory (assumption)


class Range(Section):
    min: NonNegFloat
    max: NonNegFloat

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class FleetCfg(Section):
    """A generated fleet: `count` devices drawn from a processor mix with the fleet generator."""

    count: PosInt
    mix: dict[str, PosFloat] = Field(min_length=1)  # processor class -> relative weight
    id_prefix: str = "dev"
    batch_size: PosInt | list[PosInt] = 4  # a list: one value drawn per device
    samples: PosInt | Range = 1000
    cut: Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=1)]] | None = None
    uplink_mbps: PosFloat | Range | None = None
    downlink_mbps: PosFloat | Range | None = None
    distance_m: PosFloat | Range | None = None
    overhead_mb: NonNegFloat = 200.0
    # A population: only `participants` devices (explicit and generated together) take part in
    # each round, drawn afresh per round with the fleet seed; `weighted` draws in proportion to
    # `samples` (without replacement). Unset: every device takes part in every round.
    participants: PosInt | None = None
    sampling: Literal["uniform", "weighted"] = "uniform"


class ServerCfg(Section):
    processor: str = "a100-80gb-sxm"
    memory_gb: PosFloat | None = None
    overhead_mb: NonNegFloat = 1000.0  # CUDA context and allocator slack (assumption)


class PathLossCfg(Section):
    """Path loss in dB = a + b·log10(d_km) (3GPP TR 36.814 macro: 128.1 + 37.6·log10 d)."""

    a_db: float = 128.1
    b_db: float = 37.6


class ChannelCfg(Section):
    model: Literal["fixed", "shannon"] = "fixed"
    latency_ms: NonNegFloat = 0.0
    # fixed-rate links
    uplink_mbps: PosFloat = 100.0
    downlink_mbps: PosFloat = 200.0
    # Shannon links: rate = B·log2(1 + P·g / (N0·B)) per device, on a dedicated band
    bandwidth_mhz: PosFloat = 20.0
    device_tx_power_dbm: float = 23.0
    server_tx_power_dbm: float = 33.0
    noise_psd_dbm_hz: float = -174.0
    distance_m: PosFloat = 100.0
    path_loss: PathLossCfg = Field(default_factory=PathLossCfg)
    shadowing_std_db: NonNegFloat = 0.0
    fading: Literal["rayleigh", "none"] = "rayleigh"
    coherence_ms: PosFloat = 10.0


class PipelineCfg(Section):
    """Streaming schemes (splitfrozen, fedmobillm): how far devices may run ahead of the server."""

    buffer_batches: PosInt = 2  # a device's forward outputs not yet consumed by the server
    max_inflight: PosInt = 2  # splitfrozen: batches forwarded on the server, backward pending
    backward_chunk_blocks: PosInt = 1  # splitfrozen: blocks per backward stage (decomposition)


class FedMobiLLMCfg(Section):
    """fedmobillm: which frozen backbone each device runs, and the server's side network."""

    backbones: list[str] = Field(default_factory=list)  # empty: model.arch's family, up to it
    backbone_policy: Literal["largest_fit", "by_processor"] = "largest_fit"
    by_processor: dict[str, str] = Field(default_factory=dict)  # processor class -> backbone
    taps: PosInt = 4  # backbone layers whose outputs are uploaded (evenly spaced, last included)
    side_ratio: Annotated[float, Field(gt=0, le=1)] = 0.125  # side width / model.arch hidden

    @field_validator("backbones")
    @classmethod
    def _known_backbones(cls, v: list[str]) -> list[str]:
        for name in v:
            get_arch(name)
        return v


class TrainingCfg(Section):
    scheme: str = "memsfl"
    rounds: PosInt = 1
    local_iterations: PosInt = 1
    # Split schemes: "fixed" uses each device's `cut`; for devices without one, "max_fit" takes
    # the largest cut their memory holds, "balanced" evens device-side times at the slowest
    # device's, "min_time" picks the balanced cuts of least estimated round time (schemes/cuts.py).
    cut_policy: Literal["fixed", "max_fit", "balanced", "min_time"] = "fixed"
    pipeline: PipelineCfg = Field(default_factory=PipelineCfg)
    fedmobillm: FedMobiLLMCfg = Field(default_factory=FedMobiLLMCfg)


class SchedulerCfg(Section):
    name: str = "fifo"
    params: dict[str, Any] = Field(default_factory=dict)


class VariabilityCfg(Section):
    """Per-phase compute slowdown: none, or a log-normal factor with median 1."""

    compute: Literal["none", "lognormal"] = "none"
    sigma: NonNegFloat = 0.1


class SeedsCfg(Section):
    """A seed per source of randomness; each one left out follows the scenario's ``seed``.

    ``seeds.X: n`` gives stream X exactly the draws ``seed: n`` would give it, so a fleet drawn
    with one seed can be replayed under the channel noise, compute variability or scheduler
    randomness of another (``seed: 1`` with ``seeds: {channel: 2}``).
    """

    fleet: Annotated[int, Field(ge=0)] | None = None  # the generated fleet
    channel: Annotated[int, Field(ge=0)] | None = None  # shadowing and fading of Shannon links
    compute: Annotated[int, Field(ge=0)] | None = None  # compute variability
    scheduler: Annotated[int, Field(ge=0)] | None = None  # randomised scheduling rules


class Scenario(Section):
    name: str = "scenario"
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
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

    def processor_names(self) -> set[str]:
        return set(catalogue()) | set(self.processors)

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
        if self.server.processor not in known:
            raise _KeyError("server.processor", _unknown_processor(self.server.processor, known))
        self._check_backbones(known)
        return self

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
        return Scenario.model_validate(data)
    except ValidationError as err:
        msgs = validation_messages(err)
        key, problem = msgs[0]
        extra = "".join(f"\n  also {k}: {p}" for k, p in msgs[1:])
        raise InputError(problem + extra, file=file, key=key) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", file=p)
    if p.is_dir():
        raise InputError("is a folder, not a scenario file", file=p)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=p) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"YAML syntax error: {problem}", file=p, key=where) from None
    return parse_scenario(data, file=p)


def dump_scenario(s: Scenario) -> str:
    """YAML text of a scenario with every default filled in."""
    return yaml.safe_dump(s.model_dump(mode="json"), sort_keys=False)
