"""The tempo reward on semantic tokens: periodicity features, targets, learnability, I/O."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import presets_of
from rewards.tempo import (
    TempoConfig,
    TempoEnsemble,
    TempoError,
    TempoModel,
    TempoReward,
    autocorrelation,
    bin_centers,
    bpm_from_prompt,
    closeness,
    load_tempo,
    predict_bpm,
    save_tempo,
    soft_targets,
    tempo_loss,
    token_recurrence,
    within_mass,
)
from training.loop import adamw_cosine


def test_autocorrelation_peaks_at_the_period():
    t = np.arange(200)
    x = np.stack([np.sin(2 * np.pi * t / 12), (t % 17 == 0).astype(float)], -1)[None]
    ac = np.asarray(autocorrelation(jnp.asarray(x, jnp.float32), 5, 40))[0]   # [c, l]
    lags = np.arange(5, 41)
    assert lags[np.argmax(ac[0])] in (12, 24, 36)
    assert lags[np.argmax(ac[1])] in (17, 34)
    assert np.all(np.abs(ac) <= 1.1)          # unbiased: near, not exactly, bounded by 1


def test_token_recurrence_counts_repeats_at_each_lag():
    seq = jnp.asarray(np.tile(np.arange(7), 20)[None])                       # period 7
    rec = np.asarray(token_recurrence(seq, 1, 14))[0]
    assert rec[6] == pytest.approx(1.0) and rec[13] == pytest.approx(1.0)     # lags 7, 14
    assert rec[0] == 0.0 and rec[2] == 0.0


def test_targets_and_mass():
    cfg = TempoConfig()
    centers = bin_centers(cfg)
    assert centers[0] == pytest.approx(cfg.min_bpm) and centers[-1] == pytest.approx(cfg.max_bpm)
    tgt = np.asarray(soft_targets(cfg, jnp.asarray([97.0, 150.0])))
    np.testing.assert_allclose(tgt.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.abs(centers[tgt.argmax(-1)] / [97.0, 150.0] - 1) < 0.03)
    peaked = 50.0 * jnp.log(jnp.asarray(tgt) + 1e-9)
    mass = np.asarray(within_mass(cfg, peaked, jnp.asarray([97.0, 150.0])))
    assert np.all(mass > 0.99)
    assert float(within_mass(cfg, peaked[:1], jnp.asarray([150.0]))[0]) < 1e-3
    assert np.isclose(float(predict_bpm(cfg, peaked[:1])[0]), centers[tgt[0].argmax()])
    # the smooth reward ranks misses by distance: 1 at the target, falling with |log ratio|
    near = [float(closeness(cfg, peaked[:1], jnp.asarray([t]), 0.15)[0])
            for t in (97.0, 110.0, 130.0, 190.0)]
    assert near[0] > 0.95 and near[0] > near[1] > near[2] > near[3] > 0


def test_bpm_from_prompt():
    assert bpm_from_prompt("Baroque chorale, piano, 97 bpm, E major") == 97.0
    assert bpm_from_prompt("The tempo is mid-tempo, about 120 BPM, and") == 120.0
    assert bpm_from_prompt("steady (97.5 beats per minute)") == 97.5
    assert np.isnan(bpm_from_prompt("a calm piano piece"))


def _periodic_batch(rng: np.random.Generator, cfg: TempoConfig, n: int, frames: int):
    """Token streams whose pattern repeats once per beat at a random BPM (noise added)."""
    bpm = np.exp(rng.uniform(np.log(60), np.log(180), n)).astype(np.float32)
    seqs = []
    for b in bpm:
        period = cfg.frame_rate * 60.0 / b
        phase = (np.arange(frames) % period) / period                      # [0, 1) per beat
        tok = np.minimum((phase * 4).astype(int), 3) + 4 * rng.integers(0, 3)
        noise = rng.random(frames) < 0.2
        seqs.append(np.where(noise, rng.integers(0, cfg.vocab, frames), tok))
    return np.stack(seqs).astype(np.int32), bpm


def test_a_tiny_model_learns_tempo_from_periodicity():
    """Trained 150 steps on synthetic streams with one period per beat, it reads the BPM of
    held-out streams within 8 % far above chance (the argmax bin of 16 over 60–180)."""
    cfg = dataclasses.replace(presets_of(TempoConfig)["tiny"], max_lag=30, min_bpm=55.0,
                              max_bpm=200.0, bins=32, width=16, hidden=32, channels=4)
    model = TempoModel(cfg, rngs=nnx.Rngs(0))
    opt = adamw_cosine(model, lr=1e-2, warmup_steps=10, total_steps=150, weight_decay=0.0,
                       grad_clip=1.0)

    @nnx.jit
    def step(model, opt, x, y):
        (_, m), g = nnx.value_and_grad(tempo_loss, has_aux=True)(model, x, y)
        opt.update(model, g)
        return m

    rng = np.random.default_rng(0)
    for _ in range(150):
        x, y = _periodic_batch(rng, cfg, 32, 100)
        step(model, opt, jnp.asarray(x), jnp.asarray(y))
    x, y = _periodic_batch(np.random.default_rng(1), cfg, 128, 100)
    _, m = tempo_loss(model, jnp.asarray(x), jnp.asarray(y))
    pred = np.asarray(predict_bpm(cfg, model(jnp.asarray(x))))
    chance = np.mean(np.abs(pred[:, None] / y[None, :] - 1) <= 0.08)
    assert float(m["within_8pct"]) > max(0.5, 3 * chance)


def test_save_load_reward_and_errors(tmp_path):
    cfg = presets_of(TempoConfig)["tiny"]
    model = TempoModel(cfg, rngs=nnx.Rngs(3))
    save_tempo(tmp_path / "t", model, meta={"steps": 0})
    back, meta = load_tempo(tmp_path / "t")
    x = jax.random.randint(jax.random.key(0), (3, 40), 0, cfg.vocab)
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(model(x)), rtol=1e-6)
    assert meta["component"] == "tempo"

    reward = TempoReward(tmp_path / "t")
    r = reward([97.0, "a piano piece at 120 bpm", "no number here"], np.asarray(x))
    smooth = TempoReward(tmp_path / "t", width=0.15)([97.0, 120.0, 97.0], np.asarray(x))
    assert np.all((smooth >= 0) & (smooth <= 1))
    with pytest.raises(TempoError, match="width"):
        TempoReward(tmp_path / "t", width=-1.0)
    assert r.shape == (3,) and np.all((r[:2] >= 0) & (r[:2] <= 1)) and np.isnan(r[2])
    # a prompt with tempo words but no number scores its bucket's mass; the three buckets
    # partition the bins, so their masses sum to 1
    words = reward(["a leisurely chorale", "a mid-tempo chorale", "a brisk chorale"],
                   np.repeat(np.asarray(x[:1]), 3, axis=0))
    assert np.all((words >= 0) & (words <= 1)) and abs(float(words.sum()) - 1.0) < 1e-5
    assert np.isnan(reward(["brisk yet calm"], np.asarray(x[:1]))[0])   # two buckets: none
    assert reward.bpm(np.asarray(x)).shape == (3,)
    with pytest.raises(TempoError, match="targets for"):
        reward([97.0], np.asarray(x))
    with pytest.raises(TempoError, match="another semantic tokenizer"):
        reward([97.0] * 3, np.asarray(x) + cfg.vocab)
    with pytest.raises(TempoError, match="needs more than max_lag"):
        reward([97.0] * 3, np.asarray(x)[:, :cfg.max_lag])
    with pytest.raises(TempoError, match="no tempo model"):
        load_tempo(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "meta.json").write_text('{"component": "diversity"}')
    with pytest.raises(TempoError, match="not a tempo model"):
        load_tempo(tmp_path / "other")


def test_an_ensemble_averages_its_members_probabilities(tmp_path):
    """The ensemble's output is log of the members' mean probability; it saves to and loads
    from one folder, scores rewards like one model, and refuses members of two configs."""
    cfg = presets_of(TempoConfig)["tiny"]
    members = [TempoModel(cfg, rngs=nnx.Rngs(s)) for s in range(3)]
    ens = TempoEnsemble.of(members)
    x = jax.random.randint(jax.random.key(1), (4, 40), 0, cfg.vocab)
    mean = np.mean([np.asarray(jax.nn.softmax(m(x), -1)) for m in members], 0)
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(ens(x), -1)), mean, rtol=1e-5,
                               atol=1e-7)
    save_tempo(tmp_path / "ens", ens, meta={"steps": 0})
    back, meta = load_tempo(tmp_path / "ens")
    assert isinstance(back, TempoEnsemble) and meta["members"] == 3
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(ens(x)), rtol=1e-6)
    r = TempoReward(tmp_path / "ens")([90.0] * 4, np.asarray(x))
    inside = np.abs(bin_centers(cfg) / 90.0 - 1) <= 0.08
    np.testing.assert_allclose(r, mean[:, inside].sum(-1), rtol=1e-5)
    # worst case: the least of the members' own masses (never above the mean's)
    r_min = TempoReward(tmp_path / "ens", combine="min")([90.0] * 4, np.asarray(x))
    per = [np.asarray(jax.nn.softmax(m(x), -1))[:, inside].sum(-1) for m in members]
    np.testing.assert_allclose(r_min, np.min(per, 0), rtol=1e-5)
    assert np.all(r_min <= r + 1e-6)
    save_tempo(tmp_path / "one", members[0], meta={"steps": 0})
    with pytest.raises(TempoError, match="needs an ensemble"):
        TempoReward(tmp_path / "one", combine="min")
    with pytest.raises(TempoError, match="combine"):
        TempoReward(tmp_path / "ens", combine="median")
    other = dataclasses.replace(cfg, bins=cfg.bins * 2)
    with pytest.raises(TempoError, match="config differs"):
        TempoEnsemble.of([members[0], TempoModel(other, rngs=nnx.Rngs(0))])
    with pytest.raises(TempoError, match="at least one member"):
        TempoEnsemble.of([])


def test_semantic_best_of_by_tempo_from_the_cli(tmp_path, capsys):
    """`musicrl generate --semantic-best-of N` ranks stage S's candidates by the tempo reward
    read from the prompt's BPM; a bad --tempo folder is refused with a message."""
    import json

    from musicrl.cli import main
    from musicrl.pipeline import Pipeline
    from musicrl.testing import tiny_bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    vocab = Pipeline.from_pretrained(bundle).semantic.cfg.vocab
    cfg = dataclasses.replace(presets_of(TempoConfig)["tiny"], vocab=vocab)
    save_tempo(tmp_path / "tempo", TempoModel(cfg, rngs=nnx.Rngs(0)), meta={"steps": 0})
    out = tmp_path / "many"
    assert main(["generate", "drums at 120 bpm", "no number", "--model", str(bundle),
                 "--seconds", "2", "--semantic-best-of", "3", "--tempo", str(tmp_path / "tempo"),
                 "-o", str(out)]) == 0
    assert len(json.loads((out / "prompts.json").read_text())) == 2
    assert main(["generate", "x", "--model", str(bundle), "--semantic-best-of", "2",
                 "--tempo", str(tmp_path / "nope"), "-o", str(tmp_path / "x.wav")]) == 2
    assert "no tempo model" in capsys.readouterr().err
    # --tempo-combine min: an ensemble's least sure member; one model is refused
    save_tempo(tmp_path / "ens", TempoEnsemble(cfg, 2, rngs=nnx.Rngs(1)), meta={"steps": 0})
    assert main(["generate", "drums at 120 bpm", "--model", str(bundle), "--seconds", "2",
                 "--semantic-best-of", "2", "--tempo", str(tmp_path / "ens"),
                 "--tempo-combine", "min", "-o", str(tmp_path / "e.wav")]) == 0
    assert main(["generate", "x", "--model", str(bundle), "--semantic-best-of", "2",
                 "--tempo", str(tmp_path / "tempo"), "--tempo-combine", "min",
                 "-o", str(tmp_path / "y.wav")]) == 2
    assert "needs an ensemble" in capsys.readouterr().err
    # stage A by the tempo of each rendering's audio (--acoustic-tempo-reward), after stage S
    assert main(["generate", "drums at 120 bpm", "--model", str(bundle), "--seconds", "2",
                 "--semantic-best-of", "2", "--tempo", str(tmp_path / "ens"),
                 "--acoustic-best-of", "3", "--acoustic-tempo-reward", str(tmp_path / "ens"),
                 "--acoustic-tempo-combine", "min", "-o", str(tmp_path / "a.wav")]) == 0
    for extra, msg in (
            (["--acoustic-tempo-reward", str(tmp_path / "ens")], "--acoustic-best-of N"),
            (["--acoustic-best-of", "2", "--acoustic-tempo-reward", str(tmp_path / "nope")],
             "no tempo model"),
            (["--acoustic-best-of", "2", "--acoustic-tempo-reward", str(tmp_path / "tempo"),
              "--acoustic-tempo-combine", "min"], "needs an ensemble")):
        capsys.readouterr()
        assert main(["generate", "x", "--model", str(bundle), "--seconds", "2", *extra,
                     "-o", str(tmp_path / "z.wav")]) == 2, extra
        assert msg in capsys.readouterr().err, extra


