"""Human quality ratings (1–5) as a JSONL file: the format, its validation, loading.

One JSON object per line::

    {"audio": "clips/0001.wav", "rating": 4, "rater": "ana", "prompt": "a calm piano waltz"}

* ``audio`` (required): a WAV/FLAC/OGG file; a relative path is relative to the
  folder of the JSONL file. Any sample rate and channel count: it is mixed to
  mono and resampled to 16 kHz. At least 0.25 s long.
* ``rating`` (required): a number from 1 (bad) to 5 (excellent); halves allowed.
* ``rater``, ``prompt`` (optional): strings, kept for reports (a prompt is not
  used by the reference-free quality model).

Blank lines and lines starting with ``#`` are skipped. Any other malformed row
refuses the whole file with ``<file>:<line>: <reason>`` so that no rating is
silently dropped. This is the format the app's rating collector writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from musicrl.errors import MusicrlError

__all__ = ["Rating", "RatingsError", "load_ratings", "read_rating_audio"]

SAMPLE_RATE = 16_000
MIN_SECONDS = 0.25
_KEYS = {"audio", "rating", "rater", "prompt"}


class RatingsError(MusicrlError, ValueError):
    """A ratings file was refused; the message names the file, the line and the reason."""


@dataclasses.dataclass(frozen=True)
class Rating:
    """One validated row: an existing audio file and its 1–5 rating."""

    audio: Path
    rating: float
    rater: str
    prompt: str
    line: int


def _fail(path: Path, line: int, reason: str) -> RatingsError:
    return RatingsError(f"{path}:{line}: {reason}")


def load_ratings(path: str | Path, check_audio: bool = True) -> list[Rating]:
    """Reads and validates a ratings JSONL file (module docstring).

    Args:
      path: the JSONL file.
      check_audio: also open every audio file (catches unreadable or too short files).

    Raises:
      RatingsError: the file is missing or empty, or a row is malformed (with its line).
    """
    path = Path(path)
    if not path.is_file():
        raise RatingsError(f"{path}: no such ratings file (one JSON object per line: "
                           '{"audio": "x.wav", "rating": 1..5, "rater": "...", "prompt": "..."})')
    rows: list[Rating] = []
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise _fail(path, i, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise _fail(path, i, f"expected a JSON object, got {type(row).__name__}")
        unknown = set(row) - _KEYS
        if unknown:
            raise _fail(path, i, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        for key in ("audio", "rating"):
            if key not in row:
                raise _fail(path, i, f"missing required key {key!r}")
        audio, rating = row["audio"], row["rating"]
        if not isinstance(audio, str) or not audio.strip():
            raise _fail(path, i, "'audio' must be a non-empty path string")
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) \
                or not math.isfinite(rating) or not 1 <= rating <= 5:
            raise _fail(path, i, f"'rating' must be a number from 1 to 5, got {rating!r}")
        for key in ("rater", "prompt"):
            if key in row and not isinstance(row[key], str):
                raise _fail(path, i, f"{key!r} must be a string, got {type(row[key]).__name__}")
        file = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        if not file.is_file():
            raise _fail(path, i, f"audio file {file} does not exist (relative paths are "
                                 f"relative to {path.parent})")
        r = Rating(file, float(rating), row.get("rater", ""), row.get("prompt", ""), i)
        if check_audio:
            try:
                read_rating_audio(r)
            except RatingsError as e:
                raise _fail(path, i, str(e)) from None
        rows.append(r)
    if not rows:
        raise RatingsError(f"{path}: no ratings in the file")
    return rows


def read_rating_audio(r: Rating) -> np.ndarray:
    """The row's audio as mono float32 at 16 kHz."""
    import soundfile as sf

    try:
        x, sr = sf.read(str(r.audio), dtype="float32", always_2d=True)
    except Exception as e:
        raise RatingsError(f"cannot read audio {r.audio} ({e})") from None
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        import librosa

        x = librosa.resample(x, orig_sr=sr, target_sr=SAMPLE_RATE).astype(np.float32)
    if len(x) < MIN_SECONDS * SAMPLE_RATE:
        raise RatingsError(f"audio {r.audio} is {len(x) / SAMPLE_RATE:.2f} s long; "
                           f"at least {MIN_SECONDS} s is needed")
    return x
