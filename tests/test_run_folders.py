"""Run folders: nothing lost, nothing outside runs/, one writer at a time, no stale temporaries.

The rules live in `sfsim.results.write_run_folder` (marker ``.sfsim-run``, ``OUT.failed-<n>``
for failed runs, a flock on ``.sfsim-lock-<hash>``); these tests try each way data was lost.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from sfsim.errors import InputError
from sfsim.results import (
    MARKER,
    RunFolderBusy,
    RunFolderExists,
    RunResult,
    claim_run_folder,
    clean_stale_temporaries,
    write_run_folder,
)

from .conftest import ROOT


def _result(status: str = "ok", tag: str = "") -> RunResult:
    summary = {"status": status, "tag": tag, "error": None if status == "ok" else "boom"}
    return RunResult(summary, pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [2.0]}), "name: t\n")


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _sfsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sfsim.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=120,
    )


def _no_traceback(res) -> None:
    text = res.output if hasattr(res, "output") else res.stdout + res.stderr
    assert "Traceback" not in text, text


# ---- write_run_folder --------------------------------------------------------------------------


def test_folder_has_marker_and_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_run_folder(tmp_path / "r", _result())
    finally:
        os.umask(old)
    assert (out / MARKER).is_file()
    assert json.loads((out / MARKER).read_text())["format"] == 1
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporaries, no lock file


def test_existing_folder_needs_overwrite(tmp_path):
    out = write_run_folder(tmp_path / "r", _result(tag="first"))
    with pytest.raises(RunFolderExists, match="already exists"):
        write_run_folder(out, _result(tag="second"))
    assert _summary(out)["tag"] == "first"
    write_run_folder(out, _result(tag="second"), overwrite=True)
    assert _summary(out)["tag"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_failed_result_never_replaces_a_good_folder(tmp_path):
    out = write_run_folder(tmp_path / "r", _result(tag="good"))
    f1 = write_run_folder(out, _result("error", "bad1"), overwrite=True)
    f2 = write_run_folder(out, _result("error", "bad2"))
    assert (f1.name, f2.name) == ("r.failed-1", "r.failed-2")
    assert _summary(out)["tag"] == "good"
    assert _summary(f1)["tag"] == "bad1" and _summary(f2)["status"] == "error"


def test_failed_result_replaces_a_failed_folder_with_overwrite(tmp_path):
    out = write_run_folder(tmp_path / "r", _result("error", "bad1"))
    assert out == tmp_path / "r"
    assert write_run_folder(out, _result("error", "bad2"), overwrite=True) == out
    assert _summary(out)["tag"] == "bad2"
    assert write_run_folder(out, _result(tag="good"), overwrite=True) == out
    assert _summary(out)["status"] == "ok"


@pytest.mark.parametrize("kind", ["unrelated folder", "file", "empty folder", "symlink"])
def test_overwrite_refuses_what_sfsim_did_not_write(tmp_path, kind):
    out = tmp_path / "target"
    if kind == "unrelated folder":
        out.mkdir()
        (out / "thesis.tex").write_text("precious")
    elif kind == "file":
        out.write_text("precious")
    elif kind == "empty folder":
        out.mkdir()
    else:
        real = write_run_folder(tmp_path / "real", _result())
        out.symlink_to(real)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(RunFolderExists):
        write_run_folder(out, _result(), overwrite=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    if kind == "unrelated folder":
        assert (out / "thesis.tex").read_text() == "precious"


def test_a_failing_writer_leaves_the_old_folder_and_no_temporaries(tmp_path):
    out = write_run_folder(tmp_path / "r", _result(tag="good"))

    def broken(folder: Path, result: RunResult) -> None:
        raise RuntimeError("writer bug")

    with pytest.raises(RuntimeError):
        write_run_folder(out, _result(tag="new"), [broken], overwrite=True)
    assert _summary(out)["tag"] == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda t: (t / "afile").write_text("x") and t / "afile" / "run", "is a file"),
        (lambda t: t / ("x" * 300), "too long"),
        (lambda t: t / "a\x00b", "NUL"),
        (lambda t: t / "..", "not a folder name"),
        (lambda t: Path("."), "not a folder name"),
    ],
)
def test_bad_targets_are_input_errors(tmp_path, make, problem):
    with pytest.raises(InputError, match=problem):
        write_run_folder(make(tmp_path), _result())


def test_dangling_link_target_is_refused_and_kept(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError, match="symbolic link"):
        write_run_folder(link, _result(), overwrite=True)
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
    with pytest.raises(InputError, match="dangling"):
        write_run_folder(link / "run", _result())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_an_input_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match=r"not writable|Permission"):
            write_run_folder(ro / "run", _result())
    finally:
        ro.chmod(0o755)


# ---- locking ---------------------------------------------------------------------------------


def test_claim_is_exclusive_between_threads(tmp_path):
    import threading

    out = tmp_path / "r"
    errors: list[BaseException] = []
    with claim_run_folder(out):
        write_run_folder(out, _result())  # the claim's own thread may write (re-entrant)

        def other() -> None:
            try:
                write_run_folder(out, _result(), overwrite=True)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], RunFolderBusy)
    write_run_folder(out, _result(tag="after"), overwrite=True)  # released
    assert _summary(out)["tag"] == "after"


def test_a_held_folder_refuses_another_process(tmp_path):
    """A second `sfsim run` to a folder being written exits 2 before simulating."""
    out = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from sfsim.results import claim_run_folder
            with claim_run_folder({str(out)!r}):
                print("held", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        p = _sfsim("run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(out),
                   "--overwrite", "-q")
        assert p.returncode == 2, p.stderr
        assert "another sfsim process is writing this run folder" in p.stderr
        _no_traceback(p)
        assert not out.exists()
    finally:
        holder.communicate("", timeout=30)


def test_concurrent_runs_one_wins_the_other_exits_2(tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "sfsim.cli", "run", str(ROOT / "scenarios" / "quickstart.yaml"),
           "--out", str(out), "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "Traceback" not in loser
    assert "already exists" in loser or "another sfsim process" in loser
    assert _summary(out)["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_concurrent_default_folders_both_succeed(tmp_path):
    cmd = [sys.executable, "-m", "sfsim.cli", "run", str(ROOT / "scenarios" / "quickstart.yaml"),
           "-q"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0], [p.communicate()[1] for p in procs]
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["quickstart_memsfl_fifo_s1", "quickstart_memsfl_fifo_s1-2"]


# ---- stale temporaries -----------------------------------------------------------------------


def test_kill_9_temporaries_are_cleaned_by_the_next_write(tmp_path):
    script = textwrap.dedent(f"""
        import time
        import pandas as pd
        from pathlib import Path
        from sfsim.results import RunResult, write_run_folder

        def stall(folder, result):
            (folder / "partial").write_text("x")
            print("writing", flush=True)
            time.sleep(600)

        r = RunResult({{"status": "ok"}}, pd.DataFrame(), pd.DataFrame(), "")
        write_run_folder(Path({str(tmp_path / "victim")!r}), r, [stall])
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    stale = [q.name for q in tmp_path.iterdir() if q.name.startswith(".sfsim-tmp-")]
    assert len(stale) == 1 and f"-{p.pid}-" in stale[0]
    assert not (tmp_path / "victim").exists()
    write_run_folder(tmp_path / "other", _result())  # any later write in the same folder
    assert sorted(q.name for q in tmp_path.iterdir()) == ["other"]


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    out = tmp_path / "busy"
    with claim_run_folder(out):
        import threading

        seen: list[list[Path]] = []
        tmp = tmp_path / f".sfsim-tmp-{__import__('sfsim.results').results._name_hash('busy')}-1-x"
        tmp.mkdir()
        t = threading.Thread(target=lambda: seen.append(clean_stale_temporaries(tmp_path)))
        t.start()
        t.join()
        assert seen == [[]] and tmp.is_dir()  # another thread holds the lock: not stale
    assert clean_stale_temporaries(tmp_path) == [tmp]


