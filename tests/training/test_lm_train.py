"""``musicrl train lm``: both stages train from a real (tiny) token cache, resume exactly,
and load into a pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musicrl.cli import main
from musicrl.config import resolve
from musicrl.data.tokens import tokenize_corpus
from musicrl.lm.io import load_stage
from musicrl.pipeline import Pipeline
from musicrl.testing import tiny_bundle
from training.lm import LMTrainConfig, train_lm
from training.loop import Hook, read_metrics


class _Crash(Exception):
    pass


@pytest.fixture(scope="module")
def lm_data(tiny_corpus, tmp_path_factory):
    """A tiny corpus tokenized with a tiny codec and a fitted tiny semantic tokenizer."""
    cfg, _ = tiny_corpus
    work = tmp_path_factory.mktemp("lm")
    bundle = tiny_bundle(work / "bundle")
    assert main(["train", "semantic", "--preset", "tiny", "--quiet", f"data_root={cfg.root}",
                 f"workdir={work / 'sem'}", f"cache_dir={work / 'sem' / 'cache'}"]) == 0
    tokenize_corpus(cfg.root, work / "tokens", codec_path=str(bundle / "codec"),
                    semantic_path=str(work / "sem" / "weights"), progress=False)
    return cfg.root, work, bundle


def _cfg(lm_data, workdir, preset="tiny", steps=6, extra=()):
    root, work, bundle = lm_data
    return resolve(LMTrainConfig, preset, [f"data_root={root}", f"tokens={work / 'tokens'}",
                                           f"mulan={bundle / 'mulan'}", f"loop.workdir={workdir}",
                                           f"loop.steps={steps}", *extra])


def _leaves(path):
    with np.load(path / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def test_both_stages_train_and_load_into_a_pipeline(lm_data, tmp_path):
    _, work, bundle = lm_data
    sem = train_lm(_cfg(lm_data, tmp_path / "s", extra=["lr=1e-2"], steps=12), progress=False)
    aco = train_lm(_cfg(lm_data, tmp_path / "a", "tiny-acoustic", extra=["lr=1e-2"], steps=12),
                   progress=False)
    for path, stage in ((sem, "semantic"), (aco, "acoustic")):
        model, meta = load_stage(path, stage)
        assert meta["steps_run"] == 12 and model.cfg.stage == stage
        rows = read_metrics(path.parent)
        losses = [r["loss"] for r in rows if "loss" in r]
        assert losses[-1] < losses[0]                          # it learns something
        assert any("valid/loss_uncond" in r for r in rows)     # CFG-relevant valid metric
        # keep_best: the exported weights are those of the lowest valid loss evaluated
        valid = {r["step"]: r["valid/loss_cond"] for r in rows if "valid/loss_cond" in r}
        assert meta["steps"] == min(valid, key=valid.get)
        assert meta["valid_loss_cond"] == pytest.approx(min(valid.values()))
    # MuLan audio and caption-text tokens were cached beside the token shards and are reused
    assert len(list((work / "tokens").glob("mulan-text-*.npz"))) == 1
    assert len(list((work / "tokens").glob("mulan-*.npz"))) == 2
    pipe = Pipeline.from_pretrained(bundle, semantic=sem, acoustic=aco)
    assert pipe.generate("a calm piano piece", seconds=1.0).shape == (1, pipe.sample_rate)


def test_resume_after_crash_is_exact(lm_data, tmp_path):
    full = train_lm(_cfg(lm_data, tmp_path / "full"), progress=False)

    def crash(step, model):
        if step == 5:  # after the checkpoint at 3, before the next one
            raise _Crash

    with pytest.raises(_Crash):
        train_lm(_cfg(lm_data, tmp_path / "resumed"), progress=False,
                 extra_hooks=(Hook(1, crash, at_end=False),))
    resumed = train_lm(_cfg(lm_data, tmp_path / "resumed"), progress=False)
    a, b = _leaves(full), _leaves(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    steps = [r["step"] for r in read_metrics(tmp_path / "resumed")]
    assert steps == sorted(set(steps))


def test_cli_and_vocabulary_mismatch(lm_data, tmp_path, capsys):
    root, work, bundle = lm_data
    args = ["train", "lm", "--stage", "acoustic", "--preset", "tiny", "--quiet",
            f"data_root={root}", f"tokens={work / 'tokens'}", f"mulan={bundle / 'mulan'}",
            f"loop.workdir={tmp_path / 'cli'}", "loop.steps=2", "model.vocab=8"]
    assert main(args) == 2
    assert "vocabularies" in capsys.readouterr().err
    assert main(args[:-1]) == 0
    meta = json.loads((tmp_path / "cli" / "weights" / "meta.json").read_text())
    assert meta["component"] == "lm-acoustic"
    assert main(["train", "lm", "--stage", "semantic", "--preset", "tiny", "--quiet",
                 f"data_root={root}", f"tokens={tmp_path / 'none'}", f"mulan={bundle / 'mulan'}",
                 f"loop.workdir={tmp_path / 'x'}"]) == 2


def test_init_from_weights_continues_where_they_left(lm_data, tmp_path):
    first = train_lm(_cfg(lm_data, tmp_path / "a", extra=["lr=1e-2"], steps=12), progress=False)
    cont = train_lm(_cfg(lm_data, tmp_path / "b", extra=["lr=1e-4", f"init={first}"], steps=2),
                    progress=False)
    fresh = train_lm(_cfg(lm_data, tmp_path / "c", extra=["lr=1e-4"], steps=2), progress=False)
    loss = lambda p: read_metrics(p.parent)[0]["loss"]  # noqa: E731
    assert loss(cont) < loss(fresh) - 0.1
    with pytest.raises(Exception, match="semantic stage"):
        train_lm(_cfg(lm_data, tmp_path / "d", "tiny-acoustic", extra=[f"init={first}"]),
                 progress=False)


def test_codebook_conditioning_carries_its_mulan_and_the_bundle_checks_it(lm_data, tmp_path):
    """mulan_embed=codebook: the stage copies its MuLan's RVQ codebooks, keeps them through
    training, saves them, and a bundle with another MuLan is refused."""
    from musicrl.mulan import load_mulan
    from musicrl.pipeline import GenerationError

    _, work, bundle = lm_data
    sem = train_lm(_cfg(lm_data, tmp_path / "s", extra=["model.mulan_embed=codebook"]),
                   progress=False)
    model, _ = load_stage(sem, "semantic")
    mulan, _ = load_mulan(bundle / "mulan")
    m = model.cfg.mulan_levels
    np.testing.assert_array_equal(np.asarray(model.mulan_codebook[...]),
                                  np.asarray(mulan.rvq.codebook[...])[:m])
    pipe = Pipeline.from_pretrained(bundle, semantic=sem)
    assert pipe.generate("a calm piano piece", seconds=1.0).shape == (1, pipe.sample_rate)
    other = tiny_bundle(tmp_path / "other", seed=1)
    with pytest.raises(GenerationError, match="another MuLan"):
        Pipeline.from_pretrained(bundle, semantic=sem, mulan=other / "mulan")


def test_extra_data_joins_the_training_stream_only(lm_data, tmp_path):
    """extra_data (tempo and mode variants, comma-separated): their clips join the train
    batches, never the valid ones, and a cache made by other tokenizers is refused."""
    from musicrl.data.manifest import load_clips
    from musicrl.data.variants import mode_variants, tempo_variants
    from musicrl.lm.data import LMDataError
    from training.lm import load_stage_data

    root, work, bundle = lm_data
    extra, modes = tmp_path / "tempo", tmp_path / "mode"
    tempo_variants(root, extra, variants=1, workers=1, progress=False)
    mode_variants(root, modes, workers=1, progress=False)
    for r in (extra, modes):
        tokenize_corpus(r, r / "tokens", codec_path=str(bundle / "codec"),
                        semantic_path=str(work / "sem" / "weights"), progress=False)
    base = _cfg(lm_data, tmp_path / "w")
    cfg = _cfg(lm_data, tmp_path / "w", extra=[f"extra_data={extra}, {modes}"])
    n_extra = len(load_clips(extra)) + len(load_clips(modes))
    assert n_extra > len(load_clips(extra)) > 0
    train = load_stage_data(cfg, "train", 0, 2, progress=False)
    assert len(train) == len(load_stage_data(base, "train", 0, 2, progress=False)) + n_extra
    assert {c for c in train.ids if "-v0" in c} == {c.id for c in load_clips(extra)}
    assert {c for c in train.ids if "-m0" in c} == {c.id for c in load_clips(modes)}
    assert (len(load_stage_data(cfg, "valid", 1, 2, progress=False))
            == len(load_stage_data(base, "valid", 1, 2, progress=False)))
    assert train_lm(cfg, progress=False).exists()
    index = json.loads((modes / "tokens" / "tokens.json").read_text())
    index["identity"]["semantic"] = "0" * 16
    (modes / "tokens" / "tokens.json").write_text(json.dumps(index))
    with pytest.raises(LMDataError, match="different tokenizers"):
        load_stage_data(cfg, "train", 0, 2, progress=False)


def test_prefix_contrast_trains_on_tempo_twins(lm_data, tmp_path):
    """twin_pairs: each step also scores P pairs of tempo twins (a clip and its variant,
    cropped from the first frame) under their own and each other's prefix; the main
    stream is unchanged, the loss is logged, and bad settings are refused."""
    from musicrl.data.variants import tempo_variants
    from musicrl.lm.data import LMDataError
    from training.lm import load_stage_data, tempo_twins

    root, work, bundle = lm_data
    extra = tmp_path / "tempo"
    tempo_variants(root, extra, variants=2, workers=1, progress=False)
    tokenize_corpus(extra, extra / "tokens", codec_path=str(bundle / "codec"),
                    semantic_path=str(work / "sem" / "weights"), progress=False)
    groups = tempo_twins(str(extra))
    assert groups and all(len(g) >= 2 and all(c.startswith(g[0] + "-v") for c in g[1:])
                          for g in groups)
    twin_opts = [f"extra_data={extra}", "twin_pairs=2", "twin_seconds=0.5"]
    cfg = _cfg(lm_data, tmp_path / "w", extra=twin_opts)
    plain = load_stage_data(_cfg(lm_data, tmp_path / "w", extra=[f"extra_data={extra}"]),
                            "train", 0, 2, progress=False)
    train = load_stage_data(cfg, "train", 0, 2, progress=False)
    of = {c: g[0] for g in groups for c in g}
    for i in range(3):
        b, p = train.batch(i), plain.batch(i)
        for k in p:
            np.testing.assert_array_equal(b[k], p[k])        # main stream unchanged
        assert b["twin_semantic"].shape == (4, train.twin_s_len) and b["twin_mulan"].shape[0] == 4
        pick, _ = train.twin_picks(i)
        ids = [train.ids[j] for j in pick]
        for r in range(0, 4, 2):                             # rows 2i, 2i+1: two twins
            assert ids[r] != ids[r + 1] and of[ids[r]] == of[ids[r + 1]]
        for r, j in enumerate(pick):                         # each cropped from frame 0
            np.testing.assert_array_equal(b["twin_semantic"][r], train.sem[j][:train.twin_s_len])
    valid = load_stage_data(cfg, "valid", 1, 2, progress=False)
    assert "twin_semantic" not in valid.batch(0)
    assert train_lm(cfg, progress=False).exists()
    logged = [r for r in read_metrics(tmp_path / "w") if "contrast" in r]
    assert logged and all(np.isfinite(r["contrast"]) and 0 <= r["own_wins"] <= 1
                          for r in logged)
    with pytest.raises(LMDataError, match="twin_pairs"):
        load_stage_data(_cfg(lm_data, tmp_path / "x", extra=["twin_pairs=2"]), "train", 0, 2,
                        progress=False)
    with pytest.raises(LMDataError, match="twin_pairs"):
        load_stage_data(_cfg(lm_data, tmp_path / "x", "tiny-acoustic", extra=twin_opts),
                        "train", 0, 2, progress=False)

