"""Does selection on stage A's output carry the mode further than selection on stage S?

    python training/recipes/mode_acoustic_selection.py BUNDLE --model DIR[@min] [...]
        [--root data/small] [--split valid] [--ns 8] [--semantic-mode assets/small/mode@min]
        [--na 4] [--json out.json] [--plot out.png] [--rows rows.npz]
    python training/recipes/mode_acoustic_selection.py --from-rows rows.npz [--json …] [--plot …]

Stage-S selection by the semantic-token mode model reached the ceiling stage A leaves it
(docs/generator.md "Mode by stage-S selection": 1.15× at N = 8 on valid, against 1.17×
for stage A's rendering of *real* semantic tokens and 1.31× for the codec's resynthesis
of real codec tokens, ``mode_chain.py``). Stage A loses part of the mode its input
carries; this asks whether ranking stage A's renderings by a mode model that reads codec
tokens (``musicrl train mode --preset small-acoustic``) wins it back.

For every caption of the split that names a mode (the prompts of ``mode_selection.py``):
stage S samples ``--ns`` candidates at γ = 3 and the semantic reward keeps one (N = 1: the
first), stage A renders that one ``max(--na)`` times (γ = 3), every rendering is decoded,
and the evaluation's chroma-template key estimator (which no reward saw) reads its mode.
Each ``--model`` then keeps, among the first N_A renderings, the one most surely in the
caption's mode. Printed beside N_A = 1 (the first rendering), the mean over all renderings
(what a random pick gets on average) and permutation chance, with the gain over a random
rendering as a paired bootstrap over prompts (mean and 95 % interval): the same renderings
are ranked by every model, so the comparison is paired. ``--rows`` saves the per-rendering
estimates and scores; ``--from-rows`` re-reads them without sampling again.
"""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from rewards.mode import mode_from_prompt


def sample(args, nas):
    """Stage S × ns (the semantic reward keeps one), stage A × max(nas), decode; returns the
    chroma estimator's mode of every rendering [rows, na], the labels, the prompts' modes and
    each model's score of every rendering [rows, na]."""
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.estimators import key_from_chroma, mean_chroma
    from musicrl.pipeline import Pipeline, _decode_codes
    from musicrl.sampling import sample_stage
    from rewards.mode import ModeReward

    def reward(spec: str) -> ModeReward:
        folder, _, combine = spec.partition("@")
        return ModeReward(folder, combine=combine or "mean")

    t0 = time.time()
    pipe = Pipeline.from_pretrained(args.bundle)
    a_cfg = pipe.acoustic.cfg
    aco_rewards = {spec: reward(spec) for spec in args.model}
    for spec, r in aco_rewards.items():
        if r.model.cfg.levels == 0 or r.model.cfg.levels > a_cfg.levels:
            raise SystemExit(f"--model {spec}: reads {r.model.cfg.levels} codec levels; stage A "
                             f"writes {a_cfg.levels} (train one with --preset small-acoustic)")
    sem_reward = reward(args.semantic_mode) if args.ns > 1 else None

    clips = [c for c in load_clips(args.root, splits=[args.split])
             if c.captions and c.labels and c.labels.get("mode")]
    rows = []
    for i, c in enumerate(clips):
        cap = c.captions[i % len(c.captions)]
        if (m := mode_from_prompt(cap)) is not None:
            rows.append((cap, m, c.labels["mode"]))
    prompts = [r[0] for r in rows]
    want = [r[1] for r in rows]
    label = np.array([r[2] for r in rows])
    frames, b, na = 250, args.batch, nas[-1]
    print(f"{len(rows)} {args.split} captions name a mode; stage S × {args.ns}, stage A × {na}",
          flush=True)

    est = []                                    # [rows, na] estimated mode of each rendering
    scores = {spec: [] for spec in aco_rewards}  # [rows, na]
    for i in tqdm(range(0, len(rows), b), desc="stage S, stage A, decode"):
        p, w = prompts[i:i + b], want[i:i + b]
        mul = pipe.text_tokens(p)
        sem = np.asarray(sample_stage(pipe.semantic, jnp.repeat(mul, args.ns, 0), frames,
                                      key=jax.random.fold_in(jax.random.key(0), i),
                                      guidance=3.0))[..., 0].reshape(len(p), args.ns, frames)
        if sem_reward is not None:
            s = np.asarray(sem_reward([m for m in w for _ in range(args.ns)],
                                      sem.reshape(-1, frames))).reshape(len(p), args.ns)
            sem = sem[np.arange(len(p)), np.argmax(np.nan_to_num(s, nan=-1.0), 1)]
        else:
            sem = sem[:, 0]
        aco = sample_stage(pipe.acoustic, jnp.repeat(mul[:, :a_cfg.mulan_levels], na, 0),
                           frames * a_cfg.cond_ratio,
                           key=jax.random.fold_in(jax.random.key(1), i),
                           cond_bt=jnp.repeat(jnp.asarray(sem), na, 0), guidance=3.0)
        wav = np.asarray(_decode_codes(pipe.codec, aco))
        est.append(np.array([key_from_chroma(mean_chroma(x))[1] for x in wav]).reshape(-1, na))
        rep = [m for m in w for _ in range(na)]
        for spec, r in aco_rewards.items():
            scores[spec].append(np.asarray(r(rep, np.asarray(aco)), np.float64).reshape(-1, na))
    est = np.concatenate(est)
    scores = {k: np.concatenate(v) for k, v in scores.items()}
    print(f"sampled and decoded in {time.time() - t0:.0f} s", flush=True)

    return est, label, want, scores


