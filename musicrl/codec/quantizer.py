"""Residual vector quantizer with EMA codebooks (SoundStream §3.3; EnCodec).

Dimension legend: ``b`` batch, ``t`` frames, ``q`` levels, ``k`` codes per level,
``e`` code dimension, ``N`` = b·t vectors.

* Codebooks are not trained by gradient: each level keeps an exponential moving
  average of its code counts and of the sum of the vectors assigned to each
  code (``CodebookStat`` variables, outside the optimizer's ``nnx.Param``), and
  the codebook is their ratio (van den Oord et al. 2017, appendix).
* Initialization: k-means on the residuals of real data (:meth:`kmeans_init`),
  level by level, before training starts.
* Dead codes: a code whose EMA count falls below a fraction of the mean count
  is restarted at a random vector of the current batch, so no code stays unused.
* Quantizer dropout: each example uses the first ``n_q`` levels, ``n_q``
  uniform in 1..Q for a fraction of the batch, so one model serves 1..Q levels.
* Commitment loss ‖x − sg(c)‖² pulls the encoder toward its codes; the
  straight-through estimator passes gradients from the decoder to the encoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["CodebookStat", "ResidualVQ", "TRAINING_ONLY"]


# Training-only state of the EMA codebooks: inference needs only ``codebook``. Weights
# folders may leave these out (``save_weights(skip=...)``, ``load_weights(optional=...)``).
TRAINING_ONLY = ("embed_sum", "cluster_size", "usage")


class CodebookStat(nnx.Variable):
    """Codebook state updated by EMA inside the train step (not by the optimizer)."""


def _nearest(x_ne: jax.Array, codebook_ke: jax.Array) -> jax.Array:
    d = (jnp.sum(x_ne**2, -1, keepdims=True) - 2 * x_ne @ codebook_ke.T
         + jnp.sum(codebook_ke**2, -1)[None, :])
    return jnp.argmin(d, axis=-1)


class ResidualVQ(nnx.Module):
    def __init__(self, dim: int, num_levels: int, codebook_size: int, *, decay: float = 0.99,
                 dead_threshold: float = 1.0, rngs: nnx.Rngs):
        self.dim, self.num_levels, self.codebook_size = dim, num_levels, codebook_size
        self.decay, self.dead_threshold = decay, dead_threshold
        init = jax.random.normal(rngs.params(), (num_levels, codebook_size, dim)) * 0.1
        self.codebook = CodebookStat(init)                                     # [q, k, e]
        self.cluster_size = CodebookStat(jnp.ones((num_levels, codebook_size)))  # [q, k]
        self.embed_sum = CodebookStat(init)                                    # [q, k, e]
        # Usage with a short memory (decay 0.9, ~10 steps), for the dead-code rule only:
        # a level that collapses early in training is revived within tens of steps.
        self.usage = CodebookStat(jnp.ones((num_levels, codebook_size)))       # [q, k]
        self.rngs = rngs

    # ------------------------------------------------------------------ inference

    def encode(self, x_bte: jax.Array, n_q: int | None = None) -> jax.Array:
        """Latents → codes [b, t, n_q] (int32)."""
        n_q = n_q or self.num_levels
        b, t, e = x_bte.shape
        r = x_bte.reshape(b * t, e)
        codes = []
        for lvl in range(n_q):
            cb = self.codebook[lvl]
            idx = _nearest(r, cb)
            r = r - cb[idx]
            codes.append(idx)
        return jnp.stack(codes, -1).reshape(b, t, n_q).astype(jnp.int32)

    def decode(self, codes_btq: jax.Array) -> jax.Array:
        """Codes [b, t, n_q] → summed code vectors [b, t, e] (n_q ≤ num_levels)."""
        out = jnp.zeros((*codes_btq.shape[:2], self.dim), self.codebook.dtype)
        for lvl in range(codes_btq.shape[-1]):
            out = out + self.codebook[lvl][codes_btq[..., lvl]]
        return out

    # ------------------------------------------------------------------ training

    def __call__(self, x_bte: jax.Array, n_q_b: jax.Array | None = None, train: bool = False
                 ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Quantizes with the first ``n_q_b[i]`` levels for example i.

        Returns:
          (quantized [b, t, e] with straight-through gradients, codes [b, t, q],
           metrics incl. ``commit_loss`` and per-level ``perplexity``).
        """
        b, t, e = x_bte.shape
        q = self.num_levels
        if n_q_b is None:
            n_q_b = jnp.full((b,), q, jnp.int32)
        active_bq = (jnp.arange(q)[None, :] < n_q_b[:, None]).astype(x_bte.dtype)  # [b, q]
        residual = x_bte.reshape(b * t, e)
        quantized = jnp.zeros_like(residual)
        commit = 0.0
        codes, perplexities = [], []
        new_cb, new_cs, new_es, new_us = [], [], [], []
        for lvl in range(q):
            mask_n = jnp.repeat(active_bq[:, lvl], t)  # [N]
            cb = self.codebook[lvl]
            idx = _nearest(jax.lax.stop_gradient(residual), cb)
            chosen = cb[idx]
            commit = commit + jnp.sum(mask_n[:, None] * (residual - jax.lax.stop_gradient(chosen)) ** 2) \
                / (jnp.maximum(mask_n.sum(), 1.0) * e)
            onehot = jax.nn.one_hot(idx, self.codebook_size, dtype=x_bte.dtype) * mask_n[:, None]
            counts = onehot.sum(0)
            probs = counts / jnp.maximum(counts.sum(), 1.0)
            perplexities.append(jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-10))))
            if train:
                cb, cs, es, us = self._ema_update(lvl, jax.lax.stop_gradient(residual), onehot,
                                                  counts)
                new_cb.append(cb)
                new_cs.append(cs)
                new_es.append(es)
                new_us.append(us)
            quantized = quantized + mask_n[:, None] * chosen
            residual = residual - mask_n[:, None] * chosen
            codes.append(idx)
        if train:
            self.codebook[...] = jnp.stack(new_cb)
            self.cluster_size[...] = jnp.stack(new_cs)
            self.embed_sum[...] = jnp.stack(new_es)
            self.usage[...] = jnp.stack(new_us)
        x_flat = x_bte.reshape(b * t, e)
        st = x_flat + jax.lax.stop_gradient(quantized - x_flat)  # straight-through
        metrics = {"commit_loss": commit / q, "perplexity": jnp.stack(perplexities)}
        return st.reshape(b, t, e), jnp.stack(codes, -1).reshape(b, t, q), metrics

    def _ema_update(self, lvl: int, x_ne: jax.Array, onehot_nk: jax.Array, counts_k: jax.Array):
        d = self.decay
        cs = d * self.cluster_size[lvl] + (1 - d) * counts_k
        es = d * self.embed_sum[lvl] + (1 - d) * (onehot_nk.T @ x_ne)
        total = cs.sum()
        smoothed = (cs + 1e-5) / (total + self.codebook_size * 1e-5) * total
        cb = es / smoothed[:, None]
        # Dead-code restart: replace rarely used codes with random current vectors
        # (only vectors of examples that use this level).
        us = 0.9 * self.usage[lvl] + 0.1 * counts_k
        mean_use = us.sum() / self.codebook_size
        dead = us < self.dead_threshold * mean_use
        active = onehot_nk.sum(-1)
        logits = jnp.where(active > 0, 0.0, -jnp.inf)
        pick = jax.random.categorical(self.rngs.vq(), logits, shape=(self.codebook_size,))
        fresh = x_ne[pick]
        cb = jnp.where(dead[:, None], fresh, cb)
        es = jnp.where(dead[:, None], fresh * (total / self.codebook_size), es)
        cs = jnp.where(dead, total / self.codebook_size, cs)
        us = jnp.where(dead, mean_use, us)
        return cb, cs, es, us

    def kmeans_init(self, x_ne: np.ndarray, iters: int = 20, seed: int = 0) -> None:
        """Initializes every level by k-means on the residuals of ``x`` (N ≥ k vectors)."""
        rng = np.random.default_rng(seed)
        r = jnp.asarray(x_ne, jnp.float32)
        if r.shape[0] < self.codebook_size:
            raise ValueError(f"k-means init needs at least {self.codebook_size} vectors, got "
                             f"{r.shape[0]}: pass more batches")
        cbs = []
        for _ in range(self.num_levels):
            cb = _kmeans(r, _kmeans_pp(np.asarray(r), self.codebook_size, rng), iters)
            cbs.append(cb)
            r = r - cb[_nearest(r, cb)]
        cb = jnp.stack(cbs)
        self.codebook[...] = cb
        self.embed_sum[...] = cb
        self.cluster_size[...] = jnp.ones_like(self.cluster_size[...])
        self.usage[...] = jnp.ones_like(self.usage[...])


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator, sample: int = 20_000
               ) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on a random subsample."""
    if x.shape[0] > sample:
        x = x[rng.choice(x.shape[0], sample, replace=False)]
    centers = [x[rng.integers(x.shape[0])]]
    d2 = np.sum((x - centers[0]) ** 2, -1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else None
        c = x[rng.choice(x.shape[0], p=p)]
        centers.append(c)
        d2 = np.minimum(d2, np.sum((x - c) ** 2, -1))
    return jnp.asarray(np.stack(centers))


@jax.jit
def _kmeans_step(x_ne: jax.Array, cb_ke: jax.Array) -> jax.Array:
    idx = _nearest(x_ne, cb_ke)
    onehot = jax.nn.one_hot(idx, cb_ke.shape[0], dtype=x_ne.dtype)
    counts = onehot.sum(0)
    sums = onehot.T @ x_ne
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts[:, None], 1.0), cb_ke)


def _kmeans(x_ne: jax.Array, cb_ke: jax.Array, iters: int) -> jax.Array:
    for _ in range(iters):
        cb_ke = _kmeans_step(x_ne, cb_ke)
    return cb_ke
