"""Codebook interleaving patterns: how ``K`` codec levels per frame become a token
sequence for an autoregressive model (audiocraft ``modules/codebooks_patterns.py``).

Dimension legend: ``b`` batch, ``t`` codec frames, ``q`` codec levels (K),
``s`` decoding steps, ``n`` tokens emitted per step (one per output head).

Every pattern is described by one static *layout*: for each sequence slot
``(step, slot)``, which code ``(frame, level)`` it holds, or a pad. ``build``
gathers codes into that layout; ``revert`` gathers them back. Sequences are
always rank 3, ``[b, s, n]``:

* :class:`DelayPattern` (MusicGen, Copet et al. 2023 §2.2): level q is delayed
  by q steps; each step emits K tokens through K heads (n = K),
  s = t + K − 1. Slots before a level starts or after it ends hold ``pad_id``.
* :class:`FlattenPattern` (MusicLM / SoundStorm "coarse" order): frame-major,
  level-minor, one token per step (n = 1), s = t·K.

The sampler asks :meth:`Pattern.layout` which slots of a step are real codes
(sample them) and which are pads (force ``pad_id``), and which codec level each
slot holds (pick the head / vocabulary offset).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["Layout", "Pattern", "DelayPattern", "FlattenPattern", "make_pattern"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """The static layout of a pattern for ``t`` frames; each array is ``[s, n]``.

    Attributes:
      frame: the codec frame held by each slot, -1 for a pad.
      level: the codec level of each slot (also defined for pads).
      valid: ``frame >= 0``: True where the slot holds a real code.
    """

    frame: np.ndarray
    level: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.frame >= 0


def _xp(x: Any):
    return np if isinstance(x, np.ndarray) else jnp


@dataclasses.dataclass(frozen=True)
class Pattern(abc.ABC):
    """A codebook pattern over ``num_levels`` codec levels.

    Attributes:
      num_levels: K, the codec levels per frame.
      pad_id: the token written into slots that hold no code (usually the codebook
        size, i.e. one extra embedding row).
    """

    num_levels: int
    pad_id: int

    def __post_init__(self):
        if self.num_levels < 1:
            raise ValueError(f"num_levels={self.num_levels}: need at least one codec level")

    @property
    @abc.abstractmethod
    def tokens_per_step(self) -> int:
        """n, the tokens emitted per decoding step (= output heads)."""

    @abc.abstractmethod
    def steps_for(self, t: int) -> int:
        """Decoding steps s for ``t`` frames."""

    @abc.abstractmethod
    def frames_for(self, steps: int) -> int:
        """Frames t held by a complete sequence of ``steps`` steps."""

    @abc.abstractmethod
    def layout(self, t: int) -> Layout:
        """Which code each slot of a ``t``-frame sequence holds."""

    @abc.abstractmethod
    def positions(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of :meth:`layout`: ``(step, slot)``, each ``[t, K]``, of every code."""

    def build(self, codes_btq: Any) -> Any:
        """Codes ``[b, t, K]`` → sequence ``[b, s, n]`` (pads where no code)."""
        b, t, q = codes_btq.shape
        if q != self.num_levels:
            raise ValueError(f"codes have {q} levels, the pattern expects {self.num_levels}")
        xp = _xp(codes_btq)
        lay = self.layout(t)
        gathered = codes_btq[:, np.maximum(lay.frame, 0), lay.level]
        return xp.where(lay.valid[None], gathered, xp.asarray(self.pad_id, codes_btq.dtype))

    def revert(self, seq_bsn: Any) -> Any:
        """A complete sequence ``[b, s, n]`` → codes ``[b, t, K]`` (inverse of :meth:`build`)."""
        b, s, n = seq_bsn.shape
        if n != self.tokens_per_step:
            raise ValueError(f"sequence has {n} tokens per step, the pattern emits "
                             f"{self.tokens_per_step}")
        t = self.frames_for(s)
        if self.steps_for(t) != s:
            raise ValueError(f"{s} steps is not a complete sequence of this pattern")
        step, slot = self.positions(t)
        return seq_bsn[:, step, slot]


@dataclasses.dataclass(frozen=True)
class DelayPattern(Pattern):
    """MusicGen's delay pattern: ``seq[:, f + q, q] = codes[:, f, q]``."""

    @property
    def tokens_per_step(self) -> int:
        return self.num_levels

    def steps_for(self, t: int) -> int:
        return t + self.num_levels - 1

    def frames_for(self, steps: int) -> int:
        t = steps - self.num_levels + 1
        if t < 0:
            raise ValueError(f"{steps} steps is shorter than the delay of {self.num_levels} levels")
        return t

    def layout(self, t: int) -> Layout:
        s, k = self.steps_for(t), self.num_levels
        frame = np.arange(s)[:, None] - np.arange(k)[None, :]
        frame = np.where((frame >= 0) & (frame < t), frame, -1)
        return Layout(frame=frame, level=np.broadcast_to(np.arange(k), (s, k)).copy())

    def positions(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.num_levels
        step = np.arange(t)[:, None] + np.arange(k)[None, :]
        return step, np.broadcast_to(np.arange(k), (t, k)).copy()


@dataclasses.dataclass(frozen=True)
class FlattenPattern(Pattern):
    """MusicLM's flattened order: ``seq[:, f·K + q, 0] = codes[:, f, q]``."""

    @property
    def tokens_per_step(self) -> int:
        return 1

    def steps_for(self, t: int) -> int:
        return t * self.num_levels

    def frames_for(self, steps: int) -> int:
        return steps // self.num_levels

    def layout(self, t: int) -> Layout:
        s = np.arange(self.steps_for(t))[:, None]
        return Layout(frame=s // self.num_levels, level=s % self.num_levels)

    def positions(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.num_levels
        step = np.arange(t)[:, None] * k + np.arange(k)[None, :]
        return step, np.zeros((t, k), np.int64)


_PATTERNS = {"delay": DelayPattern, "flatten": FlattenPattern}


def make_pattern(name: str, num_levels: int, pad_id: int) -> Pattern:
    """The pattern called ``name`` (``"delay"`` or ``"flatten"``)."""
    if name not in _PATTERNS:
        raise ValueError(f"unknown token pattern {name!r}; choose one of {sorted(_PATTERNS)}")
    return _PATTERNS[name](num_levels=num_levels, pad_id=pad_id)
