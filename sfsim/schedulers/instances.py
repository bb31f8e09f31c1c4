"""Instance files: a round's jobs as JSON, validated once at the boundary.

Single tasks::

    {"jobs": [{"id": "phone-1", "release_s": 1.2, "server_s": 0.3, "tail_s": 2.0}, ...]}

Chains of K tasks give ``server_s`` as a list of K values and ``lag_s`` as K-1 values::

    {"jobs": [{"id": "phone-1", "release_s": 1.2, "server_s": [0.3, 0.3], "lag_s": [4.1],
               "tail_s": 2.0}]}

Every problem is reported as :class:`sfsim.errors.InputError` naming the file and the key
(``jobs[3].server_s``): a missing file, bad JSON, an empty job list, a missing or unknown key,
a wrong type (booleans are not numbers), a negative or non-finite time, a lag list of the
wrong length, a duplicate id.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sfsim.errors import InputError
from sfsim.schedulers.base import Instance, Job

JOB_KEYS = {"id", "release_s", "server_s", "lag_s", "tail_s"}
REQUIRED = ("id", "release_s", "server_s", "tail_s")


def _number(value: Any, path: Path, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"must be a number of seconds, got {value!r}", file=path, key=key)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"must be a non-negative finite number, got {value!r}", file=path, key=key)
    return float(value)


def _numbers(value: Any, path: Path, key: str) -> tuple[float, ...]:
    if isinstance(value, list):
        return tuple(_number(v, path, f"{key}[{i}]") for i, v in enumerate(value))
    return (_number(value, path, key),)


def _job(raw: Any, path: Path, where: str) -> Job:
    if not isinstance(raw, dict):
        raise InputError(f"must be an object, got {type(raw).__name__}", file=path, key=where)
    unknown = sorted(set(raw) - JOB_KEYS)
    if unknown:
        valid = ", ".join(sorted(JOB_KEYS))
        raise InputError(
            f"unknown key (valid keys: {valid})", file=path, key=f"{where}.{unknown[0]}"
        )
    for key in REQUIRED:
        if key not in raw:
            raise InputError("missing", file=path, key=f"{where}.{key}")
    job_id = raw["id"]
    if not isinstance(job_id, str) or not job_id:
        raise InputError(
            f"must be a non-empty string, got {job_id!r}", file=path, key=f"{where}.id"
        )
    server = _numbers(raw["server_s"], path, f"{where}.server_s")
    if not server:
        raise InputError("needs at least one server time", file=path, key=f"{where}.server_s")
    lag_raw = raw.get("lag_s", [])
    if not isinstance(lag_raw, list):
        raise InputError("must be a list of numbers", file=path, key=f"{where}.lag_s")
    lag = _numbers(lag_raw, path, f"{where}.lag_s")
    if len(lag) != len(server) - 1:
        raise InputError(
            f"needs len(server_s) - 1 = {len(server) - 1} values, got {len(lag)}",
            file=path,
            key=f"{where}.lag_s",
        )
    return Job(
        id=job_id,
        release_s=_number(raw["release_s"], path, f"{where}.release_s"),
        server_s=server,
        lag_s=lag,
        tail_s=_number(raw["tail_s"], path, f"{where}.tail_s"),
    )


def instance_from_dict(data: Any, path: str | Path = "<instance>") -> Instance:
    """Validate a parsed instance document (see the module docstring)."""
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(
            f"must be an object with a 'jobs' list, got {type(data).__name__}", file=path
        )
    unknown = sorted(set(data) - {"jobs"})
    if unknown:
        raise InputError("unknown key (valid keys: jobs)", file=path, key=unknown[0])
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, list):
        raise InputError("missing or not a list", file=path, key="jobs")
    if not raw_jobs:
        raise InputError("needs at least one job", file=path, key="jobs")
    jobs = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_jobs):
        job = _job(raw, path, f"jobs[{i}]")
        if job.id in seen:
            raise InputError(
                f"duplicate job id {job.id!r} (first at jobs[{seen[job.id]}])",
                file=path,
                key=f"jobs[{i}].id",
            )
        seen[job.id] = i
        jobs.append(job)
    return Instance(tuple(jobs))


def load_instance(path: str | Path) -> Instance:
    """Read and validate an instance JSON file; every problem is an InputError."""
    from sfsim.yamlio import loads_json, read_user_file

    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    # bounded: a regular file of at most 10 MiB, depth 64, no NaN/inf, no huge integers
    text = read_user_file(path, what="JSON instance file")
    data = loads_json(text, file=path, finite=False)  # numbers are checked per field below
    return instance_from_dict(data, path)


def instance_to_dict(instance: Instance) -> dict[str, Any]:
    """The JSON document of an instance (single tasks written as plain numbers)."""
    jobs: list[dict[str, Any]] = []
    for job in instance.jobs:
        entry: dict[str, Any] = {"id": job.id, "release_s": job.release_s}
        if job.k == 1:
            entry["server_s"] = job.server_s[0]
        else:
            entry["server_s"] = list(job.server_s)
            entry["lag_s"] = list(job.lag_s)
        entry["tail_s"] = job.tail_s
        jobs.append(entry)
    return {"jobs": jobs}


def save_instance(instance: Instance, path: str | Path) -> None:
    """Write an instance file that :func:`load_instance` reads back unchanged."""
    Path(path).write_text(json.dumps(instance_to_dict(instance), indent=2) + "\n", encoding="utf-8")
