"""Profiling: real torch LoRA blocks, timed and measured, and checks of the cost model against them.

This is the only part of sfsim that imports torch (install ``sfsim[profile]``). It writes profile
files that :mod:`sfsim.costs.profiled` reads without torch:

* :mod:`~sfsim.profiling.blocks` — GPT-2 and Llama blocks with LoRA, embedding and head;
* :mod:`~sfsim.profiling.timing` — per-block times inside a stack of blocks;
* :mod:`~sfsim.profiling.profiler` — grid, noise control, CSV writer (``sfsim profile``);
* :mod:`~sfsim.profiling.memory` — measured saved activations, adapters and optimizer state;
* :mod:`~sfsim.profiling.fidelity` — real split training vs the simulator's prediction;
* :mod:`~sfsim.profiling.cli` — ``register(app)`` adds ``profile``, ``models`` and ``fidelity``.
"""
