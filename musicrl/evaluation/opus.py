"""Opus as the reference codec: a round trip through ffmpeg/libopus.

The codec evaluation compares the neural codec with Opus at a few bitrates on
the same clips. Each clip is written as a 16 kHz mono float WAV, encoded with
``ffmpeg -c:a libopus -b:a <k>k`` to Ogg/Opus, decoded by ffmpeg's own Opus
decoder and resampled back to 16 kHz (``-ar``), then trimmed or zero-padded to
the original length.

Alignment: Opus delays the signal by its pre-skip (312 samples at 48 kHz);
ffmpeg drops the pre-skip on decode, so the output starts with the input. This
was checked by cross-correlation on corpus clips (lag 0 at 12 kbps, ≤ 2 samples
at 6 kbps, where SILK's narrow band blurs the peak) and is tested
(``tests/musicrl/evaluation/test_codec_eval.py``); no lag is compensated here,
since SI-SDR must see exactly what a listener would get.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from musicrl.errors import MusicrlError

__all__ = ["OpusUnavailable", "check_opus", "opus_roundtrip", "xcorr_lag"]

_INSTALL = ("install it with `apt-get install -y ffmpeg` (Debian/Ubuntu) or `brew install "
            "ffmpeg` (macOS); it must be built with libopus (`ffmpeg -encoders | grep libopus`)")


class OpusUnavailable(MusicrlError, RuntimeError):
    """ffmpeg or its libopus encoder is missing; the message says how to install it."""


def check_opus() -> str:
    """Returns the path of an ffmpeg that has libopus; raises :class:`OpusUnavailable`."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise OpusUnavailable(f"the Opus baseline needs ffmpeg, which is not on PATH: {_INSTALL}")
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                         check=False).stdout
    if "libopus" not in out:
        raise OpusUnavailable(f"{exe} was built without the libopus encoder: {_INSTALL}")
    return exe


def opus_roundtrip(wav_n: np.ndarray, kbps: float, sr: int = 16_000,
                   ffmpeg: str | None = None) -> tuple[np.ndarray, float]:
    """Encodes one mono clip with libopus at ``kbps`` and decodes it back.

    Args:
      wav_n: float samples in [-1, 1] at ``sr``.
      kbps: target bitrate (libopus VBR, its default).
      ffmpeg: path of the ffmpeg binary (default: :func:`check_opus`).

    Returns:
      (decoded float32 [n] at ``sr``, same length as the input; the measured
      bitrate of the Ogg/Opus file in kbps, container overhead included).
    """
    import soundfile as sf

    exe = ffmpeg or check_opus()
    quiet = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    with tempfile.TemporaryDirectory(prefix="musicrl-opus-") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "enc.opus"), Path(tmp, "out.wav")
        sf.write(src, np.asarray(wav_n, np.float32), sr, subtype="FLOAT")
        _run([*quiet, "-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps:g}k", "-f", "ogg",
              str(enc)])
        _run([*quiet, "-i", str(enc), "-ar", str(sr), "-ac", "1", "-c:a", "pcm_f32le", str(dec)])
        y, _ = sf.read(dec, dtype="float32")
        size_bits = enc.stat().st_size * 8
    n = len(wav_n)
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    return y.astype(np.float32), size_bits / (n / sr) / 1000


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stderr.strip()}")


def xcorr_lag(x_n: np.ndarray, y_n: np.ndarray, max_lag: int = 500) -> int:
    """Lag (samples) at which ``y`` best matches ``x`` (positive: ``y`` is late)."""
    n = min(len(x_n), len(y_n))
    size = 1 << int(np.ceil(np.log2(2 * n)))
    c = np.fft.irfft(np.fft.rfft(y_n[:n], size) * np.conj(np.fft.rfft(x_n[:n], size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(np.r_[c[: max_lag + 1], c[-max_lag:]])])
