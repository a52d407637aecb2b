"""Graded degradations of real audio: the training signal of the quality predictor.

No human ratings exist yet (DESIGN §6.2), so the quality (MOS) predictor learns
from real clips and degraded versions of them whose *severity* is known. Six
families, each with graded settings; some settings are used for training and
others are held out for evaluation (a model that only memorised the training
settings would not rank the held-out ones):

============  ==============================  ====================  ==============
family        parameter                       train                 held out
============  ==============================  ====================  ==============
``noise``     SNR of white noise (dB)         30, 20, 10, 0         25, 15, 5
``clip``      clip level / peak               0.5, 0.25, 0.1, 0.03  0.35, 0.15, 0.05
``lowpass``   cutoff (Hz)                     6000, 3000, 1000, 300 4000, 2000, 500
``dropout``   fraction of time zeroed         0.05, 0.15, 0.3, 0.5  0.1, 0.2, 0.4
``codec``     RVQ levels kept (of 8)          8, 4, 1               6, 2
``tokens``    fraction of codes randomised    0.05, 0.2, 0.5        0.1, 0.35
============  ==============================  ====================  ==============

The cheap families (noise, clip, lowpass, dropout) can also be trained with
parameters drawn continuously from the train range, keeping a window free
around each held-out setting (:meth:`Family.sample_train`).

Each setting maps to a severity in [0, 1] (0 = the clean clip) by a monotone
function of its parameter (:attr:`Family.severity`); the severities of
different families are put on one scale by judgement (a q8 codec resynthesis
is near-clean, 0.15; a 300 Hz low-pass or 0 dB SNR is ~1), which is only used
for the regression target — rankings within a family do not depend on it.

``codec`` and ``tokens`` need the neural codec (``assets/small/codec``): the clip
is encoded with all levels and decoded with the first ``L`` levels, or with a
fraction of its codes (all levels) replaced by uniformly random codes.

Dimension legend: ``b`` batch, ``n`` samples, ``t`` codec frames, ``q`` codec levels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Family",
    "Setting",
    "FAMILIES",
    "CODEC_FAMILIES",
    "settings",
    "add_noise",
    "clip",
    "low_pass",
    "dropout",
    "corrupt_codes",
    "apply_cheap",
    "codec_versions",
    "snr_db",
    "DegradedSet",
    "build_degraded_set",
]

SAMPLE_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class Family:
    """One degradation family: its parameter's settings and their severities."""

    name: str
    parameter: str
    train: tuple[float, ...]
    test: tuple[float, ...]
    severity: Callable[[float], float]
    log_scale: bool = False   # parameter varies multiplicatively (levels, cutoffs)
    window: float = 0.0       # continuous training excludes test ± window (× for log_scale)

    def sample_train(self, rng: np.random.Generator) -> float:
        """A parameter drawn (log-)uniformly from the train range, away from held-out settings.

        Fixed training settings let a model key on their exact artifacts (a 3 kHz
        low-pass edge in one mel band) and miss a 4 kHz one; drawing the parameter
        from the whole train range makes it learn the family, while the window kept
        free around each held-out setting keeps those settings unseen.
        """
        lo, hi = min(self.train), max(self.train)
        f = math.log if self.log_scale else float
        for _ in range(1000):
            v = rng.uniform(f(lo), f(hi))
            v = math.exp(v) if self.log_scale else v
            if all(abs(f(v) - f(t)) > (math.log(1 + self.window) if self.log_scale
                                       else self.window) for t in self.test):
                return float(v)
        raise ValueError(f"no train value of {self.name} outside the held-out windows")


