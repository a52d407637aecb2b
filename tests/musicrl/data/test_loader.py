"""Tests of the training loader on a synthetic data root (sine tones, 16 kHz)."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import soundfile as sf

from musicrl.audio import SAMPLE_RATE, write_wav_atomic
from musicrl.data.config import LoaderConfig
from musicrl.data.loader import LoaderStateError, make_loader
from musicrl.data.manifest import BUNDLED_MANIFEST, Clip, load_clips, write_jsonl_atomic

N_TRAIN = 9
CROP_SECONDS = 0.25
CROP = round(CROP_SECONDS * SAMPLE_RATE)


def _freq(i: int) -> float:
    # Multiples of 1/CROP_SECONDS Hz fall on exact FFT bins of a crop.
    return 200.0 + 100.0 * i


def _clip(i: int, split: str, seconds: float, labels: dict) -> Clip:
    return Clip(id=f"c{i:02d}", path=f"audio/c{i:02d}.wav", duration=seconds,
                captions=(f"clip {i} a", f"clip {i} b", f"clip {i} c"), tags=("test",),
                labels=labels, split=split, piece=f"p{i}", source="synthetic", checksum="")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """9 train clips (one 0.1 s, shorter than the crop), 2 valid; clip i is a sine at _freq(i)."""
    root = tmp_path_factory.mktemp("data")
    rows = []
    for i in range(N_TRAIN + 2):
        seconds = 0.1 if i == 3 else 1.0
        t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        # A slow ramp makes every window of a clip different, so offsets are checkable.
        x = 0.5 * np.sin(2 * np.pi * _freq(i) * t) * (0.2 + 0.8 * t / seconds)
        write_wav_atomic(root / f"audio/c{i:02d}.wav", x.astype(np.float32))
        labels = {"style": "folk", "bpm": 90 + i, "drums": bool(i % 2)}
        if i == 5:
            labels = {}  # an imported clip with no labels
        rows.append(_clip(i, "train" if i < N_TRAIN else "valid", seconds, labels))
    write_jsonl_atomic(root / BUNDLED_MANIFEST, rows)
    return root


def _cfg(root, **kw) -> LoaderConfig:
    base = dict(root=str(root), batch_size=2, crop_seconds=CROP_SECONDS, seed=0,
                num_epochs=0, prefetch=2, num_threads=2)
    return LoaderConfig(**{**base, **kw})


def _take(loader, k: int) -> list[dict]:
    return [next(loader) for _ in range(k)]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["clip_id"] == y["clip_id"]
        assert x["caption"] == y["caption"]
        np.testing.assert_array_equal(x["offset"], y["offset"])
        np.testing.assert_array_equal(x["audio"], y["audio"])


def test_batch_shapes_dtypes_and_labels(root):
    with make_loader(_cfg(root, batch_size=3)) as loader:
        b = next(loader)
    assert b["audio"].shape == (3, CROP) and b["audio"].dtype == np.float32
    for key, dtype in [("valid_samples", np.int32), ("offset", np.int64), ("bpm", np.float32),
                       ("has_drums", np.int32), ("style", np.int32)]:
        assert b[key].shape == (3,) and b[key].dtype == dtype, key
    assert len(b["caption"]) == len(b["clip_id"]) == len(b["labels"]) == 3
    for cid, cap, bpm, drums, style in zip(b["clip_id"], b["caption"], b["bpm"],
                                           b["has_drums"], b["style"], strict=True):
        i = int(cid[1:])
        assert cap in {f"clip {i} a", f"clip {i} b", f"clip {i} c"}
        if i == 5:
            assert np.isnan(bpm) and drums == -1 and style == -1
        else:
            assert bpm == 90 + i and drums == i % 2 and style >= 0


def test_epoch_visits_every_train_clip_once_and_reshuffles(root):
    cfg = _cfg(root, batch_size=2, num_epochs=2, drop_remainder=False)
    with make_loader(cfg) as loader:
        assert loader.batches_per_epoch == 5
        batches = list(loader)
    assert len(batches) == 10  # the iterator ends after num_epochs
    ids = [c for b in batches for c in b["clip_id"]]
    epoch0, epoch1 = ids[:N_TRAIN], ids[N_TRAIN:]
    expected = sorted(f"c{i:02d}" for i in range(N_TRAIN))
    assert sorted(epoch0) == sorted(epoch1) == expected  # no valid clips, no duplicates
    assert epoch0 != epoch1
    assert len(batches[4]["clip_id"]) == 1  # last batch of an epoch is short, not mixed


def test_drop_remainder_drops_last_batch_of_each_epoch(root):
    with make_loader(_cfg(root, batch_size=2, num_epochs=2, drop_remainder=True)) as loader:
        batches = list(loader)
    assert len(batches) == 8 and all(len(b["clip_id"]) == 2 for b in batches)


def test_same_seed_same_batches_different_seed_different_order(root):
    def first(seed, threads, prefetch):
        with make_loader(_cfg(root, seed=seed, num_threads=threads, prefetch=prefetch)) as ld:
            return _take(ld, 6)

    a = first(0, 2, 2)
    _assert_same(a, first(0, 1, 0))  # threads and prefetch depth do not change the data
    b = first(1, 2, 2)
    order = lambda bs: [c for x in bs for c in x["clip_id"]]  # noqa: E731
    assert order(a) != order(b)


def test_crop_is_a_window_of_its_own_file(root):
    with make_loader(_cfg(root, batch_size=4)) as loader:
        batches = _take(loader, 6)
    freqs = np.fft.rfftfreq(CROP, 1 / SAMPLE_RATE)
    seen_offsets = collections.defaultdict(set)
    for b in batches:
        rows = zip(b["audio"], b["clip_id"], b["offset"], b["valid_samples"], strict=True)
        for x, cid, off, valid in rows:
            full, _ = sf.read(root / f"audio/{cid}.wav", dtype="float32")
            np.testing.assert_array_equal(x[:valid], full[off:off + valid])
            if valid == CROP:
                peak = freqs[np.argmax(np.abs(np.fft.rfft(x)))]
                assert peak == pytest.approx(_freq(int(cid[1:])), abs=1.0), cid
                assert 0 <= off <= full.shape[0] - CROP
                seen_offsets[cid].add(int(off))
    assert any(len(s) > 1 for s in seen_offsets.values())  # crops are random, not fixed


def test_short_clip_is_zero_padded(root):
    clip = [c for c in load_clips(root, splits=["train"]) if c.id == "c03"]
    with make_loader(_cfg(root, batch_size=1), clips=clip) as loader:
        b = next(loader)
    valid = round(0.1 * SAMPLE_RATE)
    assert b["valid_samples"][0] == valid and b["offset"][0] == 0
    assert np.all(b["audio"][0, valid:] == 0) and np.any(b["audio"][0, :valid] != 0)


def test_resume_from_json_state_is_exact(root):
    cfg = _cfg(root, batch_size=2, prefetch=3)
    k, m = 7, 6  # crosses the epoch boundary (4 batches per epoch)
    with make_loader(cfg) as loader:
        reference = _take(loader, k + m)
    with make_loader(cfg) as loader:
        _take(loader, k)
        saved = json.loads(json.dumps(loader.get_state()))
        assert loader.next_batch == k and loader.epoch == 1
    assert len(json.dumps(saved)) < 1000
    with make_loader(cfg) as resumed:
        resumed.set_state(saved)
        _assert_same(_take(resumed, m), reference[k:])


def test_state_from_other_settings_is_refused(root):
    with make_loader(_cfg(root)) as loader:
        next(loader)
        state = loader.get_state()
    with make_loader(_cfg(root, seed=3)) as other:
        with pytest.raises(LoaderStateError, match="seed: saved 0, now 3"):
            other.set_state(state)
        other.set_state(state, strict=False)
        assert other.next_batch == 1
        with pytest.raises(LoaderStateError, match="not a loader state"):
            other.set_state({"next_index": 1})


def test_empty_split_error_names_root_split_and_command(root, tmp_path):
    with pytest.raises(ValueError, match=r"no clips in split 'test' under .*musicrl data build"):
        make_loader(_cfg(root, split="test"))
    with pytest.raises(FileNotFoundError, match="musicrl data build"):
        make_loader(_cfg(tmp_path))


def test_too_few_clips_for_one_batch(root):
    with pytest.raises(ValueError, match="fewer than batch_size=4"):
        make_loader(_cfg(root, split="valid", batch_size=4, drop_remainder=True))