def test_a_killed_overwrite_is_rolled_back(tmp_path):
    """Killed between moving the old folder aside and renaming the new one in: restored."""
    from sfsim.results import _name_hash

    good = write_run_folder(tmp_path / "keep", _result(tag="good"))
    aside = tmp_path / f".sfsim-old-{_name_hash('keep')}-99999999-abc"
    aside.mkdir()
    (aside / "target").write_text("keep\n")
    good.rename(aside / "run")
    write_run_folder(tmp_path / "another", _result())
    assert _summary(tmp_path / "keep")["tag"] == "good"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["another", "keep"]


# ---- the command line ------------------------------------------------------------------------


def test_failed_overwrite_keeps_the_old_folder(tiny, write_yaml, cli, tmp_path):
    out = tmp_path / "run"
    assert cli("run", write_yaml(tiny), "--out", out, "-q").exit_code == 0
    before = (out / "summary.json").read_text()
    tiny["devices"][1]["memory_gb"] = 0.01  # infeasible
    res = cli("run", write_yaml(tiny, "bad.yaml"), "--out", out, "--overwrite", "-q")
    assert res.exit_code == 2
    _no_traceback(res)
    assert (out / "summary.json").read_text() == before
    failed = tmp_path / "run.failed-1"
    assert _summary(failed)["status"] == "error"
    assert str(failed) in res.output


