"""Wireless links: how long a transfer of n bytes takes, starting at time t.

Two models, in order of realism (docs/model.md §3):

* ``FixedLink``: a constant rate plus a fixed latency.
* ``ShannonLink``: ``rate = B·log2(1 + P·g·|h|² / (N0·B))`` on a dedicated band of width B, where
  g is the distance path gain (``PL_dB = a + b·log10(d_km)``) with optional log-normal shadowing
  drawn once per link, and |h|² ~ Exp(1) is Rayleigh block fading redrawn every coherence
  interval. A transfer that spans several coherence blocks is integrated block by block.

The fading of block k is a pure function of (the link's seed, k): the same seed gives the same
channel whatever the order in which transfers ask for it, so replaying a plan or changing a
scheduler does not reshuffle the channel. It is drawn counter-based, so a whole range of blocks
comes from one vectorised call: the link's seed gives a 128-bit Philox key
(``seed.generate_state(2, uint64)``), block k takes the k-th 64-bit output of
``Philox(key)`` (counter ``k // 4``, word ``k % 4``), ``u = (x >> 11)·2⁻⁵³`` and
``|h|² = -ln(1 - u)`` (the exact inverse CDF of Exp(1)). This replaced, deliberately, one
``SeedSequence`` per block (about 10 µs a block, so a 1 ns coherence time never finished): the
same seeds now give other fading draws than sfsim ≤ 0.1.0 did.

Work is bounded: a transfer integrates at most :data:`MAX_EXACT_BLOCKS` coherence blocks one by
one (vectorised, in chunks); bits still left after that (a transfer over millions of coherence
times: a tiny coherence time or bandwidth) move at the ergodic rate ``E[B·log2(1 + SNR·|h|²)]``,
the average the block rates converge to, in closed form ``B/ln2 · e^{1/SNR} · E1(1/SNR)``.
A link whose rate underflows to zero is an input error, never an endless loop.
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


#: Coherence blocks a transfer integrates one by one before it switches to the ergodic rate.
MAX_EXACT_BLOCKS = 1 << 20
_FIRST_CHUNK, _MAX_CHUNK = 256, 1 << 16
_RUN, _RUNS_KEPT = 64, 256  # the rate cache: aligned runs of 64 blocks, at most 256 runs
_INDEX_LIMIT = 1 << 53  # block indices past this are not distinct floats any more


def ergodic_rate_bps(bandwidth_hz: float, mean_snr: float) -> float:
    """``E[B·log2(1 + s·X)]`` for X ~ Exp(1): the long-run rate of a Rayleigh block-fading link.

    ``∫ ln(1 + s·x)·e^{-x} dx = e^{1/s}·E1(1/s)`` (E1: the exponential integral); for a small
    SNR (``1/s`` > 500) the product is taken from its asymptotic series to avoid overflow.
    """
    if mean_snr <= 0:
        return 0.0
    if math.isinf(mean_snr):
        return math.inf
    x = 1.0 / mean_snr
    if x > 500.0:
        y = mean_snr  # = 1/x: the series y·(1 - y + 2y² - 6y³ + 24y⁴), error < 120·y⁶
        scaled = y * (1.0 - y * (1.0 - y * (2.0 - y * (6.0 - 24.0 * y))))
    else:
        from scipy.special import exp1

        scaled = math.exp(x) * float(exp1(x))
    return bandwidth_hz * scaled / math.log(2.0)


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
    _key: np.ndarray = field(init=False, repr=False, compare=False)
    _rates: dict[int, list[float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._key = self.seed.generate_state(2, np.uint64)
        self._rates = {}

    def _cached_rate(self, block: int) -> float:
        """Block ``block``'s rate, from a small cache of aligned runs of `_RUN` blocks."""
        run, i = divmod(block, _RUN)
        rates = self._rates.get(run)
        if rates is None:
            if len(self._rates) >= _RUNS_KEPT:
                self._rates.clear()
            g = self.fading_powers(run * _RUN, _RUN)
            rates = (self.bandwidth_hz * np.log2(1.0 + self.mean_snr * g)).tolist()
            self._rates[run] = rates
        return rates[i]

    @property
    def mean_snr(self) -> float:
        return self.tx_power_w * self.path_gain / (self.noise_psd_w_hz * self.bandwidth_hz)

    def fading_powers(self, first: int, n: int) -> np.ndarray:
        """|h|² of blocks ``first .. first + n - 1`` (Exp(1) draws; all 1 without fading)."""
        if not self.fading:
            return np.ones(n)
        skip = first % 4
        raw = np.random.Philox(key=self._key, counter=first // 4).random_raw(skip + n)[skip:]
        u = (raw >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        return -np.log1p(-u)

    def fading_power(self, block: int) -> float:
        """|h|² of coherence block ``block``: Exp(1) for Rayleigh fading, 1 without fading."""
        return float(self.fading_powers(block, 1)[0])

    def rate_bps(self, t_s: float) -> float:
        block = int(t_s // self.coherence_s)
        return shannon_rate_bps(self.bandwidth_hz, self.mean_snr * self.fading_power(block))

    def expected_rate_bps(self) -> float:
        return shannon_rate_bps(self.bandwidth_hz, self.mean_snr)

    def ergodic_rate_bps(self) -> float:
        """The long-run mean rate over many coherence blocks (see `ergodic_rate_bps`)."""
        if not self.fading:
            return self.expected_rate_bps()
        return ergodic_rate_bps(self.bandwidth_hz, self.mean_snr)

    def duration_s(self, nbytes: float, start_s: float) -> float:
        """Time to move ``nbytes`` starting at ``start_s``: block by block, then ergodic.

        Blocks are integrated exactly as a loop over ``k`` would (the same float operations in
        the same order: ``cap_k = rate_k·(end_k - t_k)`` and ``bits -= cap_k``): the first
        `_RUN` blocks in Python from cached rates, the rest a chunk of blocks at a time with
        NumPy; see the module docstring for the bound on the work.
        """
        if nbytes <= 0:
            return 0.0
        bits = 8.0 * nbytes
        t = start_s + self.latency_s
        if not self.fading:
            return t + bits / self._nonzero(self.expected_rate_bps()) - start_s
        if not self.mean_snr > 0:  # zero or NaN: no block could ever carry a bit
            self._nonzero(0.0)
        block = int(t // self.coherence_s)  # step by block index: t // T is unsafe at edges
        # Most transfers span a few blocks: a plain loop over cached rates is cheapest.
        first = min(_RUN, MAX_EXACT_BLOCKS) if block < _INDEX_LIMIT else 0
        for _ in range(first):
            end = max((block + 1) * self.coherence_s, t)
            rate = self._cached_rate(block)
            if rate * (end - t) >= bits:
                return t + bits / rate - start_s
            bits -= rate * (end - t)
            t, block = end, block + 1
        done, chunk = first, _FIRST_CHUNK
        while done < MAX_EXACT_BLOCKS and block + chunk < _INDEX_LIMIT:
            n = min(chunk, MAX_EXACT_BLOCKS - done)
            index = np.arange(block, block + n, dtype=np.int64)
            rates = self.bandwidth_hz * np.log2(1.0 + self.mean_snr * self.fading_powers(block, n))
            # end_k = max((k+1)·T, t_k) with t_k = end_{k-1}: a running maximum
            ends = np.maximum.accumulate(np.maximum((index + 1) * self.coherence_s, t))
            starts = np.concatenate(([t], ends[:-1]))
            caps = rates * (ends - starts)
            left = np.subtract.accumulate(np.concatenate(([bits], caps)))  # bits before block k
            hit = np.flatnonzero(caps >= left[:-1])
            if hit.size:
                k = int(hit[0])
                return float(starts[k] + left[k] / rates[k]) - start_s
            bits, t = float(left[-1]), float(ends[-1])
            block, done, chunk = block + n, done + n, min(2 * chunk, _MAX_CHUNK)
        return t + bits / self._nonzero(self.ergodic_rate_bps()) - start_s

    def _nonzero(self, rate: float) -> float:
        if not rate > 0 or not math.isfinite(rate):
            from sfsim.errors import InputError

            raise InputError(
                f"a Shannon link's rate is {rate!r} bit/s (mean SNR {self.mean_snr:.3g} over "
                f"{self.bandwidth_hz:.3g} Hz): no transfer can finish; check the channel's "
                "power, distance, bandwidth and noise",
                key="channel",
            )
        return rate
