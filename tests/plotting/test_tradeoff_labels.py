"""time_vs_memory labels: one per group of coinciding points, none overprinting another
(issue 10: five cut-independent points sat on each other with their labels overprinted)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.text import Annotation

from .test_tradeoffs import tradeoffs

CUTS = (1, 3, 6, 9, 11)


def _table() -> pd.DataFrame:
    rows = []
    for scheme in ("fed", "fed2", "split", "split_twin", "frozen"):
        for c in CUTS:
            if scheme.startswith("fed"):  # the cut does not matter: five points on one spot
                server, device, t = (1.0, 1.3, 3.9) if scheme == "fed" else (1.4, 0.7, 3.1)
            elif scheme.startswith("split"):  # two schemes with identical figures
                server, device, t = 1.4 + 0.06 * c, 0.4 + 0.06 * c, 1.0 + 0.2 * c
            else:
                server, device, t = 2.4 - 0.1 * c, 0.4 + 0.03 * c, 0.7 + 0.06 * c
            rows.append({"run": f"{scheme}{c}", "sweep": "schemes", "scenario": "g",
                         "scheme": scheme, "scheduler": "fifo", "n_devices": 4, "cut": c,
                         "makespan_s": t, "round_s": t, "server_peak_gb": server,
                         "device_peak_gb": device, "uplink_mbps": 50.0, "compute_cv": 0.0,
                         "solve_s": float("nan")})
    return pd.DataFrame(rows)


def test_labels_are_grouped_and_never_overlap() -> None:
    fig = tradeoffs.plot_time_vs_memory(_table())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        notes = [c for c in ax.get_children() if isinstance(c, Annotation)]
        texts = [n.get_text() for n in notes]
        # 2 cut-independent spots + 5 shared by the twin split schemes + 5 of "frozen"
        assert len(notes) == 12, texts
        assert texts.count("all cuts") == 2
        assert sorted(t for t in texts if t != "all cuts") == sorted(
            [f"{c}" for c in CUTS] * 2)
        boxes = [n.get_window_extent(renderer) for n in notes]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b)
        frame = ax.get_window_extent(renderer)
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes)


def test_a_lone_point_gets_its_cut() -> None:
    table = _table()
    table = table[(table["scheme"] == "frozen") & (table["cut"] == 3)]
    fig = tradeoffs.plot_time_vs_memory(table)
    texts = [c.get_text() for c in fig.axes[0].get_children() if isinstance(c, Annotation)]
    assert texts == ["3"]
    assert np.isfinite(table["cut"]).all()
