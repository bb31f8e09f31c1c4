"""Wireless links: how long a transfer of n bytes takes, starting at time t.

Two models, in order of realism (model §3):

* ``FixedLink``: a constant rate plus a fixed latency.
* ``ShannonLink``: ``rate = B·log2(1 + P·g·|h|² / (N0·B))`` on a dedicated band of width B, where
  g is the distance path gain (``PL_dB = a + b·log10(d_km)``) with optional log-normal shadowing
  drawn once per link, and |h|² ~ Exp(1) is Rayleigh block fading redrawn every coherence
  interval. A transfer that spans several coherence blocks is integrated block by block.

The fading of block k is a pure function of (the link's seed, k): the same seed gives the same
channel whatever the order in which transfers ask for it, so replaying a plan or changing a
scheduler does not reshuffle the channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def dbm_to_w(dbm: float) -> float:
    return 10.0 ** ((dbm - 30.0) / 10.0)


def path_loss_db(distance_m: float, a_db: float = 128.1, b_db: float = 37.6) -> float:
    """Distance path loss in dB, ``a + b·log10(d_km)`` (3GPP TR 36.814 macro-cell default)."""
    return a_db + b_db * math.log10(distance_m / 1000.0)


def shannon_rate_bps(bandwidth_hz: float, snr: float) -> float:
    return bandwidth_hz * math.log2(1.0 + snr)


def transfer_s(nbytes: float, rate_bps: float, latency_s: float = 0.0) -> float:
    """Time to move ``nbytes`` at a constant rate."""
    return latency_s + 8.0 * nbytes / rate_bps


class Link(Protocol):
    """Anything that can say how long a transfer takes."""

    @property
    def latency_s(self) -> float: ...

    def duration_s(self, nbytes: float, start_s: float) -> float: ...

    def expected_rate_bps(self) -> float:
        """A rate for planning (no fading): what an offline scheduler assumes."""
        ...


@dataclass(frozen=True)
class FixedLink:
    rate_bps: float
    latency_s: float = 0.0

    def duration_s(self, nbytes: float, start_s: float) -> float:
        if nbytes <= 0:
            return 0.0
        return transfer_s(nbytes, self.rate_bps, self.latency_s)

    def expected_rate_bps(self) -> float:
        return self.rate_bps


@dataclass
class ShannonLink:
    bandwidth_hz: float
    tx_power_w: float
    noise_psd_w_hz: float
    path_gain: float  # linear, shadowing included
    coherence_s: float
    seed: np.random.SeedSequence
    fading: bool = True
    latency_s: float = 0.0
    _gains: dict[int, float] = field(default_factory=dict, repr=False)

    @property
    def mean_snr(self) -> float:
        return self.tx_power_w * self.path_gain / (self.noise_psd_w_hz * self.bandwidth_hz)

    def fading_power(self, block: int) -> float:
        """|h|² of coherence block ``block``: Exp(1) for Rayleigh fading, 1 without fading."""
        if not self.fading:
            return 1.0
        if block not in self._gains:
            child = np.random.SeedSequence(
                self.seed.entropy, spawn_key=(*self.seed.spawn_key, block)
            )
            self._gains[block] = float(np.random.default_rng(child).exponential(1.0))
        return self._gains[block]

    def rate_bps(self, t_s: float) -> float:
        block = int(t_s // self.coherence_s)
        return shannon_rate_bps(self.bandwidth_hz, self.mean_snr * self.fading_power(block))

    def expected_rate_bps(self) -> float:
        return shannon_rate_bps(self.bandwidth_hz, self.mean_snr)

    def duration_s(self, nbytes: float, start_s: float) -> float:
        if nbytes <= 0:
            return 0.0
        bits = 8.0 * nbytes
        t = start_s + self.latency_s
        block = int(t // self.coherence_s)  # step by block index: t // T is unsafe at edges
        while True:
            block_end = max((block + 1) * self.coherence_s, t)
            rate = shannon_rate_bps(self.bandwidth_hz, self.mean_snr * self.fading_power(block))
            if rate * (block_end - t) >= bits:
                return t + bits / rate - start_s
            bits -= rate * (block_end - t)
            t = block_end
            block += 1
