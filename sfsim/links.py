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
from functools import lru_cache
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
RUN, _RUNS_KEPT = 64, 256  # the rate cache: aligned runs of 64 blocks, at most 256 runs
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
    _powers: dict[int, list[float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._key = self.seed.generate_state(2, np.uint64)
        self._rates = {}
        self._powers = {}

    def cached_fading_power(self, block: int) -> float:
        """`fading_power` of ``block`` from a small cache of aligned runs (a shared cell asks
        for every active link's gain at every coherence block)."""
        run, i = divmod(block, RUN)
        powers = self._powers.get(run)
        if powers is None:
            if len(self._powers) >= _RUNS_KEPT:
                self._powers.clear()
            powers = self._powers[run] = self.fading_powers(run * RUN, RUN).tolist()
        return powers[i]

    def _cached_rate(self, block: int) -> float:
        """Block ``block``'s rate, from a small cache of aligned runs of `RUN` blocks."""
        run, i = divmod(block, RUN)
        rates = self._rates.get(run)
        if rates is None:
            if len(self._rates) >= _RUNS_KEPT:
                self._rates.clear()
            g = self.fading_powers(run * RUN, RUN)
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
        `RUN` blocks in Python from cached rates, the rest a chunk of blocks at a time with
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
        first = min(RUN, MAX_EXACT_BLOCKS) if block < _INDEX_LIMIT else 0
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


# ---- Planning estimates under block fading (`sfsim.estimators`) ------------------------------
#
# A transfer of ``bits`` over a Rayleigh block-fading link, in units where time is counted in
# coherence blocks (T) and data in ``B·T`` bits: ``y = bits / (B·T)``, and a whole block carries
# ``G = log2(1 + s·X)``, X ~ Exp(1), s the mean SNR (CDF ``1 - exp(-(2^u - 1)/s)``).
#
# A transfer starts at a uniformly distributed phase of its first block: a fraction V ~ U(0, 1) of
# that block is left. Let ``m(z)`` be the mean time to move z starting at a block boundary. The
# first block either finishes the transfer or is used up, which gives the renewal equation
#
#     m(z) = E[z/G; G >= z] + E[1 + m(z - G); G < z],      m(0) = 0,
#     E[tau(y)] = E[y/G; G·V >= y] + E[V + m(y - G·V); G·V < y].
#
# ``m`` is solved on a uniform grid (G's exact bin masses, linear interpolation inside a bin);
# past a cap of many mean blocks it continues on its asymptote ``z/E[G] + c`` (renewal theorem;
# the link itself switches to the ergodic rate after MAX_EXACT_BLOCKS blocks), and the outer
# expectation is taken over V in closed form (through the integral of m) and over X by the
# trapezoid rule in ln x. The integrands are bounded and continuous, so both rules converge
# (grid and nodes halved or doubled move the result by < 0.03%); tests/test_estimators.py checks
# the result against a Monte Carlo mean of `ShannonLink.duration_s` at random start times.

_GRID = 200  # grid steps of m over [0, min(y, cap)]
_CAP_BLOCKS = 50.0  # past this many mean blocks m follows its linear asymptote
_NODES_X = 400  # trapezoid nodes in ln x over [1e-12, 50] for the first block


def _block_capacity_cdf(u: np.ndarray, snr: float) -> np.ndarray:
    """P(G <= u) for G = log2(1 + snr·X), X ~ Exp(1)."""
    return -np.expm1(-np.expm1(np.asarray(u) * math.log(2.0)) / snr)


def _expect_over_x(f: object, lo: float) -> float:
    """``∫_lo^∞ f(x)·e^{-x} dx`` by the trapezoid rule in ln x (x up to 60; 4,000 nodes).

    NumPy only: scipy.integrate's import alone costs more than all the estimates of a run.
    """
    lnx = np.linspace(math.log(max(lo, 1e-14)), math.log(60.0), 4000)
    x = np.exp(lnx)
    y = f(x) * np.exp(-x) * x  # type: ignore[operator]
    return float(np.sum(0.5 * (y[1:] + y[:-1])) * (lnx[1] - lnx[0]))


def _inverse_capacity_tail(snr: float, z: float) -> float:
    """E[1/G; G >= z] by quadrature over X (finite for z > 0)."""
    x0 = math.expm1(z * math.log(2.0)) / snr
    return _expect_over_x(lambda x: math.log(2.0) / np.log1p(snr * x), x0)


@lru_cache(maxsize=1 << 16)
def _renewal_mean(snr: float, y: float) -> float:
    """E[tau(y)] in coherence blocks (see the comment block above)."""
    mu = ergodic_rate_bps(1.0, snr)  # E[G] per unit bandwidth-time
    top = min(y, _CAP_BLOCKS * mu)
    n = _GRID
    h = top / n
    edges = np.arange(n + 1) * h
    cdf = _block_capacity_cdf(edges, snr)
    p = np.diff(cdf)  # P(G in bin j), j = 0 .. n-1
    # E[1/G; G in bin j] with G uniform inside the bin (j >= 1; bin 0 is never needed)
    inv = np.zeros(n)
    j = np.arange(1, n)
    inv[1:] = p[1:] * np.log((j + 1) / j) / h
    # suffix[i] = E[1/G; G >= i·h]
    suffix = np.concatenate((np.cumsum(inv[::-1])[::-1], [0.0])) + _inverse_capacity_tail(snr, top)
    m = np.zeros(n + 1)
    below = np.concatenate(([0.0], np.cumsum(p)))  # P(G < i·h)
    for i in range(1, n + 1):
        conv = 0.5 * p[0] * m[i - 1]
        if i >= 2:
            conv += 0.5 * float(p[1:i] @ (m[i - 1 : 0 : -1] + m[i - 2 :: -1]))
        m[i] = (i * h * suffix[i] + below[i] + conv) / (1.0 - 0.5 * p[0])
    slope = 1.0 / mu
    shift = m[n] - top * slope
    # integral of m from 0 (trapezoid on the grid, then the asymptote's antiderivative)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * h * (m[1:] + m[:-1]))))

    def m_int(z: np.ndarray) -> np.ndarray:
        zc = np.minimum(z, top)
        # inside a grid step the trapezoid of the linear interpolant (exact for linear m)
        i = np.minimum((zc / h).astype(np.int64), n - 1)
        frac = zc - i * h
        mi = m[i]
        mz = np.interp(zc, edges, m)
        inside = cum[i] + 0.5 * frac * (mi + mz)
        extra = np.maximum(z - top, 0.0)
        return inside + extra * (0.5 * slope * (z + top) + shift)

    # For a first block of capacity g, averaged over the phase V ~ U(0, 1) in closed form:
    #   g <= y: 1/2 + (M(y) - M(y - g))/g;  g > y: (1 - y/g)·y/g + (y²/(2g) + M(y))/g,
    # with M the integral of m; then averaged over X ~ Exp(1) by the trapezoid rule in ln x.
    lnx = np.linspace(math.log(1e-12), math.log(50.0), _NODES_X)
    x = np.exp(lnx)
    weight = np.exp(-x) * x * (lnx[1] - lnx[0])
    weight[0] *= 0.5
    weight[-1] *= 0.5
    g = np.log1p(snr * x) / math.log(2.0)
    total = float(m_int(np.array([y]))[0])
    whole = g <= y
    gw = np.where(whole, g, 1.0)
    spill = 0.5 + (total - m_int(np.maximum(y - gw, 0.0))) / gw
    gp = np.where(whole, 1.0, g)
    fits = (1.0 - y / gp) * y / gp + (0.5 * y * y / gp + total) / gp
    return float(np.sum(weight * np.where(whole, spill, fits)))


def _capacity_moments(snr: float) -> tuple[float, float]:
    """Mean and variance of G (per unit bandwidth-time) by quadrature."""
    mu = ergodic_rate_bps(1.0, snr)
    second = _expect_over_x(lambda x: (np.log1p(snr * x) / math.log(2.0)) ** 2, 0.0)
    return mu, max(float(second) - mu * mu, 0.0)


@lru_cache(maxsize=1 << 16)
def _renewal_quantile(snr: float, y: float, p: float) -> float:
    """The p-quantile of tau(y) in coherence blocks.

    Monte Carlo over (phase, block draws) from a fixed generator (deterministic, it takes
    nothing from the run's streams) while the transfer spans at most ~500 mean blocks; past
    that, the renewal central limit theorem: tau ≈ E[tau] + z_p·sqrt(y·Var G / E[G]^3).
    """
    mu, var = _capacity_moments(snr)
    if y / mu > 500.0:
        from statistics import NormalDist

        return _renewal_mean(snr, y) + NormalDist().inv_cdf(p) * math.sqrt(y * var / mu**3)
    rng = np.random.default_rng(20_261_205)
    draws = 20_000
    left = np.full(draws, y)
    tau = np.zeros(draws)
    span = rng.random(draws)  # the first block's remaining fraction
    active = np.ones(draws, dtype=bool)
    while active.any():
        cap = np.log2(1.0 + snr * rng.exponential(size=draws)) * span
        fin = active & (cap >= left)
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.where(fin, tau + left * span / cap, np.where(active, tau + span, tau))
        left = np.where(active & ~fin, left - cap, left)
        active &= ~fin
        span = np.ones(draws)
    return float(np.quantile(tau, p))


def expected_transfer_s(link: object, nbytes: float) -> float:
    """Mean duration of a transfer of ``nbytes`` over ``link`` under its fading law.

    A fixed link (or a Shannon link without fading) is deterministic: latency + bits / rate.
    A Rayleigh block-fading link: latency + T·E[tau], the renewal expectation above, with the
    start uniformly placed in a coherence block. Other link models: their planning rate.
    """
    if nbytes <= 0:
        return 0.0
    bits = 8.0 * nbytes
    if isinstance(link, ShannonLink) and link.fading:
        return link.latency_s + link.coherence_s * _renewal_mean(
            link.mean_snr, bits / (link.bandwidth_hz * link.coherence_s)
        )
    return float(link.latency_s) + bits / float(link.expected_rate_bps())  # type: ignore[attr-defined]


def transfer_quantile_s(link: object, nbytes: float, p: float) -> float:
    """The p-quantile of a transfer's duration (deterministic links: the duration itself)."""
    if nbytes <= 0:
        return 0.0
    bits = 8.0 * nbytes
    if isinstance(link, ShannonLink) and link.fading:
        return link.latency_s + link.coherence_s * _renewal_quantile(
            link.mean_snr, bits / (link.bandwidth_hz * link.coherence_s), p
        )
    return float(link.latency_s) + bits / float(link.expected_rate_bps())  # type: ignore[attr-defined]
