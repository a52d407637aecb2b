"""``musicrl train tempo`` and ``musicrl train rl``: the tempo reward model trains on a real
(tiny) token cache, and KL-regularized REINFORCE finetunes stage S with it, resumes
exactly and exports a stage that loads into a pipeline. Plus the objective's algebra."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.cli import main
from musicrl.config import presets_of, resolve
from musicrl.lm.io import load_stage
from musicrl.lm.stages import StageConfig, StageLM, sequence_logprob
from musicrl.pipeline import Pipeline
from rewards.tempo import load_tempo
from training.loop import Hook, read_metrics
from training.reinforce import RLConfig, reference_logp, reinforce_loss, rloo_advantages, train_rl


class _Crash(Exception):
    pass


def test_tempo_model_trains_and_reports_valid_accuracy(rl_data, tmp_path, capsys):
    root, _, tempo = rl_data
    model, meta = load_tempo(tempo)
    assert meta["steps"] == 20 and model.cfg.vocab == 16
    v = meta["valid"]
    assert 0.0 <= v["valid/within_8pct"] <= 1.0 and 0.0 <= v["valid/chance"] <= 1.0
    losses = [r["loss"] for r in read_metrics(tempo.parent) if "loss" in r]
    assert losses[-1] < losses[0]
    # a vocabulary smaller than the tokens, and a corpus without a token cache, are refused
    assert main(["train", "tempo", "--preset", "tiny", "--quiet", f"data_root={root}",
                 "model.vocab=4", f"loop.workdir={tmp_path / 'v'}"]) == 2
    assert "model.vocab" in capsys.readouterr().err
    assert main(["train", "tempo", "--preset", "tiny", "--quiet", f"data_root={tmp_path}",
                 f"loop.workdir={tmp_path / 'n'}"]) == 2
    assert "musicrl tokenize" in capsys.readouterr().err


def test_tempo_ensemble_trains_its_members_then_exports_their_average(rl_data, tmp_path):
    """members=2: member 0 is the single run of the same seed (the runs are deterministic),
    member 1 another seed; the export is their ensemble, scored on valid beside each."""
    from rewards.tempo import TempoEnsemble

    root, _, tempo = rl_data
    work = tmp_path / "ens"
    assert main(["train", "tempo", "--preset", "tiny", "--quiet", f"data_root={root}",
                 "members=2", f"loop.workdir={work}"]) == 0
    ens, meta = load_tempo(work / "weights")
    assert isinstance(ens, TempoEnsemble) and meta["members"] == 2
    assert len(meta["member_valid"]) == 2 and 0 <= meta["valid"]["valid/within_8pct"] <= 1
    single, _ = load_tempo(tempo)
    for a, b in zip(jax.tree.leaves(nnx.state(ens.members[0])),
                    jax.tree.leaves(nnx.state(single)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(ens.members[0].out.kernel[...]),
                           np.asarray(ens.members[1].out.kernel[...]))
    # a second call finds every member done and only re-exports
    assert main(["train", "tempo", "--preset", "tiny", "--quiet", f"data_root={root}",
                 "members=2", f"loop.workdir={work}"]) == 0


def test_rloo_advantages():
    r = np.array([[1.0, 0.0, 0.5], [0.2, 0.2, 0.2]])
    adv = np.asarray(rloo_advantages(r))
    np.testing.assert_allclose(adv[0], [1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5])
    np.testing.assert_allclose(adv[1], 0.0, atol=1e-7)
    np.testing.assert_allclose(adv.sum(1), [0.0, 0.0], atol=1e-6)   # zero mean per prompt
    with pytest.raises(ValueError, match="≥ 2 samples"):
        rloo_advantages(r[:, :1])


def test_reinforce_loss_kl_and_direction():
    """KL is 0 against itself and positive after a change; one gradient step on a sample
    with positive advantage raises its likelihood, one with negative advantage lowers it."""
    cfg = presets_of(StageConfig)["tiny"]
    model = StageLM(cfg, rngs=nnx.Rngs(0))
    mulan = jax.random.randint(jax.random.key(1), (2, cfg.mulan_levels), 0, cfg.mulan_vocab)
    codes = jax.random.randint(jax.random.key(2), (2, 12, 1), 0, cfg.vocab)
    ref = reference_logp(model, mulan, codes)
    _, m = reinforce_loss(model, mulan, codes, jnp.zeros(2), ref, 0.1)
    assert abs(float(m["kl"])) < 1e-6 and abs(float(m["pg"])) < 1e-9
    before = np.asarray(sequence_logprob(model, mulan, codes)[0])
    grads = nnx.grad(lambda mdl: reinforce_loss(mdl, mulan, codes, jnp.asarray([1.0, -1.0]),
                                                ref, 0.0)[0])(model)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p, g: p - 0.05 * g, params, grads))
    after = np.asarray(sequence_logprob(model, mulan, codes)[0])
    assert after[0] > before[0] and after[1] < before[1]
    _, m = reinforce_loss(model, mulan, codes, jnp.zeros(2), ref, 0.1)
    assert float(m["kl"]) > 1e-4


def _rl_cfg(rl_data, workdir, steps=4, extra=()):
    root, bundle, tempo = rl_data
    return resolve(RLConfig, "tiny", [f"bundle={bundle}", f"tempo={tempo}", f"data_root={root}",
                                      "drums_only=false", f"loop.workdir={workdir}",
                                      f"loop.steps={steps}", *extra])


def test_rl_trains_resumes_exactly_and_loads_into_a_pipeline(rl_data, tmp_path):
    root, bundle, _ = rl_data
    full = train_rl(_rl_cfg(rl_data, tmp_path / "full", extra=["lr=1e-2"]), progress=False)
    model, meta = load_stage(full, "semantic")
    assert meta["rl_steps"] == 4 and "valid/hit" in meta["valid"]
    rows = read_metrics(full.parent)
    assert all(np.isfinite(r["reward"]) and r["kl"] >= -1e-6 for r in rows if "reward" in r)
    assert any(r["kl"] > 0 for r in rows if "kl" in r)                  # it moved off π_ref
    start, _ = load_stage(bundle / "lm-semantic", "semantic")
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                         nnx.state(model, nnx.Param),
                                         nnx.state(start, nnx.Param)))
    assert max(moved) > 0

    def crash(step, _model):
        if step == 3:  # after the checkpoint at 2, before the next one
            raise _Crash

    with pytest.raises(_Crash):
        train_rl(_rl_cfg(rl_data, tmp_path / "res", extra=["lr=1e-2"]), progress=False,
                 extra_hooks=(Hook(1, crash, at_end=False),))
    resumed = train_rl(_rl_cfg(rl_data, tmp_path / "res", extra=["lr=1e-2"]), progress=False)
    with np.load(full / "weights.npz") as a, np.load(resumed / "weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    pipe = Pipeline.from_pretrained(bundle, semantic=full)
    assert pipe.generate("a calm piano piece", seconds=1.0).shape == (1, pipe.sample_rate)


def test_rl_refuses_bad_setups(rl_data, tmp_path, capsys):
    root, bundle, tempo = rl_data
    base = ["train", "rl", "--preset", "tiny", "--quiet", f"tempo={tempo}", f"data_root={root}",
            f"loop.workdir={tmp_path / 'x'}"]
    assert main([*base, f"bundle={tmp_path}"]) == 2
    assert "no mulan/" in capsys.readouterr().err
    assert main([*base, f"bundle={bundle}", "seconds=0.5"]) == 2
    assert "tempo reward needs" in capsys.readouterr().err
    assert main([*base, f"bundle={bundle}", "samples=1"]) == 2
    assert "samples" in capsys.readouterr().err
    assert main([*base, f"bundle={bundle}", f"tempo={tmp_path}"]) == 2
    assert "no tempo model" in capsys.readouterr().err
