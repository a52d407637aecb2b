"""MuLan: shapes, unit norm, tokenizer, InfoNCE against numpy, conditioning RVQ,
a tiny contrastive run that learns, and an exact save/load round trip."""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import presets_of, resolve
from musicrl.mulan import (
    Mulan,
    MulanConfig,
    MulanError,
    embed_audio_batched,
    encode_texts,
    fit_conditioning_rvq,
    info_nce,
    load_mulan,
    save_mulan,
    train_text_tokenizer,
)
from training.loop import read_metrics
from training.mulan import MulanTrainConfig, init_from, retrieval_metrics, train_mulan

CAPTIONS = ["a calm piano chorale in c major, 60 bpm", "fast celtic fiddle reel with drums",
            "a slow folk song on acoustic guitar", "lively jig, 120 bpm, flute and bodhran"]


@pytest.fixture(scope="module")
def tiny_model():
    cfg = presets_of(MulanConfig)["tiny"]
    tok = train_text_tokenizer(CAPTIONS * 5, cfg.vocab_size)
    return Mulan(cfg, tok, rngs=nnx.Rngs(0, vq=1))


def test_shapes_and_unit_norm(tiny_model):
    cfg = tiny_model.cfg
    wav = jnp.asarray(np.random.default_rng(0).normal(0, 0.1, (3, cfg.crop_samples)), jnp.float32)
    a = embed_audio_batched(tiny_model, np.asarray(wav))
    t = tiny_model.embed_prompts(["calm piano", "drums", ""])
    assert a.shape == t.shape == (3, cfg.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t, axis=-1), 1.0, atol=1e-5)
    frames = nnx.jit(lambda m, w: m.audio_frames(w))(tiny_model, wav)
    assert cfg.frame_rate == 25.0
    assert frames.shape == (3, int(cfg.crop_samples / cfg.sample_rate * 25), cfg.audio_width)
    for tokens in (tiny_model.tokens_for_audio(wav), tiny_model.tokens_for_text(["a", "b", "c"])):
        assert tokens.shape == (3, cfg.rvq_levels) and tokens.dtype == jnp.int32
        assert 0 <= int(tokens.min()) and int(tokens.max()) < cfg.rvq_codebook_size


def test_tokenizer_round_trip_and_padding(tiny_model):
    tok = tiny_model.tokenizer
    text = "A Lively JIG, 120 bpm — with Flute & an unseen wörd!"
    assert tok.decode(tok.encode(text).ids) == text.lower()
    ids, mask = encode_texts(tok, [CAPTIONS[0], "", "x " * 100], max_len=16)
    assert ids.shape == mask.shape == (3, 16)
    n0 = len(tok.encode(CAPTIONS[0]).ids)
    assert mask[0].sum() == min(n0, 16) and mask[1].sum() == 1 and mask[2].all()
    assert (ids[~mask] == tok.token_to_id("[PAD]")).all()
    # padding does not change the embedding of a caption
    long = "a calm piano chorale in c major, 60 bpm, " * 3
    ids, mask = encode_texts(tok, [long, long], max_len=32)
    mask[1, 20:] = False
    ids[1, 20:] = 0
    embed = nnx.jit(lambda m, i, k: m.embed_text(i, k))
    e = embed(tiny_model, jnp.asarray(ids), jnp.asarray(mask))
    e_short = embed(tiny_model, jnp.asarray(ids[1:, :20]), jnp.asarray(mask[1:, :20]))
    np.testing.assert_allclose(e[1], e_short[0], atol=1e-5)
    assert not np.allclose(e[0], e[1], atol=1e-3)  # the masked tokens did count in row 0