def save_rows(path: Path, est, label, want, scores: dict[str, np.ndarray], meta: dict) -> None:
    """One .npz (written atomically) of every rendering's estimated mode [rows, na], the
    labels and prompted modes [rows], each model's scores [rows, na] and how they were made."""
    import io

    from musicrl.atomic import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, est=est, label=label, want=np.asarray(want),
                        specs=np.array(list(scores)), meta=json.dumps(meta),
                        **{f"score_{j}": v for j, v in enumerate(scores.values())})
    write_bytes_atomic(path, buf.getvalue())


def load_rows(path: Path):
    """What :func:`save_rows` wrote: (est, label, want, scores, meta)."""
    z = np.load(path, allow_pickle=False)
    scores = {str(spec): z[f"score_{j}"] for j, spec in enumerate(z["specs"])}
    return z["est"], z["label"], z["want"], scores, json.loads(str(z["meta"]))


def selection_nas(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """``--na`` as a sorted list that always holds N_A = 1; ``--ns`` checked too."""
    try:
        nas = sorted({1, *(int(x) for x in args.na.split(","))})
        if nas[0] < 1 or args.ns < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--na {args.na!r} / --ns {args.ns}: whole numbers ≥ 1")
    return nas


def read_rows(path: str):
    """:func:`load_rows`, or an exit that names the file and what was wrong."""
    try:
        return load_rows(Path(path))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise SystemExit(f"--from-rows {path}: not a rows file this recipe saved ({e})") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", default="")
    ap.add_argument("--model", action="append", default=[], metavar="DIR[@min]",
                    help="a codec-token mode model (musicrl train mode --preset small-acoustic) "
                         "to rank stage A's renderings; DIR@min: an ensemble's least sure "
                         "member; repeatable")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--ns", type=int, default=8, help="stage-S candidates (1: no selection)")
    ap.add_argument("--semantic-mode", default="assets/small/mode@min", metavar="DIR[@min]",
                    help="the semantic-token mode reward that picks among stage S's candidates")
    ap.add_argument("--na", default="2,4", help="stage-A renderings to compare, comma-separated "
                    "(N_A = 1 is always shown)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="")
    ap.add_argument("--plot", default="")
    ap.add_argument("--rows", default="", metavar="FILE.npz",
                    help="save each rendering's estimated mode and every model's score")
    ap.add_argument("--from-rows", default="", metavar="FILE.npz",
                    help="measure the renderings a --rows file saved (no sampling)")
    args = ap.parse_args()
    if not args.from_rows and not (args.bundle and args.model):
        ap.error("give BUNDLE and at least one --model (or --from-rows FILE.npz)")
    nas = selection_nas(ap, args)

    t0 = time.time()
    if args.from_rows:
        est, label, want, scores, meta = read_rows(args.from_rows)
        args.bundle, args.split, args.ns = meta["bundle"], meta["split"], meta["ns"]
        args.semantic_mode = meta["semantic_mode"]
        nas = sorted({k for k in nas if k <= est.shape[1]} | {est.shape[1]})
    else:
        est, label, want, scores = sample(args, nas)
        if args.rows:
            save_rows(Path(args.rows), est, label, want, scores,
                      {"bundle": args.bundle, "split": args.split, "ns": args.ns,
                       "semantic_mode": args.semantic_mode if args.ns > 1 else None})
    n_rows, na = est.shape
    other = ~np.eye(n_rows, dtype=bool)
    correct = est == label[:, None]              # [rows, na]
    boot = np.random.default_rng(0).integers(0, n_rows, size=(2000, n_rows))

    def gain(pick: np.ndarray) -> dict[str, float]:
        """The picked rendering's accuracy minus a random rendering's, paired per prompt."""
        d = correct[np.arange(n_rows), pick] - correct.mean(1)
        means = d[boot].mean(1)
        return {"gain_vs_random": float(d.mean()), "gain_lo95": float(np.quantile(means, 0.025)),
                "gain_hi95": float(np.quantile(means, 0.975))}

    def measure(e: np.ndarray) -> dict[str, float]:
        acc = float(np.mean(e == label))
        chance = float(np.mean((e[:, None] == label[None, :])[other]))
        return {"mode_acc": acc, "chance": chance, "ratio": acc / chance,
                "estimated_minor": float(np.mean(e == "minor"))}

    idx = np.arange(n_rows)
    want = np.array(want)
    flip = {"major": "minor", "minor": "major"}
    flip = np.vectorize(flip.get)
    res: dict[str, dict[str, dict[str, float]]] = {}
    every = [measure(est[:, j]) for j in range(na)]
    res["random rendering (mean over all)"] = {
        str(k): {key: float(np.mean([m[key] for m in every])) for key in every[0]} for k in nas}
    for spec, sc in scores.items():
        res[spec] = {}
        for k in nas:
            pick = np.argmax(sc[:, :k], 1)
            model_says = np.where(sc[idx, pick] >= 0.5, want, flip(want))
            res[spec][str(k)] = measure(est[idx, pick]) | {
                "reward_of_chosen": float(np.mean(sc[idx, pick])),
                "estimator_agrees_with_model": float(np.mean(est[idx, pick] == model_says))
            } | gain(pick)
    print(f"\n{n_rows} captions; stage S × {args.ns} "
          f"({args.semantic_mode if args.ns > 1 else 'no selection'}), γ = 3\n")
    print("| stage-A selection | N_A | mode vs label | chance | ratio | estimated minor | "
          "gain vs a random rendering [95 % paired bootstrap] |\n|---|---|---|---|---|---|---|")
    for name, by_n in res.items():
        for k in nas:
            v = by_n[str(k)]
            g = (f"{v['gain_vs_random']:+.3f} [{v['gain_lo95']:+.3f}, {v['gain_hi95']:+.3f}]"
                 if "gain_vs_random" in v else "")
            print(f"| {name} | {k} | {v['mode_acc']:.3f} | {v['chance']:.3f} | "
                  f"{v['ratio']:.2f}× | {v['estimated_minor']:.2f} | {g} |")
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(
            {"bundle": args.bundle, "split": args.split, "prompts": n_rows, "ns": args.ns,
             "semantic_mode": args.semantic_mode if args.ns > 1 else None, "nas": nas,
             "result": res, "seconds": round(time.time() - t0, 1)}, indent=2))
    if args.plot:
        from training.recipes.mode_selection import plot_curves

        plot_curves({k: v for k, v in res.items()}, nas, args.plot,
                    f"mode by stage-A selection after stage S × {args.ns} ({args.split}, "
                    f"{n_rows} captions)", xlabel="stage-A renderings N_A")


if __name__ == "__main__":
    main()
