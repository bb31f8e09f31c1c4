"""The resolved scenario (``scenario.resolved.yaml``) loads back to the scenario it was dumped from.

`dump_scenario` uses libyaml's emitter when available; whatever the text in free-form fields,
the dump must parse back, through the project's own strict loader, to an equal scenario.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsim.run import resolve
from sfsim.scenario import dump_scenario, load_scenario, parse_scenario

BASE = {
    "devices": [{"id": "a", "processor": "jetson-orin-nano-8gb", "cut": 2}],
    "fleet": {"count": 3, "mix": {"jetson-orin-nano-8gb": 1}, "cut": [1, 2, 3]},
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(description=st.text(max_size=300))
def test_dump_loads_back_equal(tmp_path: Path, description: str) -> None:
    s = resolve(parse_scenario({**BASE, "description": description}))
    path = tmp_path / "scenario.resolved.yaml"
    path.write_text(dump_scenario(s), encoding="utf-8")
    assert load_scenario(path) == s