def test_internal_error_keeps_the_old_folder_and_logs(tiny, write_yaml, cli, tmp_path,
                                                      monkeypatch):
    from sfsim import api

    out = tmp_path / "run"
    path = write_yaml(tiny)
    assert cli("run", path, "--out", out, "-q").exit_code == 0
    before = (out / "summary.json").read_text()

    def crash(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(api, "run_resolved", crash)
    res = cli("run", path, "--out", out, "--overwrite", "-q")
    assert res.exit_code == 1
    _no_traceback(res)
    failed = tmp_path / "run.failed-1"
    assert f"traceback in {failed / 'error.log'}" in res.output
    assert "ZeroDivisionError: a bug" in (failed / "error.log").read_text()
    assert (out / "summary.json").read_text() == before


@pytest.mark.parametrize("kind", ["unrelated folder", "scenario file"])
def test_cli_overwrite_refuses_non_run_targets(tiny, write_yaml, cli, tmp_path, kind):
    path = write_yaml(tiny)
    if kind == "scenario file":
        out = path
    else:
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*"))
    res = cli("run", path, "--out", out, "--overwrite", "-q")
    assert res.exit_code == 2 and "refusing to replace it" in res.output
    _no_traceback(res)
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "name",
    ["/tmp/escape-abs", "../../escape", "a/b/c", "x" * 300, "a\x00b", "..", "\t\n", "ü-名前"],
)
def test_scenario_name_cannot_escape_runs(tiny, write_yaml, cli, tmp_path, monkeypatch, name):
    tiny["name"] = name
    path = write_yaml(tiny)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    res = cli("run", path, "-q")
    _no_traceback(res)
    if res.exit_code == 2:  # the scenario schema may refuse the name itself
        assert res.output.startswith("error: ")
        return
    assert res.exit_code == 0, res.output
    assert [p.name for p in work.iterdir()] == ["runs"]
    (folder,) = (work / "runs").iterdir()
    assert folder.is_dir() and len(folder.name) <= 100
    assert folder.name.isascii() and "/" not in folder.name and not folder.name.startswith(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml", "work"]
    assert not Path("/tmp/escape-abs_memsfl_fifo_s3").exists()


@pytest.mark.parametrize("kind", ["under a file", "too long", "dangling link"])
def test_bad_out_targets_exit_2(tiny, write_yaml, cli, tmp_path, kind):
    path = write_yaml(tiny)
    if kind == "under a file":
        out = path / "run"
    elif kind == "too long":
        out = tmp_path / ("y" * 300)
    else:
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "missing")
    res = cli("run", path, "--out", out, "--overwrite", "-q")
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ")
    _no_traceback(res)


def test_unexpected_errors_in_any_command_are_one_line_and_a_log(tmp_path):
    """The last resort in main(): a deep recursion in a command is status 1 plus a log file."""
    code = textwrap.dedent("""
        import sys
        import sfsim.cli as cli

        @cli.app.command("explode")
        def explode() -> None:
            def f(n):
                return f(n + 1)
            f(0)

        sys.argv = ["sfsim", "explode"]
        cli.main()
    """)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 1
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("error: internal error (RecursionError")
    (log,) = tmp_path.glob("sfsim-crash-*.log")
    assert str(log) in p.stderr and "RecursionError" in log.read_text()
    assert "Traceback" not in p.stderr


def test_an_escaped_input_error_is_still_exit_2(tmp_path):
    code = textwrap.dedent("""
        import sys
        import sfsim.cli as cli
        from sfsim.errors import InputError

        @cli.app.command("oops")
        def oops() -> None:
            raise InputError("bad", file="f.yaml", key="k")

        sys.argv = ["sfsim", "oops"]
        cli.main()
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr.strip()) == (2, "error: f.yaml: k: bad")


def test_default_folder_names_are_safe():
    from sfsim.cli import _default_out

    for name in ["/etc", "../..", "a/b/c", "x" * 300, "a\x00b", "", ".hidden"]:
        out = _default_out(name, "memsfl", "fifo", 1)
        assert out.parent == Path("runs")
        assert out.name not in ("", ".", "..") and not out.name.startswith(".")
        assert len(out.name) <= 100 and out.name.isprintable() and "/" not in out.name
    assert _default_out("quickstart", "memsfl", "fifo", 1) == Path(
        "runs/quickstart_memsfl_fifo_s1")

