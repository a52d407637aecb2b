"""Quality training on the tiny corpus: it learns, resumes exactly, and finetunes on ratings."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from musicrl.cli import main
from musicrl.config import presets_of, resolve
from rewards import degrade
from rewards.quality import (
    QualityConfig,
    QualityModel,
    load_quality,
    save_quality,
    score_batched,
)
from training.loop import Hook, read_metrics
from training.quality import DegradationBatches, QualityTrainConfig, train_quality


class _Crash(Exception):
    pass


def _cfg(tiny_corpus, tmp_path, name, steps, extra=()):
    data_cfg, _ = tiny_corpus
    return resolve(QualityTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / name}", f"loop.steps={steps}",
        "loop.ckpt_every=4", f"cache_dir={tmp_path / 'cache'}", *extra])


def _leaves(path):
    model, meta = load_quality(path)
    return jax.tree.leaves(nnx.state(model, nnx.Param)), meta


def test_batches_hold_versions_of_each_clip_in_order():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal((4, 4000)).astype(np.float32) * 0.1
    ss = degrade.settings("train", ["noise", "dropout"])
    data = degrade.DegradedSet([str(i) for i in range(4)], clean, {}, {s.key: s for s in ss})
    cfg = resolve(QualityTrainConfig, "tiny", ["batch_clips=3", "versions_per_clip=5"])
    b = next(DegradationBatches(data, cfg))
    assert b["wav"].shape == (15, 4000) and list(b["group"]) == [0] * 5 + [1] * 5 + [2] * 5
    assert np.all(b["severity"][::5] == 0) and np.all(b["severity"].reshape(3, 5)[:, 1:] > 0)
    assert b["better"][0, 1:5].all()  # the clean crop is better than each of its versions
    again = DegradationBatches(data, cfg)
    again.set_state({"step": 0})
    np.testing.assert_array_equal(next(again)["wav"], b["wav"])  # the position is the step


def test_learns_and_resumes_exactly(tiny_corpus, tmp_path):
    full = train_quality(_cfg(tiny_corpus, tmp_path, "full", 8), progress=False)
    log = read_metrics(tmp_path / "full")
    assert log[-1]["loss"] < log[0]["loss"]

    def crash(step, model):
        if step == 6:  # after the checkpoint at 4
            raise _Crash

    cfg = _cfg(tiny_corpus, tmp_path, "resumed", 8)
    with pytest.raises(_Crash):
        train_quality(cfg, progress=False, extra_hooks=(Hook(1, crash, at_end=False),))
    resumed = train_quality(cfg, progress=False)
    a, meta = _leaves(full)
    b, _ = _leaves(resumed)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert meta["steps"] == 8 and "valid" in meta and meta["component"] == "quality"


def _synthetic_ratings(tiny_corpus, folder):
    """Tiny-corpus clips with noise at known SNRs; rating = 1 + 4 · SNR / 40 (+ rater noise)."""
    from musicrl.data.manifest import load_clips

    data_cfg, _ = tiny_corpus
    rng = np.random.default_rng(0)
    rows = []
    for i, c in enumerate(load_clips(data_cfg.root)[:10]):
        x, _ = sf.read(str(Path(data_cfg.root) / c.path), dtype="float32")
        for snr in (0, 15, 40):
            name = f"r{i}_{snr}.wav"
            sf.write(folder / name, degrade.add_noise(x[:16_000], snr, rng), 16_000)
            rating = float(np.clip(1 + 4 * snr / 40 + rng.normal(0, 0.2), 1, 5))
            rows.append({"audio": name, "rating": round(rating, 2), "rater": "sim"})
    path = folder / "ratings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_finetune_on_ratings_raises_agreement(tiny_corpus, tmp_path):
    ratings = _synthetic_ratings(tiny_corpus, tmp_path)
    init = save_quality(tmp_path / "init", QualityModel(
        presets_of(QualityConfig)["tiny"], rngs=nnx.Rngs(3)), meta={"steps": 0})
    out = train_quality(_cfg(tiny_corpus, tmp_path, "ft", 40, [
        f"ratings={ratings}", f"init={init}", "lr=0.01", "eval_every=20"]), progress=False)
    model, meta = load_quality(out)
    before, after = meta["valid_before"], meta["valid_after"]
    assert after["valid/mse"] < before["valid/mse"]
    assert after["valid/spearman"] > 0.5
    log = read_metrics(tmp_path / "ft")
    assert log[-1]["mse"] < log[0]["mse"]
    assert meta["ratings"]["held_out"] == 6 and meta["finetuned_from"] == str(init)
    assert np.all(score_batched(model, np.zeros((2, 8000), np.float32)) >= 1)


def test_cli_refuses_a_bad_ratings_file(tiny_corpus, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "x.wav", "rating": 3}\n')
    code = main(["train", "quality", "--preset", "tiny", f"ratings={bad}",
                 f"loop.workdir={tmp_path / 'w'}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:1:" in err and "does not exist" in err
