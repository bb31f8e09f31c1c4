"""The installed command, end to end in a fresh interpreter, and the layering of the core."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def _sfsim(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sfsim.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=120,
    )


def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "run"
    p = _sfsim("run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "training time (makespan)" in p.stdout
    names = sorted(f.name for f in out.iterdir())
    for f in ("summary.json", "trace.parquet", "memory.parquet", "scenario.resolved.yaml"):
        assert f in names
    s = json.loads((out / "summary.json").read_text())
    for key in ("scheme", "scheduler", "seed", "rounds", "makespan_s", "round_s",
                "server_peak_bytes", "device_peak_bytes", "uplink_bytes", "downlink_bytes",
                "wall_s", "version", "status"):
        assert key in s, key
    assert s["status"] == "ok" and len(s["round_s"]) == s["rounds"]


def test_bad_input_exit_status_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - {id: a, processor: apple-a17-pro, cut: 40}\n")
    p = _sfsim("validate", str(bad))
    assert p.returncode == 2
    assert p.stderr.startswith(f"error: {bad}: devices[0].cut: cut layer 40")
    assert "Traceback" not in p.stderr + p.stdout


def test_default_run_folder_is_never_reused(tmp_path):
    args = ("run", str(ROOT / "scenarios" / "quickstart.yaml"), "-q")
    assert _sfsim(*args, cwd=tmp_path).returncode == 0
    assert _sfsim(*args, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "quickstart_memsfl_fifo_s1", "quickstart_memsfl_fifo_s1-2"]


def test_core_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys, sfsim.cli, sfsim.run, sfsim.schemes, sfsim.schedulers, sfsim.costs;"
        "from sfsim.costs import build_cost_model; build_cost_model('profiled');"
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules];"
        "print(','.join(bad))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ""


def test_summary_table_shows_energy_faults_and_learning_when_present(tiny, write_yaml, cli,
                                                                     tmp_path):
    plain = cli("run", write_yaml(tiny, "plain.yaml"), "--out", tmp_path / "plain")
    assert plain.exit_code == 0
    assert "energy (total / server)" in plain.output and "energy J" in plain.output
    assert "samples trained / dropped" not in plain.output and "accuracy" not in plain.output
    tiny["faults"] = {"dropout": {"during": 0.5}}
    tiny["training"] = {**tiny.get("training", {}), "aggregation": "partial"}
    tiny["learning"] = {"enabled": True, "hidden": 16, "eval_samples": 16, "seq_len": 8}
    rich = cli("run", write_yaml(tiny, "rich.yaml"), "--out", tmp_path / "rich")
    assert rich.exit_code == 0, rich.output
    for row in ("devices completed / scheduled", "samples trained / dropped",
                "accuracy: final / time to"):
        assert row in rich.output
