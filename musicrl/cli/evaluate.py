"""``musicrl eval …``: reports (JSON + PNG) for every model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musicrl.atomic import write_text_atomic
from musicrl.cli.common import (
    DEFAULT_CODEC,
    EXIT_OK,
    UserError,
    acoustic_scorer,
    acoustic_scorer_label,
    add_semantic_best_of_args,
    scorer_label,
    semantic_scorer,
)


def _numbers(text: str, kind: type) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{text!r}: expected comma-separated numbers, e.g. 1,2,4,8") from None


def _cmd_eval_codec(args: argparse.Namespace) -> int:
    from pathlib import Path

    from musicrl.checkpoint import CheckpointError
    from musicrl.codec import load_codec
    from musicrl.data.manifest import load_clips
    from musicrl.evaluation import OpusUnavailable, evaluate_codec, format_table

    levels = _numbers(args.levels, int)
    opus = () if args.no_opus else _numbers(args.opus_kbps, float)
    try:
        codec, meta = load_codec(args.weights)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    clips = load_clips(args.root, splits=[args.split])
    if not clips:
        raise UserError(f"no {args.split} clips under {args.root} (see `musicrl data stats`)")
    if (args.max_clips is not None and args.max_clips < 1) or args.batch < 1:
        raise UserError("--max-clips and --batch must be at least 1")
    out = Path(args.out or Path("runs/eval") / f"{Path(args.weights).resolve().name}-{args.split}")
    command = (f"musicrl eval codec --weights {args.weights} --root {args.root} --split "
               f"{args.split} --levels {args.levels} "
               + ("--no-opus" if args.no_opus else f"--opus-kbps {args.opus_kbps}")
               + (f" --max-clips {args.max_clips}" if args.max_clips else "")
               + f" --out {out}")
    try:
        report = evaluate_codec(codec, clips, args.root, levels=levels, opus_kbps=opus,
                                batch=args.batch, max_clips=args.max_clips, out=out,
                                meta={**meta, "weights": str(args.weights), "command": command},
                                progress=not args.quiet)
    except (OpusUnavailable, ValueError) as e:
        raise UserError(str(e)) from None
    print(f"codec {args.weights} (step {meta.get('steps', '?')}), {report['data']['clips']} "
          f"{args.split} clips\n")
    print(format_table(report))
    print(f"\nreport: {out / 'report.json'} ({out / 'report.md'}); plots: "
          f"{out / 'distances.png'}, {out / 'perplexity.png'}; examples: {out / 'examples'}")
    return EXIT_OK


def _cmd_eval_estimators(args: argparse.Namespace) -> int:
    from musicrl.evaluation.estimators import evaluate_estimators, format_table

    try:
        report = evaluate_estimators(args.root, args.workdir, out=args.out, split=args.split,
                                     retrain=args.retrain, progress=not args.quiet)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = Path(args.out or args.workdir)
    print(f"{report['clips']} real {args.split} clips; classifier trained on "
          f"{report['train_clips']} train clips ({report['features']} features)\n")
    print(format_table(report))
    print(f"\nreport: {out / 'report.json'}; plot: {out / 'accuracy.png'}")
    return EXIT_OK


def _cmd_eval_mulan(args: argparse.Namespace) -> int:
    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.mulan import evaluate_mulan, format_table, write_report
    from musicrl.mulan import load_mulan

    model, _ = load_mulan(args.weights)
    clips = load_clips(args.root, splits=[args.split])
    if args.max_clips:
        clips = clips[:: max(1, len(clips) // args.max_clips)][: args.max_clips]
    try:
        rep = evaluate_mulan(model, clips, load_clips(args.root, splits=["train"]), args.root,
                             progress=not args.quiet)
    except ValueError as e:
        raise UserError(str(e)) from None
    rep["weights"] = str(args.weights)
    out = Path(args.out or f"runs/eval/mulan-{args.split}")
    write_report(rep, out)
    print(format_table(rep))
    print(f"\nreport: {out / 'report.json'}, {out / 'report.md'}; plot: {out / 'mulan.png'}")
    return EXIT_OK


def _cmd_eval_fad(args: argparse.Namespace) -> int:
    from musicrl.evaluation import fad_report as fr

    try:
        if args.sanity:
            rep = fr.fad_sanity(args.root, args.codec, args.cache, n=args.n or 200,
                                seeds=args.seeds, progress=not args.quiet)
            out = Path(args.out or "runs/eval/fad")
            fr.write_sanity(rep, out)
            print(fr.format_sanity(rep))
            print(f"\nreport: {out / 'fad_sanity.json'}; plot: {out / 'fad_sanity.png'}")
            return EXIT_OK
        if not args.eval:
            raise UserError("give --eval SET (a split name or a folder of audio), or --sanity")
        rep = fr.fad_sets(args.ref, args.eval, args.root, args.cache, args.n, args.seeds,
                          progress=not args.quiet)
    except ValueError as e:
        raise UserError(str(e)) from None
    print(f"FAD ({rep['embedding']} embedding, {rep['protocol']})")
    for r in rep["rows"]:
        print(f"  {r['row']}: {r['mean']:.3f} ± {r['std']:.3f} (n={r['n']})")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(args.out) / "fad.json", json.dumps(rep, indent=2) + "\n")
    return EXIT_OK


def _cmd_eval_quality(args: argparse.Namespace) -> int:
    from musicrl.checkpoint import CheckpointError
    from rewards.evaluate import evaluate_quality, format_quality_table
    from rewards.quality import load_quality

    try:
        model, meta = load_quality(args.weights)
        codec = None
        if not args.no_codec:
            from musicrl.codec import load_codec

            codec, _ = load_codec(args.codec)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    out = Path(args.out or Path("runs/eval") / f"quality-{args.split}")
    command = (f"musicrl eval quality --weights {args.weights} --root {args.root} --split "
               f"{args.split} --crop-seconds {args.crop_seconds}"
               + (" --no-codec" if args.no_codec else f" --codec {args.codec}")
               + (f" --max-clips {args.max_clips}" if args.max_clips else "") + f" --out {out}")
    cache = Path(args.cache_dir) / (f"eval-{args.split}-{Path(args.root).name}-"
                                    f"{args.crop_seconds:g}s-{args.max_clips or 'all'}"
                                    f"{'-nocodec' if args.no_codec else ''}.npz")
    try:
        report = evaluate_quality(model, args.root, codec=codec, split=args.split,
                                  crop_seconds=args.crop_seconds, max_clips=args.max_clips,
                                  cache=str(cache), out=out, progress=not args.quiet,
                                  meta={"weights": str(args.weights), "command": command,
                                        "steps": meta.get("steps")})
    except ValueError as e:
        raise UserError(str(e)) from None
    print(f"quality {args.weights} (step {meta.get('steps', '?')}), {report['data']['clips']} "
          f"{args.split} clips × held-out settings\n")
    print(format_quality_table(report))
    print(f"\nreport: {out / 'report.json'}; plot: {out / 'quality.png'}")
    return EXIT_OK


def _cmd_eval_diversity(args: argparse.Namespace) -> int:
    from musicrl.checkpoint import CheckpointError
    from rewards.diversity import load_diversity
    from rewards.evaluate import evaluate_diversity, format_diversity_table

    try:
        model, meta = load_diversity(args.weights)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    if args.distractors < 1:
        raise UserError("--distractors must be at least 1")
    chunk = args.chunk_seconds or meta.get("train_config", {}).get("chunk_seconds", 3.0)
    out = Path(args.out or Path("runs/eval") / f"diversity-{args.split}")
    command = (f"musicrl eval diversity --weights {args.weights} --root {args.root} --split "
               f"{args.split} --distractors {args.distractors} --chunk-seconds {chunk:g} "
               f"--out {out}")
    try:
        report = evaluate_diversity(model, args.root, split=args.split, chunk_seconds=chunk,
                                    distractors=args.distractors, out=out,
                                    meta={"weights": str(args.weights), "command": command,
                                          "steps": meta.get("steps")})
    except ValueError as e:
        raise UserError(str(e)) from None
    print(f"diversity {args.weights} (step {meta.get('steps', '?')}), {report['data']['clips']} "
          f"{args.split} clips, chunks of {chunk:g} s\n")
    print(format_diversity_table(report))
    print(f"\nreport: {out / 'report.json'}; plot: {out / 'diversity.png'}")
    return EXIT_OK


def _cmd_eval_tempo(args: argparse.Namespace) -> int:
    from rewards.tempo import TempoError, evaluate_tempo, load_tempo

    try:
        model, meta = load_tempo(args.weights)
        seconds = [float(s) for s in args.seconds.split(",")]
    except ValueError as e:
        raise UserError(f"--seconds {args.seconds!r}: {e}" if "could not convert" in str(e)
                        else str(e)) from None
    out = Path(args.out or Path("runs/eval") / f"tempo-{args.split}")
    command = (f"musicrl eval tempo --weights {args.weights} --root {args.root} --split "
               f"{args.split} --seconds {args.seconds} --out {out}")
    try:
        rep = evaluate_tempo(model, args.root, args.split, seconds, out=out,
                             meta={"weights": str(args.weights), "command": command,
                                   "steps": meta.get("steps")})
    except TempoError as e:
        raise UserError(str(e)) from None
    print(f"tempo model {args.weights} (step {meta.get('steps', '?')}): BPM within 8 % of the "
          f"label from the first S seconds of semantic tokens, {rep['clips']} {args.split} "
          f"clips ({rep['clips_drums']} with drums)\n")
    print("| first S | all | chance | with drums | chance |\n|---|---|---|---|---|")
    for s, v in rep["by_seconds"].items():
        print(f"| {s} s | {v['within_8pct']:.3f} | {v['chance']:.3f} | "
              f"{v.get('within_8pct_drums', float('nan')):.3f} | "
              f"{v.get('chance_drums', float('nan')):.3f} |")
    print(f"\nreport: {out / 'report.json'}; plot: {out / 'tempo.png'}")
    return EXIT_OK


def _cmd_eval_mode(args: argparse.Namespace) -> int:
    from rewards.mode import ModeError, evaluate_mode, load_mode

    try:
        model, meta = load_mode(args.weights)
        seconds = [float(s) for s in args.seconds.split(",")]
    except ValueError as e:
        raise UserError(f"--seconds {args.seconds!r}: {e}" if "could not convert" in str(e)
                        else str(e)) from None
    out = Path(args.out or Path("runs/eval") / f"mode-{args.split}")
    command = (f"musicrl eval mode --weights {args.weights} --root {args.root} --split "
               f"{args.split} --seconds {args.seconds} --out {out}")
    try:
        rep = evaluate_mode(model, args.root, args.split, seconds, out=out,
                            meta={"weights": str(args.weights), "command": command,
                                  "steps": meta.get("steps")})
    except ModeError as e:
        raise UserError(str(e)) from None
    print(f"mode model {args.weights} (step {meta.get('steps', '?')}): mode and key from the "
          f"first S seconds of {'codec' if model.cfg.levels else 'semantic'} tokens, "
          f"{rep['clips']} {args.split} clips\n")
    print("| first S | mode | chance | majority | key (24) |\n|---|---|---|---|---|")
    for s, v in rep["by_seconds"].items():
        print(f"| {s} s | {v['mode_acc']:.3f} | {v['mode_chance']:.3f} | {v['majority']:.3f} | "
              f"{v['key_acc']:.3f} |")
    print(f"\nreport: {out / 'report.json'}; plot: {out / 'mode.png'}")
    return EXIT_OK


def _cmd_eval_generate(args: argparse.Namespace) -> int:
    from musicrl.evaluation.generation import evaluate_generation, format_table, write_report
    from musicrl.pipeline import Pipeline

    overrides = {k: v for k, v in (("semantic", args.semantic), ("acoustic", args.acoustic))
                 if v}
    pipe = Pipeline.from_pretrained(args.model, **overrides)
    embed = None
    if args.diversity and Path(args.diversity).exists():
        from rewards.diversity import DiversityReward  # the CLI alone may reach rewards/

        embed = DiversityReward(args.diversity).embed
    elif args.diversity:
        print(f"note: no diversity embedder at {args.diversity}; diversity is not measured",
              file=sys.stderr)
    out = Path(args.out)
    try:
        rep = evaluate_generation(
            pipe, args.root, split=args.split, max_prompts=args.max_prompts,
            seconds=args.seconds, guidance=[float(g) for g in args.guidance.split(",")],
            seed=args.seed, batch=args.batch, estimators_dir=args.estimators,
            diversity_embed=embed, out=out, best_of=args.best_of,
            semantic_best_of=args.semantic_best_of, semantic_score=semantic_scorer(args),
            semantic_score_name=scorer_label(args), acoustic_best_of=args.acoustic_best_of,
            acoustic_score=acoustic_scorer(args), acoustic_score_name=acoustic_scorer_label(args),
            progress=not args.quiet)
    except ValueError as e:
        raise UserError(str(e)) from None
    write_report(rep, out)
    print(format_table(rep))
    print(f"\nreport: {out / 'report.json'}, {out / 'report.md'}; plot: "
          f"{out / 'generation.png'}")
    return EXIT_OK


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a model and write a report (JSON, PNG plots)")
    esub = ev.add_subparsers(dest="eval_cmd", required=True, metavar="{codec,estimators,mulan,fad,quality,diversity,tempo,mode,generate}")
    c = esub.add_parser(
        "codec", help="the codec on held-out clips beside Opus: mel/STFT/SI-SDR, code usage",
        description="Encodes and decodes every clip of a split with 1, 2, 4 and 8 RVQ levels and "
                    "with Opus (ffmpeg/libopus) at 6 and 12 kbps, and reports the multi-scale "
                    "log-mel L1, the multi-resolution STFT distance and SI-SDR per system, and "
                    "the perplexity of each level's codes over all frames. Writes report.json, "
                    "report.md, distances.png, perplexity.png and example WAVs to --out.")
    c.add_argument("--weights", required=True,
                   help="codec weights folder, or a training work dir (latest checkpoint)")
    c.add_argument("--root", default="data/small", help="data root (default data/small)")
    c.add_argument("--split", default="test", choices=("train", "valid", "test"),
                   help="clips to measure (default test: never trained on)")
    c.add_argument("--max-clips", type=int, default=None,
                   help="only N clips, evenly spaced over the split (default: all)")
    c.add_argument("--levels", default="1,2,4,8", help="RVQ levels to decode with (default "
                   "1,2,4,8)")
    c.add_argument("--opus-kbps", default="6,12", help="Opus bitrates (default 6,12)")
    c.add_argument("--no-opus", action="store_true", help="skip the Opus rows (no ffmpeg)")
    c.add_argument("--batch", type=int, default=8, help="clips per codec call (default 8)")
    c.add_argument("--out", default=None,
                   help="report folder (default runs/eval/<weights folder name>-<split>)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_eval_codec)
    e = esub.add_parser(
        "estimators", help="accuracy of the attribute estimators (tempo, key, instruments, drums)",
        description="Trains (once) the instrument-family and drums classifier on the train "
                    "split's labels over fixed handcrafted-v1 features, and reports tempo (beat "
                    "tracking), mode/key (Krumhansl-Schmuckler chroma templates), melody family, "
                    "families present and drums accuracy on real clips beside chance. Features "
                    "are cached in --workdir. Writes report.json and accuracy.png to --out.")
    e.add_argument("--root", default="data/small", help="data root (default data/small)")
    e.add_argument("--split", default="test", choices=("valid", "test"),
                   help="clips to measure (default test)")
    e.add_argument("--workdir", default="runs/estimators",
                   help="feature caches and the classifier (default runs/estimators)")
    e.add_argument("--out", default=None, help="report folder (default --workdir)")
    e.add_argument("--retrain", action="store_true", help="train the classifier again")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_cmd_eval_estimators)
    qe = esub.add_parser(
        "quality", help="the quality predictor: Spearman vs severity, clean > degraded",
        description="Scores a fixed crop of every clip of a split (default test: never trained "
                    "on) and its versions at the held-out degradation settings (never trained "
                    "on), and reports per family and overall the Spearman correlation of the "
                    "score with −severity and the % of (clean, degraded) pairs of one clip where "
                    "the clean crop scores higher. Writes report.json and quality.png to --out.")
    qe.add_argument("--weights", default="assets/small/quality",
                    help="quality weights folder or training work dir")
    qe.add_argument("--root", default="data/small", help="data root (default data/small)")
    qe.add_argument("--split", default="test", choices=("valid", "test"),
                    help="clips (default test)")
    qe.add_argument("--codec", default="assets/small/codec",
                    help="codec for the codec/tokens families (default assets/small/codec)")
    qe.add_argument("--no-codec", action="store_true", help="skip the codec/tokens families")
    qe.add_argument("--crop-seconds", type=float, default=3.0, help="crop scored per clip")
    qe.add_argument("--max-clips", type=int, default=None, help="only N clips, evenly spaced")
    qe.add_argument("--cache-dir", default="runs/quality-cache",
                    help="where the degraded test set is cached (default runs/quality-cache)")
    qe.add_argument("--out", default=None, help="report folder (default runs/eval/quality-SPLIT)")
    qe.add_argument("--quiet", action="store_true", help="no progress messages")
    qe.set_defaults(func=_cmd_eval_quality)
    de = esub.add_parser(
        "diversity", help="the diversity embedder: same-clip chunk retrieval vs 100 distractors",
        description="For every clip of a split, the first chunk must retrieve the last "
                    "(non-overlapping) chunk of the same clip among itself and the last chunks "
                    "of N distractor clips from other pieces; chance is 1/(N+1). Also reports "
                    "distractors from any clip and an untrained mean-log-mel baseline. Writes "
                    "report.json and diversity.png to --out.")
    de.add_argument("--weights", default="assets/small/diversity",
                    help="diversity weights folder or training work dir")
    de.add_argument("--root", default="data/small", help="data root (default data/small)")
    de.add_argument("--split", default="test", choices=("valid", "test"),
                    help="clips (default test)")
    de.add_argument("--distractors", type=int, default=100, help="distractor clips (default 100)")
    de.add_argument("--chunk-seconds", type=float, default=None,
                    help="chunk length (default: the one the model was trained with)")
    de.add_argument("--out", default=None,
                    help="report folder (default runs/eval/diversity-SPLIT)")
    de.add_argument("--quiet", action="store_true", help="(accepted for symmetry)")
    de.set_defaults(func=_cmd_eval_diversity)
    te = esub.add_parser(
        "tempo", help="the tempo reward model: BPM within 8 % from semantic tokens of real clips",
        description="Reads the BPM of the first S seconds of every clip's semantic tokens "
                    "and scores it against the labelled BPM (within 8 %), for all clips and "
                    "those with drums, beside permutation chance (the same predictions "
                    "scored against the other clips' labels). Writes report.json and "
                    "tempo.png to --out.")
    te.add_argument("--weights", default="assets/small/tempo",
                    help="tempo weights folder or training work dir")
    te.add_argument("--root", default="data/small",
                    help="data root with a token cache at ROOT/tokens (default data/small)")
    te.add_argument("--split", default="test", choices=("valid", "test"),
                    help="clips (default test)")
    te.add_argument("--seconds", default="4,10",
                    help="comma-separated lengths S read from each clip's start (default 4,10)")
    te.add_argument("--out", default=None, help="report folder (default runs/eval/tempo-SPLIT)")
    te.add_argument("--quiet", action="store_true", help="(accepted for symmetry)")
    te.set_defaults(func=_cmd_eval_tempo)
    mo = esub.add_parser(
        "mode", help="the mode reward model: major/minor and key from semantic tokens of real clips",
        description="Reads the key (tonic × mode) of the first S seconds of every clip's "
                    "semantic tokens and scores mode and key against the labels, beside "
                    "permutation chance and the majority mode. Writes report.json and mode.png "
                    "to --out.")
    mo.add_argument("--weights", default="assets/small/mode",
                    help="mode weights folder or training work dir")
    mo.add_argument("--root", default="data/small",
                    help="data root with a token cache at ROOT/tokens (default data/small)")
    mo.add_argument("--split", default="test", choices=("valid", "test"),
                    help="clips (default test)")
    mo.add_argument("--seconds", default="4,10",
                    help="comma-separated lengths S read from each clip's start (default 4,10)")
    mo.add_argument("--out", default=None, help="report folder (default runs/eval/mode-SPLIT)")
    mo.add_argument("--quiet", action="store_true", help="(accepted for symmetry)")
    mo.set_defaults(func=_cmd_eval_mode)
    m = esub.add_parser(
        "mulan", help="MuLan: retrieval R@1/R@10, zero-shot attributes, free-form prompts, RVQ",
        description="Embeds every clip of a split (windows averaged) and its captions, and "
                    "reports text→audio / audio→text recall@1/@10 over the whole pool beside "
                    "chance, zero-shot melody family / tempo bucket / mode / drums accuracy from "
                    "label-prompt ensembles, the top-5 clips for everyday free-form prompts, "
                    "and the conditioning RVQ's reconstruction cosine. Writes report.json, "
                    "report.md and mulan.png to --out.")
    m.add_argument("--weights", default="assets/small/mulan",
                   help="MuLan weights folder or training work dir (default assets/small/mulan)")
    m.add_argument("--root", default="data/small", help="data root (default data/small)")
    m.add_argument("--split", default="test", choices=("valid", "test"),
                   help="clips in the pool (default test)")
    m.add_argument("--max-clips", type=int, default=None, help="only N clips (default: all)")
    m.add_argument("--out", default=None, help="report folder (default runs/eval/mulan-SPLIT)")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=_cmd_eval_mulan)
    f = esub.add_parser(
        "fad", help="Fréchet audio distance between audio sets; --sanity for the sanity table",
        description="FAD in the fixed handcrafted-v1 embedding (trained on nothing), "
                    "standardized by the reference set, n clips per side, one draw per seed. "
                    "A set is a split name (train/valid/test) or a folder of audio files. "
                    "--sanity prints FAD(valid vs test) < FAD(test vs codec q2) < FAD(test vs "
                    "codec q1) < FAD(test vs pink noise) for every seed.")
    f.add_argument("--ref", default="test", help="reference set (default test)")
    f.add_argument("--eval", action="append", default=[],
                   help="set to compare (repeatable): split name or audio folder")
    f.add_argument("--sanity", action="store_true", help="the four-row sanity table")
    f.add_argument("--codec", default=DEFAULT_CODEC, help="codec for --sanity")
    f.add_argument("--root", default="data/small", help="data root (default data/small)")
    f.add_argument("--n", type=int, default=None,
                   help="clips per side per draw (default: the smaller set; 200 for --sanity)")
    f.add_argument("--seeds", type=int, default=3, help="draws (default 3)")
    f.add_argument("--cache", default="runs/fad-cache", help="feature caches")
    f.add_argument("--out", default=None, help="report folder")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=_cmd_eval_fad)
    g = esub.add_parser(
        "generate", help="the generator on a split's prompts: MCC, FAD, adherence, diversity",
        description="Generates one clip per caption of the split at each CFG scale and reports "
                    "MuLan cycle consistency beside the real clips, FAD beside shuffled-token "
                    "and codec-resynthesis baselines, attribute adherence by the independent "
                    "estimators beside permutation chance, and within-prompt diversity. "
                    "Writes report.json, report.md, generation.png and example WAVs to --out.")
    g.add_argument("--model", default="assets/small", help="bundle folder")
    g.add_argument("--semantic", default=None, help="override: stage S weights")
    g.add_argument("--acoustic", default=None, help="override: stage A weights")
    g.add_argument("--root", default="data/small", help="data root (default data/small)")
    g.add_argument("--split", default="test", choices=("valid", "test"))
    g.add_argument("--max-prompts", type=int, default=None, help="only N prompts (default all)")
    g.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    g.add_argument("--guidance", default="3,1", help="CFG scales, first is the main one")
    g.add_argument("--best-of", type=int, default=1,
                   help="keep the best of N samples per prompt by MuLan score (default 1; "
                        "MCC is then flattered, adherence and FAD are not)")
    add_semantic_best_of_args(g)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch", type=int, default=16, help="clips per generate call")
    g.add_argument("--estimators", default="runs/estimators",
                   help="where the estimators' classifier lives (trained if missing)")
    g.add_argument("--diversity", default="assets/small/diversity",
                   help="diversity embedder weights ('' to skip)")
    g.add_argument("--out", default="runs/eval/generate", help="report folder")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=_cmd_eval_generate)