def _np_info_nce(t, a, scale):
    logits = scale * t @ a.T

    def ce_rows(z):
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -np.mean(np.diag(logp))

    return 0.5 * (ce_rows(logits) + ce_rows(logits.T))


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(5, 8))
    a = rng.normal(size=(5, 8))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    for scale in (1.0, 14.3):
        got = info_nce(jnp.asarray(t, jnp.float32), jnp.asarray(a, jnp.float32),
                       jnp.log(jnp.float32(scale)))
        np.testing.assert_allclose(float(got), _np_info_nce(t, a, scale), rtol=1e-5)
    # matched pairs give a lower loss than shuffled ones
    assert float(info_nce(jnp.asarray(t), jnp.asarray(t), jnp.log(10.0))) < \
        float(info_nce(jnp.asarray(t), jnp.asarray(a), jnp.log(10.0)))


def test_retrieval_metrics():
    x = np.eye(20)
    m = retrieval_metrics(x, x)
    assert m["t2a_r@1"] == m["a2t_r@1"] == 1.0 and m["chance_r@10"] == 0.5
    m = retrieval_metrics(x, np.roll(x, 1, axis=0))
    assert m["t2a_r@1"] == 0.0


def test_conditioning_rvq_cosine_improves_with_levels(tiny_model):
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(6, 128))
    x = centers[rng.integers(6, size=400)] + 0.5 * rng.normal(size=(400, 128))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    model = nnx.clone(tiny_model)
    cos = fit_conditioning_rvq(model, x, ema_passes=2, batch=128)["final"]
    assert len(cos) == model.cfg.rvq_levels
    assert cos[0] < cos[3] < cos[-1], cos
    assert all(b >= a - 1e-3 for a, b in zip(cos, cos[1:], strict=False)), cos


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    data_cfg, _ = tiny_corpus
    workdir = tmp_path_factory.mktemp("mulan")
    cfg = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={workdir}", "loop.steps=40",
        "loop.log_every=10", "loop.ckpt_every=40", "eval_every=40", "lr=3e-3"])
    return cfg, train_mulan(cfg, progress=False)


def test_tiny_training_reduces_contrastive_loss(trained):
    cfg, weights = trained
    rows = read_metrics(cfg.loop.workdir)
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert "valid/t2a_r@1" in rows[-1] and "valid/chance_r@1" in rows[-1]
    assert (weights / "tokenizer.json").exists()


def test_tiny_run_exports_rvq_report(trained):
    cfg, weights = trained
    model, meta = load_mulan(cfg.loop.workdir)  # a work dir resolves to its weights/
    assert meta["steps"] == cfg.loop.steps and model.cfg == cfg.model
    cos = meta["report"]["rvq_cosine_per_level"]
    assert len(cos) == cfg.model.rvq_levels and cos[-1] > cos[0]
    for key in ("rvq_cosine_valid_audio", "rvq_cosine_valid_text"):
        assert len(meta["report"][key]) == cfg.model.rvq_levels
    assert meta["report"]["valid"]["valid/pool"] >= 2


def test_finetune_from_init_starts_where_the_init_ended(trained, tmp_path):
    cfg, weights = trained
    first = read_metrics(cfg.loop.workdir)[0]["loss"]
    ft = resolve(MulanTrainConfig, "tiny", [
        f"data_root={cfg.data_root}", f"loop.workdir={tmp_path / 'ft'}", "loop.steps=2",
        "loop.log_every=1", "loop.ckpt_every=2", "eval_every=2", f"init={weights}"])
    train_mulan(ft, progress=False)
    assert (tmp_path / "ft" / "tokenizer.json").read_text() == \
        (weights / "tokenizer.json").read_text()
    assert read_metrics(ft.loop.workdir)[0]["loss"] < first   # not a fresh start
    bad = resolve(MulanTrainConfig, "tiny", [
        f"data_root={cfg.data_root}", f"loop.workdir={tmp_path / 'bad'}", "loop.steps=2",
        "model.audio_width=16", f"init={weights}"])
    with pytest.raises(ValueError, match="another model config"):
        train_mulan(bad, progress=False)


