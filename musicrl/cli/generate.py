"""``musicrl generate`` and ``musicrl app`` (the web app; ``app`` is imported only when the command runs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musicrl.atomic import write_text_atomic
from musicrl.cli.common import (
    DEFAULT_BUNDLE,
    EXIT_OK,
    UserError,
    acoustic_scorer,
    add_semantic_best_of_args,
    semantic_scorer,
)


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
    scorer, a_scorer = semantic_scorer(args), acoustic_scorer(args)
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
                                  top_p=args.top_p, best_of=args.best_of,
                                  semantic_best_of=args.semantic_best_of,
                                  semantic_score=scorer,
                                  acoustic_best_of=args.acoustic_best_of,
                                  acoustic_score=a_scorer))
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
    write_text_atomic(out / "prompts.json", json.dumps(index, indent=2) + "\n")
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
    add_semantic_best_of_args(g)
    g.add_argument("--batch", type=int, default=8, help="clips per generate call (default 8)")
    g.set_defaults(func=_cmd_generate)







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
