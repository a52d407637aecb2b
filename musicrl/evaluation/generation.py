"""``musicrl eval generate``: how good is the generator on the prompts of a split?

For every clip of the split, its caption (phrasings rotated over clips) is a
prompt; the pipeline generates one clip per prompt at each CFG scale asked
for. Reported (DESIGN §12):

* **MuLan cycle consistency (MCC)**: mean cos(MuLan_text(prompt),
  MuLan_audio(clip)) of the generated clips, beside the same number for the
  real clips of those captions (the ceiling) and for generated clips paired
  with *other* prompts (the floor).
* **FAD** (``handcrafted-v1``, fixed n, 3 draws) of generated vs real test
  audio, beside two baselines made from the real test clips' own codec
  tokens: *shuffled tokens* (frames permuted in time, then decoded: right
  spectrum, no music) and *codec resynthesis* with the same K levels (the
  best the generator could do through this codec).
* **Attribute adherence** by the independent estimators
  (:mod:`musicrl.evaluation.estimators`): tempo within 8 % (on prompts that ask
  for drums, where a beat exists to track; also over all prompts), mode,
  melody instrument family, drums yes/no. *Chance* is the same predictions
  scored against the labels of other prompts (20 random permutations), so it
  accounts for label imbalance; the estimators' accuracy on the real clips is
  beside it.
* **Diversity** (when a diversity embedder is given): mean pairwise
  1 − cos of the diversity embedding among variations of the same prompt.

Dimension legend: ``n`` clips, ``e`` embedding width.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_text_atomic
from musicrl.data.manifest import Clip

__all__ = ["evaluate_generation", "format_table", "write_report", "permutation_chance",
           "perfect_adherence", "eval_prompts"]


def permutation_chance(pred: Sequence[Any], truth: Sequence[Any], match: Callable,
                       rounds: int = 20, seed: int = 0) -> float:
    """Mean accuracy of ``pred`` against randomly permuted ``truth`` (label-imbalance-aware
    chance)."""
    rng = np.random.default_rng(seed)
    truth = list(truth)
    accs = []
    for _ in range(rounds):
        perm = rng.permutation(len(truth))
        accs.append(np.mean([match(p, truth[j]) for p, j in zip(pred, perm, strict=False)]))
    return float(np.mean(accs))


def _tempo_hit(est: float, ref: float) -> bool:
    return abs(est - ref) <= 0.08 * ref


def _attributes(wavs: np.ndarray, clf) -> dict[str, np.ndarray]:
    """Estimator outputs per clip: tempo, mode, melody family, drums."""
    from musicrl.data.checks import estimate_tempo
    from musicrl.evaluation.estimators import MELODY_FAMILIES, key_from_chroma, mean_chroma, predict
    from musicrl.evaluation.features import embed_handcrafted

    feats = embed_handcrafted(wavs)
    p = predict(clf, feats)
    modes, tempi = [], []
    for w in wavs:
        tempi.append(float(estimate_tempo(w)))
        modes.append(key_from_chroma(mean_chroma(w))[1])
    return {"tempo": np.array(tempi), "mode": np.array(modes),
            "melody": np.array([MELODY_FAMILIES[i] for i in p["melody"]]),
            "drums": p["drums"] > 0.5, "features": feats}


def _real_attributes(root, clips: Sequence[Clip], clf, estimators_dir) -> dict[str, np.ndarray]:
    """:func:`_attributes` of the real clips, from the estimators' feature caches."""
    from musicrl.evaluation.estimators import (
        MELODY_FAMILIES,
        _analysis,
        key_from_chroma,
        predict,
    )
    from musicrl.evaluation.features import EMBEDDING_NAME, cached_features

    split = clips[0].split
    ana = cached_features(root, clips, Path(estimators_dir) / f"analysis-{split}.npz",
                          fn=_analysis)
    feats = cached_features(root, clips,
                            Path(estimators_dir) / f"features-{EMBEDDING_NAME}-{split}.npz")
    p = predict(clf, feats)
    return {"tempo": ana[:, 0], "mode": np.array([key_from_chroma(a[1:])[1] for a in ana]),
            "melody": np.array([MELODY_FAMILIES[i] for i in p["melody"]]),
            "drums": p["drums"] > 0.5, "features": feats}