def test_growing_music_branches_from_init_keeps_the_embeddings(tiny_corpus, tmp_path):
    """A model without the music-feature branches, grown to have them: same embeddings until
    training moves them (zero projection rows), and freeze_text keeps text tokens exact."""
    data_cfg, _ = tiny_corpus
    base = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'base'}", "loop.steps=4",
        "loop.ckpt_every=4", "eval_every=4", "model.music_features=false", "rvq_text=true"])
    w0 = train_mulan(base, progress=False)
    assert json.loads((w0 / "meta.json").read_text())["report"]["rvq_fitted_on"] == \
        "audio + captions"
    m0, _ = load_mulan(w0)
    grown = Mulan(presets_of(MulanConfig)["tiny"], m0.tokenizer, rngs=nnx.Rngs(5, vq=6))
    fresh = init_from(grown, m0)
    assert fresh and all(f.startswith("audio/music") for f in fresh)
    wav = jnp.asarray(np.random.default_rng(1).normal(0, 0.1, (2, m0.cfg.crop_samples)),
                      jnp.float32)
    np.testing.assert_allclose(np.asarray(grown.embed_audio(wav)),
                               np.asarray(m0.embed_audio(wav)), atol=1e-6)

    prompts = ["slow, minor key", "a lively fiddle reel with drums"]
    ft = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'ft'}", "loop.steps=3",
        "loop.ckpt_every=3", "eval_every=3", f"init={w0}", "freeze_text=true",
        "tag_prob=0.5", "label_weight=0.5", "lr=1e-2"])
    m1, meta = load_mulan(train_mulan(ft, progress=False))
    logged = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert any("label_acc" in r and 0.0 <= r["label_acc"] <= 1.0 for r in logged)
    assert m1.cfg.music_features and meta["report"]["rvq_kept_from"] == str(w0)
    np.testing.assert_array_equal(np.asarray(m1.embed_prompts(prompts)),
                                  np.asarray(m0.embed_prompts(prompts)))
    np.testing.assert_array_equal(np.asarray(m1.tokens_for_text(prompts)),
                                  np.asarray(m0.tokens_for_text(prompts)))
    assert not np.allclose(np.asarray(m1.embed_audio(wav)), np.asarray(m0.embed_audio(wav)))
    with pytest.raises(ValueError, match="init="):
        train_mulan(resolve(MulanTrainConfig, "tiny", [
            f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'x'}", "loop.steps=1",
            "freeze_text=true"]), progress=False)
    with pytest.raises(ValueError, match="choose one"):
        train_mulan(resolve(MulanTrainConfig, "tiny", [
            f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'y'}", "loop.steps=1",
            f"init={w0}", "freeze_text=true", "rvq_text=true"]), progress=False)


def test_number_values_and_numeric_features():
    """Number tokens get their value (with or without the leading-space marker), others 0;
    the features are 0 off numbers and closer for 97 vs 99 than for 97 vs 130."""
    from musicrl.mulan.text import number_values, numeric_features, train_text_tokenizer

    caps = [f"a piece at {b} bpm, in {k} major ({b})" for b in range(60, 180) for k in "ACDEFG"]
    tok = train_text_tokenizer(caps * 3, vocab_size=600)
    vals = number_values(tok)
    assert vals.shape == (tok.get_vocab_size(),)
    for text, want in (("97", 97.0), (" 97", 97.0), (" bpm", 0.0), (" major", 0.0)):
        ids = tok.encode(text).ids
        assert len(ids) == 1, (text, tok.encode(text).tokens)
        assert vals[ids[0]] == want
    f = np.asarray(numeric_features(jnp.asarray([0.0, 97.0, 99.0, 130.0])))
    assert np.all(f[0] == 0) and np.all(np.isfinite(f))
    assert np.linalg.norm(f[1] - f[2]) < 0.5 * np.linalg.norm(f[1] - f[3])