def test_bucket_from_prompt_reads_the_caption_tempo_words():
    from rewards.tempo import bucket_from_prompt

    assert bucket_from_prompt("Leisurely four-part chorale on trumpet.") == "slow"
    assert bucket_from_prompt("A slow-moving hymn") == "slow"
    assert bucket_from_prompt("Mid-tempo Baroque chorale on flute") == "medium"
    assert bucket_from_prompt("an UPBEAT dance tune") == "fast"
    assert bucket_from_prompt("a chorale on organ") is None
    assert bucket_from_prompt("a steady, energetic groove") is None      # two buckets


def test_audio_tempo_reward_scores_the_retokenized_audio(tmp_path):
    """AudioTempoReward = the tempo reward on the semantic tokens of the audio (or of the
    decoded codec tokens); a tokenizer of another vocabulary and bad shapes are refused."""
    from musicrl.checkpoint import save_weights
    from musicrl.codec.config import CodecConfig
    from musicrl.codec.model import Codec
    from musicrl.config import resolve, to_dict
    from musicrl.semantic import SemanticTokenizer
    from rewards.tempo import AudioTempoReward

    cfg = presets_of(TempoConfig)["tiny"]                       # vocab 16
    save_tempo(tmp_path / "ens", TempoEnsemble(cfg, 2, rngs=nnx.Rngs(0)), meta={"steps": 0})
    for k in (16, 8):
        tok = SemanticTokenizer("librosa", k)
        tok.centroids[...] = np.random.default_rng(k).standard_normal(
            (k, tok.features.dim)).astype(np.float32)
        save_weights(tmp_path / f"sem{k}", tok,
                     meta={"config": {"features": "librosa", "num_clusters": k}})
    ccfg = resolve(CodecConfig, "tiny")
    codec = Codec(ccfg, rngs=nnx.Rngs(0, vq=1))
    save_weights(tmp_path / "codec", codec, meta={"component": "codec", "config": to_dict(ccfg)})

    t = np.arange(3 * 16_000) / 16_000
    clicks = np.stack([np.sin(2 * np.pi * 440 * t) * (np.mod(t, 60 / bpm) < 0.05)
                       for bpm in (90, 120, 150)]).astype(np.float32)
    r = AudioTempoReward(tmp_path / "ens", semantic_dir=tmp_path / "sem16",
                         codec_dir=tmp_path / "codec", combine="min")
    got = r.score_audio([90.0, "a reel at 120 bpm", "no tempo"], clicks)
    want = TempoReward(tmp_path / "ens", combine="min")(
        [90.0, "a reel at 120 bpm", "no tempo"], r.tokenizer.tokenize(clicks))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all((got[:2] >= 0) & (got[:2] <= 1)) and np.isnan(got[2])
    codes = np.asarray(codec.encode(jnp.asarray(clicks)))
    np.testing.assert_allclose(
        r([90.0, 120.0, 150.0], codes),
        r.score_audio([90.0, 120.0, 150.0], np.asarray(codec.decode(jnp.asarray(codes)))),
        rtol=1e-6)
    with pytest.raises(TempoError, match="whose tokens it was trained on"):
        AudioTempoReward(tmp_path / "ens", semantic_dir=tmp_path / "sem8")
    with pytest.raises(TempoError, match="not a semantic tokenizer"):
        AudioTempoReward(tmp_path / "ens", semantic_dir=tmp_path / "nope")
    bare = AudioTempoReward(tmp_path / "ens", semantic_dir=tmp_path / "sem16")
    with pytest.raises(TempoError, match="needs codec_dir"):
        bare([90.0], codes[:1])
    with pytest.raises(TempoError, match=r"\[batch, samples\]"):
        bare.score_audio([90.0], clicks[0])
    with pytest.raises(TempoError, match="shorter than"):
        bare.score_audio([90.0], clicks[:1, :8_000])
