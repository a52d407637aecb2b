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


def _add_data(sub: argparse._SubParsersAction) -> None:
    from musicrl.data.config import DataConfig

    data = sub.add_parser("data", help="build, import and inspect audio corpora")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{build,import,stats,check}")

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


def _add_train(sub: argparse._SubParsersAction) -> None:
    from training.codec import CodecTrainConfig

    train = sub.add_parser("train", help="train a model (codec, …); resumable from its work dir")
    tsub = train.add_subparsers(dest="train_cmd", required=True, metavar="{codec,semantic,mulan}")
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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a model and write a report (JSON, PNG plots)")
    esub = ev.add_subparsers(dest="eval_cmd", required=True, metavar="{codec,estimators}")
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
