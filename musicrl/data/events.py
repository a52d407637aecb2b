"""Note events: what was actually rendered into a clip, as ground truth.

Each bundled clip stores a structured NumPy array (``.npy``, no pickle) with
one row per note, times in seconds from the start of the clip. Later metrics
(chroma agreement, semantic-token probes, transcription-style checks) read it
through :func:`load_events` and :func:`pitch_class_roll`.
"""

from __future__ import annotations

import io
import os

import numpy as np

__all__ = ["EVENT_DTYPE", "ROLES", "make_events", "save_events_bytes", "load_events",
           "pitch_class_roll"]

EVENT_DTYPE = np.dtype([
    ("pitch", np.int16),      # MIDI note number (GM drum key when is_drum)
    ("onset", np.float32),    # seconds from clip start
    ("offset", np.float32),   # seconds from clip start (note-off)
    ("velocity", np.int16),   # 1..127
    ("program", np.int16),    # General MIDI program 0..127 (0 for drums)
    ("is_drum", np.bool_),    # channel 10
    ("role", np.int8),        # index into ROLES
])
ROLES = ("melody", "accompaniment", "bass", "drums")


def make_events(rows: list[tuple]) -> np.ndarray:
    """Rows (pitch, onset, offset, velocity, program, is_drum, role) → sorted array."""
    arr = np.array([tuple(r) for r in rows], dtype=EVENT_DTYPE)
    if arr.size:
        arr = arr[np.lexsort((arr["pitch"], arr["onset"]))]
    return arr


def save_events_bytes(events: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, events.astype(EVENT_DTYPE), allow_pickle=False)
    return buf.getvalue()


def load_events(path: str | os.PathLike) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    if arr.dtype != EVENT_DTYPE:
        raise ValueError(f"{path}: not a note-event file (dtype {arr.dtype})")
    return arr


def pitch_class_roll(events: np.ndarray, frame_rate: float, n_frames: int,
                     include_drums: bool = False, weighted: bool = False) -> np.ndarray:
    """Frame-level pitch-class activity [n_frames, 12] (float32).

    Args:
      events: an EVENT_DTYPE array.
      frame_rate: frames per second (e.g. 25 for semantic tokens).
      n_frames: number of frames.
      include_drums: drum hits have no pitch class; excluded by default.
      weighted: accumulate velocity instead of 0/1 activity.
    """
    roll = np.zeros((n_frames, 12), np.float32)
    for e in events:
        if e["is_drum"] and not include_drums:
            continue
        a = int(np.floor(e["onset"] * frame_rate))
        b = int(np.ceil(e["offset"] * frame_rate))
        a, b = max(a, 0), min(max(b, a + 1), n_frames)
        if a >= n_frames:
            continue
        pc = int(e["pitch"]) % 12
        if weighted:
            roll[a:b, pc] += e["velocity"] / 127.0
        else:
            roll[a:b, pc] = 1.0
    return roll
