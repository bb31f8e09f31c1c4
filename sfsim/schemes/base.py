"""What a training scheme is, and the registry of schemes.

A scheme decides what each device and the server compute, what crosses the links, what sits in
memory, and in which order the server serves devices. It is two things:

* ``setup(sim)``: check the scenario fits the scheme (cuts, memory), and allocate what lives for
  the whole run (weights, adapters, optimizer state) at time 0;
* ``round(sim, r)``: a SimPy process for round r (local iterations, aggregation, broadcast).

Schemes share the engine's two primitives (``sim.compute`` and ``sim.send``) and the server queue
(`sfsim.server`), so a new scheme is a small subclass registered with ``@register_scheme``.
"""

from __future__ import annotations

import abc
from typing import ClassVar, TypeVar

from sfsim.engine import Proc, Sim
from sfsim.errors import InputError
from sfsim.schedulers import Scheduler


class Scheme(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    #: False when the scheme fixes its own order (then `fixed_scheduler` names it).
    uses_scheduler: ClassVar[bool] = True
    fixed_scheduler: ClassVar[str | None] = None

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    @abc.abstractmethod
    def setup(self, sim: Sim) -> None:
        """Validate the world against the scheme and allocate run-long memory at t = 0."""

    @abc.abstractmethod
    def round(self, sim: Sim, r: int) -> Proc:
        """The SimPy process of one round."""


_SCHEMES: dict[str, type[Scheme]] = {}
S = TypeVar("S", bound=type[Scheme])


def register_scheme(cls: S) -> S:
    """Class decorator: register a scheme under ``cls.name``; duplicate names are refused."""
    name = cls.name
    if name in _SCHEMES and _SCHEMES[name] is not cls:
        raise ValueError(f"a scheme named {name!r} is already registered ({_SCHEMES[name]})")
    _SCHEMES[name] = cls
    return cls


def schemes() -> dict[str, str]:
    """Registered scheme names and their one-line descriptions."""
    return {n: c.description for n, c in sorted(_SCHEMES.items())}


def scheme_class(name: str, *, file: str | None = None, key: str | None = None) -> type[Scheme]:
    if name not in _SCHEMES:
        raise InputError(
            f"unknown scheme {name!r}; known: {', '.join(sorted(_SCHEMES))}", file=file, key=key
        )
    return _SCHEMES[name]
