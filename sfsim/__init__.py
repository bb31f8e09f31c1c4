"""sfsim: a discrete-event simulator of split / federated LLM fine-tuning on mobile devices.

The core (engine, schemes, costs, links, schedulers, scenario schema, results) imports neither
torch nor matplotlib; profiling (`sfsim.profiling`) and plotting (`sfsim.plotting`) sit on top.
"""

__version__ = "0.1.0"
