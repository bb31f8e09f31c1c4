"""Timing one stack of LoRA blocks: per-block forward and backward times from a single run.

A block is never timed alone. Each measurement runs a *stack* of ``n`` identical blocks the way
training runs them (one forward loop, one ``backward`` call through all of them) and reads the time
of every block from inside that run:

* forward: a timestamp between consecutive block calls (the CPU executes synchronously);
* backward: a hook on every block boundary fires when the gradient for that boundary is complete,
  i.e. when the block above it has finished its backward; consecutive timestamps bracket a block.

The stack's input does not require a gradient (as on a device, whose embedding is frozen), so the
lowest block is the one that needs no input gradient (``block_bwd_no_input_grad``) and the others
are ordinary ``block_bwd``. Timing blocks one at a time, each with its own backward call, was
measured to over-predict a whole split iteration by 15–22% on this machine; timing them inside a
stack keeps per-call overheads, cache state and the autograd engine's scheduling as in training.

On a GPU, :func:`synchronize` makes the timestamps honest (``torch.cuda.synchronize``); on a CPU it
does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a host timestamp marks their end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class StackTiming:
    """Seconds per block of one forward+backward run of a stack (index 0 is the lowest block)."""

    fwd_s: list[float]
    bwd_s: list[float]
    opt_s: float  # one optimizer step (+ zero_grad) over all blocks' LoRA parameters

    @property
    def mean_fwd_s(self) -> float:
        return sum(self.fwd_s) / len(self.fwd_s)


def forward_stack(
    blocks: Sequence[nn.Module], x: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """Run ``blocks`` on ``x``; returns the output, every boundary tensor and per-block seconds."""
    outputs: list[torch.Tensor] = []
    times: list[float] = []
    synchronize(device)
    last = time.perf_counter()
    y = x
    for block in blocks:
        y = block(y)
        synchronize(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
        outputs.append(y)
    return y, outputs, times


def backward_stack(
    x: torch.Tensor,
    outputs: list[torch.Tensor],
    grad: torch.Tensor,
    device: torch.device,
) -> list[float]:
    """Backward through a stack from its last output; per-block seconds, lowest block first."""
    n = len(outputs)
    stamps: list[float | None] = [None] * (n + 1)  # stamps[k]: gradient of boundary k complete

    def stamp(k: int) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            synchronize(device)
            stamps[k] = time.perf_counter()

        return hook

    handles = [outputs[k - 1].register_hook(stamp(k)) for k in range(1, n)]
    if x.requires_grad:
        handles.append(x.register_hook(stamp(0)))
    synchronize(device)
    stamps[n] = time.perf_counter()
    outputs[-1].backward(grad)
    synchronize(device)
    end = time.perf_counter()
    for h in handles:
        h.remove()
    if stamps[0] is None:
        stamps[0] = end
    done = [s if s is not None else end for s in stamps]
    return [done[k] - done[k + 1] for k in range(n)]


def time_stack(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    grad: torch.Tensor,
    optimizer: torch.optim.Optimizer | None,
    device: torch.device,
) -> StackTiming:
    """One training pass of a stack: forward, backward and (if given) one optimizer step."""
    _, outputs, fwd = forward_stack(blocks, x, device)
    bwd = backward_stack(x, outputs, grad, device)
    opt_s = 0.0
    if optimizer is not None:
        synchronize(device)
        start = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        opt_s = time.perf_counter() - start
    del outputs
    return StackTiming(fwd_s=fwd, bwd_s=bwd, opt_s=opt_s)


def time_frozen_stack(
    blocks: Sequence[nn.Module], x: torch.Tensor, device: torch.device
) -> list[float]:
    """Forward-only run without autograd (a frozen device-side backbone); per-block seconds."""
    with torch.no_grad():
        _, _, times = forward_stack(blocks, x, device)
    return times


class Canary:
    """A fixed matmul timed before and after each measurement, to catch other processes' load.

    On a shared machine another process can take a core for seconds at a time; with two threads
    synchronised at every kernel, a block then runs 2–5× slower. The canary (two 512×1024·1024×1024
    fp32 matmuls, about 2 GFLOP) runs in milliseconds; a measurement is *clean* when both canaries
    around it ran within ``tolerance`` of the fastest canary seen, otherwise it is repeated (up to
    ``retries`` times, pausing in between) and, if still disturbed, flagged. Estimates use the
    quiet measurements when there are any: they describe the machine, not its neighbours.
    """

    def __init__(self, device: torch.device, tolerance: float = 0.25, retries: int = 1) -> None:
        gen = torch.Generator().manual_seed(1)
        self.a = torch.randn(512, 1024, generator=gen).to(device)
        self.b = torch.randn(1024, 1024, generator=gen).to(device)
        self.device = device
        self.tolerance = tolerance
        self.retries = retries
        self.best_s = float("inf")
        self.clean = 0
        self.dirty = 0

    def time_s(self) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(2):
            torch.mm(self.a, self.b)
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.best_s = min(self.best_s, elapsed)
        return elapsed

    def is_quiet(self, *canary_s: float) -> bool:
        return max(canary_s) <= (1.0 + self.tolerance) * self.best_s

    def measure(self, run: Callable[[], T]) -> tuple[T, bool]:
        """Call ``run()`` until it runs between quiet canaries; its last result and if quiet."""
        for attempt in range(self.retries + 1):
            before = self.time_s()
            result = run()
            if self.is_quiet(before, self.time_s()):
                self.clean += 1
                return result, True
            if attempt < self.retries:
                time.sleep(0.5)
        self.dirty += 1
        return result, False


@contextmanager
def measuring_state(threads: int) -> Iterator[None]:
    """Fix torch's thread count and flush denormals to zero while measuring, then restore both.

    Both are process-wide settings; restoring them keeps in-process callers (notebooks, tests)
    on IEEE-754 arithmetic and their own thread count once profiling is done.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads_before)
