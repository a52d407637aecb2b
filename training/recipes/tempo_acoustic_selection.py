"""Does choosing among stage A's renderings by their tempo carry the prompt's tempo further?

    python training/recipes/tempo_acoustic_selection.py BUNDLE [--split valid] [--ns 32]
        [--semantic-tempo assets/small/tempo-ensemble@min] [--na 2,4,8]
        [--tempo assets/small/tempo-ensemble@min ...] [--rows rows.npz] [--json …] [--plot …]
    python training/recipes/tempo_acoustic_selection.py --from-rows rows.npz [--json …] [--plot …]

Stage-S best of 32 by the tempo ensemble's least sure member meets 2× chance on the drum
prompts of test but not on all prompts (docs/generator.md "Best of N on stage S"): without
drums, the chosen semantic stream's tempo is lost more often on its way through stage A and
the codec. This asks whether ranking stage A's renderings by the tempo of their *audio*
wins it back. The ranking reward (:class:`rewards.tempo.AudioTempoReward`) re-tokenizes each
decoded rendering with the bundle's semantic tokenizer and scores those tokens with a tempo
model — the same reward stage S is chosen by, read from what the listener hears rather than
from what stage S wrote. The evaluation's beat tracker (librosa's onset-envelope tempo) is
not in it.

For every prompt of the split (``eval_prompts``: what ``musicrl eval generate`` uses): stage
S samples ``--ns`` candidates at γ = 3 and ``--semantic-tempo`` keeps one, stage A renders
it ``max(--na)`` times (γ = 3), every rendering is decoded and the beat tracker reads its
tempo. Each ``--tempo`` reward keeps, among the first N_A renderings, the one it rates most
surely within 8 % of the prompt's tempo. Printed: within 8 % on all prompts, on those with
and without drums, beside permutation chance (all off-diagonal pairs), N_A = 1 (the first
rendering), the mean over renderings (a random pick), the oracle (any of the first N_A is
within 8 %: what a perfect ranker reaches) and the gain over a random rendering with a
95 % paired bootstrap interval over prompts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _reward(spec: str, audio: bool, bundle: str = ""):
    from rewards.tempo import AudioTempoReward, TempoReward

    folder, _, combine = spec.partition("@")
    if audio:
        return AudioTempoReward(folder, semantic_dir=f"{bundle}/semantic",
                                combine=combine or "mean")
    return TempoReward(folder, combine=combine or "mean")


def sample(args, na: int):
    """Stage S × ns (the semantic reward keeps one), stage A × na, decode; returns the beat
    tracker's BPM of every rendering [rows, na], the labelled BPMs and drums [rows], and
    each ``--tempo`` reward's score of every rendering {spec: [rows, na]}."""
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from musicrl.data.checks import estimate_tempo
    from musicrl.evaluation.generation import eval_prompts
    from musicrl.pipeline import Pipeline, _decode_codes
    from musicrl.sampling import sample_stage

    pipe = Pipeline.from_pretrained(args.bundle)
    a_cfg = pipe.acoustic.cfg
    sem_reward = _reward(args.semantic_tempo, audio=False) if args.ns > 1 else None
    aco_rewards = {spec: _reward(spec, audio=True, bundle=args.bundle) for spec in args.tempo}
    clips, prompts = eval_prompts(args.root, args.split, args.max_prompts or None)
    bpm = np.array([float(c.labels["bpm"]) for c in clips])
    drums = np.array([bool(c.labels.get("drums")) for c in clips])
    frames, b = 250, args.batch
    print(f"{len(prompts)} {args.split} prompts ({int(drums.sum())} with drums); stage S × "
          f"{args.ns}, stage A × {na}", flush=True)

    est, scores = [], {spec: [] for spec in aco_rewards}
    for i in tqdm(range(0, len(prompts), b), desc="stage S, stage A, decode"):
        p = prompts[i:i + b]
        mul = pipe.text_tokens(p)
        sem = np.asarray(sample_stage(pipe.semantic, jnp.repeat(mul, args.ns, 0), frames,
                                      key=jax.random.fold_in(jax.random.key(0), i),
                                      guidance=3.0))[..., 0].reshape(len(p), args.ns, frames)
        if sem_reward is not None:
            s = np.asarray(sem_reward([q for q in p for _ in range(args.ns)],
                                      sem.reshape(-1, frames))).reshape(len(p), args.ns)
            sem = sem[np.arange(len(p)), np.argmax(np.nan_to_num(s, nan=-1.0), 1)]
        else:
            sem = sem[:, 0]
        aco = sample_stage(pipe.acoustic, jnp.repeat(mul[:, :a_cfg.mulan_levels], na, 0),
                           frames * a_cfg.cond_ratio,
                           key=jax.random.fold_in(jax.random.key(1), i),
                           cond_bt=jnp.repeat(jnp.asarray(sem), na, 0), guidance=3.0)
        wav = np.asarray(_decode_codes(pipe.codec, aco))
        est.append(np.array([estimate_tempo(x) for x in wav]).reshape(-1, na))
        rep = [q for q in p for _ in range(na)]
        for spec, r in aco_rewards.items():
            scores[spec].append(np.asarray(r.score_audio(rep, wav), np.float64).reshape(-1, na))
    return (np.concatenate(est), bpm, drums,
            {k: np.concatenate(v) for k, v in scores.items()})


