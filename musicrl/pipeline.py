"""Text → music: the MusicLM hierarchy put together (DESIGN §7).

    prompt ─MuLan text tower + RVQ→ 12 tokens ─stage S→ semantic (25 Hz)
           ─stage A→ K codec levels (50 Hz) ─codec decoder→ waveform (16 kHz)

``Pipeline.from_pretrained(path)`` loads a bundle folder::

    path/mulan/         musicrl train mulan  → <workdir>/weights
    path/lm-semantic/   musicrl train lm --stage semantic
    path/lm-acoustic/   musicrl train lm --stage acoustic
    path/codec/         musicrl train codec

(``assets/small`` is the bundled default.) ``generate`` is batched and seeded:
the same prompts, seed and settings give bit-identical audio.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.errors import MusicrlError
from musicrl.sampling import Sampler, sample_stage

__all__ = ["Pipeline", "GenerationError", "MAX_SECONDS", "MAX_PROMPT_CHARS", "COMPONENTS"]

MAX_SECONDS = 120.0
MAX_BEST_OF = 64
MAX_PROMPT_CHARS = 2_000
COMPONENTS = ("mulan", "lm-semantic", "lm-acoustic", "codec")


class GenerationError(MusicrlError, ValueError):
    """Bad generation input or an unusable bundle; the message says what to change."""


@nnx.jit
def _decode_codes(codec, codes_btq: jax.Array) -> jax.Array:
    return codec.decode(codes_btq)


@dataclasses.dataclass
class Timing:
    """Wall seconds of the last ``generate`` call, per stage."""

    text: float = 0.0
    semantic: float = 0.0
    acoustic: float = 0.0
    decode: float = 0.0
    rerank: float = 0.0

    @property
    def total(self) -> float:
        return self.text + self.semantic + self.acoustic + self.decode + self.rerank


def _check_prompts(prompts: str | Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise GenerationError("no prompts given: pass at least one text prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise GenerationError(f"prompt {i} is a {type(p).__name__}, not text")
        if not p.strip():
            raise GenerationError(f"prompt {i} is empty: describe the music, e.g. "
                                  "'a calm piano piece, slow, in a minor key'")
        if len(p) > MAX_PROMPT_CHARS:
            raise GenerationError(f"prompt {i} has {len(p)} characters; at most "
                                  f"{MAX_PROMPT_CHARS} are used")
    return prompts


def _check_mulan_codebook(name: str, stage, mulan) -> None:
    """A stage with ``mulan_embed=codebook`` carries the RVQ codebooks of the MuLan it was
    trained with; refuse a bundle whose MuLan has others (its tokens would mean other things)."""
    if stage.cfg.mulan_embed != "codebook":
        return
    m = stage.cfg.mulan_levels
    own = np.asarray(stage.mulan_codebook[...], np.float32)
    theirs = np.asarray(mulan.rvq.codebook[...][:m], np.float32)
    # bf16 storage of either side rounds at ≈ 0.4 %; another MuLan differs by O(1)
    if own.shape != theirs.shape or not np.allclose(own, theirs, rtol=2e-2, atol=2e-3):
        raise GenerationError(
            f"stage {name} was trained with another MuLan (its copy of the conditioning RVQ "
            "codebooks differs from the bundle's MuLan): use the MuLan it was trained with, "
            "or retrain the stage with mulan=<this MuLan>")


class Pipeline:
    """MuLan + stage S + stage A + codec, ready to generate."""

    def __init__(self, mulan, semantic, acoustic, codec, *, meta: dict[str, Any] | None = None):
        if semantic.cfg.stage != "semantic" or acoustic.cfg.stage != "acoustic":
            raise GenerationError("the semantic and acoustic stages are swapped or of the wrong "
                                  "kind")
        if semantic.cfg.mulan_levels > mulan.cfg.rvq_levels or \
                semantic.cfg.mulan_vocab != mulan.cfg.rvq_codebook_size:
            raise GenerationError(
                f"stage S expects {semantic.cfg.mulan_levels} MuLan tokens of "
                f"{semantic.cfg.mulan_vocab} codes but MuLan gives {mulan.cfg.rvq_levels} × "
                f"{mulan.cfg.rvq_codebook_size}: the stage was trained with another MuLan")
        if acoustic.cfg.levels > codec.num_levels or acoustic.cfg.vocab != codec.codebook_size:
            raise GenerationError(
                f"stage A predicts {acoustic.cfg.levels} levels of {acoustic.cfg.vocab} codes "
                f"but the codec has {codec.num_levels} × {codec.codebook_size}: the stage was "
                "trained with another codec")
        if acoustic.cfg.cond_vocab != semantic.cfg.vocab:
            raise GenerationError("stage A was trained on another semantic vocabulary "
                                  f"({acoustic.cfg.cond_vocab}) than stage S predicts "
                                  f"({semantic.cfg.vocab})")
        for name, st in (("S", semantic), ("A", acoustic)):
            _check_mulan_codebook(name, st, mulan)
        self.mulan, self.semantic, self.acoustic, self.codec = mulan, semantic, acoustic, codec
        self.meta = meta or {}
        self.timing = Timing()
        self.last_scores: np.ndarray | None = None
        self.last_semantic_scores: np.ndarray | None = None
        self.last_acoustic_scores: np.ndarray | None = None

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @classmethod
    def from_pretrained(cls, path: str | Path = "assets/small", **overrides: str | Path
                        ) -> Pipeline:
        """Loads a bundle folder (see the module doc). ``overrides`` replace one component's
        folder, e.g. ``acoustic="runs/lm-acoustic-small/weights"``."""
        from musicrl.codec import load_codec
        from musicrl.lm.io import load_stage
        from musicrl.mulan import load_mulan

        path = Path(path)
        if not path.is_dir() and not overrides:
            raise GenerationError(f"{path}: no such model folder; pass a bundle folder holding "
                                  f"{', '.join(COMPONENTS)} (e.g. assets/small)")
        names = {"mulan": "mulan", "semantic": "lm-semantic", "acoustic": "lm-acoustic",
                 "codec": "codec"}
        unknown = set(overrides) - set(names)
        if unknown:
            raise GenerationError(f"unknown component(s) {sorted(unknown)}; known: "
                                  f"{sorted(names)}")
        where = {k: Path(overrides.get(k) or path / v) for k, v in names.items()}
        missing = [f"{k} ({p})" for k, p in where.items() if not p.exists()]
        if missing:
            raise GenerationError(f"{path}: missing {', '.join(missing)}; a bundle needs "
                                  f"{', '.join(COMPONENTS)}")
        mulan, _ = load_mulan(where["mulan"])
        sem, meta_s = load_stage(where["semantic"], "semantic")
        aco, meta_a = load_stage(where["acoustic"], "acoustic")
        codec, _ = load_codec(where["codec"])
        return cls(mulan, sem, aco, codec,
                   meta={"path": str(path), "semantic": meta_s, "acoustic": meta_a,
                         "components": {k: str(v) for k, v in where.items()}})

    # ------------------------------------------------------------------------------------

    def text_tokens(self, prompts: Sequence[str]) -> jax.Array:
        """The 12 MuLan conditioning tokens of each prompt's text embedding [b, m]."""
        m = self.semantic.cfg.mulan_levels
        return self.mulan.tokens_for_text(list(prompts))[:, :m]

    def generate(self, prompts: str | Sequence[str], *, seconds: float = 10.0, seed: int = 0,
                 guidance: float | tuple[float, float] = 3.0, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, best_of: int = 1,
                 semantic_best_of: int = 1,
                 semantic_score: Callable[[list[str], np.ndarray], np.ndarray] | None = None,
                 acoustic_best_of: int = 1,
                 acoustic_score: Callable[[list[str], np.ndarray], np.ndarray] | None = None,
                 return_tokens: bool = False):
        """Generates one clip per prompt: float32 [b, seconds · sample_rate].

        Args:
          prompts: one text or a list (each row is one clip; repeat a prompt for variations).
          seconds: clip length (0.5 … 120).
          seed: same seed and settings → bit-identical audio.
          guidance: CFG γ for both stages, or (γ_semantic, γ_acoustic); 1 = no guidance.
          temperature, top_k, top_p: the sampling strategy of both stages.
          best_of: sample this many candidates per prompt (one batch) and keep the one
            whose audio embedding is closest to the prompt's text embedding under the
            bundle's MuLan (best-of-N reranking, the baseline that BOND distills). Costs
            ``best_of`` times the sampling; the scores of all candidates are kept in
            ``self.last_scores`` [b, best_of].
          semantic_best_of: sample this many stage-S continuations per clip (one batch) and
            pass only the one ``semantic_score`` ranks highest to stage A — best-of-N where
            a reward reads the semantic tokens (e.g. ``rewards.tempo.TempoReward``: the
            prompt's BPM), so it costs N× stage S alone. ``semantic_score(prompts, tokens
            [r, frames]) -> float [r]``; NaN (a prompt the reward cannot score) ranks last,
            and a clip whose candidates are all NaN keeps its first. All scores are kept in
            ``self.last_semantic_scores`` [rows, semantic_best_of].
          acoustic_best_of: the same for stage A: this many renderings of each clip's
            (chosen) semantic tokens, ranked by ``acoustic_score(prompts, codes [r, t, K])``
            (e.g. ``rewards.mode.ModeReward`` with a codec-token model, or
            ``rewards.tempo.AudioTempoReward``, which decodes each rendering to read the
            tempo of its audio); N× stage A. Scores in ``self.last_acoustic_scores``.
          return_tokens: also return {"mulan", "semantic", "acoustic"} token arrays.
        """
        prompts = _check_prompts(prompts)
        if not (0.5 <= float(seconds) <= MAX_SECONDS):
            raise GenerationError(f"seconds={seconds}: choose a length from 0.5 to "
                                  f"{MAX_SECONDS:g} s")
        g_s, g_a = (guidance, guidance) if np.isscalar(guidance) else tuple(guidance)
        for g in (g_s, g_a):
            if not (0.0 <= float(g) <= 20.0):
                raise GenerationError(f"guidance={g}: use 0 … 20 (1 = none, ≈3 typical)")
        try:
            sampler = Sampler(float(temperature), int(top_k), float(top_p))
        except ValueError as e:
            raise GenerationError(str(e)) from None
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise GenerationError(f"seed={seed!r}: use a whole number ≥ 0")
        if not isinstance(best_of, (int, np.integer)) or not 1 <= best_of <= MAX_BEST_OF:
            raise GenerationError(f"best_of={best_of!r}: use a whole number from 1 to "
                                  f"{MAX_BEST_OF}")
        if best_of > 1 and int(self.mulan.cfg.sample_rate) != self.sample_rate:
            raise GenerationError(f"best_of needs MuLan at the codec's rate "
                                  f"({self.mulan.cfg.sample_rate} vs {self.sample_rate} Hz)")
        for stage, n, score, example in (
                ("semantic", semantic_best_of, semantic_score, "rewards.tempo.TempoReward"),
                ("acoustic", acoustic_best_of, acoustic_score,
                 "rewards.mode.ModeReward on codec tokens")):
            if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_BEST_OF:
                raise GenerationError(f"{stage}_best_of={n!r}: use a whole number from 1 to "
                                      f"{MAX_BEST_OF}")
            if n > 1 and score is None:
                raise GenerationError(f"{stage}_best_of > 1 needs {stage}_score, the reward "
                                      f"that ranks stage {stage[0].upper()}'s candidates "
                                      f"(e.g. {example})")
        rows = [p for p in prompts for _ in range(int(best_of))]
        prompts = rows
        n_s, n_a = int(semantic_best_of), int(acoustic_best_of)

        s_cfg, a_cfg = self.semantic.cfg, self.acoustic.cfg
        s_frames = max(1, int(round(seconds * s_cfg.frame_rate)))
        a_frames = s_frames * a_cfg.cond_ratio
        k_s, k_a = jax.random.split(jax.random.key(int(seed)))

        t0 = time.perf_counter()
        mulan = jax.block_until_ready(self.text_tokens(prompts))
        t1 = time.perf_counter()
        sem = jax.block_until_ready(sample_stage(self.semantic, jnp.repeat(mulan, n_s, axis=0),
                                                 s_frames, key=k_s,
                                                 guidance=float(g_s), sampler=sampler))[..., 0]
        self.last_semantic_scores = self.last_acoustic_scores = None
        if n_s > 1:
            pick, self.last_semantic_scores = self._select(rows, np.asarray(sem), n_s,
                                                           semantic_score, "semantic_score")
            sem = sem[pick]
        t2 = time.perf_counter()
        aco = jax.block_until_ready(sample_stage(
            self.acoustic, jnp.repeat(mulan[:, :a_cfg.mulan_levels], n_a, axis=0), a_frames,
            key=k_a, cond_bt=jnp.repeat(sem, n_a, axis=0), guidance=float(g_a),
            sampler=sampler))
        if n_a > 1:
            pick, self.last_acoustic_scores = self._select(rows, np.asarray(aco), n_a,
                                                           acoustic_score, "acoustic_score")
            aco = aco[pick]
        t3 = time.perf_counter()
        wav = np.asarray(_decode_codes(self.codec, aco))
        t4 = time.perf_counter()
        n = int(round(seconds * self.sample_rate))
        wav = wav[:, :n] if wav.shape[1] >= n else np.pad(wav, ((0, 0), (0, n - wav.shape[1])))
        tokens = {"mulan": np.asarray(mulan), "semantic": np.asarray(sem),
                  "acoustic": np.asarray(aco)}
        self.last_scores = None
        if best_of > 1:
            pick = self._rerank(rows[::best_of], wav, best_of)
            wav = wav[pick]
            tokens = {k: v[pick] for k, v in tokens.items()}
        self.timing = Timing(t1 - t0, t2 - t1, t3 - t2, t4 - t3, time.perf_counter() - t4)
        return (wav, tokens) if return_tokens else wav

    @staticmethod
    def _select(rows: list[str], cands: np.ndarray, n: int,
                score: Callable[[list[str], np.ndarray], np.ndarray], name: str
                ) -> tuple[np.ndarray, np.ndarray]:
        """Row index of each clip's best candidate (rows ``i·n … i·n + n − 1``) and all the
        scores [clips, n]; NaN ranks last."""
        prompts = [p for p in rows for _ in range(n)]
        s = np.asarray(score(prompts, cands), np.float64)
        if s.shape != (len(prompts),):
            raise GenerationError(f"{name} returned shape {s.shape} for "
                                  f"{len(prompts)} candidates; it must return one score each")
        s = s.reshape(len(rows), n)
        pick = np.arange(len(rows)) * n + np.argmax(np.where(np.isnan(s), -np.inf, s), axis=1)
        return pick, s

    def _rerank(self, prompts: list[str], wav_bn: np.ndarray, n: int) -> np.ndarray:
        """Row index of each prompt's best candidate (rows ``i·n … i·n + n − 1``) by MuLan
        text–audio cosine; keeps all scores in ``self.last_scores``."""
        from musicrl.mulan import embed_audio_long, embed_prompts_batched

        text = embed_prompts_batched(self.mulan, prompts)                    # [b, e]
        audio = embed_audio_long(self.mulan, wav_bn).reshape(len(prompts), n, -1)
        self.last_scores = np.einsum("be,bne->bn", text, audio)
        return np.arange(len(prompts)) * n + np.argmax(self.last_scores, axis=1)
