"""``musicrl data …``: build, import, inspect and re-render corpora."""

from __future__ import annotations

import argparse
import json

from musicrl.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    UserError,
    _add_config_args,
    _resolve,
)


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


def _cmd_data_mode_variants(args: argparse.Namespace) -> int:
    from musicrl.data.variants import TempoVariantsError, mode_variants

    try:
        report = mode_variants(args.source, args.root, workers=args.workers,
                               progress=not args.quiet)
    except TempoVariantsError as e:
        raise UserError(str(e)) from None
    print(report.summary())
    return EXIT_OK


def _variant_args(p: argparse.ArgumentParser, root: str) -> None:
    """The options tempo- and mode-variants share."""
    p.add_argument("--source", default="data/small", help="corpus to re-render (default "
                   "data/small; must come from `musicrl data build`)")
    p.add_argument("--root", default=root, help=f"output root (default {root})")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_data(sub: argparse._SubParsersAction) -> None:
    from musicrl.data.config import DataConfig

    data = sub.add_parser("data", help="build, import and inspect audio corpora")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{build,import,stats,check,tempo-variants,mode-variants}")

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
    _variant_args(v, "data/small-tempo")
    v.add_argument("--variants", type=int, default=2, help="tempi per clip (default 2)")
    v.add_argument("--min-change", type=float, default=0.1,
                   help="least tempo change as a ratio (default 0.1 = 10 %%)")
    v.add_argument("--seed", type=int, default=0, help="seed of the tempo draws")
    v.set_defaults(func=_cmd_data_tempo_variants)

    mv = dsub.add_parser(
        "mode-variants", help="re-render the train clips of a built corpus in the parallel mode",
        description="Re-renders each train clip's exact arrangement in the parallel mode (same "
                    "tonic; notes on the 3rd, 6th and 7th scale degrees move a semitone) into a "
                    "separate root, captioned from the flipped labels: pairs that differ in mode "
                    "alone, for `musicrl train mulan twin_data=ROOT`. Resumable and deterministic.")
    _variant_args(mv, "data/small-mode")
    mv.set_defaults(func=_cmd_data_mode_variants)
