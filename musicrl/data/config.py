"""Configuration of the bundled corpus (``musicrl data build``) and the loader."""

from __future__ import annotations

import dataclasses

from musicrl.config import opt, register_presets

__all__ = ["DataConfig", "LoaderConfig", "STYLE_NAMES"]

# Kept here (not in styles.py) so that config validation does not import music21.
STYLE_NAMES = ("chorale", "renaissance", "medieval", "celtic", "folk", "madrigal", "classical")


def _styles_ok(v: tuple[str, ...]) -> str | None:
    if not v:
        return "give at least one style"
    bad = [s for s in v if s not in STYLE_NAMES]
    if bad:
        return f"unknown style(s) {bad}; choose from {list(STYLE_NAMES)}"
    if len(set(v)) != len(v):
        return "a style is listed twice"
    return None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What ``musicrl data build`` renders and where it puts it."""

    root: str = opt("data/small", "folder of the corpus (audio, notes, manifest)")
    seed: int = opt(0, "seed for piece selection, splits and arrangements", min=0)
    styles: tuple[str, ...] = opt(STYLE_NAMES, "styles to include", check=_styles_ok)
    pieces_per_style: int = opt(60, "pieces taken per style (fewer if the corpus has fewer)", min=1)
    clips_per_piece: int = opt(6, "clips rendered per piece, each its own arrangement", min=1, max=64)
    clip_seconds: float = opt(10.0, "clip length in seconds", min=1.0, max=60.0)
    sample_rate: int = opt(16_000, "output sample rate", choices=(16_000,))
    bpm_min: int = opt(60, "slowest tempo (beats per minute)", min=40, max=240)
    bpm_max: int = opt(180, "fastest tempo (beats per minute)", min=40, max=240)
    drum_fraction: float = opt(0.45, "fraction of clips with a drum groove", min=0.0, max=1.0)
    valid_fraction: float = opt(0.1, "fraction of pieces in the valid split", min=0.0, max=0.5)
    test_fraction: float = opt(0.1, "fraction of pieces in the test split", min=0.0, max=0.5)
    captions_per_clip: int = opt(5, "caption phrasings per clip", min=1, max=20)
    loudness_lufs: float = opt(-20.0, "target integrated loudness (LUFS)", min=-40.0, max=-6.0)
    max_piece_quarters: int = opt(
        2000, "skip scores longer than this many quarter notes (parsing cost)", min=16)
    workers: int = opt(0, "worker processes (0 = one per CPU core)", min=0, max=256)

    def check(self) -> str | None:
        if self.bpm_min > self.bpm_max:
            return f"bpm_min={self.bpm_min} > bpm_max={self.bpm_max}"
        if self.valid_fraction + self.test_fraction >= 0.9:
            return "valid_fraction + test_fraction must leave pieces for training (< 0.9)"
        return None


register_presets(DataConfig, {
    # Seconds to build: three quick-to-parse styles, a few short clips each.
    "tiny": DataConfig(root="data/tiny", styles=("chorale", "celtic", "folk"),
                       pieces_per_style=3, clips_per_piece=2, clip_seconds=4.0,
                       valid_fraction=0.34, test_fraction=0.34, captions_per_clip=3),
    # The default bundle: ≥ 2,000 clips, ≥ 5.5 h, ≥ 300 pieces, 7 styles.
    "small": DataConfig(),
    # Everything the corpus offers within reason (GPU-sized training).
    "base": DataConfig(root="data/base", pieces_per_style=400, clips_per_piece=8),
})


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """Random-crop training loader over a data root."""

    root: str = opt("data/small", "data root holding manifest.jsonl")
    split: str = opt("train", "which split to read", choices=("train", "valid", "test"))
    batch_size: int = opt(8, "clips per batch", min=1)
    crop_seconds: float = opt(4.0, "length of the random crop", min=0.1, max=60.0)
    seed: int = opt(0, "shuffling and cropping seed", min=0)
    num_epochs: int = opt(0, "epochs to run (0 = forever)", min=0)
    prefetch: int = opt(4, "batches prepared ahead in background threads", min=0, max=64)
    num_threads: int = opt(2, "reader threads", min=1, max=64)
    drop_remainder: bool = opt(True, "drop the last incomplete batch of an epoch")


register_presets(LoaderConfig, {
    "tiny": LoaderConfig(root="data/tiny", batch_size=2, crop_seconds=1.0),
    "small": LoaderConfig(),
    "base": LoaderConfig(root="data/base", batch_size=32, crop_seconds=10.0),
})
