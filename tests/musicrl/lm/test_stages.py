"""Stage models and decoding: the decode loop agrees with the teacher-forced forward pass,
conditioning dropout and CFG do what they say, sampling strategies are what they claim."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from musicrl.config import presets_of
from musicrl.lm.stages import StageConfig, StageLM, stage_loss, teacher_forcing
from musicrl.sampling import GREEDY, Sampler, sample_stage


def _stage(preset: str, kind: str = "transformer", pattern: str = "delay") -> StageLM:
    cfg = presets_of(StageConfig)[preset]
    cfg = dataclasses.replace(cfg, pattern=pattern,
                              backbone=dataclasses.replace(cfg.backbone, kind=kind))
    return StageLM(cfg, rngs=nnx.Rngs(0))


def _inputs(m: StageLM, b: int = 2, frames: int = 10):
    cfg = m.cfg
    mul = jax.random.randint(jax.random.key(1), (b, cfg.mulan_levels), 0, cfg.mulan_vocab)
    cond = (jax.random.randint(jax.random.key(2), (b, frames // cfg.cond_ratio), 0,
                               cfg.cond_vocab) if cfg.cond_vocab else None)
    return mul, cond


CASES = [("tiny", "transformer", "delay"), ("tiny", "griffin", "delay"),
         ("tiny-acoustic", "transformer", "delay"), ("tiny-acoustic", "griffin", "delay"),
         ("tiny-acoustic", "transformer", "flatten")]


@pytest.mark.parametrize("preset,kind,pattern", CASES)
def test_greedy_decode_equals_argmax_of_full_forward(preset, kind, pattern):
    """The while_loop decode (prefill + cached steps) picks, at every valid slot, the argmax
    of one teacher-forced forward pass over the decoded sequence."""
    m = _stage(preset, kind, pattern)
    mul, cond = _inputs(m)
    codes = sample_stage(m, mul, 10, key=jax.random.key(0), cond_bt=cond, sampler=GREEDY)
    assert codes.shape == (2, 10, m.cfg.levels)
    inputs, targets, layout, c = teacher_forcing(m.cfg, codes, cond)
    logits = m(mul, inputs, layout, c)
    match = jnp.argmax(logits, -1) == targets
    assert bool(jnp.all(jnp.where(jnp.asarray(layout.valid)[None], match, True)))
    assert int(codes.max()) < m.cfg.vocab and int(codes.min()) >= 0


@pytest.mark.parametrize("preset,pattern,guidance", [("tiny", "delay", 1.0),
                                                      ("tiny-acoustic", "delay", 3.0),
                                                      ("tiny-acoustic", "flatten", 1.0)])
def test_continuation_of_a_sample_reproduces_it(preset, pattern, guidance):
    """Continuing the first t0 frames of a sample with the same key gives the same sample:
    the prompt's slots are written exactly where the sampled ones were; a different prompt
    keeps its frames and changes what follows."""
    m = _stage(preset, pattern=pattern)
    mul, cond = _inputs(m)
    key = jax.random.key(5)
    full = sample_stage(m, mul, 10, key=key, cond_bt=cond, guidance=guidance)
    cont = sample_stage(m, mul, 10, key=key, cond_bt=cond, guidance=guidance,
                        prompt=full[:, :4])
    np.testing.assert_array_equal(np.asarray(cont), np.asarray(full))
    other = (full[:, :4] + 1) % m.cfg.vocab
    cont2 = sample_stage(m, mul, 10, key=key, cond_bt=cond, guidance=guidance, prompt=other)
    np.testing.assert_array_equal(np.asarray(cont2[:, :4]), np.asarray(other))
    with pytest.raises(ValueError, match="leaves nothing"):
        sample_stage(m, mul, 10, key=key, cond_bt=cond, prompt=full)
    with pytest.raises(ValueError, match="prompt must be"):
        sample_stage(m, mul, 10, key=key, cond_bt=cond, prompt=full[:1, :4])


def test_guidance_one_is_conditional_and_guidance_changes_samples():
    m = _stage("tiny-acoustic")
    mul, cond = _inputs(m)
    key = jax.random.key(3)
    a = sample_stage(m, mul, 10, key=key, cond_bt=cond, guidance=1.0, sampler=GREEDY)
    b = sample_stage(m, mul, 10, key=key, cond_bt=cond, guidance=1.0, sampler=GREEDY)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # γ = 0 is the unconditional model: equal to decoding with the prefix dropped.
    u = sample_stage(m, mul, 10, key=key, cond_bt=cond, guidance=0.0, sampler=GREEDY)
    inputs, targets, layout, c = teacher_forcing(m.cfg, u, cond)
    logits = m(mul, inputs, layout, c, drop_b=jnp.ones((2,), bool))
    match = jnp.argmax(logits, -1) == targets
    assert bool(jnp.all(jnp.where(jnp.asarray(layout.valid)[None], match, True)))


def test_conditioning_dropout_replaces_the_prefix():
    m = _stage("tiny")
    mul, _ = _inputs(m)
    codes = jax.random.randint(jax.random.key(4), (2, 10, 1), 0, m.cfg.vocab)
    inputs, _, layout, _ = teacher_forcing(m.cfg, codes)
    cond = m(mul, inputs, layout)
    drop = m(mul, inputs, layout, drop_b=jnp.array([True, False]))
    assert not np.allclose(cond[0], drop[0])
    np.testing.assert_allclose(cond[1], drop[1], rtol=1e-5, atol=1e-5)
    # dropped rows do not depend on the MuLan tokens at all
    other = m(mul[::-1], inputs, layout, drop_b=jnp.array([True, True]))
    np.testing.assert_allclose(m(mul, inputs, layout, drop_b=jnp.array([True, True])), other,
                               rtol=1e-5, atol=1e-5)


def test_loss_counts_only_valid_slots_and_decreases():
    m = _stage("tiny-acoustic")
    mul, cond = _inputs(m, b=4)
    codes = jax.random.randint(jax.random.key(5), (4, 10, m.cfg.levels), 0, m.cfg.vocab)
    loss, met = stage_loss(m, mul, codes, cond, jnp.zeros((4,), bool))
    # near-uniform at init
    assert abs(float(loss) - np.log(m.cfg.vocab)) < 0.5
    assert {"loss_q0", "loss_q1", "accuracy"} <= set(met)
    opt = nnx.Optimizer(m, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt):
        (loss, _), g = nnx.value_and_grad(stage_loss, has_aux=True)(
            m, mul, codes, cond, jnp.zeros((4,), bool))
        opt.update(m, g)
        return loss

    first = float(step(m, opt))
    for _ in range(30):
        last = float(step(m, opt))
    assert last < first - 0.5


@pytest.mark.parametrize("preset", ["tiny", "tiny-acoustic"])
def test_early_weight_and_input_noise(preset):
    """``early_weight`` reweights exactly the slots of the first frames (checked against the
    per-slot cross-entropy); ``input_noise`` perturbs the inputs only, never the targets,
    and is off (bit-identical) at 0."""
    from musicrl.lm.stages import stage_pattern

    m = _stage(preset)
    mul, cond = _inputs(m, b=3)
    codes = jax.random.randint(jax.random.key(6), (3, 10, m.cfg.levels), 0, m.cfg.vocab)
    drop = jnp.zeros((3,), bool)
    plain, met0 = stage_loss(m, mul, codes, cond, drop)
    inputs, targets, layout, c = teacher_forcing(m.cfg, codes, cond)
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
        m(mul, inputs, layout, c), jnp.minimum(targets, m.cfg.vocab - 1)))
    valid = np.broadcast_to(layout.valid[None], ce.shape)
    early = np.broadcast_to((stage_pattern(m.cfg).layout(10).frame < 3)[None], ce.shape) & valid
    obj, met = stage_loss(m, mul, codes, cond, drop, early_frames=3, early_weight=4.0)
    w = valid + 3.0 * early
    np.testing.assert_allclose(float(obj), (ce * w).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(met["loss_early"]), ce[early].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(met["loss"]), float(plain), rtol=1e-6)
    one, _ = stage_loss(m, mul, codes, cond, drop, early_frames=3, early_weight=1.0)
    np.testing.assert_allclose(float(one), float(plain), rtol=1e-6)
    # input noise
    key = jax.random.key(7)
    same, _ = stage_loss(m, mul, codes, cond, drop, input_noise=0.0, noise_key=key)
    assert float(same) == float(plain)
    noisy, metn = stage_loss(m, mul, codes, cond, drop, input_noise=0.5, noise_key=key)
    assert np.isfinite(float(noisy)) and float(noisy) != float(plain)
    assert set(metn) == set(met0)
    with pytest.raises(ValueError, match="noise_key"):
        stage_loss(m, mul, codes, cond, drop, input_noise=0.5)



def test_prefix_contrast_loss_is_the_twin_likelihood_ratio():
    """Δ of row x = log p(x | own prefix) − log p(x | its pair's prefix), from one batched
    pass (checked against per-row cross-entropies); a pair sharing one prefix has Δ = 0
    (loss log 2); a few steps on it make the own prefix win; odd batches are refused."""
    from musicrl.lm.stages import prefix_contrast_loss, sequence_logprob

    m = _stage("tiny")
    mul, _ = _inputs(m, b=4)
    codes = jax.random.randint(jax.random.key(8), (4, 10, 1), 0, m.cfg.vocab)
    inputs, targets, layout, _ = teacher_forcing(m.cfg, codes)
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
        m(mul, inputs, layout, None), jnp.minimum(targets, m.cfg.vocab - 1)))
    own = -(ce * np.broadcast_to(layout.valid[None], ce.shape)).sum((1, 2))
    logp, slots = sequence_logprob(m, mul, codes)
    np.testing.assert_allclose(np.asarray(logp), own, rtol=1e-5)
    assert np.all(np.asarray(slots) == layout.valid.sum())
    swapped = np.asarray(sequence_logprob(m, mul[jnp.array([1, 0, 3, 2])], codes)[0])
    loss, met = prefix_contrast_loss(m, mul, codes, beta=0.5)
    delta = own - swapped
    np.testing.assert_allclose(float(loss), np.mean(np.logaddexp(0, -0.5 * delta)), rtol=1e-5)
    np.testing.assert_allclose(float(met["own_wins"]), np.mean(delta > 0))
    same = mul.at[1].set(mul[0]).at[3].set(mul[2])
    tie, met_tie = prefix_contrast_loss(m, same, codes)
    np.testing.assert_allclose(float(tie), np.log(2), rtol=1e-6)
    assert float(met_tie["gap"]) == 0.0
    opt = nnx.Optimizer(m, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt):
        (loss, met), g = nnx.value_and_grad(prefix_contrast_loss, has_aux=True)(m, mul, codes)
        opt.update(m, g)
        return met

    for _ in range(20):
        met = step(m, opt)
    assert float(met["own_wins"]) == 1.0 and float(met["gap"]) > 0
    with pytest.raises(ValueError, match="twin pairs"):
        prefix_contrast_loss(m, mul[:3], codes[:3])

def test_sampler_strategies():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.key(0), 2000)
    draw = lambda s: np.asarray(jax.vmap(lambda k: s(k, logits))(keys))[:, 0]  # noqa: E731
    assert set(np.unique(draw(Sampler(top_k=2)))) <= {0, 1}
    assert set(np.unique(draw(Sampler(top_p=0.7)))) <= {0, 1}
    assert set(np.unique(draw(Sampler(top_p=0.81)))) == {0, 1, 2}
    freq = np.bincount(draw(Sampler()), minlength=4) / len(keys)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.04)
    assert np.all(draw(GREEDY) == 0)
    with pytest.raises(ValueError):
        Sampler(top_p=0.0)
    with pytest.raises(ValueError):
        Sampler(temperature=-1.0)


def _codebook_stage(preset: str = "tiny") -> tuple[StageLM, np.ndarray]:
    cfg = dataclasses.replace(presets_of(StageConfig)[preset], mulan_embed="codebook")
    m = StageLM(cfg, rngs=nnx.Rngs(0))
    cb = np.random.default_rng(0).normal(size=(cfg.mulan_levels + 2, cfg.mulan_vocab,
                                               cfg.mulan_dim)).astype(np.float32)
    m.set_mulan_codebook(cb)           # a MuLan may have more levels than the stage reads
    return m, cb


def test_codebook_prefix_is_the_projected_cumulative_reconstruction():
    m, cb = _codebook_stage()
    mul, _ = _inputs(m)
    x = np.asarray(m.embed_prefix(mul, jnp.array([False, True])))
    ids = np.asarray(mul[0])
    cum = np.cumsum(cb[np.arange(len(ids)), ids], axis=0)                 # [m, e]
    want = cum @ np.asarray(m.mulan_proj[...]) + np.asarray(m.mulan_level[...])
    np.testing.assert_allclose(x[0], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x[1], np.asarray(m.mulan_null[...]), rtol=1e-6)
    # no 1024-row table per level: the stage is smaller than in table mode
    table = StageLM(presets_of(StageConfig)["tiny"], rngs=nnx.Rngs(0))
    assert not hasattr(m, "mulan_embed") and hasattr(table, "mulan_embed")


def test_codebook_stage_decodes_exactly_and_never_trains_the_codebook():
    m, cb = _codebook_stage("tiny-acoustic")
    mul, cond = _inputs(m)
    codes = sample_stage(m, mul, 10, key=jax.random.key(0), cond_bt=cond, sampler=GREEDY)
    inputs, targets, layout, c = teacher_forcing(m.cfg, codes, cond)
    match = jnp.argmax(m(mul, inputs, layout, c), -1) == targets
    assert bool(jnp.all(jnp.where(jnp.asarray(layout.valid)[None], match, True)))
    opt = nnx.Optimizer(m, optax.adam(1e-2), wrt=nnx.Param)
    proj0 = np.asarray(m.mulan_proj[...]).copy()
    (_, _), g = nnx.value_and_grad(stage_loss, has_aux=True)(
        m, mul, codes, cond, jnp.zeros((2,), bool))
    opt.update(m, g)
    np.testing.assert_array_equal(np.asarray(m.mulan_codebook[...]), cb[:m.cfg.mulan_levels])
    assert not np.allclose(np.asarray(m.mulan_proj[...]), proj0)      # the projection learns


def test_set_mulan_codebook_rejects_what_does_not_fit():
    m, _ = _codebook_stage()
    with pytest.raises(ValueError, match="mulan_dim"):
        m.set_mulan_codebook(np.zeros((3, 8, 64), np.float32))
    with pytest.raises(ValueError, match="codebook"):
        StageLM(presets_of(StageConfig)["tiny"], rngs=nnx.Rngs(0)).set_mulan_codebook(
            np.zeros((3, 8, 128), np.float32))
