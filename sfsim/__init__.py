"""sfsim: a discrete-event simulator of split / federated LLM fine-tuning on mobile devices.

The core (engine, schemes, costs, links, schedulers, scenario schema, results) imports neither
torch nor matplotlib; profiling (`sfsim.profiling`) and plotting (`sfsim.plotting`) sit on top.

The Python API (docs/api.md) is loaded on first use, so ``import sfsim`` stays cheap::

    import sfsim
    run = sfsim.run("scenario.yaml", seed=1, overrides={"training.rounds": 2})
    run.summary["makespan_s"]; run.trace; run.memory; run.write("runs/x")
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Names ``import sfsim`` exposes, each loaded from `sfsim.api` on first use.
_API = ("load_scenario", "run", "load_run", "compare", "sweep", "Run")
__all__ = ["Run", "__version__", "compare", "load_run", "load_scenario", "run", "sweep"]

if TYPE_CHECKING:
    from sfsim.api import Run, compare, load_run, load_scenario, run, sweep


class _Package(types.ModuleType):
    """``sfsim.run`` and ``sfsim.compare`` name API functions *and* submodules.

    Importing a submodule sets it as an attribute of its package, which would replace the
    function ``sfsim.run`` with the module ``sfsim/run.py``. This package keeps the functions;
    the modules stay importable by their full names (``from sfsim.run import simulate``,
    ``importlib.import_module("sfsim.compare")``; not ``import sfsim.run as m``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _API:
        from sfsim import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sfsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
