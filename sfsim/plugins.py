"""Loading classes that third-party packages declare as entry points.

Schedulers (group ``sfsim.schedulers``) and schemes (group ``sfsim.schemes``) are both found by
name, and both can come from an installed package that declares, in its ``pyproject.toml``::

    [project.entry-points."sfsim.schemes"]
    my_scheme = "my_pkg.module:MyScheme"

:func:`load_entry_point_classes` loads every entry point of a group, checks that each names a
subclass of the expected base whose ``name`` attribute equals the entry-point name, and hands it
to the registry's own ``register`` function (which refuses a taken name). Every failure becomes
an :class:`sfsim.errors.InputError` naming the entry point, so a broken plugin says which one it is.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from sfsim.errors import InputError


def load_entry_point_classes(
    group: str, base: type, kind: str, register: Callable[[Any], Any]
) -> None:
    """Register the class behind every entry point of ``group`` (``kind`` names it in errors)."""
    for ep in metadata.entry_points(group=group):
        source = f"entry point {ep.name!r} ({ep.value}) in group {group!r}"
        try:
            cls = ep.load()
        except Exception as exc:  # any import-time failure of a plugin is the plugin's
            raise InputError(f"cannot load {kind} plugin {source}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise InputError(
                f"{kind} plugin {source} is not a {base.__name__} subclass: {cls!r}"
            )
        if getattr(cls, "name", None) != ep.name:
            raise InputError(
                f"{kind} plugin {source}: the entry-point name must equal the class's "
                f"name attribute, got {getattr(cls, 'name', None)!r}"
            )
        try:
            register(cls)
        except ValueError as exc:
            raise InputError(f"{kind} plugin {source} refused: {exc}") from exc
