"""The processor catalogue (sfsim/data/processors.yaml), `sfsim processors`, costs.reference."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfsim.cli import app
from sfsim.costs import Op, Workload, get_arch
from sfsim.costs.processors import catalogue
from sfsim.costs.profiled import ProfiledCostModel, shipped_profiles
from sfsim.errors import InputError
from sfsim.scenario import parse_scenario
from sfsim.world import build_world

RUNNER = CliRunner()
WANTED = {"jetson-tx2-8gb", "jetson-xavier-nx-8gb", "jetson-orin-nano-8gb",
          "jetson-agx-orin-64gb", "snapdragon-8-gen-3", "snapdragon-8-elite", "apple-a17-pro",
          "intel-core-ultra-7-155h", "a100-80gb-sxm", "h100-sxm-80gb", "rtx-4090",
          "cpu-ref-2core", "raspberry-pi-5-8gb"}


def test_catalogue_holds_the_issue_s_processors() -> None:
    assert set(catalogue()) >= WANTED


@pytest.mark.parametrize("name", sorted(catalogue()))
def test_every_entry_is_sourced_finite_and_physical(name: str) -> None:
    p = catalogue()[name]
    assert p.kind in ("device", "server")
    assert p.source.strip(), f"{name}: no source"
    assert p.power_source.strip(), f"{name}: power cites nothing and is not marked an assumption"
    figures = [*p.peak_flops.values(), p.mem_bw_bytes_s, p.memory_bytes, p.efficiency,
               p.power_busy_w, p.power_idle_w]
    assert all(math.isfinite(x) and x > 0 for x in figures), name
    assert 1e9 <= p.peak_flops["fp32"] <= 1e16 and 1e9 <= p.mem_bw_bytes_s <= 1e13
    assert 1e9 <= p.memory_bytes <= 1e12 and 0 < p.efficiency <= 1
    assert 0 < p.power_idle_w < p.power_busy_w <= 1500
    # a figure without a datasheet says so
    text = (p.power_source + " " + p.source).lower()
    assert "assumption" in text or any(w in text for w in ("datasheet", "data sheet", "spec"))


def test_cited_power_figures() -> None:
    """The datasheet figures the issue names: Jetson power modes and server GPU TDPs."""
    c = catalogue()
    assert c["jetson-orin-nano-8gb"].power_busy_w == 15
    assert c["jetson-xavier-nx-8gb"].power_busy_w == 20
    assert c["jetson-tx2-8gb"].power_busy_w == 15
    assert c["a100-80gb-sxm"].power_busy_w == 400
    assert c["h100-sxm-80gb"].power_busy_w == 700
    assert c["rtx-4090"].power_busy_w == 450


def test_sfsim_processors_lists_power_and_sources() -> None:
    res = RUNNER.invoke(app, ["processors", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(catalogue())
    for name, p in catalogue().items():
        assert rows[name]["power_busy_w"] == p.power_busy_w
        assert rows[name]["power_idle_w"] == p.power_idle_w
        assert rows[name]["power_source"] == p.power_source
    table = RUNNER.invoke(app, ["processors"], terminal_width=200)
    assert table.exit_code == 0
    assert "jetson-tx2-8gb" in table.stdout and "700 / 70" in table.stdout


def test_scenario_processor_power_defaults_are_marked(tiny) -> None:
    w = build_world(parse_scenario(tiny))
    d = w.devices[0].processor
    assert d.power_busy_w > d.power_idle_w > 0 and "assumption" in d.power_source
    tiny["processors"]["dev-fast"].update(power_busy_w=9.0, power_idle_w=1.0)
    p = build_world(parse_scenario(tiny)).devices[0].processor
    assert (p.power_busy_w, p.power_idle_w) == (9.0, 1.0)


def _profiled(tiny: dict, **costs: str) -> dict:
    tiny["costs"] = {"model": "profiled", **costs}
    return tiny


def test_reference_defaults_to_the_shipped_profiles_metadata(tiny) -> None:
    meta = json.loads(shipped_profiles("cpu-ref-2core").joinpath("gpt2.json").read_text())
    assert meta["processor"] == "cpu-ref-2core"
    w = build_world(parse_scenario(_profiled(tiny)))
    assert isinstance(w.costs, ProfiledCostModel)
    assert w.costs.reference.name == "cpu-ref-2core"


def _copy_profile(tmp_path: Path, processor: str | None) -> Path:
    folder = tmp_path / "prof"
    folder.mkdir()
    src = shipped_profiles("cpu-ref-2core")
    (folder / "gpt2.csv").write_text(src.joinpath("gpt2.csv").read_text())
    meta = json.loads(src.joinpath("gpt2.json").read_text())
    if processor is None:
        meta.pop("processor")
    else:
        meta["processor"] = processor
    (folder / "gpt2.json").write_text(json.dumps(meta))
    return folder


def test_a_profile_measured_elsewhere_is_scaled_from_that_processor(tiny, tmp_path) -> None:
    """The same CSV, labelled as measured on an AGX Orin, scales from the AGX Orin."""
    folder = _copy_profile(tmp_path, "jetson-agx-orin-64gb")
    w = build_world(parse_scenario(_profiled(tiny, profile_dir=str(folder))))
    assert w.costs.reference.name == "jetson-agx-orin-64gb"
    plain = build_world(parse_scenario(_profiled(tiny, profile_dir=str(folder),
                                                 reference="cpu-ref-2core")))
    assert plain.costs.reference.name == "cpu-ref-2core"
    work = Workload(get_arch("gpt2"), 4, 128)
    target = catalogue()["h100-sxm-80gb"]
    orin, cpu = catalogue()["jetson-agx-orin-64gb"], catalogue()["cpu-ref-2core"]
    t_orin = w.costs.time_s(Op.BLOCK_FWD, work, target)
    t_cpu = plain.costs.time_s(Op.BLOCK_FWD, work, target)
    # the measured seconds are the same; the roofline scales them from a faster reference
    assert t_orin > t_cpu
    on_ref = w.costs.time_s(Op.BLOCK_FWD, work, orin)
    assert on_ref == pytest.approx(plain.costs.time_s(Op.BLOCK_FWD, work, cpu), rel=1e-12)


def test_reference_falls_back_to_cpu_ref_without_metadata(tiny, tmp_path) -> None:
    folder = _copy_profile(tmp_path, None)
    w = build_world(parse_scenario(_profiled(tiny, profile_dir=str(folder))))
    assert w.costs.reference.name == "cpu-ref-2core"
    (folder / "gpt2.json").unlink()
    w = build_world(parse_scenario(_profiled(tiny, profile_dir=str(folder))))
    assert w.costs.reference.name == "cpu-ref-2core"


def test_reference_may_be_a_scenario_processor(tiny, tmp_path) -> None:
    folder = _copy_profile(tmp_path, None)
    w = build_world(parse_scenario(_profiled(tiny, profile_dir=str(folder), reference="srv")))
    assert w.costs.reference.name == "srv"


def test_unknown_reference_names_costs_reference(tiny, tmp_path) -> None:
    with pytest.raises(InputError) as exc:
        build_world(parse_scenario(_profiled(tiny, reference="no-such-chip")))
    assert exc.value.key == "costs.reference" and "no-such-chip" in str(exc.value)
    folder = _copy_profile(tmp_path, "mystery-board")
    with pytest.raises(InputError) as exc:
        build_world(parse_scenario(_profiled(tiny, profile_dir=str(folder))))
    assert exc.value.key == "costs.reference" and "gpt2.json" in str(exc.value)


def test_reference_needs_the_profiled_model_and_its_profiles(tiny) -> None:
    tiny["costs"] = {"model": "analytic", "reference": "cpu-ref-2core"}
    with pytest.raises(InputError, match=r"costs\.reference"):
        parse_scenario(tiny)
    with pytest.raises(InputError, match=r"costs\.profile_dir"):
        build_world(parse_scenario(_profiled(tiny, reference="jetson-tx2-8gb")))


def test_reference_error_exits_2_with_one_line(tiny, write_yaml) -> None:
    path = write_yaml(_profiled(tiny, reference="no-such-chip"))
    res = RUNNER.invoke(app, ["run", str(path), "--out", str(path.parent / "out")])
    assert res.exit_code == 2
    assert "costs.reference" in res.output and "Traceback" not in res.output
    shutil.rmtree(path.parent / "out", ignore_errors=True)
