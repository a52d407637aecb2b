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
