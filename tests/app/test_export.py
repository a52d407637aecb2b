"""Exports: formats round-trip, TRL layout, formula escaping, atomic and contained writes, CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.export import ExportError, export, parse_formats
from app.store import SqliteStore
from musicrl.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main

SR = 16_000
EVIL = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "plain"]


def _tone(hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(SR // 4) / SR)).astype(np.float32)


@pytest.fixture
def filled(tmp_path):
    """A store with one vote of each kind; prompts and comments try formula injection."""
    s = SqliteStore(tmp_path / "prefs.sqlite", tmp_path / "audio")
    clips = [s.put_audio(_tone(200 + 50 * k), SR) for k in range(6)]
    for k, choice in enumerate(["a", "b", "tie", "both_bad", "a", "b"]):
        pid = s.record_pair(f"sess{k % 2}", EVIL[k] if k < 5 else "calm\u2028piano", "base", "rl",
                            clips[k], clips[(k + 1) % 6], {"temp": 1.0}, {"temp": 0.7 + k / 10})
        s.record_vote(pid, f"sess{k % 2}", choice, EVIL[(k + 1) % 6], listen_a=3.0 + k,
                      listen_b=4.0)
    yield s
    s.close()


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_jsonl_and_parquet_round_trip(filled, tmp_path):
    out = tmp_path / "export"
    report = export(filled, out, ["jsonl", "parquet"])
    assert report.votes == 6 and report.complete
    text = (out / "votes.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 6  # U+2028 in a prompt is escaped, not a line break
    rows = [json.loads(line) for line in text.splitlines()]
    votes = filled.votes()
    assert [r["pair_id"] for r in rows] == [v.pair_id for v in votes]
    for r, v in zip(rows, votes, strict=True):
        assert (r["prompt"], r["comment"], r["choice"], r["system_a"], r["audio_b"]) == \
               (v.prompt, v.comment, v.choice, v.system_a, v.audio_b)  # exact text, unescaped
        assert r["settings_b"] == v.settings_b and r["rater"] == v.session_hash
        assert r["listen_a"] == v.listen_a and r["time"] == v.time
        assert r["path_a"] == f"audio/{v.audio_a}.flac"
    table = pq.read_table(out / "votes.parquet").to_pylist()
    assert len(table) == 6
    for t, r in zip(table, rows, strict=True):
        assert {**t, "settings_a": json.loads(t["settings_a"]),
                "settings_b": json.loads(t["settings_b"])} == r
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["votes"] == 6 and manifest["formula_escaped"] == []


def test_trl_layout(filled, tmp_path):
    out = tmp_path / "export"
    report = export(filled, out, ["trl"], with_audio=True)
    rows = [json.loads(line) for line in (out / "trl.jsonl").read_text().splitlines()]
    decisive = [v for v in filled.votes() if v.choice in ("a", "b")]
    assert len(rows) == report.trl_rows == len(decisive) == 4
    assert report.trl_skipped == {"tie": 1, "both_bad": 1}
    with zipfile.ZipFile(out / "audio.zip") as z:
        names = set(z.namelist())
    for r, v in zip(rows, decisive, strict=True):
        assert set(r) >= {"prompt", "chosen", "rejected"} and r["prompt"] == v.prompt
        win, lose = (v.audio_a, v.audio_b) if v.choice == "a" else (v.audio_b, v.audio_a)
        assert (r["chosen"], r["rejected"]) == (f"audio/{win}.flac", f"audio/{lose}.flac")
        sys_win = v.system_a if v.choice == "a" else v.system_b
        assert r["chosen_system"] == sys_win and r["chosen"] in names and r["rejected"] in names
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["trl"]["left_out"] == {"tie": 1, "both_bad": 1}


def test_csv_is_formula_escaped(filled, tmp_path):
    out = tmp_path / "export"
    export(filled, out, ["csv"])
    text = (out / "votes.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 6
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    prompts = [r["prompt"] for r in rows]
    assert prompts[:5] == ["'" + e if e != "plain" else e for e in EVIL[:5]]
    assert rows[4]["comment"] == "plain" and prompts[5] == "calm\u2028piano"
    assert json.loads((out / "export.json").read_text())["formula_escaped"] == ["votes.csv"]


def test_audio_zip_is_content_addressed_and_contained(filled, tmp_path):
    out = tmp_path / "export"
    report = export(filled, out, ["jsonl"], with_audio=True)
    with zipfile.ZipFile(out / "audio.zip") as z:
        names = z.namelist()
        assert len(names) == len(set(names)) == report.audio_files == 6
        for n in names:
            m = re.fullmatch(r"audio/([0-9a-f]{64})\.flac", n)
            assert m, n
            assert hashlib.sha256(z.read(n)).hexdigest() == m.group(1)


def test_forged_audio_ids_cannot_escape(filled, tmp_path):
    # A tampered database names paths instead of hashes; nothing may be read or written
    # outside the audio folder and the export folder.
    secret = tmp_path / "secret.txt"
    secret.write_text("do not export")
    con = sqlite3.connect(filled.db_path)
    pid = filled.votes()[0].pair_id
    con.execute("UPDATE pairs SET audio_a = ?, audio_b = ? WHERE id = ?",
                ("../secret.txt", "../../" + "0" * 58, pid))
    con.commit()
    con.close()
    out = tmp_path / "export"
    before = set(_tree(tmp_path)) - set(_tree(out) if out.exists() else [])
    report = export(filled, out, ["jsonl", "trl"], with_audio=True)
    assert not report.complete and report.audio_invalid == 2
    with zipfile.ZipFile(out / "audio.zip") as z:
        assert all(re.fullmatch(r"audio/[0-9a-f]{64}\.flac", n) for n in z.namelist())
        assert all(b"do not export" not in z.read(n) for n in z.namelist())
    assert report.trl_skipped.get("invalid_audio_id") == 1
    after = set(_tree(tmp_path))
    assert after - before == {f"export/{n}" for n in _tree(out)} | {"export"}
    assert set(_tree(out)) == {"votes.jsonl", "trl.jsonl", "audio.zip", "export.json"}


def test_refuses_to_overwrite_unless_forced(filled, tmp_path):
    out = tmp_path / "export"
    export(filled, out, ["jsonl"])
    first = (out / "votes.jsonl").read_bytes()
    with pytest.raises(ExportError, match="--force"):
        export(filled, out, ["jsonl", "csv"])
    assert not (out / "votes.csv").exists() and (out / "votes.jsonl").read_bytes() == first
    export(filled, out, ["jsonl", "csv"], force=True)
    assert (out / "votes.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_refuses_files_and_links_in_the_way(filled, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export(filled, f, ["jsonl"])
    out = tmp_path / "export"
    out.mkdir()
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    (out / "votes.jsonl").symlink_to(target)
    with pytest.raises(ExportError, match="not a regular file"):
        export(filled, out, ["jsonl"], force=True)
    assert target.read_text() == "keep me"


def test_parse_formats():
    assert parse_formats("jsonl, PARQUET,trl,jsonl") == ("jsonl", "parquet", "trl")
    for bad in ("xlsx", "", "jsonl,../x"):
        with pytest.raises(ExportError, match="choose from"):
            parse_formats(bad)


def test_cli_export(filled, tmp_path, capsys):
    db, audio, out = str(filled.db_path), str(filled.audio_dir), tmp_path / "cli-out"
    argv = ["export", "--db", db, "--audio-dir", audio, "--out", str(out)]
    assert main([*argv, "--format", "jsonl,trl", "--with-audio"]) == EXIT_OK
    assert set(_tree(out)) == {"votes.jsonl", "trl.jsonl", "audio.zip", "export.json"}
    assert "exported 6 votes" in capsys.readouterr().out
    assert main([*argv, "--format", "jsonl"]) == EXIT_USAGE
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--format", "xlsx", "--force"]) == EXIT_USAGE
    missing = ["export", "--db", str(tmp_path / "nope.sqlite"), "--audio-dir", audio,
               "--out", str(tmp_path / "o2")]
    assert main(missing) == EXIT_USAGE
    assert not (tmp_path / "nope.sqlite").exists()
    # A clip missing from the audio folder: the export finishes, exit status says partial.
    filled.audio_path(filled.votes()[0].audio_a).unlink()
    assert main([*argv, "--with-audio", "--force"]) == EXIT_PARTIAL
    assert "missing" in capsys.readouterr().out