def test_numeric_features_grow_from_init_and_freeze_audio_keeps_audio_tokens(tiny_corpus,
                                                                              tmp_path):
    """A text tower grown to have numeric features starts with exactly the embeddings of its
    init (zero projection); freeze_audio then trains the text side only: audio embeddings,
    audio conditioning tokens and the RVQ codebooks stay bit-identical."""
    data_cfg, _ = tiny_corpus
    base = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'base'}", "loop.steps=3",
        "loop.ckpt_every=3", "eval_every=3"])
    w0 = train_mulan(base, progress=False)
    m0, _ = load_mulan(w0)
    cfg = dataclasses.replace(presets_of(MulanConfig)["tiny"], numeric_features=True)
    grown = Mulan(cfg, m0.tokenizer, rngs=nnx.Rngs(5, vq=6))
    assert init_from(grown, m0) == ["text/numeric_proj"]
    prompts = ["a reel at 97 bpm", "a slow air, 61 bpm, in a minor"]
    np.testing.assert_allclose(np.asarray(grown.embed_prompts(prompts)),
                               np.asarray(m0.embed_prompts(prompts)), atol=1e-6)
    assert float(np.abs(np.asarray(grown.text.number_values[...])).max()) > 0

    ft = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'ft'}", "loop.steps=3",
        "loop.ckpt_every=3", "eval_every=3", f"init={w0}", "freeze_audio=true",
        "model.numeric_features=true", "lr=1e-2"])
    m1, meta = load_mulan(train_mulan(ft, progress=False))
    assert m1.cfg.numeric_features and meta["report"]["rvq_kept_from"] == str(w0)
    wav = jnp.asarray(np.random.default_rng(1).normal(0, 0.1, (2, m0.cfg.crop_samples)),
                      jnp.float32)
    np.testing.assert_array_equal(np.asarray(m1.embed_audio(wav)), np.asarray(m0.embed_audio(wav)))
    np.testing.assert_array_equal(np.asarray(m1.tokens_for_audio(wav)),
                                  np.asarray(m0.tokens_for_audio(wav)))
    np.testing.assert_array_equal(np.asarray(m1.rvq.codebook[...]),
                                  np.asarray(m0.rvq.codebook[...]))
    assert not np.allclose(np.asarray(m1.embed_prompts(prompts)),
                           np.asarray(m0.embed_prompts(prompts)))
    assert float(np.abs(np.asarray(m1.text.numeric_proj[...])).max()) > 0
    with pytest.raises(ValueError, match="nothing to train"):
        train_mulan(resolve(MulanTrainConfig, "tiny", [
            f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'z'}", "loop.steps=1",
            f"init={w0}", "freeze_text=true", "freeze_audio=true"]), progress=False)