def _codec_severity(levels: float) -> float:
    # q8 is near-clean (0.15); each halving of the levels adds the same amount.
    return 0.15 + 0.5 * math.log2(8.0 / levels) / 3.0


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("noise", "snr_db", (30, 20, 10, 0), (25, 15, 5),
           lambda snr: float(np.clip((35.0 - snr) / 35.0, 0.0, 1.0)), window=2.0),
    Family("clip", "level", (0.5, 0.25, 0.1, 0.03), (0.35, 0.15, 0.05),
           lambda c: float(np.clip(math.log(1.0 / c) / math.log(1.0 / 0.025), 0.0, 1.0)),
           log_scale=True, window=0.15),
    Family("lowpass", "cutoff_hz", (6000, 3000, 1000, 300), (4000, 2000, 500),
           lambda fc: float(np.clip(math.log2(8000.0 / fc) / 5.0, 0.0, 1.0)),
           log_scale=True, window=0.2),
    Family("dropout", "fraction", (0.05, 0.15, 0.3, 0.5), (0.1, 0.2, 0.4),
           lambda p: float(np.clip(p / 0.5, 0.0, 1.0)), window=0.03),
    Family("codec", "levels", (8, 4, 1), (6, 2), _codec_severity),
    Family("tokens", "fraction", (0.05, 0.2, 0.5), (0.1, 0.35),
           lambda p: float(np.clip(0.15 + 0.85 * math.sqrt(p / 0.5), 0.0, 1.0))),
)}
CODEC_FAMILIES = ("codec", "tokens")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One degradation setting: ``family`` at parameter value ``value``."""

    family: str
    value: float

    @property
    def severity(self) -> float:
        return FAMILIES[self.family].severity(self.value)

    @property
    def key(self) -> str:
        return f"{self.family}@{self.value:g}"


def settings(split: str, families: Sequence[str] = tuple(FAMILIES)) -> list[Setting]:
    """The settings of ``families`` used for ``split`` ("train" or "test")."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown degradation families {sorted(unknown)}; "
                         f"choose from {list(FAMILIES)}")
    return [Setting(f, float(v)) for f in families for v in getattr(FAMILIES[f], split)]


# ----------------------------------------------------------------------------
# Cheap degradations (numpy, per example)
# ----------------------------------------------------------------------------

def snr_db(clean_n: np.ndarray, noisy_n: np.ndarray) -> float:
    """Signal-to-noise ratio of ``noisy`` against ``clean`` in dB."""
    noise = noisy_n.astype(np.float64) - clean_n
    return float(10 * np.log10(np.sum(clean_n.astype(np.float64) ** 2) / np.sum(noise ** 2)))


