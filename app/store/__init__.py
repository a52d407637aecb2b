"""The preference store (DESIGN §4.3, §11): generations, served pairs, votes and ratings.

:class:`PreferenceStore` is the interface the app codes against, so that a server database
can replace SQLite later. :class:`SqliteStore` implements it:

* **Durable**: WAL journal, ``synchronous=FULL``; every write is atomic (its own
  transaction, or its own SAVEPOINT inside a group commit, see :meth:`SqliteStore._transact`)
  and a method returns only after the COMMIT that holds its row, so an acknowledged write is
  on disk and a crash (even SIGKILL or power loss) never leaves half a write.
* **Votes exactly once**: a vote must reference a pair this browser session was served;
  ``votes.pair_id`` is UNIQUE, so a second vote is refused by the database itself.
  Refusals raise :class:`VoteError` (user-facing message, ``reason`` code) and store nothing.
* **Versioned schema**: the ``schema_version`` table holds the version; :data:`MIGRATIONS`
  are applied in order, each in its own transaction, when an older file is opened; a file
  from a newer musicrl is refused with :class:`SchemaError`.
* **Thread-safe**: one connection per thread; writes are serialised by a lock in the
  process and by SQLite's write lock across processes.
* **Audio content-addressed**: ``put_audio`` encodes 16-bit FLAC, names it by the SHA-256
  of the encoded bytes (``<audio_dir>/<id[:2]>/<id>.flac``), writes it atomically (temp
  file, fsync, rename, fsync of the folder) and never writes the same clip twice.
* **Private**: browser session ids are kept only as an HMAC with a per-database random key
  (``session_hash``): stable within a database, meaningless outside it.
"""

from app.store.base import (
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
from app.store.schema import MIGRATIONS, SCHEMA_VERSION
from app.store.sqlite import SqliteStore

__all__ = [
    "AUDIO_SUFFIX",
    "CHOICES",
    "MAX_COMMENT_CHARS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Pair",
    "PreferenceStore",
    "RatingRow",
    "SchemaError",
    "SqliteStore",
    "StoreError",
    "Vote",
    "VoteError",
    "VoteRow",
    "is_audio_id",
]
