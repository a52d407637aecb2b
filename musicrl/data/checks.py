"""Are the labels true to the audio? Independent checks on rendered clips.

* Tempo: librosa's onset-envelope tempo estimate of the audio against the
  labelled bpm, on clips with drums. A hit is within 4 %; an estimate within
  4 % of ½×, 2×, ⅓× or 3× the label is an octave error, counted apart.
* Pitch content: the chroma of the audio (CQT chroma, 25 frames/s) against
  the pitch-class roll of the stored note events, frame by frame (cosine), with
  the same comparison against another clip's events as the baseline.

``musicrl data check`` prints both on a sample of a corpus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musicrl.audio import load_audio
from musicrl.data.events import load_events, pitch_class_roll
from musicrl.data.manifest import Clip

__all__ = ["TempoCheck", "ChromaCheck", "check_tempo", "check_chroma", "estimate_tempo"]

_SR = 16_000
_CHROMA_FPS = 25.0


def estimate_tempo(y: np.ndarray, sr: int = _SR) -> float:
    """Global tempo (bpm) from the onset-strength envelope (librosa defaults)."""
    import librosa

    env = librosa.onset.onset_strength(y=y, sr=sr)
    return float(librosa.feature.tempo(onset_envelope=env, sr=sr)[0])


@dataclasses.dataclass
class TempoCheck:
    n: int
    within_4pct: float       # fraction of clips whose estimate is within 4 % of the label
    octave_errors: float     # fraction off by a factor ½, 2, ⅓ or 3 (within 4 % of that)
    other_errors: float
    median_rel_error: float  # |est − label| / label, among the hits

    def row(self) -> str:
        return (f"tempo (beat tracking) on {self.n} clips with drums: "
                f"{self.within_4pct:.1%} within 4 %, {self.octave_errors:.1%} octave errors, "
                f"{self.other_errors:.1%} other")


def check_tempo(root: str | Path, clips: Sequence[Clip]) -> TempoCheck:
    clips = [c for c in clips if c.labels.get("drums") and c.labels.get("bpm")]
    hits, octaves, rel = 0, 0, []
    for c in clips:
        est = estimate_tempo(load_audio(Path(root) / c.path))
        bpm = float(c.labels["bpm"])
        if abs(est - bpm) <= 0.04 * bpm:
            hits += 1
            rel.append(abs(est - bpm) / bpm)
        elif any(abs(est - bpm * f) <= 0.04 * bpm * f for f in (0.5, 2.0, 1 / 3, 3.0)):
            octaves += 1
    n = max(len(clips), 1)
    return TempoCheck(len(clips), hits / n, octaves / n, (len(clips) - hits - octaves) / n,
                      float(np.median(rel)) if rel else float("nan"))


@dataclasses.dataclass
class ChromaCheck:
    n: int
    matched: float           # mean frame cosine, audio chroma vs its own note events
    mismatched: float        # the same against another clip's note events
    frac_matched_better: float

    def row(self) -> str:
        return (f"chroma vs note events on {self.n} clips: cosine {self.matched:.3f} "
                f"(another clip's events: {self.mismatched:.3f}); own events closer in "
                f"{self.frac_matched_better:.1%} of clips")


def _frame_cos(a: np.ndarray, e: np.ndarray) -> float:
    keep = e.sum(0) > 0
    a, e = a[:, keep], e[:, keep]
    if a.shape[1] == 0:
        return 0.0
    num = (a * e).sum(0)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(e, axis=0) + 1e-9
    return float(np.mean(num / den))


def check_chroma(root: str | Path, clips: Sequence[Clip]) -> ChromaCheck:
    import librosa

    clips = [c for c in clips if c.notes_path]
    audio, events = [], []
    for c in clips:
        y = load_audio(Path(root) / c.path)
        ch = librosa.feature.chroma_cqt(y=y, sr=_SR, hop_length=int(_SR / _CHROMA_FPS))
        roll = pitch_class_roll(load_events(Path(root) / c.notes_path), _CHROMA_FPS,
                                ch.shape[1], weighted=True).T
        audio.append(ch)
        events.append(roll)
    n = len(clips)
    if n < 2:
        raise ValueError("the chroma check needs at least two clips with note events")
    matched = np.array([_frame_cos(audio[i], events[i]) for i in range(n)])
    other = np.array([_frame_cos(audio[i], events[(i + n // 2) % n]) for i in range(n)])
    return ChromaCheck(n, float(matched.mean()), float(other.mean()),
                       float((matched > other).mean()))
