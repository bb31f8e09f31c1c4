"""Links: the rate formulas, fading determinism, and block-by-block integration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsim.links import FixedLink, ShannonLink, dbm_to_w, path_loss_db, shannon_rate_bps


def test_path_loss_reference_points():
    assert path_loss_db(1000.0) == pytest.approx(128.1)
    assert path_loss_db(100.0) == pytest.approx(128.1 - 37.6)


def test_shannon_rate_at_100m():
    # 23 dBm over 90.5 dB loss against -174 dBm/Hz over 20 MHz: SNR = 33.49 dB
    snr_db = 23 - path_loss_db(100.0) - (-174 + 10 * math.log10(20e6))
    rate = shannon_rate_bps(20e6, 10 ** (snr_db / 10))
    assert rate == pytest.approx(20e6 * math.log2(1 + 10 ** (snr_db / 10)))
    assert 200e6 < rate < 240e6


def test_fixed_link():
    link = FixedLink(rate_bps=8e6, latency_s=0.01)
    assert link.duration_s(1e6, 5.0) == pytest.approx(1.01)
    assert link.duration_s(0, 5.0) == 0.0


def _link(seed: int = 0, fading: bool = True, coherence_s: float = 0.01) -> ShannonLink:
    return ShannonLink(
        bandwidth_hz=1e6,
        tx_power_w=dbm_to_w(23),
        noise_psd_w_hz=dbm_to_w(-174),
        path_gain=10 ** (-path_loss_db(200.0) / 10),
        coherence_s=coherence_s,
        seed=np.random.SeedSequence(seed),
        fading=fading,
    )


def test_no_fading_equals_constant_rate():
    link = _link(fading=False)
    assert link.duration_s(1e6, 0.123) == pytest.approx(8e6 / link.expected_rate_bps())


def test_fading_is_a_pure_function_of_seed_and_block():
    a, b = _link(seed=5), _link(seed=5)
    forward = [a.fading_power(k) for k in range(20)]
    backward = [b.fading_power(k) for k in reversed(range(20))][::-1]
    assert forward == backward
    assert _link(seed=6).fading_power(3) != a.fading_power(3)


def test_rayleigh_power_has_unit_mean():
    link = _link(seed=1)
    powers = np.array([link.fading_power(k) for k in range(4000)])
    assert powers.mean() == pytest.approx(1.0, abs=0.06)


def test_transfer_integrates_across_blocks():
    """The bits moved, summed block by block at each block's rate, equal the bytes sent."""
    link = _link(seed=2, coherence_s=0.005)
    start, nbytes = 0.0123, 2e5
    dur = link.duration_s(nbytes, start)
    bits, t, end = 0.0, start, start + dur
    k = int(t // link.coherence_s)
    while t < end - 1e-15:
        stop = min((k + 1) * link.coherence_s, end)
        rate = shannon_rate_bps(link.bandwidth_hz, link.mean_snr * link.fading_power(k))
        bits += rate * (stop - t)
        t, k = stop, k + 1
    assert bits == pytest.approx(8 * nbytes, rel=1e-9)
    assert dur > 2 * link.coherence_s  # really spans several blocks


@settings(max_examples=60, deadline=None)
@given(
    nbytes=st.floats(1e3, 1e7),
    start=st.floats(0, 5),
    extra=st.floats(1e3, 1e6),
    seed=st.integers(0, 50),
)
def test_more_bytes_never_arrive_sooner(nbytes, start, extra, seed):
    link = _link(seed=seed)
    assert link.duration_s(nbytes + extra, start) >= link.duration_s(nbytes, start)


@settings(max_examples=40, deadline=None)
@given(start=st.floats(0, 1), nbytes=st.floats(1e3, 1e6), seed=st.integers(0, 20))
def test_duration_terminates_at_block_edges(start, nbytes, seed):
    """Starting exactly on (or a rounding error from) a block edge must not loop."""
    link = _link(seed=seed, coherence_s=0.01)
    edge = round(start, 2)
    assert link.duration_s(nbytes, edge) > 0