def add_noise(x_n: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """Adds white Gaussian noise scaled so that the SNR is exactly ``snr`` dB."""
    noise = rng.standard_normal(x_n.shape)
    p_sig = float(np.mean(x_n.astype(np.float64) ** 2))
    if p_sig <= 0:  # silence: noise at the level of a quiet (-40 dBFS) signal
        p_sig = 1e-4
    noise *= math.sqrt(p_sig / (np.mean(noise ** 2) * 10 ** (snr / 10)))
    return (x_n + noise).astype(np.float32)


def clip(x_n: np.ndarray, level: float) -> np.ndarray:
    """Hard-clips at ``level`` × the clip's peak (then the clipped signal is as loud as before)."""
    peak = float(np.max(np.abs(x_n)))
    if peak <= 0:
        return x_n.astype(np.float32)
    y = np.clip(x_n, -level * peak, level * peak)
    return (y * (np.sqrt(np.mean(x_n ** 2) / max(np.mean(y ** 2), 1e-12)))).astype(np.float32)


def low_pass(x_n: np.ndarray, cutoff_hz: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Removes everything above ``cutoff_hz`` (FFT brick wall with a 10 % cosine roll-off)."""
    spec = np.fft.rfft(x_n.astype(np.float64))
    f = np.fft.rfftfreq(x_n.shape[-1], 1.0 / sr)
    lo = 0.9 * cutoff_hz
    gain = np.clip((cutoff_hz - f) / (cutoff_hz - lo), 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spec * gain, n=x_n.shape[-1]).astype(np.float32)


def dropout(x_n: np.ndarray, fraction: float, rng: np.random.Generator,
            segment_s: tuple[float, float] = (0.05, 0.25), sr: int = SAMPLE_RATE) -> np.ndarray:
    """Zeroes random segments (50–250 ms) until ``fraction`` of the samples are silent."""
    n = x_n.shape[-1]
    mask = np.ones(n, bool)
    target = round(fraction * n)
    while n - mask.sum() < target:
        seg = min(int(rng.uniform(*segment_s) * sr), target - (n - int(mask.sum())))
        seg = max(seg, 1)
        start = int(rng.integers(0, max(n - seg, 0) + 1))
        mask[start:start + seg] = False
    return np.where(mask, x_n, 0.0).astype(np.float32)


def apply_cheap(x_n: np.ndarray, s: Setting, rng: np.random.Generator) -> np.ndarray:
    """Applies a setting of a family that needs no codec."""
    if s.family == "noise":
        return add_noise(x_n, s.value, rng)
    if s.family == "clip":
        return clip(x_n, s.value)
    if s.family == "lowpass":
        return low_pass(x_n, s.value)
    if s.family == "dropout":
        return dropout(x_n, s.value, rng)
    raise ValueError(f"{s.family!r} needs the codec: use codec_versions")


# ----------------------------------------------------------------------------
# Codec degradations (batched, jitted)
# ----------------------------------------------------------------------------

def corrupt_codes(codes_btq: np.ndarray, fraction: float, codebook_size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Replaces exactly ``round(fraction · t · q)`` codes of each example by random codes."""
    b, t, q = codes_btq.shape
    out = codes_btq.copy().reshape(b, t * q)
    k = round(fraction * t * q)
    for i in range(b):
        idx = rng.choice(t * q, size=k, replace=False)
        out[i, idx] = rng.integers(0, codebook_size, size=k)
    return out.reshape(b, t, q)


def _codec_fns(codec: Any):
    from flax import nnx

    @nnx.jit
    def encode(c, wav_bn):
        return c.encode(wav_bn)

    @nnx.jit
    def decode(c, codes_btq):
        return c.decode(codes_btq)

    return encode, decode


def codec_versions(codec: Any, wav_bn: np.ndarray, setting_list: Sequence[Setting],
                   rng: np.random.Generator, batch: int = 16) -> dict[str, np.ndarray]:
    """Codec resynthesis / token corruption of a batch of clips for each codec setting.

    Args:
      codec: a :class:`musicrl.codec.Codec`.
      wav_bn: clips [b, n], n a multiple of the codec hop.
      setting_list: settings of the families ``codec`` and ``tokens`` (others are ignored).
      rng: draws the corrupted positions and random codes.

    Returns:
      ``{setting.key: wav [b, n] float32}``.
    """
    import jax.numpy as jnp

    encode, decode = _codec_fns(codec)
    wanted = [s for s in setting_list if s.family in CODEC_FAMILIES]
    out = {s.key: np.zeros_like(wav_bn, dtype=np.float32) for s in wanted}
    n = wav_bn.shape[1]
    for i in range(0, len(wav_bn), batch):
        x = wav_bn[i:i + batch]
        pad = batch - len(x)
        if pad:  # one compiled shape for every chunk
            x = np.concatenate([x, np.zeros((pad, n), x.dtype)])
        codes = np.asarray(encode(codec, jnp.asarray(x, jnp.float32)))
        for s in wanted:
            if s.family == "codec":
                c = codes[..., : int(s.value)]  # one compile per distinct level count
            else:
                c = corrupt_codes(codes, s.value, codec.codebook_size, rng)
            y = np.asarray(decode(codec, jnp.asarray(c)))
            y = y[:, :n] if y.shape[1] >= n else np.pad(y, ((0, 0), (0, n - y.shape[1])))
            out[s.key][i:i + batch] = y[: batch - pad]
    return out


# ----------------------------------------------------------------------------
# A cached set of clips and their degraded versions
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class DegradedSet:
    """Fixed crops of clips and degraded versions of them.

    Attributes:
      clip_ids: [N] clip ids.
      clean: [N, n] float32 crops.
      versions: ``{setting.key: [N, n]}`` degraded crops (same order).
      settings: the settings, by key.
    """

    clip_ids: list[str]
    clean: np.ndarray
    versions: dict[str, np.ndarray]
    settings: dict[str, Setting]


def _crops(root: str, clips: Sequence[Any], n: int, seed: int) -> np.ndarray:
    from pathlib import Path

    from musicrl.data.loader import read_crop

    rng = np.random.default_rng(seed)
    return np.stack([read_crop(Path(root) / c.path, n, rng)[0] for c in clips])


def build_degraded_set(root: str, clips: Sequence[Any], *, crop_samples: int,
                       setting_list: Sequence[Setting], codec: Any | None, seed: int,
                       cache: str | None = None, progress: bool = True) -> DegradedSet:
    """One fixed crop per clip, and each setting applied to it (cached as float16 npz).

    The cache file is reused only if it was made from the same clips, crop length,
    settings, seed and codec (``codec_id``); otherwise it is rebuilt.

    Args:
      root: data root; clips: :class:`musicrl.data.manifest.Clip` list.
      crop_samples: crop length (a multiple of the codec hop when codec settings are used).
      setting_list: what to apply; codec families need ``codec``.
      codec: a loaded codec, or None when no codec family is asked for.
      seed: crop offsets, noise and corruption draws.
      cache: ``.npz`` path to read/write, or None.
    """
    import hashlib
    import json
    import os
    from pathlib import Path

    needs_codec = [s for s in setting_list if s.family in CODEC_FAMILIES]
    if needs_codec and codec is None:
        raise ValueError(f"settings {[s.key for s in needs_codec]} need a codec")
    codec_id = ""
    if codec is not None and needs_codec:
        codec_id = hashlib.sha256(json.dumps(
            [float(np.asarray(v).sum()) for v in _leaves(codec)]).encode()).hexdigest()[:16]
    ident = json.dumps({"clips": [c.id for c in clips], "n": crop_samples, "seed": seed,
                        "settings": [s.key for s in setting_list], "codec": codec_id,
                        "format": 1}, sort_keys=True)
    ident_hash = hashlib.sha256(ident.encode()).hexdigest()
    by_key = {s.key: s for s in setting_list}
    if cache and Path(cache).exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["ident"]) == ident_hash:
                return DegradedSet([c.id for c in clips], z["clean"].astype(np.float32),
                                   {k: z["v:" + k].astype(np.float32) for k in by_key}, by_key)
    rng = np.random.default_rng(seed)
    clean = _crops(root, clips, crop_samples, seed)
    versions: dict[str, np.ndarray] = {}
    if needs_codec:
        if progress:
            print(f"degrading {len(clips)} clips with the codec ({len(needs_codec)} settings) …",
                  flush=True)
        versions.update(codec_versions(codec, clean, needs_codec, rng))
    for s in setting_list:
        if s.family not in CODEC_FAMILIES:
            versions[s.key] = np.stack([apply_cheap(x, s, rng) for x in clean])
    # Stored as float16 (~66 dB below the signal): round now so that a fresh set and
    # one read back from the cache are identical.
    clean = clean.astype(np.float16)
    versions = {k: np.clip(v, -60000, 60000).astype(np.float16) for k, v in versions.items()}
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{cache}.tmp-{os.getpid()}.npz"
        np.savez(tmp, ident=np.asarray(ident_hash), clean=clean,
                 **{"v:" + k: v for k, v in versions.items()})
        os.replace(tmp, cache)
    return DegradedSet([c.id for c in clips], clean.astype(np.float32),
                       {k: v.astype(np.float32) for k, v in versions.items()}, by_key)


def _leaves(model: Any) -> list[Any]:
    import jax
    from flax import nnx

    return jax.tree.leaves(nnx.state(model, nnx.Param))
