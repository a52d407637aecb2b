"""The mode reward on semantic tokens: key classes, learnability, prompts, I/O, ensembles."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import presets_of
from rewards.mode import (
    ModeConfig,
    ModeEnsemble,
    ModeError,
    ModeModel,
    ModeReward,
    key_index,
    load_mode,
    mode_from_prompt,
    mode_loss,
    mode_probs,
    save_mode,
)
from training.loop import adamw_cosine


def test_key_index_and_mode_probs():
    assert key_index("C", "major") == 0 and key_index("A", "minor") == 21
    assert key_index("Db", "major") == key_index("C#", "major") == 1
    with pytest.raises(ModeError, match="unknown tonic"):
        key_index("H", "major")
    with pytest.raises(ModeError, match="mode"):
        key_index("C", "dorian")
    logits = jnp.log(jnp.asarray([[0.5] + [0.0] * 11 + [0.25] * 2 + [0.0] * 10]) + 1e-12)
    np.testing.assert_allclose(np.asarray(mode_probs(logits)), [[0.5, 0.5]], atol=1e-6)


def test_mode_from_prompt_reads_mode_and_mood_words():
    assert mode_from_prompt("A chorale in A minor on organ") == "minor"
    assert mode_from_prompt("Melancholic waltz for strings") == "minor"
    assert mode_from_prompt("a BRIGHT march in D major") == "major"
    assert mode_from_prompt("a chorale on organ") is None
    assert mode_from_prompt("a sad tune in a major key") is None          # both: none
    assert mode_from_prompt("a minority report") is None                   # whole words only


def _keyed_batch(rng: np.random.Generator, vocab: int, b: int, s: int):
    """Streams whose tokens are drawn from a key's scale: token t ↦ pitch class t % 12; a
    major key's stream uses its major scale's pitch classes, a minor key's the natural
    minor's (the same tonic, degrees 3, 6, 7 lowered), the tonic triad's degrees drawn more
    often — as in music, where it tells a key from its relative (C major and A minor share
    their seven pitch classes)."""
    major, minor = np.array([0, 2, 4, 5, 7, 9, 11]), np.array([0, 2, 3, 5, 7, 8, 10])
    keys = rng.integers(0, 24, b)
    x = np.empty((b, s), np.int32)
    for i, k in enumerate(keys):
        scale = (k % 12 + (minor if k >= 12 else major)) % 12
        pcs = rng.choice(scale, s, p=np.array([4, 1, 2.5, 1, 2.5, 1, 1]) / 13)
        x[i] = pcs + 12 * rng.integers(0, vocab // 12, s)
    return x, keys.astype(np.int32)


def test_a_tiny_model_learns_mode_from_scale_content():
    """Trained 200 steps on synthetic streams drawn from one key's scale, it reads the mode
    of held-out streams far above chance — key-relatively: every tonic appears in both
    modes, so no single pitch class tells them apart."""
    cfg = dataclasses.replace(presets_of(ModeConfig)["tiny"], vocab=48, embed=16, width=32,
                              hidden=32, dropout=0.0)
    model = ModeModel(cfg, rngs=nnx.Rngs(0))
    opt = adamw_cosine(model, lr=1e-2, warmup_steps=10, total_steps=200, weight_decay=0.0,
                       grad_clip=1.0)

    @nnx.jit
    def step(model, opt, x, y):
        (_, m), g = nnx.value_and_grad(mode_loss, has_aux=True)(model, x, y)
        opt.update(model, g)
        return m

    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = _keyed_batch(rng, cfg.vocab, 32, 40)
        step(model, opt, jnp.asarray(x), jnp.asarray(y))
    x, y = _keyed_batch(np.random.default_rng(1), cfg.vocab, 256, 40)
    _, m = mode_loss(model, jnp.asarray(x), jnp.asarray(y))
    assert float(m["mode_acc"]) > 0.8 and float(m["key_acc"]) > 0.3


def test_save_load_reward_ensemble_and_errors(tmp_path):
    cfg = presets_of(ModeConfig)["tiny"]
    members = [ModeModel(cfg, rngs=nnx.Rngs(s)) for s in range(3)]
    for m in members:
        m.eval()
    save_mode(tmp_path / "one", members[0], meta={"steps": 0})
    back, meta = load_mode(tmp_path / "one")
    x = jax.random.randint(jax.random.key(0), (4, 20), 0, cfg.vocab)
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(members[0](x)), rtol=1e-5)
    assert meta["component"] == "mode"

    reward = ModeReward(tmp_path / "one")
    prompts = ["a sad waltz", "minor", "a bright march", "a chorale"]
    r = reward(prompts, np.asarray(x))
    p = np.asarray(mode_probs(members[0](x)))
    np.testing.assert_allclose(r[:3], [p[0, 1], p[1, 1], p[2, 0]], rtol=1e-5)
    assert np.isnan(r[3])
    np.testing.assert_allclose(reward.minor(np.asarray(x)), p[:, 1], rtol=1e-5)
    with pytest.raises(ModeError, match="prompts for"):
        reward(["minor"], np.asarray(x))
    with pytest.raises(ModeError, match="another tokenizer"):
        reward(prompts, np.asarray(x) + cfg.vocab)
    with pytest.raises(ModeError, match="at least min_frames"):
        reward(prompts, np.asarray(x)[:, :cfg.min_frames - 1])
    with pytest.raises(ModeError, match="needs an ensemble"):
        ModeReward(tmp_path / "one", combine="min")

    ens = ModeEnsemble.of(members)
    save_mode(tmp_path / "ens", ens, meta={"steps": 0})
    back, meta = load_mode(tmp_path / "ens")
    assert isinstance(back, ModeEnsemble) and meta["members"] == 3
    mean = np.mean([np.asarray(mode_probs(m(x))) for m in members], 0)
    r_mean = ModeReward(tmp_path / "ens")(prompts, np.asarray(x))
    np.testing.assert_allclose(r_mean[:3], [mean[0, 1], mean[1, 1], mean[2, 0]], rtol=1e-5)
    r_min = ModeReward(tmp_path / "ens", combine="min")(prompts, np.asarray(x))
    per = np.array([np.asarray(mode_probs(m(x))) for m in members])
    np.testing.assert_allclose(r_min[:3], [per[:, 0, 1].min(), per[:, 1, 1].min(),
                                           per[:, 2, 0].min()], rtol=1e-5)
    assert np.all(r_min[:3] <= r_mean[:3] + 1e-6)
    with pytest.raises(ModeError, match="combine"):
        ModeReward(tmp_path / "ens", combine="median")
    with pytest.raises(ModeError, match="config differs"):
        ModeEnsemble.of([members[0], ModeModel(dataclasses.replace(cfg, hidden=8),
                                               rngs=nnx.Rngs(0))])
    with pytest.raises(ModeError, match="no mode model"):
        load_mode(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "meta.json").write_text('{"component": "tempo"}')
    with pytest.raises(ModeError, match="not a mode model"):
        load_mode(tmp_path / "other")


def test_codec_level_model_reads_every_level_and_refuses_other_shapes(tmp_path):
    """``levels`` = q: codec tokens [b, t, q] with a table per level, pooled to half rate."""
    cfg = dataclasses.replace(presets_of(ModeConfig)["tiny"], levels=3, pool=2, min_frames=8)
    model = ModeModel(cfg, rngs=nnx.Rngs(0))
    model.eval()
    x = np.asarray(jax.random.randint(jax.random.key(1), (2, 12, 3), 0, cfg.vocab))
    out = np.asarray(model(jnp.asarray(x)))
    assert out.shape == (2, 24)
    for q in range(3):                          # each level's tokens reach the logits
        y = x.copy()
        y[:, :, q] = (y[:, :, q] + 1) % cfg.vocab
        assert not np.allclose(np.asarray(model(jnp.asarray(y))), out)
    # the same id on two levels is two different embeddings
    same = np.zeros((1, 12, 3), np.int32)
    swapped = same.copy()
    swapped[..., 0] = 1
    swapped2 = same.copy()
    swapped2[..., 1] = 1
    assert not np.allclose(np.asarray(model(jnp.asarray(swapped))),
                           np.asarray(model(jnp.asarray(swapped2))))
    with pytest.raises(ModeError, match=r"codec tokens \[batch, frames, 3\]"):
        model(jnp.asarray(x[..., 0]))
    with pytest.raises(ModeError, match="min_frames"):
        model(jnp.asarray(x[:, :7]))

    save_mode(tmp_path / "codec", model, meta={"steps": 0})
    reward = ModeReward(tmp_path / "codec")
    assert reward.model.cfg.levels == 3
    wide = np.concatenate([x, x[..., :1]], axis=2)            # stage A may write more levels
    np.testing.assert_allclose(reward(["minor", "major"], wide),
                               reward(["minor", "major"], x), rtol=1e-6)
    with pytest.raises(ModeError, match="codec tokens"):
        reward(["minor", "major"], x[..., 0])
    with pytest.raises(ModeError, match="codec tokens"):
        reward(["minor", "major"], x[..., :2])
