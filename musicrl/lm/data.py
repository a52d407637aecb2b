"""Training data of the generator: token caches plus MuLan conditioning tokens.

Stage S learns p(semantic | MuLan tokens) and stage A p(codec levels | semantic,
MuLan tokens) (DESIGN §7). Both read the cache of ``musicrl tokenize`` and the
12 MuLan tokens of each clip's *audio* embedding (MusicLM §3.1: train on audio
tokens, prompt with text tokens), which are computed once per (clip audio,
MuLan weights) and cached next to the token shards as
``mulan-<identity>.npz``.

Batches are a pure function of (seed, batch index): batch i draws its clips
and crop offsets from ``default_rng([seed, i])``. The loader's state is
therefore just the index, and a resumed run sees exactly the batches an
uninterrupted one would have.

Dimension legend: ``b`` batch, ``s`` semantic frames (25 Hz), ``t`` acoustic
frames (50 Hz), ``q`` codec levels, ``m`` MuLan token levels (12).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.errors import MusicrlError

__all__ = ["LMDataError", "mulan_identity", "corpus_mulan_tokens", "corpus_mulan_text_tokens",
           "TokenBatches", "CAPTIONS_PER_CLIP"]

CAPTIONS_PER_CLIP = 5  # text-token rows kept per clip (captions cycled when a clip has fewer)


class LMDataError(MusicrlError, ValueError):
    """The generator's training data is missing or inconsistent; the message says why."""


def mulan_identity(mulan_dir: str | os.PathLike) -> str:
    """Fingerprint of a MuLan weights folder (its weights index checksum)."""
    path = Path(mulan_dir)
    if (path / "weights" / "weights.json").exists():
        path = path / "weights"
    f = path / "weights.json"
    if not f.exists():
        raise LMDataError(f"{mulan_dir}: no MuLan weights (weights.json); train MuLan first "
                          "(`musicrl train mulan`) or pass --mulan assets/small/mulan")
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16]


def _read_cache(cache: Path) -> dict[str, np.ndarray]:
    if not cache.exists():
        return {}
    with np.load(cache) as z:
        return {k: z[k] for k in z.files}


