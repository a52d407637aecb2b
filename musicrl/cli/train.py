"""``musicrl train …``: one command per model; each resumes from its work dir."""

from __future__ import annotations

import argparse

from musicrl.cli.common import (
    EXIT_OK,
    UserError,
    _add_config_args,
    _resolve,
)


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


def _cmd_train_tempo(args: argparse.Namespace) -> int:
    from training.tempo import TempoTrainConfig, train_tempo

    cfg = _resolve(TempoTrainConfig, args)
    command = " ".join(["musicrl train tempo --preset", args.preset, *args.overrides])
    train_tempo(cfg, progress=not args.quiet, command=command)
    return EXIT_OK


def _cmd_train_mode(args: argparse.Namespace) -> int:
    from training.mode import ModeTrainConfig, train_mode

    cfg = _resolve(ModeTrainConfig, args)
    command = " ".join(["musicrl train mode --preset", args.preset, *args.overrides])
    train_mode(cfg, progress=not args.quiet, command=command)
    return EXIT_OK


def _cmd_train_rl(args: argparse.Namespace) -> int:
    from training.reinforce import RLConfig, train_rl

    cfg = _resolve(RLConfig, args)
    command = " ".join(["musicrl train rl --preset", args.preset, *args.overrides])
    train_rl(cfg, progress=not args.quiet, command=command)
    return EXIT_OK


def _add_train(sub: argparse._SubParsersAction) -> None:
    from training.codec import CodecTrainConfig

    train = sub.add_parser("train", help="train a model (codec, …); resumable from its work dir")
    tsub = train.add_subparsers(dest="train_cmd", required=True, metavar="{codec,semantic,mulan,lm,quality,diversity,tempo,mode,rl}")
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
    from training.tempo import TempoTrainConfig

    t = tsub.add_parser(
        "tempo", help="the tempo reward model: BPM from semantic tokens (corpus labels)",
        description="Trains a model that reads the BPM of a semantic token stream from its "
                    "periodicity (autocorrelations of learned per-frame signals and of the "
                    "token identities), on random crops of the train split's tokens and their "
                    "BPM labels (plus extra_data=<tempo-variants root>). Logs valid accuracy "
                    "within 8 % beside permutation chance. Resumable from loop.workdir; "
                    "weights go to <workdir>/weights.")
    _add_config_args(t, TempoTrainConfig)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train_tempo)
    from training.mode import ModeTrainConfig

    mo = tsub.add_parser(
        "mode", help="the mode reward model: key and mode from semantic tokens (corpus labels)",
        description="Trains a model that reads the key (tonic × major/minor) of a semantic token "
                    "stream, on random crops of the train split's tokens and their key labels "
                    "(plus extra_data=<mode-variants root>: the same clips in the parallel mode, "
                    "so that only the mode tells a pair apart). Logs valid mode and key accuracy "
                    "beside chance. Resumable from loop.workdir; weights go to <workdir>/weights; "
                    "members=K trains and exports an ensemble.")
    _add_config_args(mo, ModeTrainConfig)
    mo.add_argument("--quiet", action="store_true", help="no progress bar")
    mo.set_defaults(func=_cmd_train_mode)
    from training.reinforce import RLConfig

    r = tsub.add_parser(
        "rl", help="KL-regularized REINFORCE on stage S (reward: the tempo model)",
        description="Finetunes a bundle's stage S on its own samples for train captions: "
                    "REINFORCE with a leave-one-out baseline over `samples` per prompt and the "
                    "full KL to the starting weights (kl_coef), rewarded by the tempo model "
                    "(P(the sampled tokens' tempo is within 8 % of the caption's BPM)). Logs the "
                    "valid hit rate beside chance. Resumable from loop.workdir; the stage S "
                    "weights go to <workdir>/weights.")
    _add_config_args(r, RLConfig)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_train_rl)
