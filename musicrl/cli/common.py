"""What every ``musicrl`` command shares: exit codes, the user-error type, config options."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from typing import Any

from musicrl import config as cfglib
from musicrl.errors import MusicrlError

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


DEFAULT_CODEC = "assets/small/codec"
DEFAULT_SEMANTIC = "assets/small/semantic"
DEFAULT_BUNDLE = "assets/small"
DEFAULT_TEMPO = "assets/small/tempo"


def add_semantic_best_of_args(p: argparse.ArgumentParser) -> None:
    """``--semantic-best-of N``, ``--tempo DIR`` and ``--mode-reward DIR``: best-of-N on
    stage S by the tempo reward, the mode reward, or both (the product)."""
    p.add_argument("--semantic-best-of", type=int, default=1, metavar="N",
                   help="sample N stage-S continuations per clip and pass on the one the reward "
                        "models rate most surely at the tempo the prompt states ('97 bpm', or a "
                        "word such as 'leisurely' or 'brisk') and, with --mode-reward, in the "
                        "mode it names ('minor', 'melancholic', 'bright'); prompts that name "
                        "neither keep their first; costs N× stage S only (default 1 = off)")
    p.add_argument("--tempo", default=DEFAULT_TEMPO,
                   help=f"tempo reward model for --semantic-best-of (default {DEFAULT_TEMPO}; "
                        "an ensemble such as assets/small/tempo-ensemble also works; 'none': "
                        "select by the mode reward alone)")
    p.add_argument("--tempo-combine", default="mean", choices=("mean", "min"),
                   help="with an ensemble: score by the members' mean probability, or by the "
                        "least sure member (min: harder for selection to fool)")
    p.add_argument("--mode-reward", default="", metavar="DIR",
                   help="also select by this mode reward model (e.g. assets/small/mode; "
                        "`musicrl train mode`): the score is the product of the tempo and "
                        "mode probabilities (default: tempo alone)")
    p.add_argument("--mode-combine", default="mean", choices=("mean", "min"),
                   help="with a mode ensemble: the members' mean probability or the least one")
    p.add_argument("--acoustic-best-of", type=int, default=1, metavar="N",
                   help="render each clip's semantic tokens N times with stage A and keep the "
                        "rendering --acoustic-mode-reward rates most surely in the prompt's "
                        "mode and/or --acoustic-tempo-reward at its tempo (both: the product); "
                        "costs N× stage A (default 1 = off)")
    p.add_argument("--acoustic-mode-reward", default="", metavar="DIR",
                   help="a mode reward model on codec tokens for --acoustic-best-of (`musicrl "
                        "train mode --preset small-acoustic`, e.g. assets/small/mode-acoustic)")
    p.add_argument("--acoustic-mode-combine", default="mean", choices=("mean", "min"),
                   help="with an ensemble: the members' mean probability or the least one")
    p.add_argument("--acoustic-tempo-reward", default="", metavar="DIR",
                   help="a tempo reward model for --acoustic-best-of, read from each "
                        "rendering's decoded audio re-tokenized by the bundle's semantic "
                        "tokenizer (e.g. assets/small/tempo-ensemble)")
    p.add_argument("--acoustic-tempo-combine", default="mean", choices=("mean", "min"),
                   help="with an ensemble: the members' mean probability or the least one")


def scorer_label(args: argparse.Namespace) -> str:
    """How a report names the stage-S scorer: "tempo", "tempo × mode (DIR)", …"""
    parts = []
    if args.tempo != "none":
        if args.tempo == DEFAULT_TEMPO and args.tempo_combine == "mean":
            parts.append("tempo")
        else:
            parts.append(f"tempo ({args.tempo}" + (", min" if args.tempo_combine == "min"
                                                   else "") + ")")
    if args.mode_reward:
        parts.append(f"mode ({args.mode_reward}" + (", min" if args.mode_combine == "min"
                                                    else "") + ")")
    return " × ".join(parts)


def acoustic_scorer_label(args: argparse.Namespace) -> str:
    """How a report names the stage-A scorer: "mode on codec tokens (DIR, min) × …"."""
    parts = []
    for what, folder, combine in (
            ("mode on codec tokens", args.acoustic_mode_reward, args.acoustic_mode_combine),
            ("tempo of the audio", args.acoustic_tempo_reward, args.acoustic_tempo_combine)):
        if folder:
            parts.append(f"{what} ({folder}" + (", min" if combine == "min" else "") + ")")
    return " × ".join(parts)


def _load_reward(flag: str, kind: str, folder: str, combine: str, train: str):
    """The ``kind`` reward ("tempo" or "mode") in ``folder``, or a UserError naming ``flag``
    and how to train one (``train``)."""
    from pathlib import Path

    if not Path(folder).is_dir():
        raise UserError(f"{flag} {folder}: no {kind} model there; train one with `{train}` "
                        "or pass its weights folder")
    from rewards.mode import ModeError, ModeReward
    from rewards.tempo import TempoError, TempoReward

    cls, error = {"tempo": (TempoReward, TempoError), "mode": (ModeReward, ModeError)}[kind]
    try:
        return cls(folder, combine=combine)
    except error as e:
        raise UserError(str(e)) from None


def acoustic_scorer(args: argparse.Namespace):
    """The stage-A scorer ``--acoustic-best-of`` asks for, or None: the mode model on codec
    tokens, the tempo model on the re-tokenized audio, or their product."""
    from pathlib import Path

    mode, tempo = args.acoustic_mode_reward, args.acoustic_tempo_reward
    if args.acoustic_best_of <= 1:
        if mode or tempo:
            flag = "--acoustic-mode-reward" if mode else "--acoustic-tempo-reward"
            raise UserError(f"{flag} ranks stage A's renderings: give --acoustic-best-of N "
                            "(N ≥ 2) too")
        return None
    if not (mode or tempo):
        raise UserError("--acoustic-best-of needs --acoustic-mode-reward DIR (a mode model on "
                        "codec tokens, `musicrl train mode --preset small-acoustic`) and/or "
                        "--acoustic-tempo-reward DIR (a tempo model, e.g. "
                        "assets/small/tempo-ensemble) to rank the renderings")
    scores = []
    if mode:
        reward = _load_reward("--acoustic-mode-reward", "mode", mode, args.acoustic_mode_combine,
                              "musicrl train mode --preset small-acoustic")
        if not reward.model.cfg.levels:
            raise UserError(f"--acoustic-mode-reward {mode} reads semantic tokens, not codec "
                            "tokens: pass it to --mode-reward (stage S), or train a codec-token "
                            "one with `musicrl train mode --preset small-acoustic`")
        scores.append(reward)
    if tempo:
        reward = _load_reward("--acoustic-tempo-reward", "tempo", tempo,
                              args.acoustic_tempo_combine, "musicrl train tempo")
        from rewards.tempo import AudioTempoReward, TempoError

        bundle = Path(args.model)
        try:
            scores.append(AudioTempoReward(reward, semantic_dir=bundle / "semantic",
                                           codec_dir=bundle / "codec"))
        except TempoError as e:
            raise UserError(f"--acoustic-tempo-reward {tempo}: {e}") from None
    if len(scores) == 1:
        return scores[0]
    from rewards.combine import ProductScore

    return ProductScore(scores)


def semantic_scorer(args: argparse.Namespace):
    """The stage-S scorer ``--semantic-best-of`` asks for, or None (the CLI alone may reach
    rewards/)."""
    if args.semantic_best_of <= 1:
        return None
    if args.tempo == "none" and args.mode_reward in ("", "none"):
        raise UserError("--tempo none leaves --semantic-best-of nothing to select by: pass "
                        "--mode-reward DIR, or a tempo model")
    from rewards.combine import ProductScore

    scores = []
    for flag, kind, folder, combine in (("--tempo", "tempo", args.tempo, args.tempo_combine),
                                        ("--mode-reward", "mode", args.mode_reward,
                                         args.mode_combine)):
        if not folder or folder == "none":
            continue
        scores.append(_load_reward(flag, kind, folder, combine, f"musicrl train {kind}"))
        if kind == "mode" and scores[-1].model.cfg.levels:
            raise UserError(f"--mode-reward {folder} reads codec tokens (stage A's output): "
                            "pass it to --acoustic-mode-reward with --acoustic-best-of N")
    return scores[0] if len(scores) == 1 else ProductScore(scores)
