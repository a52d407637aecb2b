"""How good is MuLan? Retrieval, zero-shot attributes, free-form prompts, RVQ fidelity.

``musicrl eval mulan`` (DESIGN §6.1, issue "MuLan, quality, diversity, evaluation"):

* **Retrieval** over a pool of every clip of a split: text→audio and audio→text
  recall@1/@10 for each of the corpus' caption phrasings (tags, prose, …), with
  chance (k / pool) beside them, and a *piece-level* recall (a hit when the
  retrieved clip comes from the same score: clips of one piece share most of
  their caption, so exact-clip recall understates what the model knows).
* **Zero-shot attributes**: each clip's audio embedding is compared with the
  embeddings of label prompts (an ensemble of phrasings per label, averaged on
  the sphere, as in CLIP §3.1.4); the nearest label is the prediction. Melody
  instrument family, tempo bucket, mode and drums, beside uniform chance and
  the majority-class rate.
* **Free-form prompts** in everyday words (not the caption templates): the
  top-5 retrieved clips with their captions, and the fraction of them that
  have the property the prompt asks for beside that property's base rate.
* **Conditioning RVQ**: mean cos(embedding, reconstruction from its first q
  tokens), q = 1..12, for held-out audio and held-out caption embeddings.

Clip embeddings cover the whole clip (windows averaged, :func:`embed_audio_long`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_text_atomic
from musicrl.data.manifest import Clip

__all__ = ["evaluate_mulan", "FREE_FORM", "label_prompts", "zero_shot", "format_table",
           "write_report"]


@dataclasses.dataclass(frozen=True)
class FreeForm:
    """A prompt in everyday words and the labelled property a good match has."""

    prompt: str
    wants: str
    test: Callable[[dict[str, Any]], bool]


def _fam(lb, *fams):
    return lb.get("melody_family") in fams


FREE_FORM: tuple[FreeForm, ...] = (
    FreeForm("something calm and slow to fall asleep to", "tempo bucket slow",
             lambda lb: lb.get("tempo_bucket") == "slow"),
    FreeForm("upbeat music with a groove you can dance to", "drums and fast/medium tempo",
             lambda lb: bool(lb.get("drums")) and lb.get("tempo_bucket") != "slow"),
    FreeForm("a sad, dark sounding tune", "minor mode", lambda lb: lb.get("mode") == "minor"),
    FreeForm("a cheerful sunny melody", "major mode", lambda lb: lb.get("mode") == "major"),
    FreeForm("the sound of a church organ", "organ melody", lambda lb: _fam(lb, "organ")),
    FreeForm("just a piano, nothing else, very quiet", "piano melody, no drums",
             lambda lb: _fam(lb, "piano") and not lb.get("drums")),
    FreeForm("a band with a drummer playing loud", "drums", lambda lb: bool(lb.get("drums"))),
    FreeForm("peaceful music without any percussion", "no drums",
             lambda lb: not lb.get("drums")),
    FreeForm("a flute or clarinet playing the tune", "woodwind melody",
             lambda lb: _fam(lb, "woodwind")),
    FreeForm("an old Irish fiddle tune", "celtic or folk style",
             lambda lb: lb.get("style") in ("celtic", "folk")),
)

# Label prompt ensembles. Words for tempo follow what people say, not only the
# bucket names; instrument families use the instrument names the corpus has.
_TEMPO = {
    "slow": ("slow music", "a slow, calm piece", "a gentle, unhurried tune", "slow tempo"),
    "medium": ("music at a moderate tempo", "a steady mid-tempo piece", "a relaxed tune",
               "medium tempo"),
    "fast": ("fast music", "a lively, quick piece", "an energetic upbeat tune", "fast tempo"),
}
_MODE = {
    "major": ("a piece in a major key", "bright, happy music in major", "major key"),
    "minor": ("a piece in a minor key", "dark, sad music in minor", "minor key"),
}
_DRUMS = {
    True: ("music with drums", "a drum kit keeps the beat", "with drums and percussion"),
    False: ("music with no drums", "without any drums or percussion", "no drums"),
}


def label_prompts(train_clips: Sequence[Clip]) -> dict[str, dict[Any, tuple[str, ...]]]:
    """Label → prompt ensemble, per attribute. Family prompts name the family's instruments
    as they occur as melody instruments in the *train* split."""
    insts: dict[str, Counter] = {}
    for c in train_clips:
        lb = c.labels
        if lb.get("melody_family") and lb.get("melody_instrument"):
            insts.setdefault(lb["melody_family"], Counter())[lb["melody_instrument"]] += 1
    family = {f: tuple([f"{f} music"] + [f"{i} melody" for i, _ in cnt.most_common(4)]
                       + [f"lead: {i}" for i, _ in cnt.most_common(2)])
              for f, cnt in sorted(insts.items())}
    return {"melody_family": family, "tempo_bucket": _TEMPO, "mode": _MODE, "drums": _DRUMS}


def _label_embeddings(embed_prompts, prompts: dict[Any, tuple[str, ...]]):
    labels = list(prompts)
    emb = np.stack([embed_prompts(list(prompts[k])).mean(0) for k in labels])
    return labels, emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def zero_shot(audio_ne: np.ndarray, truth: Sequence[Any], embed_prompts,
              prompts: dict[Any, tuple[str, ...]]) -> dict[str, Any]:
    """Nearest-label-prompt accuracy of audio embeddings, beside chance."""
    labels, lab_ke = _label_embeddings(embed_prompts, prompts)
    keep = [i for i, t in enumerate(truth) if t in prompts]
    pred = [labels[j] for j in np.argmax(audio_ne[keep] @ lab_ke.T, axis=1)]
    true = [truth[i] for i in keep]
    acc = float(np.mean([p == t for p, t in zip(pred, true, strict=False)])) if keep else float("nan")
    majority = Counter(true).most_common(1)[0][1] / len(true) if keep else float("nan")
    chance = 1.0 / len(labels)
    per_class = {str(k): float(np.mean([p == t for p, t in zip(pred, true, strict=False) if t == k]))
                 for k in labels if any(t == k for t in true)}
    return {"accuracy": acc, "chance": chance, "majority": majority, "classes": len(labels),
            "ratio_to_chance": acc / chance, "kappa": (acc - chance) / (1 - chance),
            "n": len(keep), "per_class": per_class,
            "predicted_counts": {str(k): v for k, v in Counter(pred).items()}}


def _recall(sims: np.ndarray, same_piece: np.ndarray, ks=(1, 10)) -> dict[str, float]:
    """Recall@k both ways for a [N, N] text×audio similarity with truth on the diagonal."""
    n = len(sims)
    out: dict[str, float] = {}
    for name, s in (("t2a", sims), ("a2t", sims.T)):
        rank = np.sum(s > np.diag(s)[:, None], axis=1)
        order = np.argsort(-s, axis=1)
        for k in ks:
            out[f"{name}_r@{k}"] = float(np.mean(rank < k))
            out[f"{name}_piece_r@{k}"] = float(np.mean(
                [same_piece[i, order[i, :k]].any() for i in range(n)]))
    for k in ks:
        out[f"chance_r@{k}"] = min(k, n) / n
        out[f"chance_piece_r@{k}"] = float(np.mean(
            [1 - np.prod([(n - same_piece[i].sum() - j) / (n - j) for j in range(min(k, n))])
             for i in range(n)]))
    return out


def evaluate_mulan(model, clips: Sequence[Clip], train_clips: Sequence[Clip],
                   root: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """All MuLan measurements on ``clips`` (every clip in the pool). See the module doc."""
    from tqdm import tqdm

    from musicrl.audio import load_audio
    from musicrl.mulan import embed_audio_long, embed_prompts_batched, reconstruction_cosine

    clips = [c for c in clips if c.captions]
    if len(clips) < 10:
        raise ValueError(f"need at least 10 captioned clips to evaluate MuLan, got {len(clips)}")
    sr = model.cfg.sample_rate
    wavs = [load_audio(Path(root) / c.path, sr) for c in
            tqdm(clips, desc="load", disable=not progress)]
    n = max(len(w) for w in wavs)
    wav_bn = np.stack([np.pad(w, (0, n - len(w))) for w in wavs])
    audio = np.concatenate([embed_audio_long(model, wav_bn[i:i + 32])
                            for i in tqdm(range(0, len(wav_bn), 32), desc="embed audio",
                                          disable=not progress)])
    embed = lambda ps: embed_prompts_batched(model, list(ps))  # noqa: E731
    pieces = np.array([c.piece for c in clips])
    same_piece = pieces[:, None] == pieces[None, :]

    phrasings = min(len(c.captions) for c in clips)
    retrieval = []
    for p in range(phrasings):
        text = embed([c.captions[p] for c in clips])
        retrieval.append({"phrasing": p, "example": clips[0].captions[p],
                          **_recall(text @ audio.T, same_piece)})
    mean = {k: float(np.mean([r[k] for r in retrieval])) for k in retrieval[0]
            if k not in ("phrasing", "example")}

    prompts = label_prompts(train_clips)
    attrs = {a: zero_shot(audio, [c.labels.get(a) for c in clips], embed, prompts[a])
             for a in ("melody_family", "tempo_bucket", "mode", "drums")}

    free = []
    for ff in FREE_FORM:
        s = audio @ embed([ff.prompt])[0]
        top = np.argsort(-s)[:5]
        hits = [ff.test(clips[i].labels) for i in top]
        free.append({"prompt": ff.prompt, "wants": ff.wants,
                     "top5_precision": float(np.mean(hits)),
                     "base_rate": float(np.mean([ff.test(c.labels) for c in clips])),
                     "top": [{"clip": clips[i].id, "cos": float(s[i]), "has": bool(h),
                              "caption": clips[i].captions[0]} for i, h in zip(top, hits, strict=False)]})

    # Counterfactual captions: does each clip's own caption beat the same caption with
    # the mode (or the tempo) flipped? Chance 0.5. Tests the attribute inside a full
    # description, where zero-shot label prompts test it alone.
    from musicrl.data.captioning import flip_mode, flip_tempo

    rng = np.random.default_rng(0)
    counterfactual = {}
    for name, flip in (("mode", flip_mode), ("tempo", lambda c: flip_tempo(c, rng))):
        wins = []
        for p in range(phrasings):
            caps = [c.captions[p] for c in clips]
            alt = [flip(c) for c in caps]
            keep = [i for i, a in enumerate(alt) if a is not None]
            if keep:
                true = np.sum(audio[keep] * embed([caps[i] for i in keep]), axis=1)
                false = np.sum(audio[keep] * embed([alt[i] for i in keep]), axis=1)
                wins.extend((true > false).tolist())
        counterfactual[name] = {"accuracy": float(np.mean(wins)) if wins else float("nan"),
                                "pairs": len(wins), "chance": 0.5}

    text0 = embed([c.captions[0] for c in clips])
    rvq = {"audio": reconstruction_cosine(model, audio),
           "text": reconstruction_cosine(model, text0),
           "text_all_phrasings": reconstruction_cosine(
               model, embed([cap for c in clips for cap in c.captions]))}
    gap = float(np.mean(np.sum(text0 * audio, axis=1)))
    return {"pool": len(clips), "split": clips[0].split, "phrasings": phrasings,
            "retrieval": {"per_phrasing": retrieval, "mean": mean},
            "zero_shot": attrs, "counterfactual": counterfactual, "free_form": free,
            "rvq_cosine": rvq,
            "mean_cos_matching_text_audio": gap,
            "checks": {
                "t2a_r@10_vs_chance": mean["t2a_r@10"] / mean["chance_r@10"],
                "a2t_r@10_vs_chance": mean["a2t_r@10"] / mean["chance_r@10"],
                **{f"zero_shot_{a}_vs_chance": v["ratio_to_chance"] for a, v in attrs.items()},
                "rvq_cosine_audio_12": rvq["audio"][-1], "rvq_cosine_text_12": rvq["text"][-1]}}


def format_table(rep: dict[str, Any]) -> str:
    m = rep["retrieval"]["mean"]
    lines = [f"MuLan on the {rep['split']} split, pool of {rep['pool']} clips "
             f"(mean over {rep['phrasings']} caption phrasings)",
             "| direction | R@1 | R@10 | chance R@1 | chance R@10 | R@10 / chance | piece R@10 | "
             "piece chance R@10 |", "|---|---|---|---|---|---|---|---|"]
    for d, name in (("t2a", "text → audio"), ("a2t", "audio → text")):
        lines.append(f"| {name} | {m[f'{d}_r@1']:.3f} | {m[f'{d}_r@10']:.3f} | "
                     f"{m['chance_r@1']:.4f} | {m['chance_r@10']:.4f} | "
                     f"{m[f'{d}_r@10'] / m['chance_r@10']:.1f}× | {m[f'{d}_piece_r@10']:.3f} | "
                     f"{m['chance_piece_r@10']:.3f} |")
    lines += ["", "| zero-shot attribute | classes | accuracy | chance (1/k) | ratio | "
              "majority | κ vs chance |", "|---|---|---|---|---|---|---|"]
    for a, v in rep["zero_shot"].items():
        lines.append(f"| {a} | {v['classes']} | {v['accuracy']:.3f} | {v['chance']:.3f} | "
                     f"{v['ratio_to_chance']:.2f}× | {v['majority']:.3f} | {v['kappa']:.3f} |")
    if rep.get("counterfactual"):
        lines += ["", "| counterfactual caption | own caption beats it | chance | pairs |",
                  "|---|---|---|---|"]
        for a, v in rep["counterfactual"].items():
            lines.append(f"| {a} flipped | {v['accuracy']:.3f} | {v['chance']:.2f} | "
                         f"{v['pairs']} |")
    lines += ["", "| free-form prompt | wants | top-5 precision | base rate |", "|---|---|---|---|"]
    for f in rep["free_form"]:
        lines.append(f"| {f['prompt']} | {f['wants']} | {f['top5_precision']:.1f} | "
                     f"{f['base_rate']:.2f} |")
    r = rep["rvq_cosine"]
    lines += ["", f"conditioning RVQ, mean cos(x, 12-token reconstruction): held-out audio "
              f"{r['audio'][-1]:.4f}, captions (tags) {r['text'][-1]:.4f}, all phrasings "
              f"{r['text_all_phrasings'][-1]:.4f}; mean cos(matching text, audio) "
              f"{rep['mean_cos_matching_text_audio']:.3f}"]
    return "\n".join(lines)


def write_report(rep: dict[str, Any], out: str | os.PathLike) -> Path:
    """report.json, report.md (tables + free-form top-5 lists) and three PNG plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(rep, indent=2) + "\n")
    md = [format_table(rep), "", "## Free-form prompts: top-5 test clips", ""]
    for f in rep["free_form"]:
        md.append(f"**{f['prompt']}** (wants {f['wants']}):")
        md += [f"{i + 1}. {'✓' if t['has'] else '✗'} cos {t['cos']:.3f} — {t['caption']}"
               for i, t in enumerate(f["top"])]
        md.append("")
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")

    m = rep["retrieval"]["mean"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    keys = ["t2a_r@1", "t2a_r@10", "a2t_r@1", "a2t_r@10"]
    ax[0].bar(keys, [m[k] for k in keys], color="C0", label="MuLan")
    ax[0].bar(keys, [m["chance_r@" + k.split("@")[1]] for k in keys], color="C3", width=0.4,
              label="chance")
    ax[0].set_title(f"retrieval, pool {rep['pool']}")
    ax[0].legend()
    zs = rep["zero_shot"]
    ax[1].bar(list(zs), [v["accuracy"] for v in zs.values()], color="C0", label="zero-shot")
    ax[1].bar(list(zs), [v["chance"] for v in zs.values()], color="C3", width=0.4,
              label="chance 1/k")
    ax[1].plot(list(zs), [v["majority"] for v in zs.values()], "k_", ms=30, label="majority")
    ax[1].set_title("zero-shot attribute accuracy")
    ax[1].legend()
    r = rep["rvq_cosine"]
    q = np.arange(1, len(r["audio"]) + 1)
    for k in ("audio", "text", "text_all_phrasings"):
        ax[2].plot(q, r[k], marker="o", label=k)
    ax[2].axhline(0.95, color="gray", ls="--")
    ax[2].set_xlabel("RVQ levels")
    ax[2].set_ylabel("mean cos(x, reconstruction)")
    ax[2].set_title("conditioning RVQ")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(out / "mulan.png", dpi=110)
    plt.close(fig)
    return out
