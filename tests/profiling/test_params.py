"""Parameter counts: arch.py and the real torch modules against the published model sizes."""

from __future__ import annotations

import pytest
import torch

from sfsim.costs.arch import ARCHS
from sfsim.profiling.blocks import make_block, make_embedding_and_head

PUBLISHED = {  # Hugging Face model cards / configs
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.2-3b": 3_212_749_824,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_arch_params_match_published(name: str) -> None:
    assert ARCHS[name].total_params() == pytest.approx(PUBLISHED[name], rel=0.01)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_torch_modules_match_arch(name: str) -> None:
    """One block, the embedding and the head on the meta device (no memory), times the layers."""
    arch = ARCHS[name]
    with torch.device("meta"):
        block = make_block(arch, rank=0)
        embedding, head = make_embedding_and_head(arch)
    block_params = sum(p.numel() for p in block.parameters())
    ends = {id(p): p.numel() for m in (embedding, head) for p in m.parameters()}  # tied once
    total = sum(ends.values()) + arch.n_layers * block_params
    assert block_params == arch.block_params()
    assert total == arch.total_params()
    assert total == pytest.approx(PUBLISHED[name], rel=0.01)


@pytest.mark.parametrize("name", ["gpt2", "llama-3.2-1b"])
def test_lora_params_match_arch(name: str) -> None:
    arch = ARCHS[name]
    targets = ("q", "k", "v", "o", "up", "down")
    with torch.device("meta"):
        block = make_block(arch, rank=8, targets=targets)
    trainable = sum(p.numel() for p in block.parameters() if p.requires_grad)
    assert trainable == arch.lora_params(8, targets)
    frozen = sum(p.numel() for p in block.parameters() if not p.requires_grad)
    assert frozen == arch.block_params()


def test_unknown_target_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="gate"):
        make_block(ARCHS["gpt2"], rank=4, targets=("gate",))
