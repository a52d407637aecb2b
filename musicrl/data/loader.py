"""The training loader: shuffled random crops of clips, batched, prefetched, resumable.

Built on grain's ``MapDataset`` so that shuffling, epochs, batching, background
prefetch and the checkpointable position are grain's own mechanisms::

    clips ─ shuffle(seed) ─ random_map(crop) ─ batch(b) ─ repeat(epochs)
          ─ to_iter_dataset(threads, prefetch)

Every element is a pure function of (seed, global index): the shuffle permutes
each epoch with its own seed, and the crop offset and caption phrasing come
from a generator that grain seeds with the element's index (which counts
through epochs, so every epoch crops differently). The position is therefore
one integer (the next batch index); restoring it reproduces the uninterrupted
run exactly, whatever the number of threads or the prefetch depth.

Batching happens per epoch (grain batches a ``MapDataset`` epoch by epoch), so
``drop_remainder`` drops the last short batch of *each* epoch and no batch mixes
two epochs.

Dimension legend: ``b`` batch, ``n`` crop length in samples (16 kHz).

A batch is a dict:

* ``audio``          float32 [b, n]  the crop, zero-padded at the end when the
                                     clip is shorter than the crop;
* ``valid_samples``  int32 [b]       how many leading samples are real audio;
* ``offset``         int64 [b]       crop start in the clip, in samples;
* ``bpm``            float32 [b]     tempo label, NaN where unknown;
* ``has_drums``      int32 [b]       1 drums, 0 none, -1 unknown;
* ``style``          int32 [b]       index in ``STYLE_NAMES``, -1 unknown/other;
* ``caption``        list[str]       one phrasing drawn per example;
* ``clip_id``        list[str];
* ``labels``         list[dict]      the clip's raw labels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np

from musicrl.audio import SAMPLE_RATE, AudioError
from musicrl.config import validate
from musicrl.data.config import STYLE_NAMES, LoaderConfig
from musicrl.data.manifest import Clip, load_clips
from musicrl.errors import MusicrlError

__all__ = ["AudioLoader", "LoaderStateError", "make_loader", "read_crop", "crop_samples"]

Batch = dict[str, Any]

_STATE_VERSION = 1
# Stream names for deriving independent seeds from the one user seed.
_SHUFFLE_STREAM, _CROP_STREAM = 0, 1


class LoaderStateError(MusicrlError, ValueError):
    """A saved loader position does not fit this loader; the message says why."""


def crop_samples(cfg: LoaderConfig) -> int:
    """Crop length in samples at 16 kHz."""
    return max(1, round(cfg.crop_seconds * SAMPLE_RATE))


def _derived_seed(seed: int, stream: int) -> int:
    # grain's shuffle uses (seed + epoch) per epoch, so user seeds s and s + 1
    # would share epochs; hashing the seed first keeps different seeds apart.
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


# ----------------------------------------------------------------------------
# Reading one example
# ----------------------------------------------------------------------------

def read_crop(path: str | Path, n: int, rng: np.random.Generator | None,
              offset: int | None = None) -> tuple[np.ndarray, int, int]:
    """Reads a random ``n``-sample window of a 16 kHz file (only those frames); with
    ``offset``, the window starting there instead (``rng`` unused).

    Returns:
      (audio float32 [n] zero-padded at the end, offset, valid samples).

    Raises:
      AudioError: the file is missing, unreadable, or not at 16 kHz.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate != SAMPLE_RATE:
                raise AudioError(
                    f"{path}: sample rate {f.samplerate} Hz, the loader needs {SAMPLE_RATE} Hz; "
                    "re-import the clip with `musicrl data import` (it resamples)")
            if offset is None:
                offset = int(rng.integers(0, max(f.frames - n, 0) + 1))
            f.seek(offset)
            x = f.read(n, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # libsndfile's errors do not always name the file
        raise AudioError(
            f"{path}: cannot read audio ({e}); rebuild the corpus with `musicrl data build` "
            "or check the data root") from e
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    valid = x.shape[0]
    if valid < n:
        x = np.concatenate([x, np.zeros(n - valid, np.float32)])
    return x, offset, valid


def _bpm(labels: Mapping[str, Any]) -> float:
    try:
        v = float(labels.get("bpm"))
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) and v > 0 else math.nan


