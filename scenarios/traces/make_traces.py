"""Write the SYNTHETIC trace files under scenarios/traces/synthetic/ (no measured data).

    .venv/bin/python scenarios/traces/make_traces.py [OUT_FOLDER]

Every number is made up by this script from a fixed seed, to exercise the three trace kinds
on the quickstart's devices (orin-nano, phone, pi5); rerunning it rewrites the same bytes
(tests/test_traces.py checks). The stories they tell:

* compute.csv: the phone throttles (full speed for 2 s, 55% for 3 s, 80% for 1 s, period 6 s);
  the Raspberry Pi's speed wanders around nominal (a log-normal draw every 0.5 s, period 5 s);
  the Orin Nano is not in the file, so it runs at its processor's nominal speed.
* links.csv: the phone's uplink is redrawn every 0.25 s around 40 Mbit/s (log-normal, σ 0.5),
  its downlink stays at 200 Mbit/s; the Pi's uplink drops from 20 to 5 Mbit/s between 3 and 4 s
  (period 6 s); the Orin Nano keeps the scenario's channel.
* availability.csv: the phone is offline between 4.5 and 5.5 s of every 10 s; the Pi is always
  online in its 10 s period. (The engine reads these windows through World.availability; a
  fault model decides what an offline device does.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 2026


def frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(SEED)
    rows: list[tuple[str, float, float, float]] = [
        ("phone", 0.0, 1.0, 6.0), ("phone", 2.0, 0.55, 6.0), ("phone", 5.0, 0.8, 6.0)]
    for k, s in enumerate(np.clip(rng.lognormal(0.0, 0.15, size=10), 0.5, 1.5)):
        rows.append(("pi5", 0.5 * k, round(float(s), 4), 5.0))
    compute = pd.DataFrame(rows, columns=["device", "time_s", "speed", "period_s"])

    links: list[tuple[str, float, float, float, float]] = []
    for k, r in enumerate(np.clip(40.0 * rng.lognormal(0.0, 0.5, size=20), 5.0, 150.0)):
        links.append(("phone", 0.25 * k, round(float(r), 3), 200.0, 5.0))
    links += [("pi5", 0.0, 20.0, 200.0, 6.0), ("pi5", 3.0, 5.0, 200.0, 6.0),
              ("pi5", 4.0, 20.0, 200.0, 6.0)]
    link_frame = pd.DataFrame(
        links, columns=["device", "time_s", "uplink_mbps", "downlink_mbps", "period_s"])

    availability = pd.DataFrame(
        [("phone", 0.0, 4.5, 10.0), ("phone", 5.5, 10.0, 10.0), ("pi5", 0.0, 10.0, 10.0)],
        columns=["device", "start_s", "end_s", "period_s"])
    return {"compute.csv": compute, "links.csv": link_frame, "availability.csv": availability}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames().items():
        frame.to_csv(out / name, index=False, lineterminator="\n")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "synthetic")
