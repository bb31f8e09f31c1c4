"""Data for the proxy: the shipped synthetic task and a loader for a user's tokenised .npy data.

Synthetic task (no download): token sequences drawn from a vocabulary, labelled by a fixed random
*teacher network* (token embeddings, mean over the sequence, a tanh layer, a linear map to the
classes; class offsets calibrated so classes are about equally frequent). Non-IID by a Dirichlet(α)
skew, either over classes (each device draws its class mix from Dir(α); its sequences are drawn
from the common token distribution and kept by label) or over tokens (each device draws its own
token distribution from Dir(α·V·base); labels follow the teacher). Small α: very different
devices; large α: nearly IID. Each device gets min(samples, max_samples_per_device) examples; the
held-out set is drawn IID from the common distribution.

.npy data: ``tokens`` int [N, seq] and ``labels`` int [N]; a held-out set is drawn at random
(IID), the rest is split across devices by the same Dirichlet class skew. Everything is drawn
from the scenario's learning seed. numpy only: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfsim.errors import InputError
from sfsim.scenario import LearningCfg, NpyDataCfg

TOPIC_SHARE = 0.35  # a class's tokens: this share from its own topic, the rest from the base
TOPIC_CONCENTRATION = 0.1  # Dirichlet concentration of a topic over the vocabulary (sparse)


@dataclass
class Task:
    """Per-device shards and the held-out set (token ids int64 [n, seq], labels int64 [n])."""

    shards: dict[str, tuple[np.ndarray, np.ndarray]]
    test_tokens: np.ndarray
    test_labels: np.ndarray
    classes: int
    vocab: int
    seq_len: int


class Teacher:
    """A fixed random network that labels token sequences: a table of per-class token
    log-probabilities (a sparse random topic mixed with a common base distribution), summed over
    the sequence; the label is the arg-max class. Sequences are drawn from the same class
    distributions, so the teacher's label is the class that most plausibly generated them."""

    def __init__(self, vocab: int, classes: int, rng: np.random.Generator):
        p = 1.0 / np.sqrt(np.arange(1, vocab + 1))
        self.base = np.asarray(rng.permutation(p / p.sum()))
        topics = rng.dirichlet(np.full(vocab, TOPIC_CONCENTRATION), size=classes)
        self.dist = TOPIC_SHARE * topics + (1.0 - TOPIC_SHARE) * self.base
        self.logp = np.log(self.dist)

    def labels(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(self.logp[:, tokens].sum(axis=2).argmax(axis=0), dtype=np.int64)

    def draw(self, classes: np.ndarray, seq_len: int, rng: np.random.Generator) -> np.ndarray:
        """One sequence per entry of ``classes``, tokens from that class's distribution."""
        out = np.empty((len(classes), seq_len), dtype=np.int64)
        for c in np.unique(classes):
            rows = np.flatnonzero(classes == c)
            out[rows] = rng.choice(len(self.base), size=(len(rows), seq_len), p=self.dist[c])
        return out


def build_task(cfg: LearningCfg, samples: dict[str, int], seed: np.random.SeedSequence) -> Task:
    """The shards of ``samples`` (device -> sample count, in device order) and the held-out set."""
    if isinstance(cfg.data, NpyDataCfg):
        return _npy_task(cfg, cfg.data, samples, seed)
    d = cfg.data
    teacher_seed, test_seed, *dev_seeds = seed.spawn(2 + len(samples))
    teacher = Teacher(cfg.vocab, d.classes, np.random.default_rng(teacher_seed))
    rng_t = np.random.default_rng(test_seed)
    test = teacher.draw(rng_t.integers(0, d.classes, cfg.eval_samples), cfg.seq_len, rng_t)
    shards: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (dev, n), ss in zip(samples.items(), dev_seeds, strict=True):
        r = np.random.default_rng(ss)
        n = min(n, cfg.max_samples_per_device)
        if d.skew == "tokens":  # the device's own token distribution, labels by the teacher
            p = r.dirichlet(np.maximum(d.alpha * cfg.vocab * teacher.base, 1e-3))
            toks = r.choice(cfg.vocab, size=(n, cfg.seq_len), p=p).astype(np.int64)
        else:  # the device's own class mix
            mix = r.dirichlet(np.full(d.classes, d.alpha))
            toks = teacher.draw(r.choice(d.classes, size=n, p=mix), cfg.seq_len, r)
        shards[dev] = (toks, teacher.labels(toks))
    return Task(shards, test, teacher.labels(test), d.classes, cfg.vocab, cfg.seq_len)


def _load(path: str, key: str) -> np.ndarray:
    try:
        arr = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}", key=key) from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{path} must hold an integer array", key=key)
    return arr


def _npy_task(cfg: LearningCfg, d: NpyDataCfg, samples: dict[str, int],
              seed: np.random.SeedSequence) -> Task:
    tokens = _load(d.tokens, "learning.data.tokens")
    labels = _load(d.labels, "learning.data.labels")
    if tokens.ndim != 2 or tokens.shape[0] < 2 or tokens.shape[1] < 1:
        raise InputError(f"token ids must be an array [N, seq] with N >= 2, not shape "
                         f"{tokens.shape}", key="learning.data.tokens")
    if labels.ndim != 1 or labels.shape[0] != tokens.shape[0]:
        raise InputError(f"labels must be an array [N] with N = {tokens.shape[0]} (the token "
                         f"rows), not shape {labels.shape}", key="learning.data.labels")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab:
        raise InputError(f"token ids must lie in [0, learning.vocab = {cfg.vocab}), found "
                         f"{tokens.min()}..{tokens.max()}", key="learning.data.tokens")
    if labels.min() < 0 or labels.max() >= 256:
        raise InputError(f"labels must lie in [0, 256), found {labels.min()}..{labels.max()}",
                         key="learning.data.labels")
    tokens = tokens[:, : cfg.seq_len].astype(np.int64)
    labels = labels.astype(np.int64)
    classes = max(2, int(labels.max()) + 1)
    split_seed, *dev_seeds = seed.spawn(1 + len(samples))
    rng = np.random.default_rng(split_seed)
    order = rng.permutation(len(labels))
    n_test = max(1, min(cfg.eval_samples, len(labels) // 5))
    test, rest = order[:n_test], order[n_test:]
    pools = [list(rest[labels[rest] == c]) for c in range(classes)]
    shards: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (dev, n), ss in zip(samples.items(), dev_seeds, strict=True):
        r = np.random.default_rng(ss)
        n = min(n, cfg.max_samples_per_device)
        want = r.multinomial(n, r.dirichlet(np.full(classes, d.alpha)))
        idx: list[int] = []
        for c, k in enumerate(want):
            pool = pools[c] if pools[c] else list(rest)
            idx += list(r.choice(pool, size=int(k), replace=len(pool) < k))
        if not idx:
            idx = [int(r.choice(rest))]
        sel = np.array(idx)[r.permutation(len(idx))]
        shards[dev] = (tokens[sel], labels[sel])
    return Task(shards, tokens[test], labels[test], classes, cfg.vocab, tokens.shape[1])