def _adherence(att: dict[str, np.ndarray], clips: Sequence[Clip],
               prompts: Sequence[str]) -> dict[str, Any]:
    """Estimates against labels, beside permutation chance. ``mode_named_in_prompt``: the
    prompts whose words name a mode ("minor", "melancholic", "bright", …) — the only ones
    a system can follow; ``mode`` counts every labelled clip.

    ``perfect_ratio`` is the ratio a perfect system would reach — predictions equal to the
    labels, scored against the same permutations: 1 / Σ_c p_c² for a categorical attribute
    (≈ 2 for a balanced yes/no one), so a reader sees which "k × chance" targets exist."""
    from musicrl.data.captioning import mode_from_prompt

    lab = [c.labels for c in clips]
    drums_idx = [i for i, lb in enumerate(lab) if lb.get("drums")]
    named = [i for i, p in enumerate(prompts) if mode_from_prompt(p) is not None]
    specs = {
        "tempo_within_8pct_drum_prompts": (
            [att["tempo"][i] for i in drums_idx], [float(lab[i]["bpm"]) for i in drums_idx],
            _tempo_hit),
        "tempo_within_8pct_all": (list(att["tempo"]), [float(lb["bpm"]) for lb in lab],
                                  _tempo_hit),
        "mode": (list(att["mode"]), [lb["mode"] for lb in lab], lambda a, b: a == b),
        "mode_named_in_prompt": ([att["mode"][i] for i in named],
                                 [mode_from_prompt(prompts[i]) for i in named],
                                 lambda a, b: a == b),
        "melody_family": (list(att["melody"]), [lb["melody_family"] for lb in lab],
                          lambda a, b: a == b),
        "drums": (list(att["drums"]), [bool(lb.get("drums")) for lb in lab],
                  lambda a, b: bool(a) == bool(b)),
    }
    out = {}
    for name, (pred, truth, match) in specs.items():
        if not truth:
            continue
        acc = float(np.mean([match(p, t) for p, t in zip(pred, truth, strict=False)]))
        ch = permutation_chance(pred, truth, match)
        perfect = permutation_chance(truth, truth, match)
        out[name] = {"accuracy": acc, "chance": ch, "ratio": acc / max(ch, 1e-9),
                     "perfect_ratio": 1.0 / max(perfect, 1e-9), "n": len(truth)}
    return out


