"""The scheduler registry: schedulers are found by name.

Scenario files and the CLI name a scheduler (``scheduler: {name: schrage, params: {...}}``);
this module maps the name to a class and builds it with the given parameters. Built-in
schedulers register themselves with the :func:`register` class decorator when their modules
are imported, which the registry does before the first lookup. Third-party packages add
schedulers through the entry-point group ``sfsim.schedulers`` (``my_sched =
"my_pkg.module:MyScheduler"`` in their ``pyproject.toml``); those are loaded once, lazily,
the first time a name is looked up or the list of names is asked for.

A name can be taken only once: registering a different class under a taken name is refused,
whether it comes from code or from a plugin, so a plugin can never silently replace a
built-in. Looking up an unknown name, or passing a parameter the scheduler does not take,
raises :class:`sfsim.errors.InputError` listing what is valid.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from importlib import metadata  # noqa: F401  (tests patch registry.metadata.entry_points)
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from sfsim.errors import InputError
from sfsim.plugins import load_entry_point_classes
from sfsim.schedulers.base import Scheduler

ENTRY_POINT_GROUP = "sfsim.schedulers"

_REGISTRY: dict[str, type[Scheduler]] = {}
_plugins_loaded = False

S = TypeVar("S", bound=type[Scheduler])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` available under ``cls.name``. Duplicates are refused."""
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise TypeError(f"only Scheduler subclasses can be registered, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} must set a non-empty class attribute 'name'")
    if not isinstance(getattr(cls, "description", None), str):
        raise ValueError(f"{cls.__qualname__} must set a one-line class attribute 'description'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"scheduler name {name!r} is already taken by "
            f"{existing.__module__}.{existing.__qualname__}; "
            f"refusing to register {cls.__module__}.{cls.__qualname__} under the same name"
        )
    _REGISTRY[name] = cls
    return cls


#: Modules whose import registers the built-in schedulers (see :func:`_load_plugins`).
BUILTIN_MODULES = ("carlier", "local_search", "milp", "rules")


def _load_plugins() -> None:
    """Register the built-ins, then every installed ``sfsim.schedulers`` entry point, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"sfsim.schedulers.{module}")
    load_entry_point_classes(ENTRY_POINT_GROUP, Scheduler, "scheduler", register)


def available() -> dict[str, str]:
    """Every known scheduler name (built-in and plugin) with its one-line description."""
    _load_plugins()
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def scheduler_class(name: str) -> type[Scheduler]:
    """The class registered under ``name``; InputError listing the known names otherwise."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InputError(f"unknown scheduler {name!r}; known schedulers: {known}") from None


def accepted_params(cls: type[Scheduler]) -> list[str]:
    """Names of the keyword parameters the scheduler's constructor takes."""
    sig = inspect.signature(cls.__init__)
    return [
        p.name
        for p in list(sig.parameters.values())[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def get_scheduler(name: str, **params: Any) -> Scheduler:
    """Build the scheduler registered under ``name`` with ``params``.

    Unknown names and parameters the scheduler does not take raise InputError.
    """
    return _build(name, params, key_prefix=None)


def scheduler_from_scenario(name: str, params: dict[str, Any]) -> Scheduler:
    """Like :func:`get_scheduler`, for a scenario: errors name ``scheduler.params.KEY``."""
    return _build(name, params, key_prefix="scheduler.params")


def _build(name: str, params: dict[str, Any], key_prefix: str | None) -> Scheduler:
    def where(param: str) -> dict[str, str | None]:
        return {"key": f"{key_prefix}.{param}" if key_prefix else None}

    cls = scheduler_class(name)
    takes = accepted_params(cls)
    unknown = sorted(set(params) - set(takes))
    if unknown and not _takes_any_kwargs(cls):
        valid = ", ".join(takes) if takes else "none"
        raise InputError(
            f"scheduler {name!r} does not take parameter(s) {', '.join(unknown)}; "
            f"valid parameters: {valid}",
            **where(unknown[0]),
        )
    params = typed_params(cls, params, key_prefix=key_prefix)
    try:
        return cls(**params)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"scheduler {name!r}: bad parameters {params}: {exc}",
                         key=key_prefix) from exc


def typed_params(
    cls: type[Scheduler], params: dict[str, Any], *, key_prefix: str | None = "scheduler.params"
) -> dict[str, Any]:
    """Check each parameter against the constructor's annotation, strictly (JSON rules).

    A string is never taken for a number nor a boolean for an integer; an integer is accepted
    for a float and a list for a tuple. Parameters without an annotation pass unchanged.
    Raises InputError naming ``KEY_PREFIX.PARAM`` (or the parameter, without a prefix).
    """
    if not params:
        return params
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that cannot be resolved: nothing to check against
        hints = {}
    out = dict(params)
    for key, value in params.items():
        hint = hints.get(key)
        if hint is None:
            continue
        key_path = f"{key_prefix}.{key}" if key_prefix else None
        label = "" if key_prefix else f"parameter {key}: "
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InputError(f"{label}{value!r} is not a plain value (number, string, list, "
                             "mapping)", key=key_path) from None
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(hint)
        except Exception:  # a type pydantic cannot check: left to the constructor
            continue
        try:
            out[key] = adapter.validate_json(text, strict=True)
        except ValidationError as exc:
            problem = "; ".join(e["msg"] for e in exc.errors()[:3])
            raise InputError(f"{label}{problem} (got {value!r}; expected {_type_name(hint)})",
                             key=key_path) from None
    return out


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _takes_any_kwargs(cls: type[Scheduler]) -> bool:
    if cls.__init__ is Scheduler.__init__:
        return False  # the base constructor takes no parameters at all
    sig = inspect.signature(cls.__init__)
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
