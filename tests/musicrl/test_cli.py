"""The `musicrl` command: help, config errors, data subcommands end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from musicrl.cli import EXIT_USAGE, main


def test_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "build", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for key in ("seed", "clips_per_piece", "drum_fraction", "styles", "workers"):
        assert key in out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "musicrl.cli", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "data" in out.stdout


def test_show_config_applies_overrides(capsys):
    with pytest.raises(SystemExit):
        main(["data", "build", "--preset", "tiny", "seed=4", "--show-config"])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["seed"] == 4 and cfg["clip_seconds"] == 4.0


def test_bad_override_is_a_clean_error(capsys, tmp_path):
    code = main(["data", "build", "--root", str(tmp_path), "clip_secs=3"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "unknown config key 'clip_secs'" in err and "clip_seconds" in err
    assert "Traceback" not in err


def test_stats_on_missing_root_says_how_to_fix(capsys, tmp_path):
    code = main(["data", "stats", "--root", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "musicrl data build" in err


def test_stats_table_and_json(tiny_corpus, capsys):
    cfg, report = tiny_corpus
    assert main(["data", "stats", "--root", cfg.root]) == 0
    table = capsys.readouterr().out
    for word in ("split", "train", "style", "chorale", "tempo", "mode", "drums", "instrument"):
        assert word in table
    assert main(["data", "stats", "--root", cfg.root, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["clips"] == report.clips
    assert sum(b["clips"] for b in s["splits"].values()) == report.clips
    assert sum(s["drums"].values()) == report.clips
