"""Codec evaluation: report structure, whole-split perplexity, the Opus round trip, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from musicrl.codec import Codec, CodecConfig
from musicrl.codec.losses import si_sdr
from musicrl.config import presets_of
from musicrl.data.manifest import load_clips
from musicrl.evaluation import OpusUnavailable, check_opus, code_perplexity, evaluate_codec
from musicrl.evaluation.opus import opus_roundtrip, xcorr_lag


def _has_opus() -> bool:
    try:
        check_opus()
    except OpusUnavailable:
        return False
    return True


needs_opus = pytest.mark.skipif(not _has_opus(), reason="ffmpeg with libopus not installed "
                                "(apt-get install -y ffmpeg)")


@pytest.fixture(scope="module")
def codec():
    return Codec(presets_of(CodecConfig)["tiny"], rngs=nnx.Rngs(0, vq=1))


@pytest.fixture(scope="module")
def clips(tiny_corpus):
    cfg, _ = tiny_corpus
    clips = load_clips(cfg.root, splits=["test"])
    assert len(clips) >= 3
    return Path(cfg.root), clips


def _glide(seconds: float = 2.0, sr: int = 16_000) -> np.ndarray:
    """A harmonic tone whose pitch glides (no single period for a lag search to lock onto)."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(220 * 2 ** (t / 2)) / sr
    x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6))
    return (x * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(np.float32)


def test_report_has_every_row_and_finite_values(codec, clips, tmp_path):
    root, cl = clips
    report = evaluate_codec(codec, cl, root, levels=(1, 2, 4, 8), opus_kbps=(), batch=2,
                            out=tmp_path, meta={"source": "tiny random init"})
    # The tiny codec has 4 levels: 8 is skipped, not silently dropped.
    assert report["levels"] == [1, 2, 4] and report["skipped_levels"] == [8]
    assert [s["name"] for s in report["systems"]] == ["codec q1", "codec q2", "codec q4"]
    bits = math.log2(codec.codebook_size)
    for s in report["systems"]:
        assert s["kbps"] == pytest.approx(s["levels"] * bits * codec.frame_rate / 1000)
        for m in ("mel", "stft", "sisdr"):
            assert set(s[m]) == {"mean", "std", "min", "max"}
            assert all(np.isfinite(v) for v in s[m].values())
            assert s[m]["min"] <= s[m]["mean"] <= s[m]["max"]
    assert report["data"]["clips"] == len(cl)
    assert len(report["perplexity"]) == codec.num_levels
    assert set(report["checks"]) == {"perplexity >= 50% of codebook at every level"}
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["systems"] == report["systems"]
    for name in ("distances.png", "perplexity.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    wavs = sorted(p.name for p in (tmp_path / "examples").glob("*.wav"))
    assert len(wavs) == 3 * 4  # 3 clips × (original + 3 level counts)
    assert "| codec q4 |" in (tmp_path / "report.md").read_text()


def test_perplexity_is_over_the_whole_split(codec, clips):
    root, cl = clips
    # batch=2 with an odd number of clips: the padded rows of the last batch must not count.
    report = evaluate_codec(codec, cl[:3], root, levels=(1,), opus_kbps=(), batch=2)
    from musicrl.audio import load_audio

    codes = np.concatenate([np.asarray(codec.encode(load_audio(root / c.path)[None]))
                            for c in cl[:3]])                                 # [b, t, q]
    k = codec.codebook_size
    for lvl, row in enumerate(report["perplexity"]):
        p = np.bincount(codes[..., lvl].ravel(), minlength=k) / codes[..., lvl].size
        p = p[p > 0]
        assert row["perplexity"] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-6)
        assert row["frames"] == codes[..., lvl].size
        assert row["used_codes"] == len(p)


def test_code_perplexity_reference_values():
    counts = np.array([[5, 5, 5, 5], [20, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_allclose(code_perplexity(counts), [4.0, 1.0, 2.0])


def test_missing_ffmpeg_says_how_to_install(monkeypatch):
    import musicrl.evaluation.opus as opus

    monkeypatch.setattr(opus.shutil, "which", lambda name: None)
    with pytest.raises(OpusUnavailable, match="apt-get install -y ffmpeg"):
        opus.check_opus()


@needs_opus
def test_opus_round_trip_keeps_length_and_alignment():
    x = _glide()
    y, kbps = opus_roundtrip(x, 12)
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(xcorr_lag(x, y)) <= 1
    sdr = float(si_sdr(x[None], y[None])[0])
    assert sdr > 8.0, sdr
    # The measurement is alignment-sensitive: a 2 ms shift costs far more than the codec.
    assert float(si_sdr(x[None], np.roll(y, 32)[None])[0]) < sdr - 10
    assert 6 < kbps < 20


@needs_opus
def test_report_with_opus_rows(codec, clips):
    root, cl = clips
    report = evaluate_codec(codec, cl[:2], root, levels=(1, 4), opus_kbps=(6, 12), batch=2)
    opus_rows = [s for s in report["systems"] if s["kind"] == "opus"]
    assert [s["name"] for s in opus_rows] == ["opus 6k", "opus 12k"]
    for s in opus_rows:
        assert all(np.isfinite(s[m]["mean"]) for m in ("mel", "stft", "sisdr"))
        assert 0.5 * s["kbps"] < s["measured_kbps"] < 2 * s["kbps"]
    # More bits, closer to the original.
    assert opus_rows[1]["mel"]["mean"] < opus_rows[0]["mel"]["mean"]
    assert {"mel: codec q4 < opus 6k", "mel: codec q4 < opus 12k"} <= set(report["checks"])


def test_eval_codec_command(codec, clips, tmp_path, capsys):
    from musicrl.checkpoint import save_weights
    from musicrl.cli import main
    from musicrl.config import to_dict

    root, _ = clips
    weights = tmp_path / "codec"
    save_weights(weights, codec, meta={"component": "codec", "config": to_dict(codec.cfg),
                                       "steps": 0})
    out = tmp_path / "report"
    code = main(["eval", "codec", "--weights", str(weights), "--root", str(root),
                 "--max-clips", "2", "--no-opus", "--levels", "1,2", "--out", str(out),
                 "--quiet"])
    text = capsys.readouterr().out
    assert code == 0
    assert "| codec q2 |" in text and str(out / "report.json") in text
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["clips"] == 2 and "musicrl eval codec" in report["codec"]["command"]


def test_eval_codec_command_rejects_bad_weights(tmp_path, capsys):
    from musicrl.cli import EXIT_USAGE, main

    assert main(["eval", "codec", "--weights", str(tmp_path), "--no-opus"]) == EXIT_USAGE
    assert "not a codec weights folder" in capsys.readouterr().err
