"""Semantic tokenizer: features, k-means, tokenize, save/load, the pitch-class probe, CLI."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musicrl.cli import main
from musicrl.config import ConfigError, resolve
from musicrl.data.events import make_events
from musicrl.data.manifest import load_clips
from musicrl.semantic import (
    HOP,
    FeatureExtractor,
    KMeansState,
    LibrosaFeatures,
    SemanticConfig,
    SemanticTokenizer,
    fit_kmeans,
    get_features,
    kmeans_steps,
    load_semantic,
    standardization,
)
from musicrl.semantic_probe import fit_probe, onset_targets, predict_probe, run_probe, score

SR = 16_000


# ----------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------

def test_librosa_features_shape_and_pitch():
    t = np.arange(2 * SR + 123) / SR
    wav = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)  # A4
    ext = get_features("librosa")
    assert isinstance(ext, FeatureExtractor) and ext.frame_rate == 25.0
    f = ext(wav)
    assert f.shape == (len(wav) // HOP, ext.dim) == (50, 33)
    assert f.dtype == np.float32 and np.isfinite(f).all()
    a, b = ext.groups["chroma"]
    assert (f[2:-2, a:b].argmax(1) == 9).all()  # pitch class A
    assert ext(wav[: HOP - 1]).shape == (0, 33)


def test_onset_feature_marks_note_starts_in_their_frame():
    wav = np.random.default_rng(1).normal(0, 0.01, 2 * SR).astype(np.float32)
    n = np.arange(SR // 10)
    for start in (0.425, 1.225):  # bursts of decaying noise in cells 10 and 30
        i = int(start * SR)
        wav[i:i + len(n)] += np.random.default_rng(0).normal(0, 0.3, len(n)) * np.exp(-n / 400)
    f = get_features("librosa")(wav)
    a, _ = get_features("librosa").groups["onset"]
    assert sorted(np.argsort(f[:, a])[-2:].tolist()) == [10, 30]


def test_unknown_extractor_and_bad_config_are_refused():
    with pytest.raises(ValueError, match="registered"):
        get_features("wav2vec")
    with pytest.raises(ConfigError, match="features"):
        resolve(SemanticConfig, "tiny", ["features=wav2vec"])
    with pytest.raises(ConfigError, match="init_sample"):
        resolve(SemanticConfig, "tiny", ["num_clusters=64", "init_sample=32"])
    with pytest.raises(ConfigError, match="3 groups"):
        resolve(SemanticConfig, "tiny", ["group_weights=2,1"])
    assert resolve(SemanticConfig, "tiny", ["group_weights=2,1,1"]).group_weights == (2, 1, 1)


def test_standardization_balances_and_weights_groups():
    ext = get_features("librosa")
    x = np.random.default_rng(0).normal(3.0, 2.0, (4000, ext.dim)).astype(np.float32)
    mean, std = standardization(x, ext, balance=True, weights=(2.0, 1.0, 1.0))
    z = (x - mean) / std
    var = {g: z[:, a:b].var(0).sum() for g, (a, b) in ext.groups.items()}
    assert var["chroma"] == pytest.approx(4.0, rel=0.05)
    assert var["mfcc"] == pytest.approx(1.0, rel=0.05)
    assert var["onset"] == pytest.approx(1.0, rel=0.05)


# ----------------------------------------------------------------------------
# K-means
# ----------------------------------------------------------------------------

def _blobs(k=8, per=500, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6.0, (k, d))
    labels = np.repeat(np.arange(k), per)
    x = centers[labels] + rng.normal(0, 0.5, (k * per, d))
    perm = rng.permutation(len(x))
    return x[perm].astype(np.float32), labels[perm]


def _purity(assign, labels, k):
    return sum(np.bincount(labels[assign == c]).max() for c in range(k) if (assign == c).any()
               ) / len(labels)


def test_kmeans_recovers_blobs_and_is_deterministic():
    x, labels = _blobs()
    kw = dict(batch_size=256, iterations=150, init_sample=2000, reseed_every=20)
    c1, info = fit_kmeans(x, 8, seed=3, **kw)
    c2, _ = fit_kmeans(x, 8, seed=3, **kw)
    np.testing.assert_array_equal(c1, c2)
    assign = ((x[:, None] - c1[None]) ** 2).sum(-1).argmin(1)
    assert _purity(assign, labels, 8) > 0.95
    assert info["clusters_used"] == 8 and info["inertia"] < 6 * 0.5**2 * 1.5
    c3, _ = fit_kmeans(x, 8, seed=4, **kw)
    assert not np.array_equal(c1, c3)


def test_dead_center_is_reseeded():
    x, _ = _blobs(k=4, per=200, d=3)
    c = np.asarray(x[:4]).copy()
    c[2] = 1e4  # far from every point: never assigned
    state = KMeansState(jnp.asarray(c), jnp.zeros(4), jnp.zeros(4), jax.random.key(0),
                        jnp.zeros((), jnp.int32))
    state, m = kmeans_steps(state, jnp.asarray(x), batch_size=64, num_steps=10, reseed_every=5)
    assert int(m["reseeded"].sum()) >= 1
    assert np.abs(np.asarray(state.centroids)[2]).max() < 100


# ----------------------------------------------------------------------------
# Probe
# ----------------------------------------------------------------------------

def _frame_events(sets_t12: np.ndarray) -> np.ndarray:
    """Note events that sound exactly the pitch classes of each 40 ms frame."""
    rows = [(60 + pc, (i + 0.1) / 25, (i + 0.9) / 25, 80, 0, False, 0)
            for i, s in enumerate(sets_t12) for pc in np.flatnonzero(s)]
    return make_events(rows)


def test_probe_is_perfect_when_tokens_determine_the_pitch_classes():
    rng = np.random.default_rng(0)
    vocab = 20
    table = rng.random((vocab, 12)) < 0.3

    def clips(n):
        toks = [rng.integers(0, vocab, 100) for _ in range(n)]
        return toks, [_frame_events(table[t]) for t in toks]

    tr, ev = clips(6), clips(3)
    probe = run_probe(*tr, *ev, vocab_size=vocab, seed=0)
    assert probe["semantic"]["pc_accuracy"] == 1.0 and probe["semantic"]["exact_match"] == 1.0
    assert probe["majority"]["pc_accuracy"] < 0.85
    assert abs(probe["random"]["pc_accuracy"] - probe["majority"]["pc_accuracy"]) < 0.05
    # Tokens unrelated to the pitch classes do no better than the majority baseline.
    noise = [rng.integers(0, vocab, 100) for _ in range(3)]
    blind = run_probe(*tr, noise, ev[1], vocab_size=vocab, seed=0)
    assert blind["semantic"]["pc_accuracy"] < blind["majority"]["pc_accuracy"] + 0.02


def test_onset_targets_mark_the_frame_of_each_note_start():
    ev = make_events([(60, 0.05, 0.5, 80, 0, False, 0), (36, 0.41, 0.45, 100, 0, True, 3),
                      (62, 9.0, 9.5, 80, 0, False, 0)])
    on = onset_targets(ev, 20)[:, 0]
    assert on.shape == (20,) and np.flatnonzero(on).tolist() == [1, 10]  # drums count


def test_probe_table_majority_and_unseen_tokens():
    tokens = np.array([0, 0, 0, 1])
    y = np.zeros((4, 12), bool)
    y[:2, 0] = True  # token 0: pc 0 active 2 of 3 times; token 1: never
    table = fit_probe(tokens, y, vocab_size=3)
    assert table[0, 0] and not table[1, 0] and not table[2].any()  # 2 unseen → global (0)
    s = score(predict_probe(table, tokens), y)
    assert s["pc_accuracy"] == pytest.approx(47 / 48) and s["exact_match"] == 0.75


# ----------------------------------------------------------------------------
# Trained on the tiny corpus (through the CLI)
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    cfg, _ = tiny_corpus
    work = tmp_path_factory.mktemp("semantic")
    code = main(["train", "semantic", "--preset", "tiny", "--quiet", f"data_root={cfg.root}",
                 f"workdir={work}", f"cache_dir={work / 'cache'}"])
    assert code == 0
    return cfg, work


def test_train_writes_weights_report_and_plot(trained):
    _, work = trained
    report = json.loads((work / "report.json").read_text())
    for name in ("semantic", "majority", "random"):
        assert 0.0 <= report["probe"][name]["pc_accuracy"] <= 1.0
    meta = json.loads((work / "weights" / "meta.json").read_text())
    assert meta["command"].startswith("musicrl train semantic --preset tiny")
    assert meta["config"]["num_clusters"] == 16
    assert "probe" in meta["metrics"] and (work / "probe.png").stat().st_size > 0
    assert any((work / "cache" / "librosa-v2").glob("*.npy"))


def test_tokenize_and_round_trip(trained):
    cfg, work = trained
    tok, meta = load_semantic(work)
    assert tok.vocab_size == 16 and tok.frame_rate == 25.0
    from musicrl.audio import load_audio

    clip = load_clips(cfg.root)[0]
    wav = load_audio(f"{cfg.root}/{clip.path}")
    toks = tok.tokenize(wav)
    assert toks.shape == (len(wav) // HOP,) and toks.dtype == np.int32
    assert toks.min() >= 0 and toks.max() < 16
    assert tok.tokenize(np.stack([wav, wav])).shape == (2, len(wav) // HOP)
    # A fresh, unfitted tokenizer differs; loading the weights makes it identical.
    fresh = SemanticTokenizer("librosa", 16)
    assert np.all(fresh.tokenize(wav) == 0)
    tok2, _ = load_semantic(work / "weights")
    np.testing.assert_array_equal(tok2.tokenize(wav), toks)
    feats = LibrosaFeatures()(wav)
    np.testing.assert_array_equal(tok.tokenize_features(feats), toks)


def test_load_semantic_on_a_wrong_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="musicrl train semantic"):
        load_semantic(tmp_path)
