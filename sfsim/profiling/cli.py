"""The profiling layer's commands: ``sfsim profile``, ``models``, ``processors``, ``fidelity``.

``register(app)`` adds the four commands to the main Typer app. Only ``profile`` and ``fidelity``
need torch, and they import it inside the command, so ``sfsim models`` (and the rest of the CLI)
work without it. User errors print ``error: ...`` to stderr and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sfsim.costs.arch import ARCHS, ModelArch, get_arch
from sfsim.errors import InputError


def _fail(message: str) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(2)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise _fail(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise _fail(f"{option}: expected non-negative integers, got {text!r}")
    return values


def _arch_or_fail(name: str) -> ModelArch:
    try:
        return get_arch(name)
    except ValueError as e:
        raise _fail(str(e)) from None


def models_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {name, description, ...}.")
    ] = False,
) -> None:
    """List the known model architectures and their parameter counts."""
    rows: list[dict[str, Any]] = [
        {
            "name": a.name,
            "description": (
                f"{a.family} decoder, {a.total_params() / 1e6:,.0f}M parameters, "
                f"{a.n_layers} blocks, hidden {a.hidden}"
            ),
            "family": a.family,
            "params": a.total_params(),
            "n_layers": a.n_layers,
            "hidden": a.hidden,
            "heads": a.n_heads,
            "kv_heads": a.n_kv_heads,
            "ffn": a.ffn,
            "vocab": a.vocab,
            "block_params": a.block_params(),
        }
        for a in ARCHS.values()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'name':<16} {'family':<6} {'params':>14} {'layers':>6} {'hidden':>6} {'heads':>9}")
    for r in rows:
        heads = f"{r['heads']}/{r['kv_heads']}"
        print(
            f"{r['name']:<16} {r['family']:<6} {r['params']:>14,} {r['n_layers']:>6} "
            f"{r['hidden']:>6} {heads:>9}"
        )


def profile_command(
    models: Annotated[str, typer.Option(help="Comma-separated architectures.")] = "gpt2",
    processor: Annotated[
        str, typer.Option(help="Name of the processor measured.")
    ] = "cpu-ref-2core",
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: ./profiles/<processor>).")
    ] = None,
    batches: Annotated[str, typer.Option(help="Batch sizes.")] = "1,4",
    seqs: Annotated[str, typer.Option(help="Sequence lengths.")] = "128,512",
    ranks: Annotated[str, typer.Option(help="LoRA ranks (0 = no adapters).")] = "0,4,16",
    targets: Annotated[str, typer.Option(help="LoRA targets, e.g. q,v.")] = "q,v",
    reps: Annotated[int, typer.Option(min=1, help="Measured rounds.")] = 7,
    warmup: Annotated[int, typer.Option(min=0, help="Discarded rounds.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
    stack: Annotated[int, typer.Option(min=2, help="Blocks per timed stack.")] = 3,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda.")] = "cpu",
    retries: Annotated[int, typer.Option(min=0, help="Re-measure when disturbed.")] = 1,
) -> None:
    """Measure per-op times of real torch LoRA blocks and write <out>/<model>.csv (+ .json)."""
    archs = [_arch_or_fail(m.strip()) for m in models.split(",") if m.strip()]
    target_names = tuple(t.strip() for t in targets.split(",") if t.strip())
    for a in archs:
        try:
            for t in target_names:
                a.projection_shape(t)
        except ValueError as e:
            raise _fail(f"--targets: {e}") from None
    grid_ranks = _ints(ranks, "--ranks")
    if not any(grid_ranks):
        raise _fail("--ranks: at least one rank must be positive")
    try:
        import torch  # profiling needs torch: pip install 'sfsim[profile]'

        from sfsim.profiling.profiler import Grid, Settings, profile_model, write_profile
    except ImportError as e:
        raise _fail(f"profiling needs torch ({e}); install sfsim[profile]") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise _fail("--device cuda: no CUDA device is available")
    grid = Grid(_ints(batches, "--batches"), _ints(seqs, "--seqs"), grid_ranks, target_names)
    settings = Settings(
        reps=reps,
        warmup=warmup,
        threads=threads,
        stack_blocks=stack,
        device=device,
        retries=retries,
    )
    folder = out or Path("profiles") / processor
    for a in archs:
        result = profile_model(
            a, grid, settings, processor=processor, log=lambda m: print(m, file=sys.stderr)
        )
        print(write_profile(result, folder))


def fidelity_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    iters: Annotated[
        int | None, typer.Option(min=1, help="Measured iterations per cut [5; --tiny: 15].")
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Discarded iterations per cut.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
    profile_dir: Annotated[
        Path | None, typer.Option(help="Profiles to predict from (default: shipped).")
    ] = None,
    processor: Annotated[str, typer.Option(help="Processor of the run.")] = "cpu-ref-2core",
    tiny: Annotated[
        bool,
        typer.Option(help="Smoke test in seconds: toy 2-3 block models against a profile "
                     "measured in the same run; exit 1 if a phase is not measured or predicted."),
    ] = False,
    retries: Annotated[
        int | None, typer.Option(min=0, help="Re-run a disturbed iteration [2; --tiny: 0].")
    ] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda.")] = "cpu",
    session_profile: Annotated[
        bool, typer.Option(help="Also profile each grid point beside the iterations.")
    ] = True,
) -> None:
    """Run real split LoRA iterations here and compare each phase with the profiled cost model."""
    from sfsim.costs.processors import catalogue
    from sfsim.costs.profiled import ProfiledCostModel

    if processor not in catalogue():
        raise _fail(f"--processor: unknown {processor!r}; known: {', '.join(sorted(catalogue()))}")
    try:
        cost = ProfiledCostModel(profile_dir=profile_dir, reference=processor)
    except InputError as e:
        raise _fail(e.message) from None
    import torch

    from sfsim.profiling.fidelity import (
        DEFAULT_CONFIGS,
        format_table,
        run_fidelity,
        smoke_problems,
        tiny_configs,
    )

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise _fail("--device cuda: no CUDA device is available")

    if tiny and not session_profile:
        raise _fail("--tiny compares against a session profile; drop --no-session-profile")
    configs = tiny_configs() if tiny else DEFAULT_CONFIGS
    results, facts = run_fidelity(
        configs,
        cost=cost,
        processor=catalogue()[processor],
        iters=iters if iters is not None else (15 if tiny else 5),
        warmup=warmup,
        threads=threads,
        retries=retries if retries is not None else (0 if tiny else 2),
        device=device,
        session_profile=session_profile,
        log=lambda m: print(m, file=sys.stderr),
        small_canary=tiny,
    )
    problems = smoke_problems(results) if tiny else []
    if as_json:
        print(json.dumps([{**r.to_dict(), **facts} for r in results], indent=2))
    else:
        print(format_table(results))
        print(
            f"(threads {facts['threads']}, torch {facts['torch']}, load average before/after "
            f"{facts['load_avg_before'][0]:.2f}/{facts['load_avg_after'][0]:.2f})"
        )
    if tiny:
        for problem in problems:
            print(f"error: fidelity --tiny: {problem}", file=sys.stderr)
        if problems:
            raise typer.Exit(1)
        print(
            "fidelity --tiny: ok: every phase of every cut was measured on real torch split "
            "iterations and predicted from a profile measured in this run; millisecond "
            "kernels: errors are indicative only",
            file=sys.stderr,
        )


def _processor_row(p: Any) -> dict[str, Any]:
    peak = {k: v / 1e12 for k, v in p.peak_flops.items()}
    return {
        "name": p.name,
        "description": (
            f"{p.kind}: {peak['fp32']:g} TFLOP/s fp32, {p.mem_bw_bytes_s / 1e9:g} GB/s, "
            f"{p.memory_bytes / 1e9:g} GB, {p.power_busy_w:g} W busy / {p.power_idle_w:g} W idle"
        ),
        "kind": p.kind,
        "peak_tflops": peak,
        "mem_bw_gbps": p.mem_bw_bytes_s / 1e9,
        "memory_gb": p.memory_bytes / 1e9,
        "efficiency": p.efficiency,
        "power_busy_w": p.power_busy_w,
        "power_idle_w": p.power_idle_w,
        "source": p.source,
        "power_source": p.power_source,
        "notes": p.notes,
    }


def processors_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {name, description, ...}.")
    ] = False,
) -> None:
    """List the processor catalogue (sfsim/data/processors.yaml): figures and their sources."""
    from sfsim.costs.processors import catalogue

    rows = [_processor_row(p) for p in catalogue().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    import shutil

    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("processor", no_wrap=True)
    table.add_column("kind")
    for col in ("TFLOP/s fp32 / fp16 / bf16", "GB/s", "GB", "efficiency", "W busy / idle"):
        table.add_column(col, justify="right")
    table.add_column("source (figures; power)", ratio=1)
    for r in rows:
        pk = r["peak_tflops"]
        table.add_row(r["name"], r["kind"],
                      " / ".join(f"{pk.get(d, pk['fp32']):g}" for d in ("fp32", "fp16", "bf16")),
                      f"{r['mem_bw_gbps']:g}", f"{r['memory_gb']:g}", f"{r['efficiency']:g}",
                      f"{r['power_busy_w']:g} / {r['power_idle_w']:g}",
                      f"{r['source']}\npower: {r['power_source']}")
    Console(width=max(100, shutil.get_terminal_size((140, 24)).columns)).print(table)


def register(app: typer.Typer) -> None:
    """Add ``profile``, ``models``, ``processors`` and ``fidelity`` to ``app``."""
    app.command("models")(models_command)
    app.command("processors")(processors_command)
    app.command("profile")(profile_command)
    app.command("fidelity")(fidelity_command)