def _has_drums(labels: Mapping[str, Any]) -> int:
    """1/0 from ``has_drums`` or ``drums`` (a bool, a groove name or "none"); -1 if absent."""
    for key in ("has_drums", "drums"):
        if key not in labels:
            continue
        v = labels[key]
        if v is None:
            return 0
        if isinstance(v, str):
            return 0 if v.strip().lower() in ("", "none", "no", "false", "0") else 1
        if isinstance(v, (list, tuple, dict)):
            return int(len(v) > 0)
        return int(bool(v))
    return -1


def _style(labels: Mapping[str, Any]) -> int:
    s = labels.get("style")
    return STYLE_NAMES.index(s) if s in STYLE_NAMES else -1


class _Crop:
    """The per-example random map: a crop, one caption phrasing, simple labels."""

    def __init__(self, root: Path, n: int):
        self.root, self.n = root, n

    def __call__(self, clip: Clip, rng: np.random.Generator) -> dict[str, Any]:
        caption = clip.captions[int(rng.integers(len(clip.captions)))] if clip.captions else ""
        audio, offset, valid = read_crop(self.root / clip.path, self.n, rng)
        return {"audio": audio, "valid_samples": valid, "offset": offset,
                "bpm": _bpm(clip.labels), "has_drums": _has_drums(clip.labels),
                "style": _style(clip.labels), "caption": caption, "clip_id": clip.id,
                "labels": dict(clip.labels)}


def _collate(examples: Sequence[dict[str, Any]]) -> Batch:
    return {
        "audio": np.stack([e["audio"] for e in examples]),
        "valid_samples": np.array([e["valid_samples"] for e in examples], np.int32),
        "offset": np.array([e["offset"] for e in examples], np.int64),
        "bpm": np.array([e["bpm"] for e in examples], np.float32),
        "has_drums": np.array([e["has_drums"] for e in examples], np.int32),
        "style": np.array([e["style"] for e in examples], np.int32),
        "caption": [e["caption"] for e in examples],
        "clip_id": [e["clip_id"] for e in examples],
        "labels": [e["labels"] for e in examples],
    }


# ----------------------------------------------------------------------------
# The loader
# ----------------------------------------------------------------------------

