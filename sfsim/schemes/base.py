"""What a training scheme is, and the registry of schemes.

A scheme decides what each device and the server compute, what crosses the links, what sits in
memory, and in which order the server serves devices. It is two things:

* ``setup(sim)``: check the scenario fits the scheme (cuts, memory), and allocate what lives for
  the whole run (weights, adapters, optimizer state) at time 0;
* ``round(sim, r)``: a SimPy process for round r (local iterations, aggregation, broadcast).

Schemes share the engine's two primitives (``sim.compute`` and ``sim.send``) and the server queue
(`sfsim.server`), so a new scheme is a small subclass registered with ``@register_scheme``.

Built-in schemes register themselves when ``sfsim.schemes`` is imported. Installed packages add
schemes through the entry-point group ``sfsim.schemes`` (``my_scheme = "my_pkg.mod:MyScheme"``
in their ``pyproject.toml``); those are loaded once, the first time the registry is asked for a
name or the list of names, so ``sfsim run`` finds them like built-ins. A name is taken once: a
plugin can never replace a built-in. See ``docs/schemes.md`` ("Writing a scheme").
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, TypeVar

from sfsim.engine import Proc, Sim
from sfsim.errors import InputError
from sfsim.plugins import load_entry_point_classes
from sfsim.schedulers import Scheduler

ENTRY_POINT_GROUP = "sfsim.schemes"


class Scheme(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    #: False when the scheme fixes its own order (then `fixed_scheduler` names it).
    uses_scheduler: ClassVar[bool] = True
    fixed_scheduler: ClassVar[str | None] = None
    #: True when the scheme applies `sfsim.faults` (dropouts, deadlines) to its rounds; a
    #: scenario with faults is refused for the others.
    supports_faults: ClassVar[bool] = False

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def continuous(self, sim: Sim) -> bool:
        """True when this run has no round barriers: the run calls `run_all` once instead of
        `round` per round (docs/async.md). Default: False (the per-round path)."""
        return False

    def run_all(self, sim: Sim, bounds: list[tuple[float, float]],
                on_round: Callable[[int, int], None] | None = None) -> Proc:
        """The whole training as one SimPy process, for a scheme whose `continuous` is True:
        appends each bookkeeping round's (start, end) to ``bounds`` as the round ends."""
        raise NotImplementedError(f"scheme {self.name!r} has no continuous run")

    @abc.abstractmethod
    def setup(self, sim: Sim) -> None:
        """Validate the world against the scheme and allocate run-long memory at t = 0."""

    @abc.abstractmethod
    def round(self, sim: Sim, r: int) -> Proc:
        """The SimPy process of one round."""


_SCHEMES: dict[str, type[Scheme]] = {}
_plugins_loaded = False
S = TypeVar("S", bound=type[Scheme])


def register_scheme(cls: S) -> S:
    """Class decorator: register a scheme under ``cls.name``; duplicate names are refused."""
    if not (isinstance(cls, type) and issubclass(cls, Scheme)):
        raise TypeError(f"only Scheme subclasses can be registered, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} must set a non-empty class attribute 'name'")
    if not isinstance(getattr(cls, "description", None), str):
        raise ValueError(f"{cls.__qualname__} must set a one-line class attribute 'description'")
    if name in _SCHEMES and _SCHEMES[name] is not cls:
        raise ValueError(f"a scheme named {name!r} is already registered ({_SCHEMES[name]})")
    _SCHEMES[name] = cls
    return cls


def _load_plugins() -> None:
    """Register the schemes of every installed ``sfsim.schemes`` entry point, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    load_entry_point_classes(ENTRY_POINT_GROUP, Scheme, "scheme", register_scheme)


def schemes() -> dict[str, str]:
    """Registered scheme names (built-in and plugin) and their one-line descriptions."""
    _load_plugins()
    return {n: c.description for n, c in sorted(_SCHEMES.items())}


def scheme_class(name: str, *, file: str | None = None, key: str | None = None) -> type[Scheme]:
    """The class registered under ``name``; InputError listing the known names otherwise."""
    _load_plugins()
    if name not in _SCHEMES:
        raise InputError(
            f"unknown scheme {name!r}; known: {', '.join(sorted(_SCHEMES))}", file=file, key=key
        )
    return _SCHEMES[name]
