"""Instance files: round trip, and every problem reported with file and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sfsim.errors import InputError
from sfsim.schedulers import Instance, Job
from sfsim.schedulers.instances import load_instance, save_instance

from .strategies import random_chains, random_single


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "inst.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _job(**over: Any) -> dict[str, Any]:
    job: dict[str, Any] = {"id": "a", "release_s": 1.0, "server_s": 2.0, "tail_s": 3.0}
    job.update(over)
    return job


@pytest.mark.parametrize("inst", [random_single(5, seed=1), random_chains(3, 3, seed=2)])
def test_round_trip(inst: Instance, tmp_path: Path) -> None:
    path = tmp_path / "inst.json"
    save_instance(inst, path)
    assert load_instance(path) == inst


def test_chain_form(tmp_path: Path) -> None:
    path = _write(tmp_path, {"jobs": [_job(server_s=[1, 2], lag_s=[0.5])]})
    assert load_instance(path).jobs == (Job("a", 1.0, (1.0, 2.0), (0.5,), 3.0),)


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"jobs": [_job(), _job(server_s=-1)]}, "jobs[1].server_s", "non-negative"),
        ({"jobs": [_job(), _job(server_s=[1, -2], lag_s=[0])]}, "jobs[1].server_s[1]", "non-neg"),
        ({"jobs": [_job(), _job()]}, "jobs[1].id", "duplicate job id 'a'"),
        ({"jobs": []}, "jobs", "at least one job"),
        ({"jobs": [_job(release_s="1")]}, "jobs[0].release_s", "must be a number"),
        ({"jobs": [_job(tail_s=True)]}, "jobs[0].tail_s", "must be a number"),
        ({"jobs": [_job(id=3)]}, "jobs[0].id", "non-empty string"),
        ({"jobs": [_job(colour="red")]}, "jobs[0].colour", "unknown key"),
        ({"jobs": [{"id": "a", "release_s": 0, "server_s": 1}]}, "jobs[0].tail_s", "missing"),
        ({"jobs": [_job(server_s=[1, 2])]}, "jobs[0].lag_s", "needs len(server_s) - 1 = 1"),
        ({"jobs": [_job(server_s=[])]}, "jobs[0].server_s", "at least one"),
        ({"jobs": [_job(lag_s=3)]}, "jobs[0].lag_s", "list"),
        ({"jobs": ["a"]}, "jobs[0]", "must be an object"),
        ({"jobs": {}}, "jobs", "not a list"),
        ({"devices": []}, "devices", "unknown key"),
        ([], None, "must be an object"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, data: Any, key: str | None, problem: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_instance(path)
    err = info.value
    assert err.file == str(path) and err.key == key
    assert problem in err.problem
    assert err.message.startswith(str(path))


def test_non_finite_numbers_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"jobs": [{"id": "a", "release_s": NaN, "server_s": 1, "tail_s": 0}]}')
    with pytest.raises(InputError, match="release_s: must be a non-negative finite"):
        load_instance(path)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"invalid JSON.*line 1"):
        load_instance(_write(tmp_path, "{not json"))
    with pytest.raises(InputError, match="file not found") as info:
        load_instance(tmp_path / "nope.json")
    assert info.value.file == str(tmp_path / "nope.json")
