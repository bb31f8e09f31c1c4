"""Local search: start from the best priority rule and improve the order by small moves.

Only the **critical path** decides the makespan: the chain of tasks, server-busy stretches
("blocks") and lags that ends at the job finishing last. A move that leaves every block of that
path unchanged cannot shorten it, so the neighbourhood is built from the blocks (as in the
block neighbourhoods of Grabowski et al. for ``1 | r_j, q_j | C_max``): take a task of a block
and insert it just before the block's first task or just after its last, or swap two adjacent
tasks of the block. For chains a "task" is an occurrence of a job id in the order; moving it
past another occurrence of the same job just relabels which is the k-th, so every move keeps
the order valid.

The descent is first-improvement with a lexicographic objective: the makespan, then the sum of
job completion times to break ties (moving sideways along plateaus of equal makespan, while
guaranteeing termination). When no move improves, the search perturbs the best order with a
few random adjacent swaps drawn from the given generator and descends again (iterated local
search), until its budget of evaluations is spent or the makespan reaches the lower bound of
``bounds.py`` (then the order is optimal and searching on is pointless). Everything is
deterministic for a given seed; ``time_limit_s`` (off by default) is a safety net that makes
the result depend on the clock.
"""

from __future__ import annotations

import time

import numpy as np

from sfsim.schedulers.base import Instance, Scheduler
from sfsim.schedulers.bounds import lower_bound
from sfsim.schedulers.evaluate import makespan
from sfsim.schedulers.registry import register, scheduler_class

Score = tuple[float, float]


class _Chains:
    """The instance as integer-indexed lists, with a fast evaluator and path extraction."""

    def __init__(self, instance: Instance) -> None:
        self.ids = [job.id for job in instance.jobs]
        self.index = {job_id: j for j, job_id in enumerate(self.ids)}
        self.release = [job.release_s for job in instance.jobs]
        self.work = [job.server_s for job in instance.jobs]
        self.lag = [job.lag_s for job in instance.jobs]
        self.tail = [job.tail_s for job in instance.jobs]
        self.last = [job.k - 1 for job in instance.jobs]

    def score(self, seq: list[int]) -> Score:
        """(makespan, sum of job completions) of a sequence of job indices."""
        ready = list(self.release)
        nxt = [0] * len(ready)
        t = cmax = total = 0.0
        work, lag, last, tail = self.work, self.lag, self.last, self.tail
        for j in seq:
            k = nxt[j]
            if ready[j] > t:
                t = ready[j]
            t += work[j][k]
            if k == last[j]:
                done = t + tail[j]
                total += done
                if done > cmax:
                    cmax = done
            else:
                ready[j] = t + lag[j][k]
            nxt[j] = k + 1
        return cmax, total

    def blocks(self, seq: list[int]) -> list[tuple[int, int]]:
        """Position ranges (first, last) of the server-busy blocks on one critical path."""
        ready = list(self.release)
        nxt = [0] * len(ready)
        starts: list[float] = []
        ends: list[float] = []
        prev_pos: list[int] = []  # position of the same job's previous task, -1 for the first
        last_pos = [-1] * len(ready)
        t = 0.0
        end_pos, cmax = -1, -1.0
        for pos, j in enumerate(seq):
            k = nxt[j]
            start = ready[j] if ready[j] > t else t
            t = start + self.work[j][k]
            starts.append(start)
            ends.append(t)
            prev_pos.append(last_pos[j])
            last_pos[j] = pos
            if k == self.last[j]:
                if t + self.tail[j] >= cmax:
                    end_pos, cmax = pos, t + self.tail[j]
            else:
                ready[j] = t + self.lag[j][k]
            nxt[j] = k + 1
        out = []
        pos = end_pos
        while pos >= 0:
            first = pos
            while first > 0 and starts[first] == ends[first - 1]:
                first -= 1  # the server was busy right up to this task's start
            out.append((first, pos))
            pos = prev_pos[first]  # the block began when its first task became ready
        return out


def _moves(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(from, to) insertion moves: block tasks to either end of their block, adjacent swaps."""
    moves: list[tuple[int, int]] = []
    for u, v in blocks:
        if v == u:
            continue
        for x in range(u + 1, v + 1):
            moves.append((x, u))
        for x in range(u, v):
            moves.append((x, v))
        moves.extend((x, x + 1) for x in range(u + 1, v - 1))
    return list(dict.fromkeys(moves))


def _apply(seq: list[int], move: tuple[int, int]) -> list[int]:
    src, dst = move
    out = list(seq)
    out.insert(dst, out.pop(src))
    return out


@register
class LocalSearch(Scheduler):
    name = "local_search"
    description = "Best priority rule, then critical-block insertion/swap moves (iterated)."

    def __init__(
        self,
        max_evals: int = 4000,
        time_limit_s: float | None = None,
        starts: tuple[str, ...] = ("schrage", "longest_tail", "fifo"),
        kicks: int = 3,
    ) -> None:
        self.max_evals = max_evals
        self.time_limit_s = time_limit_s
        self.starts = starts
        self.kicks = kicks

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        if instance.n_tasks <= 1:
            return [job.id for job in instance.jobs for _ in job.server_s]
        data = _Chains(instance)
        candidates = [scheduler_class(name)().order(instance, rng) for name in self.starts]
        first = min(candidates, key=lambda o: makespan(instance, o))
        best = [data.index[job_id] for job_id in first]
        best_score = data.score(best)
        deadline = None if self.time_limit_s is None else time.perf_counter() + self.time_limit_s
        target = lower_bound(instance) * (1 + 1e-12)  # reaching the bound proves optimality
        evals = 0
        current, current_score = best, best_score
        while evals < self.max_evals and min(best_score, current_score)[0] > target:
            improved = False
            for move in _moves(data.blocks(current)):
                if evals >= self.max_evals or (deadline and time.perf_counter() > deadline):
                    break
                trial = _apply(current, move)
                score = data.score(trial)
                evals += 1
                if score < current_score:
                    current, current_score, improved = trial, score, True
                    break
            if deadline and time.perf_counter() > deadline:
                break
            if improved:
                continue
            if current_score < best_score:
                best, best_score = current, current_score
            current = self._kick(best, rng)  # local optimum: perturb the best and go on
            current_score = data.score(current)
            evals += 1
        if current_score < best_score:
            best = current
        return [data.ids[j] for j in best]

    def _kick(self, seq: list[int], rng: np.random.Generator) -> list[int]:
        out = list(seq)
        for x in rng.integers(0, len(out) - 1, size=self.kicks):
            out[x], out[x + 1] = out[x + 1], out[x]
        return out
