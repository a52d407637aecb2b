"""``musicrl codec``, ``musicrl tokenize`` and ``musicrl export``: files in, files out."""

from __future__ import annotations

import argparse
from pathlib import Path

from musicrl.cli.common import (
    DEFAULT_CODEC,
    DEFAULT_SEMANTIC,
    EXIT_OK,
    EXIT_PARTIAL,
    UserError,
)


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
