"""Progress bars: drawn on a terminal, silent otherwise, counting either way."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sfsim.progress import is_interactive, progress, round_callback
from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario

from .conftest import QUICKSTART


def test_quiet_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert not is_interactive()  # pytest captures stderr: not a terminal
    with progress(3, "work") as bar:
        for _ in range(3):
            bar.advance()
        bar.describe("done")
    assert not bar.visible and bar.completed == 3 and bar.description == "done"
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_quiet_on_a_non_terminal_console() -> None:
    buf = io.StringIO()
    with progress(2, "work", console=Console(file=buf)) as bar:
        bar.advance(2)
    assert buf.getvalue() == "" and not bar.visible


def test_drawn_on_a_terminal() -> None:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=80)
    with progress(4, "sweeping", console=con, transient=False) as bar:
        bar.advance(4)
    assert bar.visible and "sweeping" in buf.getvalue() and "4/4" in buf.getvalue()


def test_forced_off_even_on_a_terminal() -> None:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True)
    with progress(1, "x", console=con, enabled=False) as bar:
        bar.advance()
    assert buf.getvalue() == ""


def test_round_callback_follows_the_simulation() -> None:
    s = resolve(load_scenario(QUICKSTART))
    seen: list[tuple[int, int]] = []
    with progress(s.training.rounds, "rounds") as bar:
        cb = round_callback(bar)

        def on_round(done: int, total: int) -> None:
            seen.append((done, total))
            cb(done, total)

        simulate(s, on_round=on_round)
    n = s.training.rounds
    assert seen == [(r, n) for r in range(1, n + 1)]
    assert bar.completed == n
