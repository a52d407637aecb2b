"""The store's versioned schema: migrations, refusal of newer and foreign files, pragmas."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from app.store import SCHEMA_VERSION, SchemaError, SqliteStore, StoreError

# Version 1 of the schema exactly as it shipped, written out by hand (not taken from
# app.store) so that changing MIGRATIONS[0] by mistake breaks this test.
V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audio (id TEXT PRIMARY KEY CHECK (length(id) = 64), sample_rate INTEGER NOT NULL,
    seconds REAL NOT NULL, bytes INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE generations (id TEXT PRIMARY KEY, system TEXT NOT NULL, prompt TEXT NOT NULL,
    audio_id TEXT NOT NULL REFERENCES audio(id), seconds_audio REAL NOT NULL,
    seconds_wall REAL NOT NULL, session_hash TEXT NOT NULL, settings TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE pairs (id TEXT PRIMARY KEY, session_hash TEXT NOT NULL, prompt TEXT NOT NULL,
    system_a TEXT NOT NULL, system_b TEXT NOT NULL, audio_a TEXT NOT NULL REFERENCES audio(id),
    audio_b TEXT NOT NULL REFERENCES audio(id), settings_a TEXT NOT NULL,
    settings_b TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE votes (id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL UNIQUE REFERENCES pairs(id), session_hash TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')), comment TEXT,
    created REAL NOT NULL);
CREATE INDEX generations_created ON generations(created);
CREATE INDEX pairs_created ON pairs(created);
INSERT INTO schema_version VALUES (1, 1700000000.0);
INSERT INTO meta VALUES ('session_key', '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
"""
A, B = "a" * 64, "b" * 64


def _make_v1(path):
    con = sqlite3.connect(path)
    con.executescript(V1)
    con.executemany("INSERT INTO audio VALUES (?, 16000, 1.0, 100, 1700000000.0)", [(A,), (B,)])
    con.execute("INSERT INTO pairs VALUES ('old-pair-0000000000000', 'h', 'old prompt', 'x', 'y',"
                " ?, ?, '{}', '{}', 1700000000.0)", (A, B))
    con.execute("INSERT INTO votes (pair_id, session_hash, choice, comment, created) "
                "VALUES ('old-pair-0000000000000', 'h', 'b', 'kept', 1700000001.0)")
    con.commit()
    con.close()


def test_v1_database_is_migrated_and_keeps_its_rows(tmp_path):
    db = tmp_path / "v1.sqlite"
    _make_v1(db)
    with SqliteStore(db, tmp_path / "audio") as s:
        assert s.schema_version() == SCHEMA_VERSION == 2
        [v] = s.votes()
        assert (v.pair_id, v.prompt, v.choice, v.comment) == \
               ("old-pair-0000000000000", "old prompt", "b", "kept")
        assert v.listen_a is None and v.listen_b is None
        # v2 features work on the migrated file; the old session key is kept.
        s.record_rating("u", A, 3, "old prompt")
        assert [r.rating for r in s.ratings()] == [3]
        assert s._salt == bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
        pid = s.record_pair("u", "new", "x", "y", A, B, {}, {})
        s.record_vote(pid, "u", "a", listen_a=3.0, listen_b=2.5)
        assert [x.listen_b for x in s.votes()] == [None, 2.5]
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")] \
        == [1, 2]
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_reopening_is_idempotent(tmp_path):
    db = tmp_path / "p.sqlite"
    for _ in range(3):
        with SqliteStore(db, tmp_path / "audio") as s:
            assert s.schema_version() == SCHEMA_VERSION
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_newer_database_is_refused(tmp_path):
    db = tmp_path / "new.sqlite"
    SqliteStore(db, tmp_path / "audio").close()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match=rf"schema version {SCHEMA_VERSION + 5}.*upgrade"):
        SqliteStore(db, tmp_path / "audio")


def test_foreign_and_garbage_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="not a musicrl"):
        SqliteStore(other, tmp_path / "audio")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(np.random.default_rng(0).bytes(8192))
    with pytest.raises(SchemaError, match="not a usable SQLite"):
        SqliteStore(junk, tmp_path / "audio")
    with pytest.raises(StoreError, match="no preference database"):
        SqliteStore(tmp_path / "missing.sqlite", tmp_path / "audio", create=False)
    with pytest.raises(StoreError, match="folder"):
        SqliteStore(tmp_path, tmp_path / "audio")


def test_durable_pragmas(tmp_path):
    db = tmp_path / "p.sqlite"
    with SqliteStore(db, tmp_path / "audio") as s:
        conn = s._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
