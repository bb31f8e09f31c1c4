"""Bad scenario files exit with status 2 and a message naming the file, the key and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfsim.errors import InputError
from sfsim.scenario import load_scenario


def _check(result, *needles: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    assert text.startswith("error: ")
    for n in needles:
        assert n in text, (n, text)


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda s: s["devices"][0].update(uplnk_mbps=5), "devices[0].uplnk_mbps", "unknown key"),
        (lambda s: s["training"].update(rounds="many"), "training.rounds", "integer"),
        (
            lambda s: s["devices"][1].update(uplink_mbps=-3),
            "devices[1].uplink_mbps",
            "greater than",
        ),
        (lambda s: s["channel"].update(downlink_mbps=0), "channel.downlink_mbps", "greater than"),
        (lambda s: s["devices"][1].update(cut=14), "devices[1].cut", "beyond the model depth"),
        (
            lambda s: s["devices"][0].update(processor="pixel-99"),
            "devices[0].processor",
            "unknown processor",
        ),
        (lambda s: s["model"].update(arch="gpt5"), "model.arch", "unknown model architecture"),
        (lambda s: s["model"]["lora"].update(targets=["gate"]), "model", "not in gpt2 blocks"),
        (lambda s: s.update(devices=[], fleet=None), "(top level)", "no devices"),
        (lambda s: s["devices"].append(dict(s["devices"][0])), "devices[2].id", "duplicate"),
        (
            lambda s: s.update(
                fleet={"count": 3, "mix": {"dev-fast": 1}, "samples": {"min": 5, "max": 1}}
            ),
            "fleet.samples",
            "below min",
        ),
    ],
)
def test_bad_scenarios_exit_2_naming_key(tiny, write_yaml, cli, edit, key, problem):
    edit(tiny)
    path = write_yaml(tiny)
    result = cli("validate", path)
    _check(result, str(path), key, problem)
    # `run` refuses the same file the same way, and writes nothing.
    out = path.parent / "out"
    result = cli("run", path, "--out", out)
    _check(result, key)
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("model: {arch: gpt2\n", "YAML syntax error"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("devices:\n  - id: a\n    processor: [1, 2\n", "YAML syntax error"),
    ],
)
def test_malformed_files(write_yaml, cli, text, needle):
    path = write_yaml(text)
    _check(cli("validate", path), str(path), needle)


def test_yaml_error_names_line(write_yaml, cli):
    path = write_yaml("name: x\nmodel:\n  arch: gpt2\n   seq_len: 3\n")
    _check(cli("validate", path), "line 4")


def test_missing_file(tmp_path, cli):
    missing = tmp_path / "nope.yaml"
    _check(cli("validate", missing), str(missing), "no such file")
    _check(cli("run", missing), "no such file")


def test_folder_instead_of_file(tmp_path, cli):
    _check(cli("validate", tmp_path), "is a folder")


def test_unknown_scheme_and_scheduler_overrides(tiny, write_yaml, cli, tmp_path):
    path = write_yaml(tiny)
    _check(
        cli("run", path, "--scheme", "nope", "--out", tmp_path / "o1"), "unknown scheme", "memsfl"
    )
    _check(cli("run", path, "--scheduler", "nope", "--out", tmp_path / "o2"), "nope", "fifo")


def test_existing_out_folder_is_not_clobbered(tiny, write_yaml, cli, tmp_path):
    path = write_yaml(tiny)
    out = tmp_path / "run"
    assert cli("run", path, "--out", out, "-q").exit_code == 0
    before = (out / "summary.json").read_text()
    _check(cli("run", path, "--out", out, "--seed", "9"), "already exists")
    assert (out / "summary.json").read_text() == before


def test_infeasible_memory_is_reported_with_error_folder(tiny, write_yaml, cli, tmp_path):
    tiny["devices"][1]["memory_gb"] = 0.01
    path = write_yaml(tiny)
    out = tmp_path / "run"
    result = cli("run", path, "--out", out)
    _check(result, "device 'b'", "needs", "GB")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error"
    assert "device 'b'" in summary["error"]
    assert sorted(p.name for p in out.iterdir()) == [".sfsim-run", "scenario.resolved.yaml",
                                                     "summary.json"]
    # no temporary folders left beside it
    assert [p.name for p in Path(tmp_path).iterdir() if p.name.startswith(".")] == []


def test_input_error_message_format():
    err = InputError("is wrong", file="f.yaml", key="a.b")
    assert err.message == "f.yaml: a.b: is wrong"


def test_load_scenario_raises_input_error(write_yaml):
    with pytest.raises(InputError) as exc:
        load_scenario(write_yaml("training: {rounds: 0}\ndevices: []\n"))
    assert exc.value.key == "training.rounds"
