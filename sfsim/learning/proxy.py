"""The proxy model: a small decoder of the scenario's architecture family, in functional torch.

``blocks`` pre-norm decoder blocks of width ``hidden`` (causal multi-head attention + MLP):
gpt2 family: LayerNorm, learned-style positional embedding, GELU MLP (4·hidden); llama family:
RMSNorm, no positional embedding (RoPE left out of the proxy), SwiGLU MLP (8/3·hidden). Every base
weight is frozen and drawn from the learning seed; LoRA adapters (A random, B zero, scale
lora.alpha / lora.rank of the scenario) sit on the scenario's target projections; a trainable
classification head reads the final-normed hidden states mean-pooled over the sequence.

Parameters that train live in plain dicts of leaf tensors (``b{j}.{target}.A`` / ``.B``,
``head.W`` / ``head.b``) so that a scheme can hold them where it keeps them (per device, per
device on the server, one shared set) and the forward takes whichever dicts apply.

The side network of fedmobillm (`SideNet`) reads the frozen backbone's hidden states at tapped
blocks: per backbone kind and tap an alignment ``Linear(hidden → d)``, per tap a residual MLP of
width d, and a linear classifier on the mean-pooled side stream (the up-projection and the LM
head of the real side network merged into one classifier).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]


class Proxy:
    """Frozen base weights of the proxy, and the forward through any range of blocks."""

    def __init__(self, *, family: str, blocks: int, hidden: int, heads: int, vocab: int,
                 seq_len: int, classes: int, targets: list[str], rank: int, scale: float,
                 gen: torch.Generator):
        self.family, self.n_blocks, self.hidden, self.heads = family, blocks, hidden, heads
        self.classes, self.targets, self.rank, self.scale = classes, list(targets), rank, scale
        h = hidden
        self.ffn = 4 * h if family == "gpt2" else max(1, round(8 * h / 3))
        self.tok = torch.randn(vocab, h, generator=gen)
        self.pos = (torch.randn(seq_len, h, generator=gen) * 0.3 if family == "gpt2" else None)
        self.w: list[Params] = []
        for _ in range(blocks):
            shapes = self.shapes()
            self.w.append({t: torch.randn(*shapes[t], generator=gen) / math.sqrt(shapes[t][0])
                           for t in shapes})
        self.init_seed = int(torch.randint(0, 2**62, (1,), generator=gen).item())

    def shapes(self) -> dict[str, tuple[int, int]]:
        h, f = self.hidden, self.ffn
        out = {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "up": (h, f), "down": (f, h)}
        if self.family == "llama":
            out["gate"] = (h, f)
        return out

    # ---- trainable parameters ---------------------------------------------------------------
    def init_trainable(self) -> Params:
        """The initial adapters of every block and the head (the same for every copy)."""
        gen = torch.Generator().manual_seed(self.init_seed)
        shapes = self.shapes()
        out: Params = {}
        for j in range(self.n_blocks):
            for t in self.targets:
                din, dout = shapes[t]
                out[f"b{j}.{t}.A"] = torch.randn(din, self.rank, generator=gen) / math.sqrt(din)
                out[f"b{j}.{t}.B"] = torch.zeros(self.rank, dout)
        out["head.W"] = torch.zeros(self.hidden, self.classes)
        out["head.b"] = torch.zeros(self.classes)
        return out

    @staticmethod
    def names(params: Params, lo: int, hi: int, head: bool) -> list[str]:
        """Names of the adapters of blocks lo..hi-1 (and the head's when ``head``)."""
        keep = []
        for n in params:
            if n.startswith("head."):
                if head:
                    keep.append(n)
            elif lo <= int(n[1:n.index(".")]) < hi:
                keep.append(n)
        return keep

    # ---- forward ----------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "gpt2":
            return F.layer_norm(x, (x.shape[-1],))
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def _proj(self, x: torch.Tensor, j: int, t: str, p: Params) -> torch.Tensor:
        y = x @ self.w[j][t]
        a = p.get(f"b{j}.{t}.A")
        if a is not None:
            y = y + (x @ a @ p[f"b{j}.{t}.B"]) * self.scale
        return y

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok[tokens]
        if self.pos is not None:
            x = x + self.pos[: tokens.shape[1]]
        return x

    def blocks(self, x: torch.Tensor, lo: int, hi: int, p: Params) -> torch.Tensor:
        b, s, h = x.shape
        nh = self.heads
        for j in range(lo, hi):
            y = self._norm(x)
            q, k, v = (self._proj(y, j, t, p).view(b, s, nh, h // nh).transpose(1, 2)
                       for t in ("q", "k", "v"))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self._proj(att.transpose(1, 2).reshape(b, s, h), j, "o", p)
            y = self._norm(x)
            if self.family == "gpt2":
                m = F.gelu(self._proj(y, j, "up", p))
            else:
                m = F.silu(self._proj(y, j, "gate", p)) * self._proj(y, j, "up", p)
            x = x + self._proj(m, j, "down", p) / math.sqrt(2 * self.n_blocks)
        return x

    def head(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        return self._norm(x).mean(dim=1) @ p["head.W"] + p["head.b"]

    def logits(self, tokens: torch.Tensor, p: Params, blocks: int | None = None) -> torch.Tensor:
        n = self.n_blocks if blocks is None else blocks
        return self.head(self.blocks(self.embed(tokens), 0, n, p), p)

    def logits_across(self, tokens: torch.Tensor, p: Params, cut: int,
                      uplink: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The split forward: blocks below ``cut``, the hidden state through ``uplink`` (what
        the link carries), then the blocks from ``cut`` up and the head."""
        x = uplink(self.blocks(self.embed(tokens), 0, cut, p))
        return self.head(self.blocks(x, cut, self.n_blocks, p), p)

    def taps(self, tokens: torch.Tensor, taps: list[int]) -> list[torch.Tensor]:
        """Hidden states after the (1-based) tapped blocks of the frozen backbone, no adapters."""
        out, x = [], self.embed(tokens)
        with torch.no_grad():
            for j in range(max(taps)):
                x = self.blocks(x, j, j + 1, {})
                if j + 1 in taps:
                    out.append(x)
        return out


class SideNet:
    """fedmobillm's side network (see the module docstring): initial parameters and forward."""

    def __init__(self, proxy: Proxy, width: int, n_taps: int, kinds: list[str]):
        self.proxy, self.d, self.n_taps, self.kinds = proxy, width, n_taps, kinds

    def init_trainable(self) -> Params:
        gen = torch.Generator().manual_seed(self.proxy.init_seed + 1)
        h, d = self.proxy.hidden, self.d
        out: Params = {}
        for kind in self.kinds:
            for i in range(self.n_taps):
                out[f"align.{kind}.{i}.W"] = torch.randn(h, d, generator=gen) / math.sqrt(h)
                out[f"align.{kind}.{i}.b"] = torch.zeros(d)
        for i in range(self.n_taps):
            out[f"side.{i}.W1"] = torch.randn(d, 2 * d, generator=gen) / math.sqrt(d)
            out[f"side.{i}.W2"] = torch.zeros(2 * d, d)
        out["head.W"] = torch.zeros(d, self.proxy.classes)
        out["head.b"] = torch.zeros(self.proxy.classes)
        return out

    def names(self, params: Params, kind: str) -> list[str]:
        return [n for n in params if not n.startswith("align.") or n.split(".")[1] == kind]

    def logits(self, tapped: list[torch.Tensor], kind: str, p: Params) -> torch.Tensor:
        s: torch.Tensor | None = None
        for i, x in enumerate(tapped):
            a = x @ p[f"align.{kind}.{i}.W"] + p[f"align.{kind}.{i}.b"]
            s = a if s is None else s + a
            y = F.layer_norm(s, (self.d,))
            s = s + F.gelu(y @ p[f"side.{i}.W1"]) @ p[f"side.{i}.W2"]
        assert s is not None
        return F.layer_norm(s, (self.d,)).mean(dim=1) @ p["head.W"] + p["head.b"]
