"""Several stage-S rewards at once: the product of their probabilities.

The tempo reward (:mod:`rewards.tempo`) and the mode reward (:mod:`rewards.mode`) each give
a probability that a semantic token stream has the attribute its prompt names — tempo
within 8 % of the stated BPM, the named mode — or NaN when the prompt names none. Best-of-N
selection by both wants the candidate most likely to have *both*; treating the two
readings as independent, that is the product of the probabilities. A reward that cannot
score a row leaves the product (its factor is 1); a row none of them can score is NaN, and
keeps its first candidate (:meth:`musicrl.pipeline.Pipeline.generate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["ProductScore"]

Score = Callable[[Sequence[str], np.ndarray], np.ndarray]


class ProductScore:
    """``score(prompts, tokens) -> float[b]``: the product of ``rewards``' scores, each
    ``reward(prompts, tokens) -> float[b]`` in [0, 1] with NaN for rows it cannot score."""

    def __init__(self, rewards: Sequence[Score]):
        if not rewards:
            raise ValueError("ProductScore needs at least one reward")
        self.rewards = list(rewards)

    def __call__(self, prompts: Sequence[str], tokens_bs: np.ndarray) -> np.ndarray:
        s = np.stack([np.asarray(r(prompts, tokens_bs), np.float64) for r in self.rewards])
        none = np.all(np.isnan(s), axis=0)
        return np.where(none, np.nan, np.nanprod(s, axis=0)).astype(np.float32)
