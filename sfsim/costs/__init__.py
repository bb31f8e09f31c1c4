"""Costs: model shapes, analytic FLOPs and bytes, processors, and the cost models built on them."""

from __future__ import annotations

from typing import Any

from sfsim.costs.analytic import AnalyticCostModel
from sfsim.costs.arch import ARCHS, ModelArch, get_arch
from sfsim.costs.base import CostModel, Op, Processor, Workload

__all__ = [
    "ARCHS",
    "AnalyticCostModel",
    "CostModel",
    "ModelArch",
    "Op",
    "Processor",
    "Workload",
    "build_cost_model",
    "get_arch",
]

COST_MODELS = ("analytic", "profiled")


def build_cost_model(kind: str, **params: Any) -> CostModel:
    """Make a cost model by name: ``analytic`` or ``profiled`` (per-layer torch profiles)."""
    if kind == "analytic":
        return AnalyticCostModel()
    if kind == "profiled":
        from sfsim.costs.profiled import ProfiledCostModel  # data files, no torch

        return ProfiledCostModel(**params)
    raise ValueError(f"unknown cost model {kind!r}; known: {', '.join(COST_MODELS)}")
