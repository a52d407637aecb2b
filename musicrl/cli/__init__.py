"""The ``musicrl`` command.

Subcommands are grouped by job, one module each: ``data`` (:mod:`.data`), ``train``
(:mod:`.train`), ``eval`` (:mod:`.evaluate`), ``codec``/``tokenize``/``export``
(:mod:`.files`), ``generate``/``app`` (:mod:`.generate`); what they share is in
:mod:`.common`. Commands that take a config accept ``--preset NAME`` and any number of
``key=value`` overrides; ``--help`` lists every key with its default and meaning. This
package is the only one that knows every package: it reaches ``training`` and ``app``
lazily, inside the command that needs them, so ``musicrl --help`` stays fast and the
layering rule holds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from musicrl.cli.common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UserError
from musicrl.cli.data import _add_data
from musicrl.cli.evaluate import _add_eval
from musicrl.cli.files import _add_codec, _add_export, _add_tokenize
from musicrl.cli.generate import _add_app, _add_generate
from musicrl.cli.train import _add_train
from musicrl.errors import MusicrlError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "UserError"]

_GROUPS = (_add_data, _add_train, _add_eval, _add_codec, _add_tokenize, _add_export,
           _add_generate, _add_app)


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
