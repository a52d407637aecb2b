"""The app's request logic (app/server.py AppCore) without a browser, and the CLI wiring."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import pytest

from app.security import SecurityConfig
from app.server import AppConfig, AppCore, AppError, add_arguments
from app.systems import SystemRegistry
from tests.app.conftest import ADMIN_TOKEN, tone_systems


@pytest.fixture
def core(tmp_path):
    cfg = AppConfig(db_path=tmp_path / "db.sqlite", min_listen_seconds=0.2, arena_seconds=0.5,
                    leaderboard_rounds=20, admin_token=ADMIN_TOKEN, work_dir=tmp_path / "work")
    c = AppCore(cfg, SystemRegistry.from_dict(tone_systems()))
    yield c
    c.close()


def _pair(core, session="s1", prompt="a calm piano"):
    job = core.submit_pair(session, "127.0.0.1", prompt)
    job.result(30)
    return core.serve_pair(job)


def test_create_stores_clips_with_downloads_and_speed(core):
    job = core.submit_create("s1", "127.0.0.1", "  a calm\npiano  ", "tone-low", 1.0, 5, 3.0,
                             1.0, 2)
    r = job.result(30)
    assert len(r.clips) == 2
    for c in r.clips:
        assert c.audio_path.is_file() and c.wav_path.suffix == ".wav"
        assert c.flac_path.is_file() and c.spectrogram.read_bytes()[:4] == b"\x89PNG"
        assert abs(c.seconds - 1.0) < 1e-6
    assert core.store.totals()["generations"] == 2
    assert core.store.generation_speed()["tone-low"]["clips"] == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "x" * 400}, "limit is 300"),
    ({"system": "nope"}, "Unknown system"),
    ({"seconds": 999}, "Duration must be between"),
    ({"variations": 9}, "Variations must be between"),
    ({"seed": "abc"}, "Seed must be a number"),
])
def test_create_refusals_store_nothing(core, kwargs, match):
    args = {"prompt": "piano", "system": "tone-low", "seconds": 1.0, "seed": 0,
            "guidance": 3.0, "temperature": 1.0, "variations": 1, **kwargs}
    with pytest.raises(AppError, match=match):
        core.submit_create("s1", "127.0.0.1", **args)
    assert core.store.totals()["generations"] == 0


def test_rate_limit_refuses_with_a_message(tmp_path):
    sec = dataclasses.replace(SecurityConfig(), session_burst=2, session_per_minute=0.01)
    cfg = AppConfig(db_path=tmp_path / "db.sqlite", security=sec, work_dir=tmp_path / "w")
    c = AppCore(cfg, SystemRegistry.from_dict(tone_systems()))
    try:
        c.check_rate("s", "1.2.3.4")
        c.check_rate("s", "1.2.3.4")
        with pytest.raises(AppError, match="Too many requests"):
            c.submit_create("s", "1.2.3.4", "piano", "tone-low", 1, 0, 3, 1, 1)
        assert c.store.totals()["generations"] == 0
        c.check_rate("other-session", "5.6.7.8")          # other sessions are unaffected
    finally:
        c.close()


def test_arena_vote_requires_listening_on_both_sides(core):
    pair = _pair(core)
    assert pair.system_a != pair.system_b
    # Too early on the server's clock, whatever the browser claims.
    with pytest.raises(AppError, match="Listen to both clips"):
        core.vote("s1", "127.0.0.1", pair, "a", None, 5.0, 5.0)
    time.sleep(0.25)
    # The browser says clip B was not heard long enough.
    with pytest.raises(AppError, match="heard A 5.0 s, B 0.1 s"):
        core.vote("s1", "127.0.0.1", pair, "a", None, 5.0, 0.1)
    assert core.store.totals()["votes"] == 0
    assert core.listen_ok(pair, 0.3, 0.3)[0]
    r = core.vote("s1", "127.0.0.1", pair, "tie", "  close call ", 0.3, 10.0)
    assert r["system_a"] == pair.system_a and r["system_b"] == pair.system_b
    (v,) = core.store.votes()
    assert v.choice == "tie" and v.comment == "close call"
    # Listen times are capped at the time elapsed since the pair was served.
    assert 0.2 <= v.listen_a <= 0.3 and 0.2 <= v.listen_b < 1.0
    with pytest.raises(AppError, match="already voted"):
        core.vote("s1", "127.0.0.1", pair, "a", None, 1, 1)


def test_a_pair_cannot_be_voted_from_another_session(core):
    pair = _pair(core, session="s1")
    time.sleep(0.25)
    with pytest.raises(AppError, match="another browser session"):
        core.vote("s2", "127.0.0.1", pair, "a", None, 1, 1)
    with pytest.raises(AppError, match="New pair"):
        core.vote("s1", "127.0.0.1", None, "a", None, 1, 1)
    with pytest.raises(AppError, match="Choose A, B"):
        core.vote("s1", "127.0.0.1", pair, "maybe", None, 1, 1)
    assert core.store.totals()["votes"] == 0


def test_empty_arena_prompt_is_drawn_from_the_prompt_set(core):
    pair = _pair(core, prompt="")
    assert pair.prompt in core.prompts


def test_leaderboard_rows_after_votes(core):
    for _ in range(3):
        pair = _pair(core)
        time.sleep(0.21)
        core.vote("s1", "127.0.0.1", pair, "a", None, 1, 1)
    rows = core.leaderboard_rows()
    assert {r[1] for r in rows} == {"tone-low", "tone-mid", "tone-high"}
    ranked = [r for r in rows if r[0] != "—"]
    assert ranked and sum(r[4] for r in ranked) == 6        # 3 votes, 2 systems each
    assert all(r[11].endswith("×") for r in ranked)         # generation speed shown
    assert core.leaderboard_rows() is rows                  # cached until new votes


def test_admin_needs_the_token(core, tmp_path):
    with pytest.raises(AppError, match="Admin token required"):
        core.admin_counts("s1", "127.0.0.1", "")
    with pytest.raises(AppError, match="Admin token required"):
        core.admin_export("s1", "127.0.0.1", "x" * 20, ["jsonl"], True)
    pair = _pair(core)
    time.sleep(0.21)
    core.vote("s1", "127.0.0.1", pair, "b", None, 1, 1)
    rows, totals = core.admin_counts("s1", "127.0.0.1", ADMIN_TOKEN)
    assert totals["votes"] == 1 and rows
    files, summary = core.admin_export("s1", "127.0.0.1", ADMIN_TOKEN, ["jsonl", "trl"], True)
    names = sorted(f.name for f in files)
    assert names == ["audio.zip", "export.json", "trl.jsonl", "votes.jsonl"]
    assert "exported 1 votes" in summary
    (row,) = [json.loads(x) for x in next(f for f in files if f.name == "votes.jsonl")
              .read_text().splitlines()]
    assert row["choice"] == "b"


def test_admin_disabled_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICRL_ADMIN_TOKEN", raising=False)
    cfg = AppConfig(db_path=tmp_path / "db.sqlite", work_dir=tmp_path / "w")
    c = AppCore(cfg, SystemRegistry.from_dict(tone_systems()))
    try:
        assert not c.auth.enabled
        with pytest.raises(AppError, match="admin area is disabled"):
            c.admin_counts("s", "h", "")
    finally:
        c.close()


def test_cli_app_flags_match_app_server_flags():
    from musicrl.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli = {o for a in sub.choices["app"]._actions for o in a.option_strings}
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert cli == {o for a in p._actions for o in a.option_strings}
    args = build_parser().parse_args(["app", "--min-listen", "0.5", "--port", "7000"])
    assert args.min_listen == 0.5 and args.port == 7000 and args.host == "127.0.0.1"


def test_ui_builds_with_the_merge_slider_only_when_configured(tmp_path):
    gr = pytest.importorskip("gradio")
    from app.ui import build_ui

    for merge in (False, True):
        cfg = AppConfig(db_path=tmp_path / f"db{merge}.sqlite", work_dir=tmp_path / f"w{merge}")
        c = AppCore(cfg, SystemRegistry.from_dict(tone_systems(merge=merge)))
        try:
            demo = build_ui(c)
            assert isinstance(demo, gr.Blocks)
            mix = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None)
                       == "create-mix")
            # The first system (tone-low) is selected; the merge system is tone-mid.
            assert mix.visible is False
            names = {d.api_name for d in demo.fns.values() if d.api_name}
            assert {"create", "new_pair", "vote_a", "vote_b", "vote_tie", "vote_both_bad",
                    "leaderboard", "admin_counts", "admin_export"} <= names
        finally:
            c.close()