def test_tempo_twins_join_the_batch_and_keep_rvq(tiny_corpus, tmp_path):
    """twin_data/twin_pairs: pairs of one passage at two tempi (the first crop of a train
    clip and of its tempo variant, each with its own caption) join each batch — with a
    second, mode-variants root, pairs in two modes too, each pair differing in one
    attribute; keep_rvq keeps init='s codebooks bit for bit; bad settings are refused."""
    from musicrl.data.loader import read_crop
    from musicrl.data.manifest import load_clips
    from musicrl.data.variants import mode_variants, tempo_variants
    from training.mulan import twin_batch, twin_groups

    data_cfg, _ = tiny_corpus
    extra, modes = tmp_path / "tempo", tmp_path / "mode"
    tempo_variants(data_cfg.root, extra, variants=1, workers=1, progress=False)
    mode_variants(data_cfg.root, modes, workers=1, progress=False)
    train = load_clips(data_cfg.root, splits=["train"])
    groups = twin_groups(data_cfg.root, train, str(extra))
    assert groups and all(len(g) == 2 for g in groups)
    both = twin_groups(data_cfg.root, train, f"{extra}, {modes}")
    assert len(both) == len(groups) + len(load_clips(modes))
    for g in both:                               # one attribute differs within a group
        (_, _, a), (_, _, b) = g
        assert (a["bpm"] != b["bpm"]) != (a["mode"] != b["mode"])
    with pytest.raises(ValueError, match="no variants"):
        twin_groups(data_cfg.root, train, f"{extra},{data_cfg.root}")
    n = presets_of(MulanConfig)["tiny"].crop_samples
    wav, caps, labels = twin_batch(groups, 3, n, np.random.default_rng(0))
    assert wav.shape == (6, n) and len(caps) == len(labels) == 6
    for r in range(0, 6, 2):                    # a pair: one passage, two tempi
        a, b = labels[r], labels[r + 1]
        assert a["bpm"] != b["bpm"] and {a.get("tempo_variant_of"), b.get("tempo_variant_of")} \
            - {None} and a["melody_instrument"] == b["melody_instrument"]
    path = groups[0][1][0]
    np.testing.assert_array_equal(read_crop(path, n, None, offset=0)[0],
                                  read_crop(path, n + 5, None, offset=0)[0][:n])
    base = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'base'}", "loop.steps=2",
        "loop.ckpt_every=2", "eval_every=2"])
    w0 = train_mulan(base, progress=False)
    m0, _ = load_mulan(w0)
    ft = resolve(MulanTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'ft'}", "loop.steps=2",
        "loop.ckpt_every=2", "eval_every=2", f"init={w0}", f"twin_data={extra},{modes}",
        "twin_pairs=2", "keep_rvq=true", "lr=1e-2"])
    m1, meta = load_mulan(train_mulan(ft, progress=False))
    assert meta["report"]["rvq_kept_from"] == str(w0)
    np.testing.assert_array_equal(np.asarray(m1.rvq.codebook[...]),
                                  np.asarray(m0.rvq.codebook[...]))
    x = jnp.asarray(wav[:2])
    assert not np.allclose(np.asarray(m1.embed_audio(x)), np.asarray(m0.embed_audio(x)))
    for bad, match in ((["twin_pairs=2"], "twin_data"), ([f"twin_data={extra}"], "twin_pairs"),
                       (["keep_rvq=true"], "init=")):
        with pytest.raises(ValueError, match=match):
            train_mulan(resolve(MulanTrainConfig, "tiny", [
                f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'z'}",
                "loop.steps=1", *bad]), progress=False)

def test_save_load_round_trip_is_exact(tiny_model, tmp_path):
    model = nnx.clone(tiny_model)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 128))
    fit_conditioning_rvq(model, x / np.linalg.norm(x, axis=1, keepdims=True), ema_passes=0)
    save_mulan(tmp_path / "w", model, meta={"note": "test"})
    again, meta = load_mulan(tmp_path / "w")
    assert meta["note"] == "test" and meta["component"] == "mulan"
    wav = rng.normal(0, 0.1, (2, model.cfg.crop_samples)).astype(np.float32)
    prompts = ["a calm chorale", "a fast reel with drums"]
    np.testing.assert_array_equal(embed_audio_batched(model, wav),
                                  embed_audio_batched(again, wav))
    np.testing.assert_array_equal(model.embed_prompts(prompts), again.embed_prompts(prompts))
    np.testing.assert_array_equal(model.tokens_for_text(prompts), again.tokens_for_text(prompts))
    np.testing.assert_array_equal(model.tokens_for_audio(wav), again.tokens_for_audio(wav))
    with pytest.raises(MulanError, match="not a MuLan folder"):
        load_mulan(tmp_path)


def test_evaluate_mulan_end_to_end_on_the_tiny_corpus(trained):
    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.mulan import evaluate_mulan, format_table

    cfg, weights = trained
    model, _ = load_mulan(weights)
    clips = load_clips(cfg.data_root)
    rep = evaluate_mulan(model, clips, clips, cfg.data_root, progress=False)
    assert set(rep["counterfactual"]) == {"mode", "tempo"}
    for v in rep["counterfactual"].values():
        assert v["pairs"] > 0 and 0.0 <= v["accuracy"] <= 1.0
    assert rep["pool"] == len([c for c in clips if c.captions])
    table = format_table(rep)
    assert "mode flipped" in table and "zero-shot attribute" in table


