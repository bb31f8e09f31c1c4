"""Progress bars for long work that stay silent when nobody is watching.

Multi-round simulations, parameter sweeps and profiling runs can take minutes; a bar on the
terminal says how far they got. The same code also runs under pytest, in CI, in notebooks and
with its output piped to a file, where a bar is noise (or, worse, thousands of carriage-return
lines in a log). The rule here is therefore simple: **draw only when stderr is a terminal**
(`rich.console.Console.is_terminal`), unless the caller forces it either way.

Usage::

    from sfsim.progress import progress

    with progress(total=len(jobs), description="sweep") as bar:
        for job in jobs:
            run(job)
            bar.advance()

The object the context manager returns is a :class:`Ticker`: ``advance(n)`` moves the bar,
``describe(text)`` changes its label, and ``completed`` counts what has been done (also when
the bar is not drawn, so code and tests can rely on it). :func:`round_callback` adapts a ticker
to the optional ``on_round(done, total)`` callback of `sfsim.run.simulate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class Ticker:
    """Counts completed steps and, when attached to a rich bar, moves it."""

    def __init__(self, total: float | None, description: str,
                 bar: Progress | None = None, task: TaskID | None = None) -> None:
        self.total = total
        self.description = description
        self.completed = 0.0
        self._bar = bar
        self._task = task

    @property
    def visible(self) -> bool:
        """True when a bar is being drawn."""
        return self._bar is not None

    def advance(self, n: float = 1.0) -> None:
        """Mark ``n`` more steps done."""
        self.completed += n
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def describe(self, text: str) -> None:
        """Change the label shown next to the bar."""
        self.description = text
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=text)


def is_interactive(console: Console | None = None) -> bool:
    """True when ``console`` (default: a console on stderr) writes to a terminal."""
    return (console or Console(stderr=True)).is_terminal


@contextmanager
def progress(
    total: float | None,
    description: str = "working",
    *,
    console: Console | None = None,
    enabled: bool | None = None,
    transient: bool = True,
) -> Iterator[Ticker]:
    """A progress bar on stderr for ``total`` steps (None: unknown), drawn only on a terminal.

    ``enabled`` forces the bar on (True) or off (False); by default it is on exactly when the
    console is a terminal. ``transient`` removes the bar when the work is done.
    """
    con = console or Console(stderr=True)
    show = con.is_terminal if enabled is None else enabled
    if not show:
        yield Ticker(total, description)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=con,
        transient=transient,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield Ticker(total, description, bar, task)


def round_callback(ticker: Ticker) -> Callable[[int, int], None]:
    """An ``on_round(done, total)`` callback for `sfsim.run.simulate` that moves ``ticker``."""

    def on_round(done: int, total: int) -> None:
        ticker.advance(done - ticker.completed)

    return on_round
