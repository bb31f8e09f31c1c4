"""Shannon transfers under block fading: vectorised integration equals the per-block loop.

`ShannonLink.duration_s` integrates a chunk of coherence blocks at a time with NumPy and, past
`MAX_EXACT_BLOCKS`, moves the rest at the ergodic rate. These tests hold it to the plain
block-by-block loop it replaced, on random links and transfers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sfsim.links as links
from sfsim.errors import InputError
from sfsim.links import ShannonLink, ergodic_rate_bps, shannon_rate_bps


def _link(seed=0, coherence_s=0.01, bandwidth_hz=1e6, snr=100.0, fading=True, latency_s=0.0):
    return ShannonLink(
        bandwidth_hz=bandwidth_hz,
        tx_power_w=1.0,
        noise_psd_w_hz=1.0 / (snr * bandwidth_hz),  # so that mean_snr == snr
        path_gain=1.0,
        coherence_s=coherence_s,
        seed=np.random.SeedSequence(seed),
        fading=fading,
        latency_s=latency_s,
    )


def loop_duration(link: ShannonLink, nbytes: float, start_s: float, max_blocks=None) -> float:
    """The original algorithm: one coherence block per iteration (the reference)."""
    if nbytes <= 0:
        return 0.0
    bits = 8.0 * nbytes
    t = start_s + link.latency_s
    block = int(t // link.coherence_s)
    for _ in range(max_blocks if max_blocks is not None else 10**9):
        block_end = max((block + 1) * link.coherence_s, t)
        rate = shannon_rate_bps(link.bandwidth_hz, link.mean_snr * link.fading_power(block))
        if rate * (block_end - t) >= bits:
            return t + bits / rate - start_s
        bits -= rate * (block_end - t)
        t = block_end
        block += 1
    return t + bits / link.ergodic_rate_bps() - start_s


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    coherence_s=st.floats(1e-4, 0.5),
    bandwidth_hz=st.floats(1e4, 1e8),
    snr=st.floats(1e-2, 1e6),
    nbytes=st.floats(1.0, 1e7),
    start=st.floats(0.0, 1e4),
    latency=st.sampled_from([0.0, 0.001, 0.05]),
)
def test_vectorised_equals_the_block_loop(seed, coherence_s, bandwidth_hz, snr, nbytes, start,
                                          latency):
    link = _link(seed, coherence_s, bandwidth_hz, snr, latency_s=latency)
    blocks = 8 * nbytes / link.expected_rate_bps() / coherence_s
    if blocks > 20_000:  # keep the Python reference loop short
        nbytes *= 20_000 / blocks
    want = loop_duration(link, nbytes, start)
    assert link.duration_s(nbytes, start) == pytest.approx(want, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), nbytes=st.floats(1e3, 1e6), start=st.floats(0, 10),
       cap=st.integers(1, 40))
def test_past_the_cap_the_rest_moves_at_the_ergodic_rate(monkeypatch_module, seed, nbytes, start,
                                                         cap):
    monkeypatch_module.setattr(links, "MAX_EXACT_BLOCKS", cap)
    link = _link(seed, coherence_s=1e-4, snr=30.0)
    got = link.duration_s(nbytes, start)
    assert got == pytest.approx(loop_duration(link, nbytes, start, max_blocks=cap), rel=1e-9)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_block_gains_are_a_pure_function_of_seed_and_block():
    link = _link(seed=11)
    one_by_one = [link.fading_power(k) for k in range(37, 137)]
    assert np.array_equal(link.fading_powers(37, 100), one_by_one)
    for first in (0, 1, 2, 3, 5, 1001):  # any alignment with Philox's 4-word counter
        assert np.array_equal(link.fading_powers(first, 9)[3:], link.fading_powers(first + 3, 6))
    assert _link(seed=11).fading_power(12345) == link.fading_power(12345)
    assert _link(seed=12).fading_power(0) != link.fading_power(0)


def test_block_gains_are_pinned():
    """The documented stream: a change here changes every fading result (make it deliberate)."""
    key = np.random.SeedSequence(7).generate_state(2, np.uint64)
    raw = np.random.Philox(key=key).random_raw(6)
    want = -np.log1p(-((raw >> np.uint64(11)).astype(float) / 2.0**53))
    assert np.array_equal(_link(seed=7).fading_powers(0, 6), want)
    assert np.array_equal(_link(seed=7).fading_powers(5, 1), want[5:])


def test_gains_are_exponential_with_unit_mean():
    g = _link(seed=3).fading_powers(0, 200_000)
    assert g.min() >= 0 and g.mean() == pytest.approx(1.0, abs=0.01)
    assert np.mean(g > 1.0) == pytest.approx(math.exp(-1.0), abs=0.005)


@pytest.mark.parametrize("snr", [1e-4, 0.1, 1.0, 10.0, 1e4])
def test_ergodic_rate_matches_the_mean_block_rate(snr):
    g = _link(seed=5).fading_powers(0, 400_000)
    mc = float(np.mean(1e6 * np.log2(1.0 + snr * g)))
    assert ergodic_rate_bps(1e6, snr) == pytest.approx(mc, rel=0.01)


def test_ergodic_rate_series_agrees_with_the_exponential_integral():
    from scipy.special import exp1

    for x in (500.5, 550.0, 650.0):  # the series branch, where exp(x)·E1(x) is still finite
        direct = math.exp(x) * float(exp1(x)) / math.log(2.0)
        assert ergodic_rate_bps(1.0, 1.0 / x) == pytest.approx(direct, rel=1e-10)
    assert ergodic_rate_bps(1.0, 1e-300) > 0 and ergodic_rate_bps(1.0, 0.0) == 0.0


def test_tiny_coherence_and_bandwidth_finish_with_finite_times():
    fast_fading = _link(seed=1, coherence_s=1e-12)
    d = fast_fading.duration_s(1e6, 0.3)
    # millions of blocks: the time is (nearly) bits over the ergodic rate
    assert d == pytest.approx(8e6 / fast_fading.ergodic_rate_bps(), rel=1e-3)
    slow = _link(seed=1, bandwidth_hz=1.0, snr=1e3)
    assert math.isfinite(slow.duration_s(1e6, 0.0)) and slow.duration_s(1e6, 0.0) > 1e5
    late = _link(seed=1, coherence_s=1e-9)
    assert math.isfinite(late.duration_s(1e3, 1e12))  # block index past 2**53


def test_more_bytes_never_arrive_sooner_across_the_cap(monkeypatch):
    monkeypatch.setattr(links, "MAX_EXACT_BLOCKS", 5)
    link = _link(seed=4, coherence_s=1e-3)
    sizes = np.linspace(1e2, 1e5, 400)
    times = [link.duration_s(float(n), 0.0123) for n in sizes]
    assert all(b >= a for a, b in itertools.pairwise(times))


def test_no_fading_is_closed_form():
    link = _link(fading=False, coherence_s=1e-12, latency_s=0.01)
    assert link.duration_s(1e6, 2.0) == pytest.approx(0.01 + 8e6 / link.expected_rate_bps())


@pytest.mark.parametrize("fading", [True, False])
def test_a_zero_rate_link_is_an_input_error_not_a_hang(fading):
    link = _link(fading=fading)
    link.tx_power_w = 0.0  # e.g. a power in dBm so low that it underflows
    assert link.mean_snr == 0.0
    with pytest.raises(InputError, match="no transfer can finish"):
        link.duration_s(1e3, 0.0)