def _write_cache(cache: Path, arrays: dict[str, np.ndarray]) -> None:
    """Replaces ``cache`` atomically (a crash leaves the old file or the new one)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)


def corpus_mulan_tokens(root: str | os.PathLike, clip_ids: Sequence[str], mulan_dir: str,
                        cache_dir: str | os.PathLike, *, progress: bool = True,
                        batch: int = 16) -> dict[str, np.ndarray]:
    """{clip id: int32 [m]} MuLan tokens of each clip's whole-clip audio embedding.

    Cached in ``cache_dir/mulan-<identity>.npz`` keyed by clip id and audio
    checksum; only missing clips are embedded. The file is replaced atomically.
    """
    from tqdm import tqdm

    from musicrl.audio import load_audio
    from musicrl.data.manifest import load_clips

    ident = mulan_identity(mulan_dir)
    cache = Path(cache_dir) / f"mulan-{ident}.npz"
    clips = {c.id: c for c in load_clips(root)}
    missing = [cid for cid in clip_ids if cid not in clips]
    if missing:
        raise LMDataError(f"{len(missing)} clips of the token cache are not in {root}'s manifest "
                          f"(e.g. {missing[0]}): re-run `musicrl tokenize --root {root}`")
    key = {cid: f"{cid}|{clips[cid].checksum[:16]}" for cid in clip_ids}
    have = _read_cache(cache)
    todo = [cid for cid in clip_ids if key[cid] not in have]
    if todo:
        import jax.numpy as jnp

        from musicrl.mulan import embed_audio_long, load_mulan

        model, _ = load_mulan(mulan_dir)
        sr = model.cfg.sample_rate
        it = range(0, len(todo), batch)
        for i in tqdm(it, desc="MuLan tokens", disable=not progress, unit="batch"):
            ids = todo[i:i + batch]
            wavs = [load_audio(Path(root) / clips[c].path, sr) for c in ids]
            n = max(len(w) for w in wavs)
            emb = embed_audio_long(model, np.stack([np.pad(w, (0, n - len(w))) for w in wavs]))
            toks = np.asarray(model.tokens_for_embeddings(jnp.asarray(emb)), np.int32)
            for c, t in zip(ids, toks, strict=False):
                have[key[c]] = t
        _write_cache(cache, have)
    return {cid: have[key[cid]] for cid in clip_ids}


def corpus_mulan_text_tokens(root: str | os.PathLike, clip_ids: Sequence[str], mulan_dir: str,
                             cache_dir: str | os.PathLike, *, progress: bool = True,
                             batch: int = 64) -> dict[str, np.ndarray]:
    """{clip id: int32 [CAPTIONS_PER_CLIP, m]} MuLan tokens of each clip's caption *texts*.

    The generator is prompted with the tokens of a text embedding, but MuLan's
    text and audio embeddings of the same music are not the same point (the
    contrastive "modality gap"), so a model trained on audio tokens alone sees
    tokens at inference that it never saw in training. Training on a mix of
    both closes that gap. Cached in ``cache_dir/mulan-text-<identity>.npz``
    keyed by clip id and a hash of its captions; clips without captions get the
    audio tokens' place left to the caller (they are left out of the result).
    """
    from tqdm import tqdm

    from musicrl.data.manifest import load_clips

    ident = mulan_identity(mulan_dir)
    cache = Path(cache_dir) / f"mulan-text-{ident}.npz"
    clips = {c.id: c for c in load_clips(root)}
    key = {}
    for cid in clip_ids:
        caps = clips[cid].captions if cid in clips else ()
        if caps:
            h = hashlib.sha256("\x1f".join(caps).encode()).hexdigest()[:16]
            key[cid] = f"{cid}|{h}"
    have = _read_cache(cache)
    todo = [cid for cid in key if key[cid] not in have]
    if todo:
        import jax.numpy as jnp

        from musicrl.mulan import embed_prompts_batched, load_mulan

        model, _ = load_mulan(mulan_dir)
        texts = [clips[c].captions[j % len(clips[c].captions)]
                 for c in todo for j in range(CAPTIONS_PER_CLIP)]
        embs = []
        for i in tqdm(range(0, len(texts), batch), desc="MuLan text tokens",
                      disable=not progress, unit="batch"):
            embs.append(embed_prompts_batched(model, texts[i:i + batch], batch))
        emb = np.concatenate(embs)
        toks = np.asarray(model.tokens_for_embeddings(jnp.asarray(emb)), np.int32)
        toks = toks.reshape(len(todo), CAPTIONS_PER_CLIP, -1)
        for c, t in zip(todo, toks, strict=True):
            have[key[c]] = t
        _write_cache(cache, have)
    return {cid: have[k] for cid, k in key.items()}


class TokenBatches:
    """Deterministic batches of aligned (MuLan, semantic, acoustic) token crops.

    Each example is a random crop of ``seconds`` from one clip (semantic and
    acoustic crops aligned: acoustic frame f ↔ semantic frame f // ratio).
    Clips shorter than the crop are skipped at construction.

    With ``mulan_text`` ({clip: [c, m]} tokens of its captions' text
    embeddings) and ``text_prob`` > 0, each example is conditioned on the tokens
    of one of its captions (drawn uniformly) with probability ``text_prob``,
    else on its audio tokens.

    Yields dicts ``{"mulan": int32 [b, m], "semantic": int32 [b, s],
    "acoustic": int32 [b, t, q]}`` with q = ``levels``.

    With ``twins`` (groups of clip ids that are one passage at several tempi, e.g. a
    clip and its ``musicrl data tempo-variants``) and ``twin_pairs`` P > 0, each batch
    also holds ``"twin_mulan"`` [2P, m] and ``"twin_semantic"`` [2P, s'] — P pairs of
    two members of one group (rows 2i, 2i+1), each cropped from its first frame for
    ``twin_seconds`` (where a stage chooses the tempo), both conditioned on text or
    both on audio tokens. They are drawn from their own random stream, so the main
    batch is the same with or without them.
    """

    def __init__(self, tokens: dict[str, tuple[np.ndarray, np.ndarray]],
                 mulan: dict[str, np.ndarray], *, batch_size: int, seconds: float,
                 levels: int, semantic_rate: float = 25.0, acoustic_rate: float = 50.0,
                 seed: int = 0, mulan_text: dict[str, np.ndarray] | None = None,
                 text_prob: float = 0.0, twins: list[tuple[str, ...]] | None = None,
                 twin_pairs: int = 0, twin_seconds: float = 4.0):
        self.ratio = int(round(acoustic_rate / semantic_rate))
        if abs(self.ratio * semantic_rate - acoustic_rate) > 1e-6:
            raise LMDataError("the acoustic frame rate must be a whole multiple of the semantic "
                              f"one (got {acoustic_rate} and {semantic_rate} Hz)")
        self.s_len = int(round(seconds * semantic_rate))
        self.t_len = self.s_len * self.ratio
        ids = sorted(cid for cid, (s, a) in tokens.items()
                     if len(s) >= self.s_len and len(a) >= self.t_len)
        if not ids:
            raise LMDataError(f"no clip has {seconds} s of tokens; lower the crop seconds")
        q = min(a.shape[1] for _, a in tokens.values())
        if levels > q:
            raise LMDataError(f"levels={levels} but the token cache holds {q} codec levels")
        self.ids = ids
        self.sem = [tokens[c][0].astype(np.int32) for c in ids]
        self.aco = [tokens[c][1][:, :levels].astype(np.int32) for c in ids]
        self.mulan = np.stack([mulan[c] for c in ids]).astype(np.int32)
        if not 0.0 <= text_prob <= 1.0:
            raise LMDataError(f"text_prob must be in [0, 1], got {text_prob}")
        self.text_prob = text_prob if mulan_text else 0.0
        if self.text_prob:
            # clips without captions keep their audio tokens (every row = audio tokens)
            self.mulan_text = np.stack([
                mulan_text[c] if c in mulan_text
                else np.repeat(mulan[c][None], CAPTIONS_PER_CLIP, axis=0) for c in ids
            ]).astype(np.int32)[..., :self.mulan.shape[1]]
        self.batch_size, self.seed, self.index = batch_size, seed, 0
        self.twin_pairs, self.twin_groups = twin_pairs, []
        if twin_pairs:
            self.twin_s_len = int(round(twin_seconds * semantic_rate))
            pos = {c: i for i, c in enumerate(ids)}
            for g in twins or ():
                members = [pos[c] for c in g if c in pos
                           and len(self.sem[pos[c]]) >= self.twin_s_len]
                if len(members) >= 2:
                    self.twin_groups.append(np.asarray(members))
            if not self.twin_groups:
                raise LMDataError("twin_pairs > 0 but no group of twins (one passage at two "
                                  "tempi, both in the token cache with "
                                  f"{twin_seconds} s of tokens): add extra_data made by "
                                  "`musicrl data tempo-variants`")

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: int) -> dict[str, np.ndarray]:
        """Batch number ``index`` (a pure function of seed and index)."""
        rng = np.random.default_rng([self.seed, index])
        pick = rng.integers(0, len(self.ids), self.batch_size)
        sem, aco = [], []
        for i in pick:
            n_s = min(len(self.sem[i]), len(self.aco[i]) // self.ratio)
            o = int(rng.integers(0, n_s - self.s_len + 1))
            sem.append(self.sem[i][o:o + self.s_len])
            aco.append(self.aco[i][o * self.ratio:(o + self.s_len) * self.ratio])
        mulan = self.mulan[pick]
        if self.text_prob:
            use = rng.random(len(pick)) < self.text_prob
            row = rng.integers(0, self.mulan_text.shape[1], len(pick))
            mulan = np.where(use[:, None], self.mulan_text[pick, row], mulan)
        out = {"mulan": mulan, "semantic": np.stack(sem), "acoustic": np.stack(aco)}
        if self.twin_pairs:
            out.update(self._twin_batch(index))
        return out

    def twin_picks(self, index: int) -> tuple[np.ndarray, np.random.Generator]:
        """Which clips (indices into ``ids``) the twin rows of batch ``index`` hold."""
        rng = np.random.default_rng([self.seed, index, 2])
        groups = rng.integers(0, len(self.twin_groups), self.twin_pairs)
        return np.concatenate([rng.choice(self.twin_groups[g], 2, replace=False)
                               for g in groups]), rng

    def _twin_batch(self, index: int) -> dict[str, np.ndarray]:
        pick, rng = self.twin_picks(index)
        mulan = self.mulan[pick]
        if self.text_prob:
            use = np.repeat(rng.random(self.twin_pairs) < self.text_prob, 2)
            row = rng.integers(0, self.mulan_text.shape[1], len(pick))
            mulan = np.where(use[:, None], self.mulan_text[pick, row], mulan)
        sem = np.stack([self.sem[i][:self.twin_s_len] for i in pick])
        return {"twin_mulan": mulan, "twin_semantic": sem}

    def __iter__(self) -> TokenBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch(self.index)
        self.index += 1
        return out

    def get_state(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed, "clips": len(self.ids)}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("seed") != self.seed or state.get("clips") != len(self.ids):
            raise LMDataError(
                f"the checkpoint was trained on another data stream (seed {state.get('seed')}, "
                f"{state.get('clips')} clips; now seed {self.seed}, {len(self.ids)} clips): "
                "resume with the same data and seed, or start a new loop.workdir")
        self.index = int(state["index"])
