"""Degradations do what they say, at the severity they say."""

from __future__ import annotations

import numpy as np
import pytest

from rewards import degrade


def _music(n=16_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16_000
    x = sum(rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * f * t) for f in (220, 440, 660, 3000))
    return (x * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def test_settings_split_and_severity_monotone():
    for name, fam in degrade.FAMILIES.items():
        assert not set(fam.train) & set(fam.test), name  # held-out settings really held out
        values = sorted(fam.train + fam.test)
        sev = [fam.severity(v) for v in values]
        if name in ("noise", "clip", "lowpass", "codec"):  # larger value = milder
            sev = sev[::-1]
        assert all(0 < s <= 1 for s in sev), name
        assert all(a < b for a, b in zip(sev, sev[1:], strict=False)), (name, sev)
    assert {s.family for s in degrade.settings("test")} == set(degrade.FAMILIES)
    with pytest.raises(ValueError, match="unknown degradation families"):
        degrade.settings("train", ["reverb"])


@pytest.mark.parametrize("snr", [30, 25, 15, 5, 0])
def test_noise_has_the_requested_snr(snr):
    x = _music()
    y = degrade.add_noise(x, snr, np.random.default_rng(1))
    assert degrade.snr_db(x, y) == pytest.approx(snr, abs=0.05)


def test_clipping_is_graded():
    x = _music()
    frac = []
    for level in (0.5, 0.25, 0.1):
        y = degrade.clip(x, level)
        assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-4)
        frac.append(np.mean(np.isclose(np.abs(y), np.abs(y).max())))
    assert frac[0] < frac[1] < frac[2]


@pytest.mark.parametrize("cutoff", [500, 2000, 6000])
def test_low_pass_removes_the_band_above_the_cutoff(cutoff):
    x = np.random.default_rng(0).standard_normal(16_000).astype(np.float32)
    y = degrade.low_pass(x, cutoff)
    f = np.fft.rfftfreq(len(y), 1 / 16_000)
    p = np.abs(np.fft.rfft(y)) ** 2
    assert p[f > cutoff].sum() < 1e-9 * p.sum()
    px = np.abs(np.fft.rfft(x)) ** 2
    band = f < 0.85 * cutoff
    assert p[band].sum() == pytest.approx(px[band].sum(), rel=1e-4)


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_dropout_zeroes_the_requested_fraction(fraction):
    x = _music() + 0.01
    y = degrade.dropout(x, fraction, np.random.default_rng(2))
    assert np.mean(y == 0) == pytest.approx(fraction, abs=1e-3)
    assert np.array_equal(y[y != 0], x[y != 0])


def test_corrupt_codes_replaces_the_requested_fraction():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1024, (3, 50, 8))
    out = degrade.corrupt_codes(codes, 0.2, 1024, rng)
    changed = np.mean(out != codes, axis=(1, 2))
    # 80 positions per example are redrawn; a redraw equals the old code with p = 1/1024
    assert np.all(changed <= 0.2) and np.all(changed > 0.19)
    assert out.min() >= 0 and out.max() < 1024


def test_codec_versions_shapes_and_more_levels_are_closer():
    from flax import nnx

    from musicrl.codec import Codec, CodecConfig
    from musicrl.config import presets_of

    codec = Codec(presets_of(CodecConfig)["tiny"], rngs=nnx.Rngs(0, vq=1))
    hop = codec.hop
    x = np.stack([_music(hop * 20, s) for s in range(3)])
    ss = [degrade.Setting("codec", codec.num_levels), degrade.Setting("tokens", 0.5),
          degrade.Setting("noise", 10)]
    out = degrade.codec_versions(codec, x, ss, np.random.default_rng(0), batch=2)
    full = f"codec@{codec.num_levels:g}"
    assert set(out) == {full, "tokens@0.5"}
    for v in out.values():
        assert v.shape == x.shape and v.dtype == np.float32 and np.all(np.isfinite(v))
    assert not np.allclose(out[full], out["tokens@0.5"])


@pytest.mark.parametrize("name", ["noise", "clip", "lowpass", "dropout"])
def test_continuous_train_values_stay_in_range_and_off_held_out_settings(name):
    fam = degrade.FAMILIES[name]
    rng = np.random.default_rng(0)
    v = np.array([fam.sample_train(rng) for _ in range(500)])
    assert v.min() >= min(fam.train) and v.max() <= max(fam.train)
    for t in fam.test:
        gap = np.abs(np.log(v / t)) if fam.log_scale else np.abs(v - t)
        limit = np.log(1 + fam.window) if fam.log_scale else fam.window
        assert gap.min() > limit
    assert len(np.unique(np.round(v, 3))) > 100  # really continuous, not the fixed settings
