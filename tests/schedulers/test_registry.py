"""The registry: names to classes, duplicates refused, unknown names listed, plugins loaded."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sfsim.errors import InputError
from sfsim.schedulers import Instance, Job, Scheduler, available, get_scheduler, register, registry

PLUGIN_SRC = Path(__file__).parent / "plugin_example" / "src"


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Scheduler]]:
    """A copy of the registry that is thrown away after the test, plugins not yet loaded."""
    table = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", table)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    return table


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: metadata.EntryPoint) -> None:
    def entry_points(**selection: Any) -> list[metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == selection.get("group")]

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)


def test_builtins_are_listed_with_descriptions() -> None:
    names = available()
    for name in ["fifo", "random", "spt", "lpt", "longest_tail", "schrage"]:
        assert name in names and names[name] and "\n" not in names[name]


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(InputError, match=r"unknown scheduler 'nope'; known schedulers: .*fifo"):
        get_scheduler("nope")


def test_unknown_parameter_is_an_input_error() -> None:
    with pytest.raises(
        InputError, match=r"does not take parameter.*colour.*valid parameters: online"
    ):
        get_scheduler("schrage", colour="red")
    with pytest.raises(InputError, match="valid parameters: none"):
        get_scheduler("fifo", online=False)


def test_parameters_are_stored() -> None:
    sched = get_scheduler("spt", online=True)
    assert sched.online and sched.get_params() == {"online": True}
    assert not get_scheduler("spt").online and get_scheduler("fifo").online


def test_duplicate_name_is_refused(fresh_registry: dict[str, type[Scheduler]]) -> None:
    class Other(Scheduler):
        name = "fifo"
        description = "an impostor"

        def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
            return []

    with pytest.raises(ValueError, match="'fifo' is already taken"):
        register(Other)
    assert fresh_registry["fifo"] is not Other


def test_register_requires_name_and_description(fresh_registry: dict[str, type[Scheduler]]) -> None:
    class NoName(Scheduler):
        description = "x"

        def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
            return []

    with pytest.raises(ValueError, match="name"):
        register(NoName)


def test_plugin_loaded_from_entry_point(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: dict[str, type[Scheduler]]
) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    ep = metadata.EntryPoint(
        name="my_sched",
        value="sfsim_plugin_example:MySched",
        group=registry.ENTRY_POINT_GROUP,
    )
    _fake_entry_points(monkeypatch, ep)
    assert "my_sched" in available()
    sched = get_scheduler("my_sched", descending=True)
    inst = Instance((Job.single("a", 0, 1, 0), Job("b", 0, (1, 1), (0,), 0)))
    assert sched.order(inst, np.random.default_rng(0)) == ["b", "b", "a"]
    # loaded once: a second look-up does not load again
    _fake_entry_points(monkeypatch)
    assert "my_sched" in available()


def test_plugin_with_taken_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: dict[str, type[Scheduler]]
) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    ep = metadata.EntryPoint(
        name="schrage",
        value="sfsim_plugin_example.impostor:Impostor",
        group=registry.ENTRY_POINT_GROUP,
    )
    _fake_entry_points(monkeypatch, ep)
    with pytest.raises(InputError, match=r"plugin entry point 'schrage'.*refused.*already taken"):
        get_scheduler("schrage")


def test_plugin_name_must_match_entry_point(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: dict[str, type[Scheduler]]
) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    ep = metadata.EntryPoint(
        name="other", value="sfsim_plugin_example:MySched", group=registry.ENTRY_POINT_GROUP
    )
    _fake_entry_points(monkeypatch, ep)
    with pytest.raises(InputError, match="must equal the class's name"):
        available()


def test_broken_plugin_names_itself(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: dict[str, type[Scheduler]]
) -> None:
    ep = metadata.EntryPoint(
        name="ghost", value="no_such_module_xyz:Ghost", group=registry.ENTRY_POINT_GROUP
    )
    _fake_entry_points(monkeypatch, ep)
    with pytest.raises(InputError, match="cannot load scheduler plugin entry point 'ghost'"):
        available()
