"""The preference store's SQLite schema: versioned migrations (see :mod:`app.store`)."""

from __future__ import annotations

# Version N of the schema is MIGRATIONS[N - 1] applied on top of version N - 1. Append new
# migrations; never edit one that has shipped.
_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE audio (
    id TEXT PRIMARY KEY CHECK (length(id) = 64),
    sample_rate INTEGER NOT NULL,
    seconds REAL NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE generations (
    id TEXT PRIMARY KEY,
    system TEXT NOT NULL,
    prompt TEXT NOT NULL,
    audio_id TEXT NOT NULL REFERENCES audio(id),
    seconds_audio REAL NOT NULL,
    seconds_wall REAL NOT NULL,
    session_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE pairs (
    id TEXT PRIMARY KEY,
    session_hash TEXT NOT NULL,
    prompt TEXT NOT NULL,
    system_a TEXT NOT NULL,
    system_b TEXT NOT NULL,
    audio_a TEXT NOT NULL REFERENCES audio(id),
    audio_b TEXT NOT NULL REFERENCES audio(id),
    settings_a TEXT NOT NULL,
    settings_b TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL UNIQUE REFERENCES pairs(id),
    session_hash TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    comment TEXT,
    created REAL NOT NULL
);
CREATE INDEX generations_created ON generations(created);
CREATE INDEX pairs_created ON pairs(created);
"""

# v2: listen times on votes (DESIGN §4.3) and 1-5 clip ratings for the quality model.
_V2 = """
ALTER TABLE votes ADD COLUMN listen_a REAL;
ALTER TABLE votes ADD COLUMN listen_b REAL;
CREATE TABLE ratings (
    session_hash TEXT NOT NULL,
    audio_id TEXT NOT NULL REFERENCES audio(id),
    rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    prompt TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (session_hash, audio_id)
);
CREATE INDEX votes_created ON votes(created);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