def test_normalized_music_branches_grow_from_init_at_unit_scale(tiny_model):
    """music_norm=true: each branch's output is layer-normalized (zero mean, unit variance
    per clip), every other weight is copied from an init model without it, and the config
    refuses the normalization without the branches."""
    m0 = tiny_model
    cfg = dataclasses.replace(m0.cfg, music_norm=True)
    grown = Mulan(cfg, m0.tokenizer, rngs=nnx.Rngs(5, vq=6))
    fresh = init_from(grown, m0)
    assert sorted(fresh) == ["audio/music/pitch_out_norm/bias", "audio/music/pitch_out_norm/scale",
                             "audio/music/tempo_out_norm/bias", "audio/music/tempo_out_norm/scale"]
    np.testing.assert_array_equal(np.asarray(grown.audio_proj.kernel[...]),
                                  np.asarray(m0.audio_proj.kernel[...]))
    wav = jnp.asarray(np.random.default_rng(2).normal(0, 0.1, (3, cfg.crop_samples)), jnp.float32)
    feats = np.asarray(grown.audio(wav))
    w, d = cfg.music_width, cfg.audio_width
    for branch in (feats[:, d:d + w], feats[:, d + w:]):
        np.testing.assert_allclose(branch.mean(-1), 0.0, atol=1e-4)
        np.testing.assert_allclose(branch.std(-1), 1.0, atol=5e-2)
    np.testing.assert_array_equal(feats[:, :d], np.asarray(m0.audio(wav))[:, :d])
    e = np.asarray(grown.embed_audio(wav))
    np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="music_features=true"):
        resolve(MulanConfig, "tiny", ["music_features=false", "music_norm=true"])
    with pytest.raises(ValueError, match="another model config"):
        init_from(m0, grown)    # dropping the normalization is not a growth


def test_standardizing_the_music_branches_is_exact_through_the_rotation_max(tiny_model):
    """music_standardize: the branches' outputs on the calibration crops come out with mean
    0 and std 1 per dimension (the fold into chroma_out commutes with the max over the 12
    rotations), the ConvNeXt part is untouched, and the LayerNorm option is refused."""
    from training.mulan import standardize_music_branches

    m = Mulan(tiny_model.cfg, tiny_model.tokenizer, rngs=nnx.Rngs(3, vq=4))
    cfg = m.cfg
    t = np.arange(cfg.crop_samples) / cfg.sample_rate
    rng = np.random.default_rng(0)
    wav = np.stack([0.3 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * b * t))
                    + rng.normal(0, 0.01, t.shape)
                    for f, b in zip(rng.uniform(100, 800, 24), rng.uniform(0.5, 4, 24),
                                    strict=True)]
                   ).astype(np.float32)
    conv_before = np.asarray(m.audio(jnp.asarray(wav)))[:, :cfg.audio_width]
    before = standardize_music_branches(m, wav, batch=10)
    assert set(before) == {"pitch_std_before", "tempo_std_before"}
    feats = np.asarray(m.audio(jnp.asarray(wav)), np.float64)
    music = feats[:, cfg.audio_width:]
    np.testing.assert_allclose(music.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(music.std(0), 1.0, atol=1e-2)
    np.testing.assert_array_equal(feats[:, :cfg.audio_width], conv_before)
    normed = Mulan(dataclasses.replace(cfg, music_norm=True), m.tokenizer, rngs=nnx.Rngs(3, vq=4))
    with pytest.raises(ValueError, match="choose one"):
        standardize_music_branches(normed, wav)
    plain = Mulan(dataclasses.replace(cfg, music_features=False), m.tokenizer,
                  rngs=nnx.Rngs(3, vq=4))
    with pytest.raises(ValueError, match="music_features=true"):
        standardize_music_branches(plain, wav)
