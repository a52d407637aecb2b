"""Text adherence reward: the MuLan score (DESIGN §8, MusicRL §3.2).

``r(x, y) = cos(MuLan_text(x), MuLan_audio(y))``; a clip longer than MuLan's
crop is scored on fixed windows whose embeddings are averaged
(:func:`musicrl.mulan.embed_audio_long`), so a 30 s clip is judged as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["MulanReward"]


class MulanReward:
    """``reward(prompts, audio [b, n] at 16 kHz) -> float32 [b]`` in [−1, 1]."""

    name = "mulan"

    def __init__(self, weights_dir: str | Path = "assets/small/mulan", batch: int = 16):
        from musicrl.mulan import load_mulan

        self.model, self.meta = load_mulan(weights_dir)
        self.batch = batch

    @property
    def sample_rate(self) -> int:
        return int(self.model.cfg.sample_rate)

    def embed_audio(self, audio_bn: np.ndarray) -> np.ndarray:
        from musicrl.mulan import embed_audio_long

        return embed_audio_long(self.model, np.asarray(audio_bn, np.float32), batch=self.batch)

    def embed_text(self, prompts: Sequence[str]) -> np.ndarray:
        from musicrl.mulan import embed_prompts_batched

        return embed_prompts_batched(self.model, list(prompts))

    def __call__(self, prompts: Sequence[str], audio_bn: np.ndarray) -> np.ndarray:
        audio_bn = np.asarray(audio_bn, np.float32)
        if len(prompts) != len(audio_bn):
            raise ValueError(f"{len(prompts)} prompts for {len(audio_bn)} clips")
        return np.sum(self.embed_text(prompts) * self.embed_audio(audio_bn),
                      axis=1).astype(np.float32)
