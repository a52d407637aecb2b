"""Attribute estimators: key templates, tempo scoring, the classifier, the eval command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musicrl.data.instruments import FAMILIES
from musicrl.evaluation.estimators import (
    KEY_PROFILES,
    MELODY_FAMILIES,
    ClassifierConfig,
    estimate_key,
    key_from_chroma,
    load_classifier,
    pitch_class,
    predict,
    save_classifier,
    tempo_scores,
    train_classifier,
)

SR = 16_000


def _chords(chords: list[list[int]], seconds: float = 0.75) -> np.ndarray:
    """MIDI chords, each held ``seconds``, as harmonic tones with a decaying envelope."""
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-2 * t)
    out = []
    for chord in chords:
        x = sum(sum(0.5 ** h * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * (h + 1) * t)
                    for h in range(3)) for m in chord)
        out.append(0.2 * env * x / len(chord))
    return np.concatenate(out).astype(np.float32)


def test_pitch_class_names():
    assert [pitch_class(n) for n in ("C", "F#", "Bb", "Db", "B")] == [0, 6, 10, 1, 11]
    with pytest.raises(ValueError, match="unknown pitch class"):
        pitch_class("H")


@pytest.mark.parametrize("profile", sorted(KEY_PROFILES))
def test_key_templates_recover_rotated_profiles(profile):
    major, minor = KEY_PROFILES[profile]
    for tonic in range(12):
        assert key_from_chroma(np.roll(major, tonic), profile)[:2] == (tonic, "major")
        assert key_from_chroma(np.roll(minor, tonic), profile)[:2] == (tonic, "minor")


@pytest.mark.parametrize("profile", sorted(KEY_PROFILES))
def test_key_of_synthetic_cadences(profile):
    # I–IV–V–I in C major and i–iv–V–i in A minor (same key signature).
    c_major = _chords([[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]] * 2)
    a_minor = _chords([[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]] * 2)
    assert estimate_key(c_major, profile=profile) == ("C", "major")
    assert estimate_key(a_minor, profile=profile) == ("A", "minor")


def test_tempo_scores_separate_octave_errors():
    ref = np.array([100.0, 100, 100, 100, 120])
    est = np.array([103.0, 107, 50, 200, 90])
    s = tempo_scores(est, ref)
    assert s["within_4pct"] == pytest.approx(0.2)
    assert s["within_8pct"] == pytest.approx(0.4)
    assert s["octave_errors"] == pytest.approx(0.4)


def _separable(n: int, seed: int):
    """Features where block k is lit for melody family k; families/drums are other columns."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, len(MELODY_FAMILIES), n)
    fam = rng.random((n, len(FAMILIES))) < 0.4
    drums = rng.random(n) < 0.5
    x = rng.normal(scale=0.3, size=(n, 40)).astype(np.float32)
    x[np.arange(n), m] += 3.0
    x[:, 10:10 + len(FAMILIES)] += 3.0 * fam
    x[:, 30] += 3.0 * drums
    labels = {"melody": m.astype(np.int32), "families": fam.astype(np.float32),
              "drums": drums.astype(np.float32)}
    return x, labels


def test_classifier_learns_separable_set_and_round_trips(tmp_path):
    x, y = _separable(300, 0)
    x_test, y_test = _separable(100, 1)
    cfg = ClassifierConfig(hidden=32, steps=300, lr=1e-2)
    model = train_classifier(x, y, cfg)
    p = predict(model, x_test)
    assert np.mean(p["melody"] == y_test["melody"]) > 0.95
    assert np.mean((p["families"] > 0.5) == (y_test["families"] > 0)) > 0.95
    assert np.mean((p["drums"] > 0.5) == (y_test["drums"] > 0)) > 0.95
    save_classifier(tmp_path / "clf", model, cfg)
    back, meta = load_classifier(tmp_path / "clf")
    q = predict(back, x_test)
    np.testing.assert_allclose(q["families"], p["families"], rtol=1e-5, atol=1e-6)
    assert meta["families"] == list(FAMILIES)


def test_eval_estimators_command(tiny_corpus, tmp_path, capsys):
    from musicrl.cli import main

    cfg, _ = tiny_corpus
    work, out = tmp_path / "work", tmp_path / "out"
    assert main(["eval", "estimators", "--root", str(cfg.root), "--workdir", str(work),
                 "--out", str(out), "--quiet"]) == 0
    assert "chance" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert (out / "accuracy.png").stat().st_size > 0
    assert (work / "classifier" / "meta.json").exists()
    for e in report["estimators"].values():
        acc = e.get("accuracy", e.get("within_4pct"))
        assert 0.0 <= acc <= 1.0 and 0.0 <= e["chance"] <= 1.0
    # Second run reuses the cached features and the saved classifier.
    assert main(["eval", "estimators", "--root", str(cfg.root), "--workdir", str(work),
                 "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["estimators"]["melody_family"] == report["estimators"]["melody_family"]
