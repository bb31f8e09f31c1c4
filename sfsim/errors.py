"""Errors a user can cause, and how they are reported.

Anything the user can get wrong (a scenario file, an instance file, a CLI option) raises
:class:`InputError`. The CLI prints ``error: FILE: KEY: PROBLEM`` and exits with status 2,
never a traceback. Internal bugs are left as ordinary exceptions.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: names the file, the key path inside it, and what is wrong."""

    def __init__(self, problem: str, *, file: str | Path | None = None, key: str | None = None):
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.key = key
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        return ": ".join([*parts, self.problem])


class InfeasibleError(InputError):
    """The scenario is well-formed but cannot run (e.g. a device cannot hold its work)."""
