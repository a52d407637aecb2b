"""SoundFont synthesis of note events to 16 kHz mono audio.

Renderer choice: ``midirenderer`` (a compiled wheel with no dependencies)
renders MIDI bytes through a SoundFont to 48 kHz stereo WAV bytes in
milliseconds. The alternatives fail on a fresh machine: ``tinysoundfont``
declares a ``pyaudio`` dependency that needs PortAudio headers to build, and
``pyfluidsynth`` needs the system libfluidsynth. The SoundFont is the General
MIDI ``TimGM6mb.sf2`` that ``pretty_midi`` ships, so nothing is downloaded.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

from musicrl.audio import loudness_normalize, resample, to_mono

__all__ = ["soundfont_path", "render_midi", "render_clip"]


def soundfont_path() -> Path:
    import pretty_midi

    p = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not p.exists():
        raise FileNotFoundError(f"the General MIDI SoundFont that pretty_midi ships is missing: {p}")
    return p


@functools.lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    return soundfont_path().read_bytes()


def render_midi(midi: bytes, sr: int = 16_000) -> np.ndarray:
    """MIDI bytes → mono float32 at ``sr`` (not normalized)."""
    import midirenderer
    import soundfile as sf

    wav = midirenderer.render_wave_from(_soundfont_bytes(), midi)
    x, sr_in = sf.read(io.BytesIO(bytes(wav)), dtype="float32", always_2d=True)
    return resample(to_mono(x), sr_in, sr)


def render_clip(midi: bytes, seconds: float, sr: int = 16_000,
                target_lufs: float = -20.0) -> tuple[np.ndarray, float]:
    """Renders, cuts/pads to exactly ``seconds`` and loudness-normalizes.

    Returns:
      (audio [round(seconds*sr)] float32, loudness of the raw render in LUFS).
    """
    x = render_midi(midi, sr)
    n = int(round(seconds * sr))
    x = x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))
    # A short fade-out avoids a click where the clip is cut.
    fade = min(n, int(0.01 * sr))
    x[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return loudness_normalize(x, sr, target_lufs)
