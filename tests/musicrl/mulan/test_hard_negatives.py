"""MuLan's music-feature branch and counterfactual hard-negative captions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import presets_of
from musicrl.data.captioning import (
    LABEL_CLASSES,
    TEMPO_WORDS,
    flip_mode,
    flip_tempo,
    label_phrase,
    make_aspect_caption,
)
from musicrl.mulan import Mulan, MulanConfig, train_text_tokenizer
from musicrl.mulan.features import MAX_LAG, MIN_LAG, chroma_profile, onset_autocorrelation
from musicrl.mulan.model import label_prompt_loss
from musicrl.spectral import log_mel
from training.mulan import hard_negatives, label_prompts

SR = 16_000


def _tone(freqs, seconds=2.0):
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32) / len(freqs)


def test_chroma_profile_finds_the_pitch_classes_of_a_chord():
    # A minor triad: A4, C5, E5 → pitch classes 9, 0, 4 (librosa's chroma starts at C)
    prof = np.asarray(chroma_profile(jnp.asarray(_tone([440.0, 523.25, 659.26]))[None], SR, 320))[0]
    assert set(np.argsort(prof)[-3:]) == {9, 0, 4}


def test_onset_autocorrelation_peaks_at_the_beat_period():
    beat = 0.5                                      # 120 BPM = 25 frames at 50 Hz
    wav = np.zeros(int(4 * SR), np.float32)
    for k in range(8):
        i = int(k * beat * SR)
        wav[i:i + 800] = np.random.default_rng(k).normal(0, 0.5, 800)
    mel = log_mel(jnp.asarray(wav)[None], SR, 1024, 320, 64)
    ac = np.asarray(onset_autocorrelation(mel))[0]
    assert ac.shape == (MAX_LAG - MIN_LAG + 1,)
    assert MIN_LAG + int(np.argmax(ac[:30])) == 25


def test_flips_change_only_what_they_name():
    c = "A calm Bach chorale in E major, happy, about 62 bpm, no drums"
    assert flip_mode(c) == "A calm Bach chorale in E minor, dark, about 62 bpm, no drums"
    t = flip_tempo(c, np.random.default_rng(0))
    assert "E major" in t and "happy" in t and "62 bpm" not in t and "calm" not in t
    bpm = int(t.split(" bpm")[0].split()[-1])
    assert bpm >= 140                                # slow → fast
    assert flip_mode("fiddle reel with drums") is None
    assert flip_tempo("fiddle reel with drums", np.random.default_rng(0)) is None


def test_hard_negatives_keep_the_batch_shape():
    texts, valid = hard_negatives(["in C major at 120 bpm", "just drums"],
                                  np.random.default_rng(0))
    assert len(texts) == 4 and valid.tolist() == [True, True, False, False]


def test_loss_with_negatives_is_finite_and_masks_missing_ones():
    cfg = presets_of(MulanConfig)["tiny"]
    caps = ["slow piano in c major", "fast fiddle in a minor", "drums only"]
    model = Mulan(cfg, train_text_tokenizer(caps * 10, cfg.vocab_size), rngs=nnx.Rngs(0, vq=1))
    wav = jnp.asarray(np.random.default_rng(0).normal(0, 0.1, (3, cfg.crop_samples)), jnp.float32)
    ids, mask = model.tokenize(caps)
    base, _ = model.contrastive_loss(jnp.asarray(ids), jnp.asarray(mask), wav)
    texts, valid = hard_negatives(caps, np.random.default_rng(0))
    n_ids, n_mask = model.tokenize(texts)
    none = (jnp.asarray(n_ids), jnp.asarray(n_mask), jnp.zeros(len(texts), bool))
    masked, _ = model.contrastive_loss(jnp.asarray(ids), jnp.asarray(mask), wav, none)
    assert float(masked) == pytest.approx(float(base), rel=1e-5)   # no valid negative: InfoNCE
    loss, met = model.contrastive_loss(jnp.asarray(ids), jnp.asarray(mask), wav,
                                       (jnp.asarray(n_ids), jnp.asarray(n_mask),
                                        jnp.asarray(valid)))
    assert np.isfinite(float(loss)) and float(loss) > float(base)  # more negatives, more loss
    assert 0.0 <= float(met["hard_negative_acc"]) <= 1.0


def test_aspect_captions_are_short_and_true():
    lb = {"tempo_bucket": "slow", "mode": "minor", "key": "D", "drums": False,
          "drum_style": "rock", "melody_program": 40, "style": "celtic", "subtype": "air"}
    rng = np.random.default_rng(0)
    caps = [make_aspect_caption(lb, rng) for _ in range(200)]
    assert all(1 <= len(c.split(", ")) <= 3 for c in caps)
    words = {w for c in caps for w in c.replace(",", " ").split()}
    assert not words & {"major", "happy", "fast", "lively", "drums,"} - {"no"}
    assert not any(w in words for w in TEMPO_WORDS["fast"])
    assert any("minor" in c for c in caps) and any("slow" in c for c in caps)
    assert any(c == "fiddle" for c in caps)          # celtic violin is a fiddle
    assert all("with drums" not in c for c in caps)


def test_label_phrases_never_name_another_value():
    rng = np.random.default_rng(0)
    said = {(a, v): {label_phrase(a, v, rng) for _ in range(300)}
            for a, vals in LABEL_CLASSES.items() for v in vals}
    for (a, v), phrases in said.items():
        assert len(phrases) >= 3                                # several wordings
        for w in LABEL_CLASSES[a]:
            if w != v:
                assert not phrases & said[a, w]
    assert all("fast" not in p and "lively" not in p for p in said["tempo_bucket", "slow"])
    assert all(p.startswith(("no ", "without")) for p in said["drums", False])
    with pytest.raises(ValueError, match="no phrases for mode='dorian'"):
        label_phrase("mode", "dorian", rng)


def test_label_prompts_targets_point_at_the_true_phrase():
    lbs = [{"tempo_bucket": "fast", "mode": "minor", "drums": True},
           None,                                                # an imported clip: no labels
           {"tempo_bucket": "slow", "mode": "major", "drums": False}]
    texts, group, target = label_prompts(lbs, np.random.default_rng(3))
    assert len(texts) == sum(len(v) for v in LABEL_CLASSES.values()) == len(group)
    assert target.shape == (3, len(LABEL_CLASSES)) and (target[1] == -1).all()
    for i in (0, 2):
        for g, attr in enumerate(LABEL_CLASSES):
            assert group[target[i, g]] == g
            v = LABEL_CLASSES[attr][list(np.flatnonzero(group == g)).index(target[i, g])]
            assert v == lbs[i][attr]


def test_label_prompt_loss_is_a_softmax_within_each_attribute():
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(4, 8)).astype(np.float32)
    labels = rng.normal(size=(5, 8)).astype(np.float32)
    group = np.array([0, 0, 0, 1, 1])
    target = np.array([[0, 3], [2, -1], [1, 4], [-1, -1]])
    loss, acc = label_prompt_loss(jnp.asarray(audio), jnp.asarray(labels), jnp.asarray(group),
                                  jnp.asarray(target), jnp.float32(2.0))
    logits = 2.0 * audio @ labels.T
    nll, hit = [], []
    for b in range(4):
        for g, cols in ((0, [0, 1, 2]), (1, [3, 4])):
            t = target[b, g]
            if t < 0:
                continue
            z = logits[b, cols]
            nll.append(np.log(np.exp(z).sum()) - logits[b, t])
            hit.append(cols[int(np.argmax(z))] == t)
    assert float(loss) == pytest.approx(np.mean(nll), rel=1e-5)
    assert float(acc) == pytest.approx(np.mean(hit))
    # the term joins the contrastive loss with its weight
    cfg = presets_of(MulanConfig)["tiny"]
    caps = ["slow piano in c major", "fast fiddle in a minor", "drums only"]
    model = Mulan(cfg, train_text_tokenizer(caps * 10, cfg.vocab_size), rngs=nnx.Rngs(0, vq=1))
    wav = jnp.asarray(rng.normal(0, 0.1, (3, cfg.crop_samples)), jnp.float32)
    ids, mask = (jnp.asarray(x) for x in model.tokenize(caps))
    texts, grp, tgt = label_prompts([{"tempo_bucket": "slow", "mode": "major", "drums": False}] * 3,
                                    np.random.default_rng(0))
    l_ids, l_mask = (jnp.asarray(x) for x in model.tokenize(texts))
    base, _ = model.contrastive_loss(ids, mask, wav)
    both, met = model.contrastive_loss(ids, mask, wav, None, (l_ids, l_mask, jnp.asarray(grp),
                                                              jnp.asarray(tgt), 0.5))
    assert float(both) == pytest.approx(float(base) + 0.5 * float(met["label_loss"]), rel=1e-5)
    assert float(met["nce_loss"]) == pytest.approx(float(base), rel=1e-5)