class AudioLoader:
    """An iterator over batches with a position that a checkpoint can hold.

    Use :func:`make_loader` to build one. ``get_state()`` returns a small
    JSON-ready dict; ``set_state(state)`` on a loader built from the same
    config and clips continues exactly where the saved one stopped.
    """

    def __init__(self, cfg: LoaderConfig, clips: Sequence[Clip], dataset: grain.MapDataset,
                 batches_per_epoch: int):
        self.cfg = cfg
        self.clips = tuple(clips)
        self.batches_per_epoch = batches_per_epoch
        self._iter = iter(dataset)
        self._identity = {
            "seed": cfg.seed, "batch_size": cfg.batch_size, "crop_samples": crop_samples(cfg),
            "drop_remainder": cfg.drop_remainder, "num_epochs": cfg.num_epochs,
            "split": cfg.split, "num_clips": len(self.clips),
            "clips_sha256": hashlib.sha256(
                "\n".join(c.id for c in self.clips).encode()).hexdigest()[:16],
        }

    def __iter__(self) -> AudioLoader:
        return self

    def __next__(self) -> Batch:
        return next(self._iter)

    @property
    def next_batch(self) -> int:
        """Index of the batch the next ``next()`` returns (counts across epochs)."""
        return int(self._iter.get_state()["next_index"])

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to (0-based)."""
        return self.next_batch // self.batches_per_epoch

    def get_state(self) -> dict[str, Any]:
        """The position as a small JSON-serializable dict (store it in the checkpoint)."""
        return {"version": _STATE_VERSION, **self._identity, "grain": self._iter.get_state()}

    def set_state(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Moves to a saved position; the following batches equal the saved run's.

        Args:
          state: a dict from :meth:`get_state` (possibly through JSON).
          strict: refuse a state saved with another seed, batch size, crop,
            split or clip list (the batches after it would differ). With False
            only the batch index is restored.

        Raises:
          LoaderStateError: the state is malformed or (strict) made for other data.
        """
        if not isinstance(state, Mapping) or "grain" not in state:
            raise LoaderStateError(
                f"not a loader state (expected a dict from AudioLoader.get_state()): {state!r:.200}")
        if state.get("version") != _STATE_VERSION:
            raise LoaderStateError(
                f"loader state version {state.get('version')!r} is not {_STATE_VERSION}; "
                "it was written by another version of musicrl")
        if strict:
            diff = [f"{k}: saved {state.get(k)!r}, now {v!r}"
                    for k, v in self._identity.items() if state.get(k) != v]
            if diff:
                raise LoaderStateError(
                    "the saved loader position was made for other data or settings, so the "
                    f"batches after resuming would not match ({'; '.join(diff)}). Resume with the "
                    "same loader config and data root, or pass strict=False to keep only the "
                    "batch index.")
        try:
            self._iter.set_state(dict(state["grain"]))
        except (IndexError, KeyError, TypeError) as e:
            raise LoaderStateError(f"cannot restore loader position {state['grain']!r}: {e}") from e

    def close(self) -> None:
        """Stops the background threads (also done when the loader is garbage collected)."""
        self._iter.close()

    def __enter__(self) -> AudioLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_loader(cfg: LoaderConfig, clips: Sequence[Clip] | None = None) -> AudioLoader:
    """Builds the training loader of a data root.

    Args:
      cfg: the loader config (root, split, batch size, crop, seed, epochs,
        threads, prefetch depth).
      clips: the clips to read (paths relative to ``cfg.root``); by default
        those of ``cfg.split`` in the root's manifests.

    Raises:
      FileNotFoundError: the root has no manifest.
      ValueError: the split has no clips, or too few for one batch.
    """
    validate(cfg)
    if clips is None:
        clips = load_clips(cfg.root, splits=[cfg.split])
    clips = list(clips)
    if not clips:
        raise ValueError(
            f"no clips in split {cfg.split!r} under {cfg.root}: build the corpus with "
            f"`musicrl data build --root {cfg.root}` (or import audio with "
            "`musicrl data import`), or choose another split")
    if cfg.drop_remainder and len(clips) < cfg.batch_size:
        raise ValueError(
            f"split {cfg.split!r} under {cfg.root} has {len(clips)} clip(s), fewer than "
            f"batch_size={cfg.batch_size}, and drop_remainder=true would drop every batch; "
            "lower batch_size or set drop_remainder=false")
    n = crop_samples(cfg)
    ds = (grain.MapDataset.source(clips)
          .shuffle(seed=_derived_seed(cfg.seed, _SHUFFLE_STREAM))
          .random_map(_Crop(Path(cfg.root), n), seed=_derived_seed(cfg.seed, _CROP_STREAM))
          .batch(cfg.batch_size, drop_remainder=cfg.drop_remainder, batch_fn=_collate))
    batches_per_epoch = len(ds)
    ds = ds.repeat(cfg.num_epochs or None)
    # A thread beyond the prefetch depth would have nothing to do (grain warns).
    threads = min(cfg.num_threads, cfg.prefetch) if cfg.prefetch else 0
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                              prefetch_buffer_size=cfg.prefetch))
    return AudioLoader(cfg, clips, ds, batches_per_epoch)

