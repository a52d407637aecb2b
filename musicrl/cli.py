"""The ``musicrl`` command.

Subcommands are grouped by job (``data``, later ``train``, ``eval``, ``app`` …).
Commands that take a config accept ``--preset NAME`` and any number of
``key=value`` overrides; ``--help`` lists every key with its default and
meaning. This module is the only one that knows every package: it reaches
``training`` and ``app`` lazily, inside the command that needs them, so
``musicrl --help`` stays fast and the layering rule holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from musicrl import config as cfglib
from musicrl.errors import MusicrlError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_USAGE = 2       # bad arguments or config
EXIT_PARTIAL = 3     # the command ran, but some inputs were skipped (see its report)


class UserError(MusicrlError):
    """An error the user can fix; printed without a traceback."""


# ----------------------------------------------------------------------------
# Helpers for config-bearing commands
# ----------------------------------------------------------------------------

def _options_epilog(cls: type) -> str:
    rows = cfglib.describe(cls)
    presets = sorted(cfglib.presets_of(cls))
    width = max(len(r[0]) for r in rows)
    lines = [f"config keys (set as key=value; defaults of the 'small' preset; presets: {', '.join(presets)}):"]
    for key, tp, default, help_ in rows:
        wrapped = textwrap.wrap(f"{help_} [{tp}, default {default}]", 100 - width - 4)
        lines.append(f"  {key.ljust(width)}  {wrapped[0]}")
        lines.extend(f"  {'':{width}}  {w}" for w in wrapped[1:])
    return "\n".join(lines)


def _add_config_args(p: argparse.ArgumentParser, cls: type, default_preset: str = "small") -> None:
    p.add_argument("--preset", default=default_preset, choices=sorted(cfglib.presets_of(cls)),
                   help=f"named preset (default: {default_preset})")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. seed=3 (see the list below)")
    p.add_argument("--show-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    p.epilog = _options_epilog(cls)
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _resolve(cls: type, args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    cfg = cfglib.resolve(cls, args.preset, [*extra, *args.overrides])
    if args.show_config:
        print(json.dumps(cfglib.to_dict(cfg), indent=2))
        raise SystemExit(EXIT_OK)
    return cfg


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def _cmd_data_build(args: argparse.Namespace) -> int:
    from musicrl.data.build import build_corpus
    from musicrl.data.config import DataConfig
    from musicrl.data.stats import format_stats

    extra = [f"root={args.root}"] if args.root else []
    cfg = _resolve(DataConfig, args, extra)
    report = build_corpus(cfg, progress=not args.quiet, limit_units=args.limit_units)
    if not args.quiet:
        print(report.summary())
        if report.complete:
            from musicrl.data.manifest import load_clips

            print(format_stats(load_clips(cfg.root)))
    return EXIT_OK if report.complete else EXIT_PARTIAL


def _cmd_data_import(args: argparse.Namespace) -> int:
    from musicrl.data.importer import ImportFolderError, import_folder

    try:
        report = import_folder(args.folder, args.captions, root=args.root,
                               clip_seconds=args.clip_seconds, split=args.split,
                               min_seconds=args.min_seconds, progress=not args.quiet)
    except ImportFolderError as e:
        raise UserError(str(e)) from None
    print(report.summary())
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from musicrl.data.manifest import load_clips
    from musicrl.data.stats import format_stats, stats_json

    clips = load_clips(args.root)
    if args.json:
        print(json.dumps(stats_json(clips), indent=2))
    else:
        print(format_stats(clips))
    return EXIT_OK


def _cmd_data_check(args: argparse.Namespace) -> int:
    import numpy as np

    from musicrl.data.checks import check_chroma, check_tempo
    from musicrl.data.manifest import load_clips

    clips = [c for c in load_clips(args.root, splits=[args.split] if args.split else None)
             if c.origin == "bundled"]
    if not clips:
        raise UserError(f"no bundled clips under {args.root}; run `musicrl data build` first")
    rng = np.random.default_rng(args.seed)
    sample = [clips[i] for i in sorted(rng.choice(len(clips), min(args.sample, len(clips)),
                                                  replace=False))]
    tempo = check_tempo(args.root, sample)
    chroma = check_chroma(args.root, sample)
    if args.json:
        import dataclasses

        print(json.dumps({"tempo": dataclasses.asdict(tempo), "chroma": dataclasses.asdict(chroma),
                          "sample": len(sample), "seed": args.seed}, indent=2))
    else:
        print(tempo.row())
        print(chroma.row())
    return EXIT_OK


def _cmd_data_tempo_variants(args: argparse.Namespace) -> int:
    from musicrl.data.variants import TempoVariantsError, tempo_variants

    try:
        report = tempo_variants(args.source, args.root, variants=args.variants, seed=args.seed,
                                min_change=args.min_change, workers=args.workers,
                                progress=not args.quiet)
    except TempoVariantsError as e:
        raise UserError(str(e)) from None
    print(report.summary())
    return EXIT_OK


def _add_data(sub: argparse._SubParsersAction) -> None:
    from musicrl.data.config import DataConfig

    data = sub.add_parser("data", help="build, import and inspect audio corpora")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{build,import,stats,check,tempo-variants}")

    b = dsub.add_parser(
        "build", help="render the bundled corpus (music21 scores → General MIDI → 16 kHz clips)",
        description="Renders real scores from the music21 corpus, arranged for General MIDI "
                    "instruments with optional drum grooves, to 16 kHz mono clips with captions, "
                    "labels and the rendered note events. Deterministic for a seed; resumable "
                    "(finished pieces are not redone); parallel over CPU cores.")
    _add_config_args(b, DataConfig)
    b.add_argument("--root", default=None, help="output folder (overrides the preset's root)")
    b.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    b.add_argument("--limit-units", type=int, default=None, help=argparse.SUPPRESS)
    b.set_defaults(func=_cmd_data_build)

    i = dsub.add_parser(
        "import", help="import your own audio files with captions",
        description="Imports a folder of audio (wav/flac/ogg/mp3) with a caption file (JSONL or "
                    "CSV; MusicCaps columns ytid/caption/aspect_list accepted). Every file is "
                    "validated; bad entries are listed with the reason and skipped (exit status "
                    f"{EXIT_PARTIAL}). Re-running is idempotent; nothing imported before is lost.")
    i.add_argument("folder", help="folder of audio files")
    i.add_argument("--captions", required=True, help="JSONL or CSV file of captions")
    i.add_argument("--root", default="data/small", help="data root to import into")
    i.add_argument("--clip-seconds", type=float, default=10.0,
                   help="cut long files into clips of this length (default 10)")
    i.add_argument("--min-seconds", type=float, default=2.0,
                   help="refuse files shorter than this (default 2)")
    i.add_argument("--split", default="train", choices=("train", "valid", "test"),
                   help="split for entries whose caption row names none (default train)")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_data_import)

    s = dsub.add_parser("stats", help="table of clips, hours and label counts")
    s.add_argument("--root", default="data/small", help="data root (default data/small)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_cmd_data_stats)

    c = dsub.add_parser(
        "check", help="check labels against the audio (beat tracking, chroma vs note events)",
        description="On a random sample of bundled clips: the labelled tempo against librosa "
                    "beat tracking (clips with drums), and the chroma of the audio against the "
                    "stored note events (with another clip's events as the baseline).")
    c.add_argument("--root", default="data/small", help="data root (default data/small)")
    c.add_argument("--sample", type=int, default=200, help="clips to check (default 200)")
    c.add_argument("--split", default=None, choices=("train", "valid", "test"))
    c.add_argument("--seed", type=int, default=0, help="sampling seed")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_cmd_data_check)

    v = dsub.add_parser(
        "tempo-variants", help="re-render the train clips of a built corpus at other tempi",
        description="Re-renders each train clip's exact arrangement at other tempi (drawn from "
                    "its style's range, at least --min-change away) into a separate root, "
                    "captioned from the new labels: pairs that differ in tempo alone, for "
                    "`musicrl train lm extra_data=ROOT`. Resumable and deterministic.")
    v.add_argument("--source", default="data/small", help="corpus to re-render (default "
                   "data/small; must come from `musicrl data build`)")
    v.add_argument("--root", default="data/small-tempo", help="output root (default "
                   "data/small-tempo)")
    v.add_argument("--variants", type=int, default=2, help="tempi per clip (default 2)")
    v.add_argument("--min-change", type=float, default=0.1,
                   help="least tempo change as a ratio (default 0.1 = 10 %%)")
    v.add_argument("--seed", type=int, default=0, help="seed of the tempo draws")
    v.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_cmd_data_tempo_variants)


# ----------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------

def _cmd_train_codec(args: argparse.Namespace) -> int:
    from training.codec import CodecTrainConfig, train_codec

    cfg = _resolve(CodecTrainConfig, args)
    train_codec(cfg, progress=not args.quiet)
    return EXIT_OK


def _cmd_train_semantic(args: argparse.Namespace) -> int:
    from musicrl.semantic import SemanticConfig, train_semantic

    cfg = _resolve(SemanticConfig, args)
    command = " ".join(["musicrl train semantic --preset", args.preset, *args.overrides])
    train_semantic(cfg, progress=not args.quiet, command=command)
    return EXIT_OK


def _cmd_train_mulan(args: argparse.Namespace) -> int:
    from training.mulan import MulanTrainConfig, train_mulan

    cfg = _resolve(MulanTrainConfig, args)
    train_mulan(cfg, progress=not args.quiet)
    return EXIT_OK


def _cmd_train_lm(args: argparse.Namespace) -> int:
    from training.lm import LMTrainConfig, train_lm

    preset = args.preset.removesuffix("-acoustic")
    args.preset = f"{preset}-acoustic" if args.stage == "acoustic" else preset
    cfg = _resolve(LMTrainConfig, args)
    if cfg.model.stage != args.stage:
        raise UserError(f"preset {args.preset!r} trains the {cfg.model.stage} stage, not "
                        f"{args.stage}")
    train_lm(cfg, progress=not args.quiet)
    return EXIT_OK


def _cmd_train_quality(args: argparse.Namespace) -> int:
    from training.quality import QualityTrainConfig, train_quality

    cfg = _resolve(QualityTrainConfig, args)
    command = " ".join(["musicrl train quality --preset", args.preset, *args.overrides])
    train_quality(cfg, progress=not args.quiet, command=command)
    return EXIT_OK


def _cmd_train_diversity(args: argparse.Namespace) -> int:
    from training.diversity import DiversityTrainConfig, train_diversity

    cfg = _resolve(DiversityTrainConfig, args)
    command = " ".join(["musicrl train diversity --preset", args.preset, *args.overrides])
    train_diversity(cfg, progress=not args.quiet, command=command)
    return EXIT_OK


def _add_train(sub: argparse._SubParsersAction) -> None:
    from training.codec import CodecTrainConfig

    train = sub.add_parser("train", help="train a model (codec, …); resumable from its work dir")
    tsub = train.add_subparsers(dest="train_cmd", required=True, metavar="{codec,semantic,mulan,lm,quality,diversity}")
    c = tsub.add_parser(
        "codec", help="the neural audio codec (encoder, residual VQ, iSTFT decoder)",
        description="Trains the SoundStream-style codec on a corpus. Checkpoints, metrics.jsonl "
                    "and example WAVs go to loop.workdir; re-running the same command resumes "
                    "exactly where it stopped (Ctrl-C saves first). Inference weights are "
                    "exported to <workdir>/weights at the end.")
    _add_config_args(c, CodecTrainConfig)
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_train_codec)

    from musicrl.semantic import SemanticConfig

    s = tsub.add_parser(
        "semantic", help="the semantic tokenizer (25 Hz frame features + mini-batch k-means)",
        description="Extracts 25 Hz frame features of the train clips (cached per clip), fits "
                    "mini-batch k-means in JAX, and scores a pitch-class probe of the tokens "
                    "against the stored note events (beside the majority baseline and random "
                    "tokens). Writes <workdir>/weights, report.json and probe.png.")
    _add_config_args(s, SemanticConfig)
    s.add_argument("--quiet", action="store_true", help="no progress bars or table")
    s.set_defaults(func=_cmd_train_semantic)

    from training.mulan import MulanTrainConfig

    m = tsub.add_parser(
        "mulan", help="MuLan joint text-audio embedding and its conditioning RVQ",
        description="Trains the two towers with symmetric InfoNCE on (clip, caption) pairs, "
                    "logs valid retrieval recall@1/@10 beside chance, then fits the 12-level "
                    "conditioning RVQ on train audio embeddings. Resumable from loop.workdir; "
                    "weights + tokenizer.json are exported to <workdir>/weights.")
    _add_config_args(m, MulanTrainConfig)
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=_cmd_train_mulan)

    from training.lm import LMTrainConfig

    lm = tsub.add_parser(
        "lm", help="a generator stage: semantic p(S | MuLan) or acoustic p(A | S, MuLan)",
        description="Trains one stage of the MusicLM hierarchy from the token cache (`musicrl "
                    "tokenize`) and the MuLan tokens of each clip's audio (computed once, cached "
                    "beside the tokens), with conditioning dropout for CFG. --stage acoustic "
                    "uses the <preset>-acoustic preset. Resumes exactly from loop.workdir; "
                    "weights go to <workdir>/weights.")
    lm.add_argument("--stage", required=True, choices=("semantic", "acoustic"),
                    help="which stage to train")
    _add_config_args(lm, LMTrainConfig)
    lm.add_argument("--quiet", action="store_true", help="no progress bar")
    lm.set_defaults(func=_cmd_train_lm)

    from training.diversity import DiversityTrainConfig
    from training.quality import QualityTrainConfig

    q = tsub.add_parser(
        "quality", help="the quality (MOS) predictor, on graded degradations or human ratings",
        description="Trains the reference-free quality predictor (score 1-5) with a pairwise "
                    "ranking + regression loss on train clips and graded degradations of them "
                    "(codec resynthesis, token corruption, noise, clipping, low-pass, "
                    "dropouts; the codec versions are cached in cache_dir). With "
                    "ratings=FILE.jsonl (rows {\"audio\", \"rating\": 1..5, \"rater\", "
                    "\"prompt\"}) it finetunes init=WEIGHTS on human ratings instead. "
                    "Resumable from loop.workdir; weights go to <workdir>/weights.")
    _add_config_args(q, QualityTrainConfig)
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_train_quality)
    d = tsub.add_parser(
        "diversity", help="the self-supervised diversity embedder (InfoNCE on chunk pairs)",
        description="Trains an audio embedder whose positive pairs are two non-overlapping "
                    "chunks of the same clip (symmetric InfoNCE, in-batch negatives); logs "
                    "valid chunk retrieval beside chance. Resumable from loop.workdir; weights "
                    "go to <workdir>/weights.")
    _add_config_args(d, DiversityTrainConfig)
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_train_diversity)


# ----------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------

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
        (Path(args.out) / "fad.json").write_text(json.dumps(rep, indent=2) + "\n")
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
            diversity_embed=embed, out=out, best_of=args.best_of, progress=not args.quiet)
    except ValueError as e:
        raise UserError(str(e)) from None
    write_report(rep, out)
    print(format_table(rep))
    print(f"\nreport: {out / 'report.json'}, {out / 'report.md'}; plot: "
          f"{out / 'generation.png'}")
    return EXIT_OK


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a model and write a report (JSON, PNG plots)")
    esub = ev.add_subparsers(dest="eval_cmd", required=True, metavar="{codec,estimators,mulan,fad,quality,diversity,generate}")
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
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch", type=int, default=16, help="clips per generate call")
    g.add_argument("--estimators", default="runs/estimators",
                   help="where the estimators' classifier lives (trained if missing)")
    g.add_argument("--diversity", default="assets/small/diversity",
                   help="diversity embedder weights ('' to skip)")
    g.add_argument("--out", default="runs/eval/generate", help="report folder")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=_cmd_eval_generate)


# ----------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------

# ----------------------------------------------------------------------------
# codec files and token caches
# ----------------------------------------------------------------------------

DEFAULT_CODEC = "assets/small/codec"
DEFAULT_SEMANTIC = "assets/small/semantic"


def _cmd_codec_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from musicrl.codec import load_codec
    from musicrl.codec.files import encode_file

    codec, _ = load_codec(args.weights)
    out = args.output or str(Path(args.input).with_suffix(".tokens.npz"))
    res = encode_file(codec, args.input, out, num_levels=args.levels)
    for note in res.notes:
        print(f"note: {note}")
    t, q = res.codes.shape
    print(f"{args.input} → {out}: {t} frames × {q} levels "
          f"({t / codec.frame_rate:.2f} s, {q * np.log2(codec.codebook_size) * codec.frame_rate / 1000:g} kbps)")
    return EXIT_OK


def _cmd_codec_decode(args: argparse.Namespace) -> int:
    from musicrl.codec import load_codec
    from musicrl.codec.files import decode_file

    codec, _ = load_codec(args.weights)
    out = args.output or str(Path(args.input).with_suffix(".wav"))
    seconds = decode_file(codec, args.input, out)
    print(f"{args.input} → {out}: {seconds:.2f} s at {codec.sample_rate} Hz")
    return EXIT_OK


def _add_codec(sub: argparse._SubParsersAction) -> None:
    codec = sub.add_parser("codec", help="encode audio files to codec tokens and back")
    csub = codec.add_subparsers(dest="codec_cmd", required=True, metavar="{encode,decode}")
    e = csub.add_parser("encode", help="audio file (any rate/channels) → token file (.npz)",
                        description="Reads wav/flac/ogg/mp3 at any sample rate and channel count "
                                    "(resampled to 16 kHz and downmixed, with a note) and writes "
                                    "codes [frames, levels] to an .npz token file.")
    e.add_argument("input", help="audio file")
    e.add_argument("-o", "--output", default=None, help="token file (default INPUT.tokens.npz)")
    e.add_argument("--weights", default=DEFAULT_CODEC, help=f"codec (default {DEFAULT_CODEC})")
    e.add_argument("--levels", type=int, default=None, help="RVQ levels to keep (default all)")
    e.set_defaults(func=_cmd_codec_encode)
    d = csub.add_parser("decode", help="token file → 16 kHz WAV")
    d.add_argument("input", help="token file from `musicrl codec encode`")
    d.add_argument("-o", "--output", default=None, help="WAV file (default INPUT.wav)")
    d.add_argument("--weights", default=DEFAULT_CODEC, help=f"codec (default {DEFAULT_CODEC})")
    d.set_defaults(func=_cmd_codec_decode)


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from musicrl.data.tokens import tokenize_corpus

    out = args.out or str(Path(args.root) / "tokens")
    report = tokenize_corpus(args.root, out, codec_path=args.codec, semantic_path=args.semantic,
                             num_levels=args.levels, force=args.force, progress=not args.quiet)
    print(report.summary())
    return EXIT_OK


def _add_tokenize(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "tokenize", help="cache semantic + acoustic tokens of a corpus (for LM training)",
        description="Encodes every clip of a data root once into token shards with checksums; "
                    "incremental (only new or changed clips are encoded).")
    t.add_argument("--root", default="data/small", help="data root (default data/small)")
    t.add_argument("--out", default=None, help="token folder (default ROOT/tokens)")
    t.add_argument("--codec", default=DEFAULT_CODEC, help=f"codec weights (default {DEFAULT_CODEC})")
    t.add_argument("--semantic", default=DEFAULT_SEMANTIC,
                   help=f"semantic tokenizer weights (default {DEFAULT_SEMANTIC})")
    t.add_argument("--levels", type=int, default=None, help="codec levels to keep (default all)")
    t.add_argument("--force", action="store_true",
                   help="discard a cache made by other tokenizers and start again")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_tokenize)


_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data, _add_train, _add_eval, _add_codec, _add_tokenize]


# ----------------------------------------------------------------------------
# export (the app's preference data)
# ----------------------------------------------------------------------------

def _cmd_export(args: argparse.Namespace) -> int:
    from app.export import export, parse_formats
    from app.store import SqliteStore

    formats = parse_formats(args.format)
    if args.with_audio and not Path(args.audio_dir).is_dir():
        raise UserError(f"--audio-dir {args.audio_dir} is not a folder; give the app's audio "
                        "folder, or leave out --with-audio")
    with SqliteStore(args.db, args.audio_dir, create=False) as store:
        report = export(store, args.out, formats, with_audio=args.with_audio, force=args.force)
    print(report.summary())
    return EXIT_OK if report.complete else EXIT_PARTIAL


def _add_export(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export", help="export arena votes: JSONL, Parquet, TRL preference layout, CSV, audio zip",
        description="Writes the app's votes (joined with their pairs) into --out: votes.jsonl, "
                    "votes.parquet, trl.jsonl (prompt/chosen/rejected; tie and both_bad votes "
                    "left out), votes.csv (formula-escaped for spreadsheets), with --with-audio "
                    "audio.zip of the referenced clips (audio/<sha256>.flac), and export.json. "
                    "Files are written atomically; existing ones are kept unless --force. "
                    f"Exit status {EXIT_PARTIAL} if referenced audio is missing.")
    e.add_argument("--db", required=True, help="the app's preference database (SQLite file)")
    e.add_argument("--audio-dir", required=True, help="the app's audio folder")
    e.add_argument("--out", required=True, help="folder to write the export into")
    e.add_argument("--format", default="jsonl,parquet,trl,csv",
                   help="comma-separated: jsonl, parquet, trl, csv (default all)")
    e.add_argument("--with-audio", action="store_true", help="also write audio.zip")
    e.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    e.set_defaults(func=_cmd_export)


_GROUPS.append(_add_export)

# ----------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------

DEFAULT_BUNDLE = "assets/small"


def _prompts_of(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise UserError(f"--prompts-file {path}: no such file (one prompt per line)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text (one prompt per line)") from None
        prompts += [line.strip() for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UserError('give a prompt, e.g. musicrl generate "a calm piano piece" -o out.wav, '
                        "or --prompts-file FILE")
    return prompts


def _cmd_generate(args: argparse.Namespace) -> int:
    from musicrl.audio import write_wav_atomic
    from musicrl.pipeline import Pipeline

    prompts = _prompts_of(args)
    if args.n < 1 or args.n > 64:
        raise UserError(f"--n {args.n}: choose 1 … 64 variations per prompt")
    overrides = {k: v for k, v in (("semantic", args.semantic), ("acoustic", args.acoustic))
                 if v}
    pipe = Pipeline.from_pretrained(args.model, **overrides)
    guidance = args.guidance if args.guidance_acoustic is None else \
        (args.guidance, args.guidance_acoustic)
    rows = [p for p in prompts for _ in range(args.n)]
    out = Path(args.output)
    single = len(rows) == 1 and out.suffix.lower() == ".wav"
    if not single:
        if out.suffix:
            raise UserError(f"-o {out}: with several clips, -o names a folder (no suffix)")
        out.mkdir(parents=True, exist_ok=True)
    wavs = []
    for i in range(0, len(rows), args.batch):
        wavs.append(pipe.generate(rows[i:i + args.batch], seconds=args.seconds,
                                  seed=args.seed + i, guidance=guidance,
                                  temperature=args.temperature, top_k=args.top_k,
                                  top_p=args.top_p, best_of=args.best_of))
        t = pipe.timing
        print(f"clips {i + 1}-{min(i + args.batch, len(rows))}/{len(rows)}: {t.total:.2f} s "
              f"(text {t.text:.2f}, semantic {t.semantic:.2f}, acoustic {t.acoustic:.2f}, "
              f"decode {t.decode:.2f}, rerank {t.rerank:.2f}); {args.seconds * len(wavs[-1]) / max(t.total, 1e-9):.1f}× "
              "real time", file=sys.stderr)
    import numpy as np

    wav = np.concatenate(wavs)
    if single:
        write_wav_atomic(out, wav[0], pipe.sample_rate)
        print(out)
        return EXIT_OK
    index = []
    for j, (p, w) in enumerate(zip(rows, wav, strict=False)):
        name = f"{j // args.n:03d}-{j % args.n:02d}.wav"
        write_wav_atomic(out / name, w, pipe.sample_rate)
        index.append({"file": name, "prompt": p, "seed": args.seed + (j // args.batch) * args.batch,
                      "row_in_batch": j % args.batch})
    (out / "prompts.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"{len(rows)} clips in {out} (prompts.json lists them)")
    return EXIT_OK


def _add_generate(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate", help="text → music with the bundled (or any) model",
        description="Generates audio from text prompts: MuLan text tokens → semantic stage → "
                    "acoustic stage → codec decoder. The same prompts, seed and settings give "
                    "bit-identical audio.",
        epilog='example: musicrl generate "a calm piano piece in a minor key" --seconds 10 '
               "--seed 0 -o out.wav")
    g.add_argument("prompt", nargs="*", help="text prompt(s)")
    g.add_argument("--prompts-file", default=None, help="a UTF-8 file, one prompt per line")
    g.add_argument("-o", "--output", default="out.wav",
                   help="a .wav file for one clip, else a folder (default out.wav)")
    g.add_argument("--model", default=DEFAULT_BUNDLE,
                   help=f"bundle folder (default {DEFAULT_BUNDLE})")
    g.add_argument("--semantic", default=None, help="override: stage S weights folder")
    g.add_argument("--acoustic", default=None, help="override: stage A weights folder")
    g.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--n", type=int, default=1, help="variations per prompt (default 1)")
    g.add_argument("--guidance", type=float, default=3.0,
                   help="CFG scale γ (1 = none; default 3)")
    g.add_argument("--guidance-acoustic", type=float, default=None,
                   help="a separate γ for the acoustic stage (default: --guidance)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    g.add_argument("--top-k", type=int, default=0, help="top-k filter (0 = off)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus filter (1 = off)")
    g.add_argument("--best-of", type=int, default=1,
                   help="sample N candidates per clip and keep the one MuLan scores closest "
                        "to the prompt (default 1 = plain sampling; costs N×)")
    g.add_argument("--batch", type=int, default=8, help="clips per generate call (default 8)")
    g.set_defaults(func=_cmd_generate)


_GROUPS.append(_add_generate)


# ----------------------------------------------------------------------------
# app (the Gradio web app; `app` is imported only when the command runs)
# ----------------------------------------------------------------------------

def _cmd_app(args: argparse.Namespace) -> int:
    from app.server import AppError, run_from_args

    try:
        return run_from_args(args)
    except AppError as e:
        raise UserError(str(e)) from None


def _add_app(sub: argparse._SubParsersAction) -> None:
    # Keep in step with app.server.add_arguments (tests/app/test_ui.py checks they match).
    a = sub.add_parser(
        "app", help="serve the web app: create clips, arena votes, leaderboard, admin export",
        description="Serves the Gradio web app (Create, Arena, Leaderboard, Data) on "
                    "127.0.0.1 unless --host says otherwise. The admin view needs "
                    "MUSICRL_ADMIN_TOKEN (16+ characters) in the environment; without it the "
                    "admin view is disabled. See docs/app.md.")
    a.add_argument("--systems", default=None, help="systems file (JSON or TOML; default: the "
                   "bundled small model at guidance 3 and 1)")
    a.add_argument("--db", default="runs/app/prefs.sqlite", help="preference database "
                   "(default runs/app/prefs.sqlite; audio goes to <its folder>/audio)")
    a.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    a.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    a.add_argument("--min-listen", type=float, default=3.0, metavar="S",
                   help="seconds each arena clip must be played before voting (default 3)")
    a.add_argument("--prompts", default=None, help="arena prompt set, one per line")
    a.add_argument("--arena-seconds", type=float, default=5.0, help="arena clip length (s)")
    a.add_argument("--workers", type=int, default=1, help="generations at once (default 1)")
    a.add_argument("--max-pending", type=int, default=16,
                   help="generations that may wait; more are refused (default 16)")
    a.add_argument("--rate-per-minute", type=float, default=None,
                   help="requests per minute per session (default 20; per address 3x)")
    a.set_defaults(func=_cmd_app)


_GROUPS.append(_add_app)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="musicrl",
        description="Text-to-music in JAX with the MusicRL post-training loop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `musicrl <command> --help` for the options of a command.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="cmd", required=True, metavar="<command>")
    for add in _GROUPS:
        add(sub)
    return p


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"musicrl {version('musicrl')}"
    except Exception:
        return "musicrl (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MusicrlError, FileNotFoundError) as e:
        print(f"musicrl: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("musicrl: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
