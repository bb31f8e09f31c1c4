"""Activation compression on the uplink (``training.compression``; off by default).

What a device uploads can be made smaller three ways (docs/async.md, "Activation compression"):

* ``activations: fp16 | int8`` quantises every uplinked activation element: 2 bytes, or 1 byte
  plus one fp32 scale per token vector (per-token absmax quantisation). A model already in that
  precision or narrower is sent as it is, at no cost. The labels are never quantised.
* ``tokens: topk | pooled`` (fedmobillm only) keeps ``keep_tokens`` tokens, or one pooled
  ("pivot") token, of each sample's ``seq_len``; the labels of the kept tokens go with them and
  the server's side network then runs on the kept tokens only.
* ``layers: sampled`` (fedmobillm only) uploads ``sampled_taps`` tapped layers instead of
  ``training.fedmobillm.taps`` (the side network then has that many blocks).

Costs, memory-bound elementwise passes (an assumption; docs/model.md's roofline for such ops):
quantising on the device reads the activations at the model's precision and writes them
compressed, ``(original + compressed bytes) / device memory bandwidth``; dequantising on the
server reads the compressed bytes and writes the model's precision, ``/ server memory
bandwidth``. Token selection reads every token once on the device (``original bytes / bandwidth``).
FLOPs counted per element: 1 for an fp16 cast, 3 for int8 (absmax, scale, round), 1 for
selection (a score or an add per element); dequantisation 1 per element.

Split schemes (memsfl, sfl_v1, sfl_v2, splitlora) and splitfrozen take quantisation only: their
server blocks need every position's hidden state, so token selection and sampled layers are
refused with an input error, as is any compression for fedlora (it uploads no activations).
"""

from __future__ import annotations

from dataclasses import dataclass

from sfsim.costs.base import Processor
from sfsim.errors import InputError
from sfsim.scenario import CompressionCfg, TrainingCfg

#: Bytes per element sent, by quantisation.
QUANT_BYTES = {"fp16": 2, "int8": 1}
#: One fp32 scale per token vector (int8, per-token absmax).
SCALE_BYTES = 4
#: Device FLOPs per element of quantisation; the server's dequantisation takes 1 per element.
QUANT_OPS = {"fp16": 1, "int8": 3}

KEY = "training.compression"
TOKEN_SCHEMES = ("fedmobillm",)  # the schemes that may select tokens and sample layers
NO_ACTIVATIONS = ("fedlora",)  # schemes that upload no activations


@dataclass(frozen=True)
class Compressed:
    """One batch's uplinked activations after compression, and what compressing costs."""

    nbytes: float  # activations as sent (labels not included)
    device_s: float
    device_flops: float
    server_s: float
    server_flops: float


def requested(c: CompressionCfg) -> bool:
    return bool(c.activations != "none" or c.tokens != "all" or c.layers != "all")


def check(training: TrainingCfg, seq_len: int, scheme: str) -> None:
    """Refuse options the scheme cannot take (InputError naming the key)."""
    c = training.compression
    if c.tokens != "topk" and c.keep_tokens is not None:
        raise InputError("keep_tokens is only read with tokens: topk", key=f"{KEY}.keep_tokens")
    if c.layers != "sampled" and c.sampled_taps is not None:
        raise InputError("sampled_taps is only read with layers: sampled",
                         key=f"{KEY}.sampled_taps")
    if not requested(c):
        return
    if scheme in NO_ACTIVATIONS:
        raise InputError(f"scheme {scheme!r} uploads no activations: remove {KEY}", key=KEY)
    if scheme not in TOKEN_SCHEMES:
        if c.tokens != "all":
            raise InputError(f"token selection is for fedmobillm only: the server blocks of "
                             f"{scheme!r} need every position's hidden state",
                             key=f"{KEY}.tokens")
        if c.layers != "all":
            raise InputError(f"sampled layers are for fedmobillm only (scheme {scheme!r} "
                             "uploads one hidden state at its cut)", key=f"{KEY}.layers")
    if c.tokens == "topk" and c.keep_tokens is None:
        raise InputError("tokens: topk needs keep_tokens", key=f"{KEY}.keep_tokens")
    if c.keep_tokens is not None and c.keep_tokens > seq_len:
        raise InputError(f"keep_tokens {c.keep_tokens} exceeds model.seq_len {seq_len}",
                         key=f"{KEY}.keep_tokens")
    if c.layers == "sampled" and c.sampled_taps is None:
        raise InputError("layers: sampled needs sampled_taps", key=f"{KEY}.sampled_taps")
    taps = training.fedmobillm.taps
    if c.sampled_taps is not None and c.sampled_taps > taps:
        raise InputError(f"sampled_taps {c.sampled_taps} exceeds training.fedmobillm.taps "
                         f"{taps} (sampling keeps fewer taps)", key=f"{KEY}.sampled_taps")


def kept_tokens(c: CompressionCfg, seq_len: int) -> int:
    """Tokens per sample that are uploaded."""
    tokens = c.tokens
    if tokens == "pooled":
        return 1
    if tokens == "topk":
        return min(seq_len, int(c.keep_tokens or seq_len))
    return seq_len


def taps(c: CompressionCfg, configured: int) -> int:
    """Tapped layers uploaded by fedmobillm."""
    if c.layers == "sampled":
        return min(configured, int(c.sampled_taps or configured))
    return configured


def compress(c: CompressionCfg, *, vectors: int, width: int, dtype_bytes: int, seq_len: int,
             device: Processor, server: Processor) -> Compressed:
    """``vectors`` token vectors of ``width`` elements (after token selection) at the model's
    ``dtype_bytes``; ``seq_len`` and the kept tokens give what selection read on the device."""
    kept = kept_tokens(c, seq_len)
    elements = float(vectors) * width
    original = elements * dtype_bytes
    dev_s = dev_fl = srv_s = srv_fl = 0.0
    if kept < seq_len:  # selection reads every token of the sample once
        read = original * seq_len / kept
        dev_s += read / device.mem_bw_bytes_s
        dev_fl += elements * seq_len / kept
    mode = c.activations
    if mode == "none" or QUANT_BYTES[mode] >= dtype_bytes:
        return Compressed(original, dev_s, dev_fl, srv_s, srv_fl)
    sent = elements * QUANT_BYTES[mode] + (vectors * SCALE_BYTES if mode == "int8" else 0)
    dev_s += (original + sent) / device.mem_bw_bytes_s
    dev_fl += elements * QUANT_OPS[mode]
    srv_s += (sent + original) / server.mem_bw_bytes_s
    srv_fl += elements
    return Compressed(sent, dev_s, dev_fl, srv_s, srv_fl)
