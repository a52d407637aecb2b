"""Diversity training on the tiny corpus: non-overlapping positives, export, resume."""

from __future__ import annotations

import numpy as np

from musicrl.config import resolve
from rewards.diversity import load_diversity
from training.diversity import ChunkPairs, DiversityTrainConfig, train_diversity
from training.loop import read_metrics


def test_chunk_pairs_never_overlap_and_follow_the_step():
    ramp = [np.arange(10_000, dtype=np.float32) + 100_000 * k for k in range(5)]
    src = ChunkPairs(ramp, chunk=3000, batch=8, seed=0)
    for _ in range(20):
        b = next(src)
        for a, c in zip(b["a"], b["b"], strict=True):
            assert a[0] // 100_000 == c[0] // 100_000           # same clip
            assert abs(a[0] - c[0]) >= 3000                     # disjoint windows
    again = ChunkPairs(ramp, chunk=3000, batch=8, seed=0)
    again.set_state({"step": 19})
    np.testing.assert_array_equal(next(again)["a"], b["a"])


def test_trains_exports_and_resumes(tiny_corpus, tmp_path, capsys):
    data_cfg, _ = tiny_corpus
    cfg = resolve(DiversityTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'd'}", "loop.steps=10",
        "loop.ckpt_every=5", "eval_every=5"])
    out = train_diversity(cfg, progress=False)
    model, meta = load_diversity(out)
    assert meta["steps"] == 10 and 0 <= meta["valid"]["valid/top1"] <= 1
    log = read_metrics(tmp_path / "d")
    assert all(np.isfinite(r["loss"]) for r in log)
    more = resolve(DiversityTrainConfig, "tiny", [
        f"data_root={data_cfg.root}", f"loop.workdir={tmp_path / 'd'}", "loop.steps=14",
        "loop.ckpt_every=5", "eval_every=5"])
    train_diversity(more, progress=False)
    assert "resumed" in capsys.readouterr().out
    assert read_metrics(tmp_path / "d")[-1]["step"] == 14