def eval_prompts(root: str | os.PathLike, split: str, max_prompts: int | None = None
                 ) -> tuple[list[Clip], list[str]]:
    """The captioned clips of ``split`` (every k-th down to ``max_prompts``) and one prompt
    each, phrasings rotated: what ``evaluate_generation`` generates for and scores against.

    The phrasing follows the clip's place in the whole split, so a subset asks with the same
    words as the full run does for those clips."""
    from musicrl.data.manifest import load_clips

    clips = [c for c in load_clips(root, splits=[split]) if c.captions]
    prompts = [c.captions[i % len(c.captions)] for i, c in enumerate(clips)]
    if max_prompts:
        step = max(1, len(clips) // max_prompts)
        clips, prompts = clips[::step][:max_prompts], prompts[::step][:max_prompts]
    return clips, prompts


def perfect_adherence(clips: Sequence[Clip], prompts: Sequence[str]) -> dict[str, Any]:
    """The adherence table of a perfect system — estimates equal to the labels — for these
    clips and prompts: what each "k × chance" target can be at most (``ratio`` =
    ``perfect_ratio``). Needs labels only, no model."""
    lab = [c.labels for c in clips]
    att = {"mode": np.array([lb.get("mode") for lb in lab], dtype=object),
           "tempo": np.array([float(lb["bpm"]) for lb in lab]),
           "melody": np.array([lb.get("melody_family") for lb in lab], dtype=object),
           "drums": np.array([bool(lb.get("drums")) for lb in lab])}
    return _adherence(att, clips, prompts)


def _mcc(mulan, prompts: list[str], wavs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from musicrl.mulan import embed_audio_long, embed_prompts_batched

    t = embed_prompts_batched(mulan, prompts)
    a = np.concatenate([embed_audio_long(mulan, wavs[i:i + 32]) for i in range(0, len(wavs), 32)])
    return np.sum(t * a, axis=1), t @ a.T


def _shuffled_and_resynth(pipe, clips: Sequence[Clip], root: str | os.PathLike,
                          tokens_dir: str, n: int, seed: int
                          ) -> tuple[np.ndarray, np.ndarray, str]:
    """Audio of the real clips' first K codec levels decoded as is and with frames shuffled,
    and where the codes came from: the token cache in ``tokens_dir`` when there is one
    (``musicrl tokenize``), else the bundle's codec encoding each clip here."""
    import jax.numpy as jnp

    from musicrl.audio import load_audio
    from musicrl.data.tokens import load_tokens
    from musicrl.pipeline import _decode_codes

    try:
        toks, source = load_tokens(tokens_dir, split=clips[0].split if clips else None), \
            f"token cache {tokens_dir}"
    except FileNotFoundError:
        toks, source = None, "the bundle's codec (no token cache)"
    k = pipe.acoustic.cfg.levels
    rng = np.random.default_rng(seed)
    real, shuf = [], []
    for c in clips:
        if toks is not None and c.id in toks:
            codes = toks[c.id][1][:, :k].astype(np.int32)[None]
        else:
            wav = load_audio(Path(root) / c.path, pipe.sample_rate)[None]
            codes = np.asarray(pipe.codec.encode(jnp.asarray(wav), k), np.int32)
        real.append(np.asarray(_decode_codes(pipe.codec, jnp.asarray(codes)))[0, :n])
        perm = rng.permutation(codes.shape[1])
        shuf.append(np.asarray(_decode_codes(pipe.codec, jnp.asarray(codes[:, perm])))[0, :n])
    return np.stack(real), np.stack(shuf), source


def evaluate_generation(pipe, root: str | os.PathLike, *, split: str = "test",
                        max_prompts: int | None = None, seconds: float = 10.0,
                        guidance: Sequence[float] = (3.0, 1.0), seed: int = 0,
                        batch: int = 16, estimators_dir: str | os.PathLike = "runs/estimators",
                        fad_cache: str | os.PathLike = "runs/fad-cache",
                        tokens_dir: str | None = None,
                        diversity_embed: Callable[[np.ndarray], np.ndarray] | None = None,
                        variation_prompts: int = 16, variations: int = 4,
                        out: str | os.PathLike | None = None, best_of: int = 1,
                        semantic_best_of: int = 1,
                        semantic_score: Callable[[list[str], np.ndarray], np.ndarray] | None = None,
                        semantic_score_name: str = "", acoustic_best_of: int = 1,
                        acoustic_score: Callable[[list[str], np.ndarray], np.ndarray] | None = None,
                        acoustic_score_name: str = "", progress: bool = True) -> dict[str, Any]:
    """Generates for the split's prompts and measures everything in the module doc.

    ``best_of`` > 1 keeps, per prompt, the best of that many samples by the bundle's MuLan
    (``Pipeline.generate(best_of=…)``). MCC is then measured with the model that chose the
    clips and flatters them (the report says so); adherence and FAD are not affected: their
    estimators and embedding are independent of MuLan. ``semantic_best_of`` > 1 keeps the
    best of that many stage-S continuations by ``semantic_score`` (named
    ``semantic_score_name`` in the report), e.g. the tempo reward on semantic tokens, whose
    model is independent of the beat tracker that measures tempo adherence;
    ``acoustic_best_of`` > 1 likewise keeps the best of that many stage-A renderings by
    ``acoustic_score`` (e.g. the mode reward on codec tokens; independent of the chroma
    estimator)."""
    from tqdm import tqdm

    from musicrl.audio import load_audio, write_wav_atomic
    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.estimators import evaluate_estimators, load_classifier
    from musicrl.evaluation.fad_report import fad_between
    from musicrl.evaluation.features import EMBEDDING_NAME, cached_features

    t_start = time.time()
    clips, prompts = eval_prompts(root, split, max_prompts)
    if len(clips) < 10:
        raise ValueError(f"need at least 10 captioned {split} clips, found {len(clips)}")
    sr = pipe.sample_rate
    n = int(round(seconds * sr))
    select = {"best_of": best_of, "semantic_best_of": semantic_best_of,
              "semantic_score": semantic_score, "acoustic_best_of": acoustic_best_of,
              "acoustic_score": acoustic_score}

    # The estimators' classifier (trained once on the train split, as in eval estimators).
    if not (Path(estimators_dir) / "classifier" / "meta.json").exists():
        evaluate_estimators(root, estimators_dir, split=split, progress=progress)
    clf, _ = load_classifier(Path(estimators_dir) / "classifier")

    real = np.stack([np.pad(w := load_audio(Path(root) / c.path, sr)[:n],
                            (0, n - len(w))) for c in clips])
    mcc_real, _ = _mcc(pipe.mulan, prompts, real)
    real_att = _real_attributes(root, clips, clf, estimators_dir)
    report: dict[str, Any] = {
        "split": split, "prompts": len(clips), "seconds": seconds, "seed": seed,
        "model": pipe.meta.get("components", {}),
        "real": {"mcc": float(mcc_real.mean()), "adherence": _adherence(real_att, clips, prompts)},
        "systems": {}}

    emb_test = cached_features(root, load_clips(root, splits=[split]),
                               Path(fad_cache) / f"{EMBEDDING_NAME}-{split}.npz",
                               progress=progress)
    n_fad = min(200, len(clips), len(emb_test))
    out = Path(out) if out is not None else None
    for g in guidance:
        wavs = []
        t0 = time.time()
        for i in tqdm(range(0, len(prompts), batch), desc=f"generate γ={g:g}",
                      disable=not progress):
            wavs.append(pipe.generate(prompts[i:i + batch], seconds=seconds, seed=seed + i,
                                      guidance=g, **select))
        gen = np.concatenate(wavs)
        gen_seconds = time.time() - t0
        mcc, sims = _mcc(pipe.mulan, prompts, gen)
        off = sims[~np.eye(len(sims), dtype=bool)]
        att = _attributes(gen, clf)
        sys_rep = {"guidance": g, "best_of": best_of, "generate_seconds": gen_seconds,
                   **({"semantic_best_of": semantic_best_of,
                       "semantic_score": semantic_score_name or "custom"}
                      if semantic_best_of > 1 else {}),
                   **({"acoustic_best_of": acoustic_best_of,
                       "acoustic_score": acoustic_score_name or "custom"}
                      if acoustic_best_of > 1 else {}),
                   "mcc": float(mcc.mean()), "mcc_other_prompts": float(off.mean()),
                   "mcc_ratio_to_real": float(mcc.mean() / mcc_real.mean()),
                   "fad": fad_between(emb_test, att["features"], n_fad),
                   "adherence": _adherence(att, clips, prompts)}
        report["systems"][f"cfg{g:g}"] = sys_rep
        if out is not None:
            for j in range(min(6, len(gen))):
                write_wav_atomic(out / f"audio-cfg{g:g}" / f"{j:03d}.wav", gen[j], sr)
            (out / f"audio-cfg{g:g}").mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / f"audio-cfg{g:g}" / "prompts.json",
                              json.dumps(prompts[:6], indent=2) + "\n")
            # what is measured so far, so that a failure after it loses no generation
            write_text_atomic(out / "report.partial.json", json.dumps(report, indent=2) + "\n")

    from musicrl.evaluation.features import embed_handcrafted

    tokens_dir = tokens_dir or str(Path(root) / "tokens")
    resyn, shuf, source = _shuffled_and_resynth(pipe, clips, root, tokens_dir, n, seed)
    report["baselines_codes_from"] = source
    report["baselines"] = {
        "shuffled_tokens": {"fad": fad_between(emb_test, embed_handcrafted(shuf), n_fad),
                            "mcc": float(_mcc(pipe.mulan, prompts, shuf)[0].mean())},
        "codec_resynthesis": {"fad": fad_between(emb_test, embed_handcrafted(resyn), n_fad),
                              "mcc": float(_mcc(pipe.mulan, prompts, resyn)[0].mean())},
    }

    if diversity_embed is not None:
        g0 = guidance[0]
        pick = clips[:: max(1, len(clips) // variation_prompts)][:variation_prompts]
        rows = [p for c in pick for p in [c.captions[0]] * variations]
        gen = np.concatenate([pipe.generate(rows[i:i + batch], seconds=seconds,
                                            seed=seed + 10_000 + i, guidance=g0, **select)
                              for i in range(0, len(rows), batch)])
        e = diversity_embed(gen).reshape(len(pick), variations, -1)
        e = e / np.linalg.norm(e, axis=-1, keepdims=True)
        iu = np.triu_indices(variations, 1)
        within = [float(np.mean(1 - (x @ x.T)[iu])) for x in e]
        r = diversity_embed(real[: len(pick) * variations])
        r = r / np.linalg.norm(r, axis=-1, keepdims=True)
        iu_all = np.triu_indices(len(r), 1)
        report["diversity"] = {"guidance": g0, "prompts": len(pick), "variations": variations,
                               "within_prompt": float(np.mean(within)),
                               "real_clips_pairwise": float(np.mean(1 - (r @ r.T)[iu_all]))}
    report["seconds_total"] = time.time() - t_start
    return report


def system_label(s: dict[str, Any]) -> str:
    """"γ=3", "γ=3, best of 4", "γ=3, stage S best of 8 by tempo", … for a system entry."""
    bo, sbo, abo = s.get("best_of", 1), s.get("semantic_best_of", 1), s.get("acoustic_best_of", 1)
    return (f"γ={s['guidance']:g}" + (f", best of {bo}" if bo > 1 else "")
            + (f", stage S best of {sbo} by {s.get('semantic_score', 'a reward')}"
               if sbo > 1 else "")
            + (f", stage A best of {abo} by {s.get('acoustic_score', 'a reward')}"
               if abo > 1 else ""))


def format_table(rep: dict[str, Any]) -> str:
    lines = [f"Generation on {rep['prompts']} {rep['split']} prompts, {rep['seconds']:g} s each",
             "", "| system | MCC | MCC / real | MCC other prompts | FAD ± std |",
             "|---|---|---|---|---|",
             f"| real {rep['split']} clips | {rep['real']['mcc']:.3f} | 1.00 | — | — |"]
    for s in rep["systems"].values():
        lines.append(f"| generated, CFG {system_label(s)}{' †' if s.get('best_of', 1) > 1 else ''} | "
                     f"{s['mcc']:.3f} | "
                     f"{s['mcc_ratio_to_real']:.2f} | {s['mcc_other_prompts']:.3f} | "
                     f"{s['fad']['mean']:.2f} ± {s['fad']['std']:.2f} |")
    for name, b in rep.get("baselines", {}).items():
        lines.append(f"| {name.replace('_', ' ')} (real tokens) | {b['mcc']:.3f} | — | — | "
                     f"{b['fad']['mean']:.2f} ± {b['fad']['std']:.2f} |")
    if any(s.get("best_of", 1) > 1 for s in rep["systems"].values()):
        lines += ["", "† clips chosen by the same MuLan that measures MCC: that MCC is "
                      "flattered; FAD and adherence use independent models"]
    attrs = list(rep["real"]["adherence"])
    lines += ["", "| attribute | " + " | ".join(
        f"{system_label(s)} acc (chance, ratio)" for s in rep["systems"].values())
        + " | real clips acc (chance, ratio) | a perfect system's ratio |",
        "|---|" + "---|" * (len(rep["systems"]) + 2)]

    def cell(v: dict[str, Any] | None) -> str:
        return f"{v['accuracy']:.3f} ({v['chance']:.3f}, {v['ratio']:.2f}×)" if v else "—"

    for a in attrs:
        real = rep["real"]["adherence"][a]
        perfect = f"{real['perfect_ratio']:.2f}×" if "perfect_ratio" in real else "—"
        lines.append(f"| {a} | " + " | ".join(cell(s["adherence"].get(a))
                                               for s in rep["systems"].values())
                     + f" | {cell(real)} | {perfect} |")
    if any("perfect_ratio" in v for v in rep["real"]["adherence"].values()):
        lines += ["", "ratio = accuracy / chance, chance = the same predictions against "
                      "permuted labels; a perfect system (predictions = labels) reaches "
                      "1 / Σ p_c², about 2× for a balanced yes/no attribute"]
    if "diversity" in rep:
        d = rep["diversity"]
        lines += ["", f"diversity (γ={d['guidance']:g}, {d['prompts']} prompts × "
                      f"{d['variations']} variations): mean pairwise 1 − cos within a prompt "
                      f"{d['within_prompt']:.3f}; between random real clips "
                      f"{d['real_clips_pairwise']:.3f}"]
    return "\n".join(lines)


def write_report(rep: dict[str, Any], out: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(rep, indent=2) + "\n")
    write_text_atomic(out / "report.md", format_table(rep) + "\n")
    (out / "report.partial.json").unlink(missing_ok=True)    # superseded by the whole report
    systems = rep["systems"]
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.2))
    labels = [textwrap.fill(system_label(s), 24) for s in systems.values()]  # long names wrap
    names = ["real", *labels]
    ax[0].bar(names, [rep["real"]["mcc"]] + [s["mcc"] for s in systems.values()], color="C0")
    ax[0].bar(names[1:], [s["mcc_other_prompts"] for s in systems.values()], color="C3",
              width=0.4, label="other prompts")
    ax[0].tick_params(axis="x", labelsize=7)
    ax[0].set_title("MuLan cycle consistency")
    ax[0].legend()
    fad_names = labels + \
        [k.replace("_", " ") for k in rep.get("baselines", {})]
    fad_vals = [s["fad"] for s in systems.values()] + \
        [b["fad"] for b in rep.get("baselines", {}).values()]
    ax[1].barh(fad_names, [f["mean"] for f in fad_vals], xerr=[f["std"] for f in fad_vals])
    ax[1].tick_params(axis="y", labelsize=7)
    ax[1].set_title("FAD vs real test audio (handcrafted-v1), lower is better")
    attrs = list(rep["real"]["adherence"])
    x = np.arange(len(attrs))
    w = 0.8 / (len(systems) + 2)
    for i, (s, label) in enumerate(zip(systems.values(), labels, strict=True)):
        ax[2].bar(x + i * w, [s["adherence"][a]["accuracy"] for a in attrs], w, label=label)
    first = next(iter(systems.values()))
    ax[2].bar(x + len(systems) * w, [first["adherence"][a]["chance"] for a in attrs], w,
              color="gray", label="chance")
    ax[2].bar(x + (len(systems) + 1) * w, [rep["real"]["adherence"][a]["accuracy"]
                                           for a in attrs], w, color="k", alpha=0.4,
              label="real clips")
    twice = [2 * first["adherence"][a]["chance"] for a in attrs]
    ax[2].hlines(twice, x - w / 2, x + 0.8 - w / 2, colors="C3", linestyles="--", lw=1,
                 label="2× chance")
    ax[2].axhline(1.0, color="k", lw=0.5)  # 2× chance above this line: no system can reach it
    ax[2].set_xticks(x + 0.4 - w / 2, [a.replace("_", "\n") for a in attrs], fontsize=7)
    ax[2].set_title("attribute adherence (independent estimators)")
    ax[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out / "generation.png", dpi=110)
    plt.close(fig)
    return out
