"""Localisation inside a failing block by adaptive group testing.

Each sub-range still under suspicion is split in two and each half is differenced along a
fresh random +/-1 direction restricted to it; the halves that disagree beyond round-off stay
under suspicion. Fresh signs at every level, and a parent retried when neither half shows
(a pair of equal and opposite errors cancels along a sign vector half the time). When more
than a few sub-ranges disagree at once the error is block-wide: bisection stops and a
stratified sample of the suspects is differenced instead (in a matrix whose sample is
mostly right, the screen then looks for a wrong column within one row). What is left ends as
components, differenced one by one like in a full check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..diagnosis import Noise
from ._base import DirectionBatch, PlanContext, significant

LEAF = 16  # a sub-range this small is differenced component by component
MAX_SUSPECTS = 8  # more disagreeing sub-ranges than this at once: a block-wide error
RETRIES = 2  # fresh signs for a parent neither of whose halves disagreed
WIDE_SAMPLE = 12  # components differenced in a block-wide error
UNRESOLVED_SAMPLE = 64  # components differenced where directions could not decide
ALL_BELOW = 1024  # unresolved ranges no larger than this in all are differenced whole


@dataclass
class Search:
    """The state of the search in one block."""

    block: int
    suspects: list[tuple[int, int]]
    leaves: list[tuple[int, int]] = field(default_factory=list)
    unresolved: list[tuple[int, int]] = field(default_factory=list)
    retries: dict[tuple[int, int], int] = field(default_factory=dict)
    wide: list[tuple[int, int]] = field(default_factory=list)
    directions: int = 0
    levels: int = 0

    def components(self, rng: np.random.Generator) -> np.ndarray:
        """The flat indices to difference one by one, sorted."""
        parts = [np.arange(lo, hi, dtype=np.int64) for lo, hi in self.leaves]
        parts += [spread(self.unresolved, UNRESOLVED_SAMPLE, rng)]
        parts += [spread(self.wide, WIDE_SAMPLE, rng, whole_below=WIDE_SAMPLE)]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    @property
    def finding(self) -> str:
        if self.wide:
            return f"block-wide error (after {self.levels} levels)"
        if self.leaves and not self.unresolved:
            return "wrong entries located"
        if self.leaves:
            return "wrong entries located, some sub-ranges unresolved"
        return "not localised (sampled)"


def localise(
    context: PlanContext, blocks: dict[int, tuple[int, int]], noise: Noise, rtol: float,
    step: float, rng: np.random.Generator,
) -> dict[int, Search]:
    """Search every block of ``blocks`` (block number to its flat range) at once, one level
    per round of directional differences spread over the threads."""
    searches = {k: Search(k, [bounds]) for k, bounds in blocks.items()}
    while any(search.suspects for search in searches.values()):
        batch = context.batch(rng)
        for search in searches.values():
            _split(search, batch, step)
        if not batch.size:
            break
        out = context.directions(batch.freeze())
        disagree = significant(out, noise, rtol)
        _advance(searches, batch, disagree)
    return searches


def _split(search: Search, batch: DirectionBatch, step: float) -> None:
    """Queue the two halves of every suspect larger than a leaf; keep the small ones."""
    parents = []
    for lo, hi in search.suspects:
        if hi - lo <= LEAF:
            search.leaves.append((lo, hi))
            continue
        middle = (lo + hi) // 2
        for child in ((lo, middle), (middle, hi)):
            batch.add(child[0], child[1], step, False, (search.block, (lo, hi), child))
        search.directions += 2
        parents.append((lo, hi))
    search.suspects = parents


def _advance(searches: dict[int, Search], batch: DirectionBatch, disagree: np.ndarray) -> None:
    """The next suspects of each search, from which halves disagreed."""
    shown: dict[tuple[int, tuple[int, int]], list[tuple[int, int]]] = {}
    for owner, flagged in zip(batch.owners, disagree.tolist()):
        block, parent, child = owner
        children = shown.setdefault((block, parent), [])
        if flagged:
            children.append(child)
    for search in searches.values():
        next_suspects: list[tuple[int, int]] = []
        for parent in search.suspects:
            children = shown.get((search.block, parent), [])
            if children:
                next_suspects.extend(children)
                continue
            tries = search.retries.get(parent, 0) + 1
            search.retries[parent] = tries
            (next_suspects if tries <= RETRIES else search.unresolved).append(parent)
        search.levels += 1
        every_half = len(next_suspects) == 2 * len(search.suspects)
        if len(next_suspects) > MAX_SUSPECTS or (every_half and len(next_suspects) >= 4):
            search.wide, next_suspects = next_suspects, []
        search.suspects = next_suspects


def spread(
    ranges: list[tuple[int, int]], count: int, rng: np.random.Generator,
    whole_below: int = ALL_BELOW,
) -> np.ndarray:
    """About ``count`` distinct indices spread over ``ranges`` in proportion to their sizes
    (at least one from each), seeded; all of them when there are ``whole_below`` or fewer."""
    total = sum(hi - lo for lo, hi in ranges)
    if not total:
        return np.empty(0, np.int64)
    if total <= whole_below:
        return np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in ranges])
    picked = []
    for lo, hi in ranges:
        size = hi - lo
        take = min(size, max(1, round(count * size / total)))
        picked.append(rng.choice(size, take, replace=False).astype(np.int64) + lo)
    return np.concatenate(picked)
