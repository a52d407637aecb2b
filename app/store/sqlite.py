"""The SQLite implementation of the preference store (see :mod:`app.store`)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.security import TextError, clean_comment
from app.store.base import (
    _PAIR_ID,
    AUDIO_SUFFIX,
    CHOICES,
    MAX_COMMENT_CHARS,
    Pair,
    PreferenceStore,
    RatingRow,
    SchemaError,
    StoreError,
    Vote,
    VoteError,
    VoteRow,
    is_audio_id,
)
from app.store.schema import MIGRATIONS, SCHEMA_VERSION, _split_sql
from musicrl.atomic import write_bytes_atomic


@dataclasses.dataclass(eq=False)
class _Pending:
    """One write waiting for a group commit."""

    fn: Callable[[sqlite3.Connection], Any]
    event: threading.Event = dataclasses.field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class SqliteStore(PreferenceStore):
    """The preference store in one SQLite file plus a folder of content-addressed FLAC files.

    Args:
      db_path: the database file (created, with its folder, unless ``create=False``).
      audio_dir: the audio folder (created on first write).
      create: if False, a missing ``db_path`` raises :class:`StoreError` instead.
      max_comment_chars: longest vote comment accepted.
      busy_timeout_s: how long a writer waits for another process's write lock.
      group_commit: commit concurrent writes of this process together (one fsync for many;
        each still atomic and acknowledged only after its commit). False: one transaction
        per write.
      clock: unix seconds (injectable for tests).
    """

    def __init__(self, db_path: str | os.PathLike, audio_dir: str | os.PathLike, *,
                 create: bool = True, max_comment_chars: int = MAX_COMMENT_CHARS,
                 busy_timeout_s: float = 30.0, group_commit: bool = True,
                 clock: Callable[[], float] = time.time):
        self.db_path = Path(db_path)
        self.audio_dir = Path(audio_dir)
        self.max_comment_chars = max_comment_chars
        self._busy_ms = int(busy_timeout_s * 1000)
        self._clock = clock
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False
        self.group_commit = group_commit
        self._gc_mutex = threading.Lock()
        self._gc_queue: list[_Pending] = []
        self._gc_leading = False
        if not self.db_path.exists():
            if not create:
                raise StoreError(f"no preference database at {self.db_path}; check --db "
                                 "(the app creates it on its first start)")
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        elif self.db_path.is_dir():
            raise StoreError(f"{self.db_path} is a folder; --db must name a database file")
        self._migrate()
        self._salt = self._load_salt()

    # -- connections ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the preference store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.db_path, isolation_level=None,
                                       check_same_thread=False, timeout=self._busy_ms / 1000)
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.DatabaseError as e:
                raise SchemaError(f"{self.db_path} is not a usable SQLite database ({e}); "
                                  "point --db to the store's file or to a new path") from None
            if mode.lower() != "wal":
                raise StoreError(f"cannot use WAL journaling for {self.db_path} (got {mode!r}); "
                                 "put the database on a local file system")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _transact(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Runs ``fn(conn)`` as one atomic, durable write and returns its result.

        Without group commit: its own ``BEGIN IMMEDIATE … COMMIT``. With group commit,
        writes that arrive while another commit is in progress are queued; the next leader
        thread runs each queued ``fn`` inside its own SAVEPOINT (a failing one is rolled back
        alone and gets its exception) and COMMITs them together, so one fsync serves many
        writers. Either way a call returns only after its COMMIT, and a write whose
        transaction did not commit raises and stores nothing.
        """
        if not self.group_commit:
            with self._write() as c:
                return fn(c)
        item = _Pending(fn)
        with self._gc_mutex:
            self._gc_queue.append(item)
            if not self._gc_leading:
                self._gc_leading = item.lead = True
        if not item.lead:
            item.event.wait()
        if not item.done:  # this thread leads the next batch (its own item is in it)
            try:
                with self._gc_mutex:
                    batch, self._gc_queue = self._gc_queue, []
                self._commit_batch(batch)
            finally:
                with self._gc_mutex:
                    if self._gc_queue:
                        nxt = self._gc_queue[0]
                        nxt.lead = True
                        nxt.event.set()
                    else:
                        self._gc_leading = False
        if item.error is not None:
            raise item.error
        return item.value

    def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            conn = self._conn()
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for it in batch:
                        conn.execute("SAVEPOINT one_write")
                        try:
                            it.value = it.fn(conn)
                        except Exception as e:  # noqa: BLE001 - handed to the caller below
                            conn.execute("ROLLBACK TO one_write")
                            it.error = e
                        conn.execute("RELEASE one_write")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except BaseException as e:  # nothing of this batch was committed
            for it in batch:
                it.value = None
                if it.error is None:
                    it.error = e
        finally:
            for it in batch:
                it.done = True
                it.event.set()

    def close(self) -> None:
        """Closes every thread's connection; the store cannot be used afterwards."""
        self._closed = True
        with self._conns_lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    # -- schema --------------------------------------------------------------

    def _read_version(self, conn: sqlite3.Connection) -> int:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" not in tables:
            if tables - {"sqlite_sequence"}:
                raise SchemaError(f"{self.db_path} is a SQLite database but not a musicrl "
                                  f"preference store (tables {sorted(tables)}); use another --db")
            return 0
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        with self._write() as c:
            version = self._read_version(c)
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.db_path} has schema version {version}, but this musicrl understands "
                f"versions up to {SCHEMA_VERSION}; upgrade musicrl to open it (it was written "
                "by a newer release)")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._write() as c:
                if self._read_version(c) >= target:  # another process got there first
                    continue
                for stmt in _split_sql(MIGRATIONS[target - 1]):
                    c.execute(stmt)
                c.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                          (target, self._clock()))

    def _load_salt(self) -> bytes:
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO meta VALUES ('session_key', ?)",
                      (secrets.token_hex(32),))
            return bytes.fromhex(c.execute(
                "SELECT value FROM meta WHERE key = 'session_key'").fetchone()[0])

    def schema_version(self) -> int:
        return self._read_version(self._conn())

    def session_hash(self, session: str) -> str:
        """HMAC-SHA256 of the session id with this database's key (hex, 32 chars)."""
        if not isinstance(session, str) or not session:
            raise StoreError("a browser session id is required (reload the page)")
        return hmac.new(self._salt, session.encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()[:32]

    # -- audio ---------------------------------------------------------------

    def audio_path(self, audio_id: str) -> Path:
        """``<audio_dir>/<id[:2]>/<id>.flac``; the id must be 64 lowercase hex characters."""
        if not is_audio_id(audio_id):
            raise StoreError(f"not an audio id: {str(audio_id)[:80]!r} (expected 64 hex digits)")
        return self.audio_dir / audio_id[:2] / f"{audio_id}{AUDIO_SUFFIX}"

    def put_audio(self, wav: np.ndarray, sample_rate: int) -> str:
        """Encodes ``wav`` as 16-bit FLAC and stores it under the SHA-256 of the bytes.

        The same samples give the same bytes, so storing a clip twice returns the same id and
        leaves one file. Samples are clipped to [-1, 1].
        """
        import soundfile as sf

        x = np.asarray(wav)
        if np.issubdtype(x.dtype, np.signedinteger) and x.dtype.itemsize in (2, 4):
            x = x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))  # PCM
        if x.ndim not in (1, 2) or x.shape[0] == 0 or (x.ndim == 2 and not 1 <= x.shape[1] <= 8):
            raise StoreError(f"audio must be [samples] or [samples, channels] with samples > 0; "
                             f"got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise StoreError("audio must be finite float samples in [-1, 1] (or int16/int32 "
                             f"PCM); got dtype {x.dtype}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
                or not 1000 <= sample_rate <= 384_000:
            raise StoreError(f"sample_rate must be an integer in 1000..384000, got {sample_rate!r}")
        buf = io.BytesIO()
        sf.write(buf, np.clip(x, -1.0, 1.0).astype(np.float32), int(sample_rate),
                 format="FLAC", subtype="PCM_16")
        data = buf.getvalue()
        audio_id = hashlib.sha256(data).hexdigest()
        path = self.audio_path(audio_id)
        if not (path.is_file() and path.stat().st_size == len(data)):
            write_bytes_atomic(path, data, sync_dir=True)
        row = (audio_id, int(sample_rate), x.shape[0] / sample_rate, len(data), self._clock())
        self._transact(lambda c: c.execute("INSERT OR IGNORE INTO audio VALUES (?, ?, ?, ?, ?)",
                                           row))
        return audio_id

    def _require_audio(self, c: sqlite3.Connection, *ids: str) -> None:
        for a in ids:
            if not is_audio_id(a):
                raise StoreError(f"not an audio id: {str(a)[:80]!r}; store clips with put_audio")
            if c.execute("SELECT 1 FROM audio WHERE id = ?", (a,)).fetchone() is None:
                raise StoreError(f"unknown audio id {a}; store the clip with put_audio first")

    # -- writes --------------------------------------------------------------

    def record_generation(self, system: str, prompt: str, audio_id: str, seconds_audio: float,
                          seconds_wall: float, session: str, settings: dict) -> str:
        """Records a generated clip; returns a random generation id."""
        _require_text(system=system, prompt=prompt)
        if not (seconds_audio >= 0 and seconds_wall >= 0):
            raise StoreError(f"seconds_audio and seconds_wall must be >= 0, got "
                             f"{seconds_audio!r} and {seconds_wall!r}")
        gid = secrets.token_urlsafe(16)
        row = (gid, system, prompt, audio_id, float(seconds_audio), float(seconds_wall),
               self.session_hash(session), _dumps(settings), self._clock())

        def write(c: sqlite3.Connection) -> None:
            self._require_audio(c, audio_id)
            c.execute("INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

        self._transact(write)
        return gid

    def record_pair(self, session: str, prompt: str, system_a: str, system_b: str,
                    audio_a: str, audio_b: str, settings_a: dict, settings_b: dict) -> str:
        """Records the pair served to ``session``; returns ``secrets.token_urlsafe(16)``."""
        _require_text(prompt=prompt, system_a=system_a, system_b=system_b)
        pid = secrets.token_urlsafe(16)
        row = (pid, self.session_hash(session), prompt, system_a, system_b, audio_a, audio_b,
               _dumps(settings_a), _dumps(settings_b), self._clock())

        def write(c: sqlite3.Connection) -> None:
            self._require_audio(c, audio_a, audio_b)
            c.execute("INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

        self._transact(write)
        return pid

    def record_vote(self, pair_id: str, session: str, choice: str,
                    comment: str | None = None, *, listen_a: float | None = None,
                    listen_b: float | None = None) -> Vote:
        """Stores the vote on ``pair_id`` by ``session``, exactly once.

        Raises :class:`VoteError` (nothing stored) for an unknown or forged pair id, a pair
        served to another session, a second vote on the pair, a choice not in
        ``a, b, tie, both_bad``, or a comment that is too long or binary.
        """
        if choice not in CHOICES:
            raise VoteError(f"Unknown vote {str(choice)[:40]!r}; choose A, B, tie or both bad.",
                            "bad_choice")
        try:
            comment = clean_comment(comment, self.max_comment_chars)
        except TextError as e:
            raise VoteError(str(e), "bad_comment") from None
        listens = [None if v is None else float(v) for v in (listen_a, listen_b)]
        if any(v is not None and not v >= 0 for v in listens):
            raise VoteError("Listen times must be non-negative seconds.", "bad_listen_time")
        sh = self.session_hash(session) if isinstance(session, str) and session else None
        if not isinstance(pair_id, str) or not _PAIR_ID.fullmatch(pair_id):
            raise VoteError("This comparison does not exist; load a new pair to vote.",
                            "unknown_pair")
        now = self._clock()

        def write(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT session_hash FROM pairs WHERE id = ?", (pair_id,)).fetchone()
            if row is None:
                raise VoteError("This comparison does not exist; load a new pair to vote.",
                                "unknown_pair")
            if sh is None or not hmac.compare_digest(row[0], sh):
                raise VoteError("This comparison was served to another browser session; you "
                                "can only vote on pairs you were played. Load a new pair.",
                                "other_session")
            try:
                cur = c.execute(
                    "INSERT INTO votes (pair_id, session_hash, choice, comment, created, "
                    "listen_a, listen_b) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (pair_id, sh, choice, comment, now, *listens))
            except sqlite3.IntegrityError:
                raise VoteError("You already voted on this comparison; each pair takes one "
                                "vote. Load a new pair.", "already_voted") from None
            return cur.lastrowid

        vid = self._transact(write)
        return Vote(vid, pair_id, sh, choice, comment, now, *listens)

    def record_rating(self, session: str, audio_id: str, rating: int, prompt: str) -> None:
        """Stores a 1–5 rating; a session re-rating the same clip replaces its rating."""
        if isinstance(rating, bool) or not isinstance(rating, (int, np.integer)) \
                or not 1 <= rating <= 5:
            raise StoreError(f"a rating is a whole number from 1 to 5, got {rating!r}")
        _require_text(prompt=prompt)
        row = (self.session_hash(session), audio_id, int(rating), prompt, self._clock())

        def write(c: sqlite3.Connection) -> None:
            self._require_audio(c, audio_id)
            c.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                      "(session_hash, audio_id) DO UPDATE SET rating = excluded.rating, "
                      "prompt = excluded.prompt, created = excluded.created", row)

        self._transact(write)

    # -- reads ---------------------------------------------------------------

    def get_pair(self, pair_id: str) -> Pair | None:
        if not isinstance(pair_id, str) or not _PAIR_ID.fullmatch(pair_id):
            return None
        r = self._conn().execute(
            "SELECT id, session_hash, prompt, system_a, system_b, audio_a, audio_b, "
            "settings_a, settings_b, created FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if r is None:
            return None
        return Pair(*r[:7], json.loads(r[7]), json.loads(r[8]), r[9])

    def get_vote(self, pair_id: str) -> Vote | None:
        """The vote on a pair, or None (e.g. to restore the UI after a reload)."""
        if not isinstance(pair_id, str) or not _PAIR_ID.fullmatch(pair_id):
            return None
        r = self._conn().execute(
            "SELECT id, pair_id, session_hash, choice, comment, created, listen_a, listen_b "
            "FROM votes WHERE pair_id = ?", (pair_id,)).fetchone()
        return None if r is None else Vote(*r)

    def votes(self) -> list[VoteRow]:
        rows = self._conn().execute(
            "SELECT v.id, p.id, p.prompt, p.system_a, p.system_b, p.audio_a, p.audio_b, "
            "p.settings_a, p.settings_b, v.choice, v.comment, v.created, v.session_hash, "
            "v.listen_a, v.listen_b FROM votes v JOIN pairs p ON p.id = v.pair_id "
            "ORDER BY v.id").fetchall()
        return [VoteRow(*r[:7], json.loads(r[7]), json.loads(r[8]), *r[9:]) for r in rows]

    def ratings(self) -> list[RatingRow]:
        rows = self._conn().execute(
            "SELECT session_hash, audio_id, rating, prompt, created FROM ratings "
            "ORDER BY created, rowid").fetchall()
        return [RatingRow(*r) for r in rows]

    def counts_by_system_day(self) -> list[dict]:
        """``[{"day": "YYYY-MM-DD" (UTC), "system", "generations", "pairs", "votes"}]``, sorted."""
        day = "date(created, 'unixepoch')"
        q = f"""
        SELECT day, system, sum(g), sum(p), sum(v) FROM (
            SELECT {day} AS day, system, 1 AS g, 0 AS p, 0 AS v FROM generations
            UNION ALL SELECT {day}, system_a, 0, 1, 0 FROM pairs
            UNION ALL SELECT {day}, system_b, 0, 1, 0 FROM pairs WHERE system_b != system_a
            UNION ALL SELECT date(v.created, 'unixepoch'), p.system_a, 0, 0, 1
                FROM votes v JOIN pairs p ON p.id = v.pair_id
            UNION ALL SELECT date(v.created, 'unixepoch'), p.system_b, 0, 0, 1
                FROM votes v JOIN pairs p ON p.id = v.pair_id WHERE p.system_b != p.system_a
        ) GROUP BY day, system ORDER BY day, system
        """
        return [{"day": d, "system": s, "generations": g, "pairs": p, "votes": v}
                for d, s, g, p, v in self._conn().execute(q)]

    def generation_speed(self) -> dict[str, dict]:
        """Per system: ``clips``, total ``seconds_audio`` and ``seconds_wall``, and ``rtf`` =
        seconds_audio / seconds_wall (above 1 is faster than real time; None if no wall time).
        """
        out = {}
        for system, n, sa, sw in self._conn().execute(
                "SELECT system, count(*), sum(seconds_audio), sum(seconds_wall) FROM generations "
                "GROUP BY system ORDER BY system"):
            out[system] = {"clips": n, "rtf": sa / sw if sw > 0 else None,
                           "seconds_audio": sa, "seconds_wall": sw}
        return out

    def totals(self) -> dict[str, int]:
        c = self._conn()
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("audio", "generations", "pairs", "votes", "ratings")}


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def _require_text(**fields: Any) -> None:
    for name, value in fields.items():
        if not isinstance(value, str) or not value.strip():
            raise StoreError(f"{name} must be non-empty text, got {value!r}")


def _dumps(settings: Any) -> str:
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise StoreError(f"settings must be a dict, got {type(settings).__name__}")
    try:
        return json.dumps(settings, sort_keys=True, allow_nan=False, default=_jsonable)
    except (TypeError, ValueError) as e:
        raise StoreError(f"settings must be JSON-serialisable: {e}") from None


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (np.ndarray, tuple, set, frozenset)):
        return list(v.tolist() if isinstance(v, np.ndarray) else v)
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not JSON-serialisable")