def main() -> None:
    from training.recipes.mode_acoustic_selection import read_rows, save_rows, selection_nas

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", default="")
    ap.add_argument("--tempo", action="append", default=[], metavar="DIR[@min]",
                    help="a tempo model (semantic tokens) that ranks the renderings by the "
                         "tempo of their re-tokenized audio; DIR@min: an ensemble's least "
                         "sure member; repeatable")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--max-prompts", type=int, default=0, help="every k-th prompt (0: all)")
    ap.add_argument("--ns", type=int, default=32, help="stage-S candidates (1: no selection)")
    ap.add_argument("--semantic-tempo", default="assets/small/tempo-ensemble@min",
                    metavar="DIR[@min]", help="the tempo reward that picks stage S's candidate")
    ap.add_argument("--na", default="2,4,8", help="stage-A renderings to compare")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="")
    ap.add_argument("--plot", default="")
    ap.add_argument("--rows", default="", metavar="FILE.npz",
                    help="save each rendering's estimated BPM and every reward's score")
    ap.add_argument("--from-rows", default="", metavar="FILE.npz",
                    help="measure the renderings a --rows file saved (no sampling)")
    args = ap.parse_args()
    if not args.from_rows and not (args.bundle and args.tempo):
        ap.error("give BUNDLE and at least one --tempo (or --from-rows FILE.npz)")
    nas = selection_nas(ap, args)

    t0 = time.time()
    if args.from_rows:
        est, bpm, drums, scores, meta = read_rows(args.from_rows)
        args.bundle, args.split, args.ns = meta["bundle"], meta["split"], meta["ns"]
        args.semantic_tempo = meta["semantic_tempo"]
        nas = sorted({k for k in nas if k <= est.shape[1]} | {est.shape[1]})
    else:
        est, bpm, drums, scores = sample(args, nas[-1])
        if args.rows:
            save_rows(Path(args.rows), est, bpm, drums, scores,
                      {"bundle": args.bundle, "split": args.split, "ns": args.ns,
                       "semantic_tempo": args.semantic_tempo if args.ns > 1 else None})
    drums = np.asarray(drums, bool)
    n_rows, na = est.shape
    hit = np.abs(est - bpm[:, None]) <= 0.08 * bpm[:, None]          # [rows, na]
    boot = np.random.default_rng(0).integers(0, n_rows, size=(2000, n_rows))
    groups = {"all": np.ones(n_rows, bool), "drums": drums, "no_drums": ~drums}

    def measure(e: np.ndarray, h: np.ndarray) -> dict[str, float]:
        out = {}
        for g, m in groups.items():
            pair = np.abs(e[m][:, None] - bpm[m][None, :]) <= 0.08 * bpm[m][None, :]
            chance = float(pair[~np.eye(int(m.sum()), dtype=bool)].mean())
            out[f"{g}_within_8pct"] = float(h[m].mean())
            out[f"{g}_chance"] = chance
            out[f"{g}_ratio"] = float(h[m].mean()) / chance if chance else float("nan")
        return out

    def gain(h: np.ndarray) -> dict[str, float]:
        d = h - hit.mean(1)
        means = d[boot].mean(1)
        return {"gain_vs_random": float(d.mean()), "gain_lo95": float(np.quantile(means, 0.025)),
                "gain_hi95": float(np.quantile(means, 0.975))}

    idx = np.arange(n_rows)
    res: dict[str, dict[str, dict[str, float]]] = {"random rendering (mean over all)": {}, "oracle (any of N_A)": {}}
    every = [measure(est[:, j], hit[:, j]) for j in range(na)]
    for k in nas:
        res["random rendering (mean over all)"][str(k)] = {
            key: float(np.mean([m[key] for m in every])) for key in every[0]}
        res["oracle (any of N_A)"][str(k)] = {"all_within_8pct": float(hit[:, :k].any(1).mean()),
                                              "drums_within_8pct": float(hit[drums, :k].any(1).mean()),
                                              "no_drums_within_8pct": float(hit[~drums, :k].any(1).mean())}
    for spec, sc in scores.items():
        res[spec] = {}
        for k in nas:
            pick = np.argmax(np.nan_to_num(sc[:, :k], nan=-1.0), 1)
            res[spec][str(k)] = (measure(est[idx, pick], hit[idx, pick])
                                 | {"reward_of_chosen": float(np.nanmean(sc[idx, pick]))}
                                 | gain(hit[idx, pick]))
    print(f"\n{n_rows} {args.split} prompts ({int(drums.sum())} with drums); stage S × {args.ns} "
          f"({args.semantic_tempo if args.ns > 1 else 'no selection'}), γ = 3\n")
    print("| stage-A selection | N_A | within 8 %, all (chance, ratio) | with drums | without "
          "drums | gain vs a random rendering [95 %] |\n|---|---|---|---|---|---|")
    for name, by_n in res.items():
        for k in nas:
            v = by_n[str(k)]
            cells = [f"{v[f'{g}_within_8pct']:.3f}" + (
                f" ({v[f'{g}_chance']:.3f}, {v[f'{g}_ratio']:.2f}×)" if f"{g}_chance" in v else "")
                for g in groups]
            g = (f"{v['gain_vs_random']:+.3f} [{v['gain_lo95']:+.3f}, {v['gain_hi95']:+.3f}]"
                 if "gain_vs_random" in v else "")
            print(f"| {name} | {k} | " + " | ".join(cells) + f" | {g} |")
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(
            {"bundle": args.bundle, "split": args.split, "prompts": n_rows,
             "drum_prompts": int(drums.sum()), "ns": args.ns,
             "semantic_tempo": args.semantic_tempo if args.ns > 1 else None, "nas": nas,
             "result": res, "seconds": round(time.time() - t0, 1)}, indent=2))
    if args.plot:
        plot(res, nas, args.plot, f"tempo by stage-A selection after stage S × {args.ns} "
             f"({args.split}, {n_rows} prompts)")


def plot(res: dict, nas: list[int], path: str, title: str) -> None:
    """Within 8 % against N_A, one panel per prompt group, one line per selector; dashed:
    2× the random rendering's chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, g in zip(axes, ("all", "drums", "no_drums"), strict=True):
        for name, by_n in res.items():
            ax.plot(nas, [by_n[str(k)][f"{g}_within_8pct"] for k in nas], marker="o",
                    ls=":" if name.startswith("oracle") else "-", label=name)
        chance = res["random rendering (mean over all)"][str(nas[0])][f"{g}_chance"]
        ax.axhline(2 * chance, color="k", ls="--", lw=1, label="2× chance")
        ax.set_xscale("log", base=2)
        ax.set_xticks(nas, [str(k) for k in nas])
        ax.set_xlabel("stage-A renderings N_A")
        ax.set_title(g.replace("_", " "))
    axes[0].set_ylabel("tempo within 8 % (beat tracker)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
