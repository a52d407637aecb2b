"""Codec training on the tiny corpus: it learns, it resumes exactly, it exports."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from musicrl.codec import load_codec
from musicrl.config import resolve
from training.codec import CodecTrainConfig, train_codec
from training.loop import Hook, read_metrics


class _Crash(Exception):
    pass


def _cfg(tiny_corpus, workdir, steps, extra=()):
    data_cfg, _ = tiny_corpus
    return resolve(CodecTrainConfig, "tiny", [f"data_root={data_cfg.root}",
                                              f"loop.workdir={workdir}", f"loop.steps={steps}",
                                              "loop.ckpt_every=4", "sample_every=100", *extra])


def _params(path):
    model, meta = load_codec(path)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Not(nnx.RngState)))
    return leaves, meta


def test_resume_after_crash_is_exact(tiny_corpus, tmp_path):
    k = 4
    full = train_codec(_cfg(tiny_corpus, tmp_path / "full", 2 * k), progress=False)

    def crash(step, model):
        if step == k + 2:  # after the checkpoint at k, before the next one
            raise _Crash

    with pytest.raises(_Crash):
        train_codec(_cfg(tiny_corpus, tmp_path / "resumed", 2 * k), progress=False,
                    extra_hooks=(Hook(1, crash, at_end=False),))
    resumed = train_codec(_cfg(tiny_corpus, tmp_path / "resumed", 2 * k), progress=False)

    a, meta_a = _params(full)
    b, meta_b = _params(resumed)
    assert meta_a["steps"] == meta_b["steps"] == 2 * k
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the log was cut back to the checkpoint and continued: one row per logged step
    steps = [r["step"] for r in read_metrics(tmp_path / "resumed")]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_tiny_codec_loss_goes_down(tiny_corpus, tmp_path):
    train_codec(_cfg(tiny_corpus, tmp_path, 60, ["loop.log_every=10", "lr=3e-3"]),
                progress=False)
    rows = read_metrics(tmp_path)
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert (tmp_path / "examples").exists()
