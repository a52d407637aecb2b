"""The trainers' optimizer: a per-branch learning-rate multiplier that checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.checkpoint import Checkpointer
from training.loop import adamw_cosine


class Net(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.body = nnx.Linear(4, 4, rngs=rngs)
        self.music = nnx.Linear(4, 4, rngs=rngs)


@nnx.jit
def step(model, optimizer, x):
    grads = nnx.grad(lambda m: jnp.sum(m.body(x) ** 2) + jnp.sum(m.music(x) ** 2))(model)
    optimizer.update(model, grads)


def _opt(model, k):
    return adamw_cosine(model, lr=1e-2, warmup_steps=1, total_steps=10, weight_decay=0.0,
                        grad_clip=1e9, lr_mult=("music", k))


def test_lr_mult_scales_one_branch_and_checkpoints(tmp_path):
    """lr_mult=("music", 10): the branch moves 10× as far as with k = 1 on the same
    gradients, the rest exactly as far; the optimizer state saves and restores (orbax
    refuses the empty leaves a masked multi_transform would leave)."""
    x = jax.random.normal(jax.random.key(0), (3, 4))
    moved = {}
    for k in (1.0, 10.0):
        model = Net()
        w0 = {n: np.asarray(getattr(model, n).kernel[...]) for n in ("body", "music")}
        opt = _opt(model, k)
        step(model, opt, x)
        step(model, opt, x)
        moved[k] = {n: np.asarray(getattr(model, n).kernel[...]) - w0[n] for n in w0}
        with Checkpointer(tmp_path / f"k{k}") as ckpt:
            ckpt.save(2, model=model, optimizer=opt)
        fresh = Net()
        fresh_opt = _opt(fresh, k)
        with Checkpointer(tmp_path / f"k{k}") as ckpt:
            assert ckpt.restore(model=fresh, optimizer=fresh_opt)["step"] == 2
        np.testing.assert_array_equal(fresh.music.kernel[...], model.music.kernel[...])
    np.testing.assert_allclose(moved[10.0]["music"], 10 * moved[1.0]["music"], rtol=1e-5)
    np.testing.assert_array_equal(moved[10.0]["body"], moved[1.0]["body"])
    assert np.abs(moved[1.0]["music"]).max() > 0


class _Batches:
    def __init__(self):
        self.i = 0

    def __next__(self):
        self.i += 1
        return {"x": np.full((3, 4), self.i, np.float32)}

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = int(state["i"])


def test_resume_refuses_a_run_with_other_settings(tmp_path):
    """A work dir's checkpoint resumes only under the same settings: more steps or another
    log cadence are fine, another learning rate is refused (it would mix two runs), and
    the refused attempt leaves the saved config.json alone."""
    import json

    import pytest

    from training.loop import LoopConfig, ResumeError, config_changes, run_loop

    def run(steps, lr, log_every=1):
        model = Net()
        cfg = LoopConfig(workdir=str(tmp_path / "w"), steps=steps, log_every=log_every,
                         ckpt_every=2)
        return run_loop(cfg, model=model, optimizer=_opt(model, 1.0), batches=_Batches(),
                        step_fn=lambda m, o, b, i: step(m, o, jnp.asarray(b["x"])) or {},
                        config={"lr": lr, "widths": (1, 2), "loop": {"steps": steps}},
                        progress=False)

    assert run(2, 1e-2) == 2
    assert run(4, 1e-2, log_every=2) == 4                  # longer, another cadence: resumes
    with pytest.raises(ResumeError, match=r"lr: 0\.01 → 0\.02.*new loop.workdir"):
        run(6, 2e-2)
    assert json.loads((tmp_path / "w" / "config.json").read_text())["lr"] == 1e-2
    assert config_changes(None, {"lr": 1}) == []            # old checkpoints: no config
    assert config_changes({"a": {"b": [1, 2]}}, {"a": {"b": (1, 2)}}) == []
