"""The preference store's interface, records and errors (see :mod:`app.store`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.errors import MusicrlError

CHOICES = ("a", "b", "tie", "both_bad")
AUDIO_SUFFIX = ".flac"
MAX_COMMENT_CHARS = 1000
_AUDIO_ID = re.compile(r"[0-9a-f]{64}")
_PAIR_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class StoreError(MusicrlError, ValueError):
    """The store refused an input or cannot open its files; the message says what to do."""


class SchemaError(StoreError):
    """The database file is not a musicrl store this version can use."""


class VoteError(StoreError):
    """A vote was refused; nothing was stored. ``str(e)`` can be shown to the voter.

    ``reason`` is one of ``unknown_pair``, ``other_session``, ``already_voted``,
    ``bad_choice``, ``bad_comment``, ``bad_listen_time``.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def is_audio_id(audio_id: object) -> bool:
    """True iff ``audio_id`` is a well-formed audio id (64 lowercase hex characters)."""
    return isinstance(audio_id, str) and _AUDIO_ID.fullmatch(audio_id) is not None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pair:
    """Two clips for one prompt, served to one browser session (``session_hash``)."""

    id: str
    session_hash: str
    prompt: str
    system_a: str
    system_b: str
    audio_a: str
    audio_b: str
    settings_a: dict
    settings_b: dict
    created: float          # unix seconds (UTC)


@dataclasses.dataclass(frozen=True)
class Vote:
    """One stored vote."""

    id: int
    pair_id: str
    session_hash: str
    choice: str             # one of CHOICES
    comment: str | None
    created: float
    listen_a: float | None = None   # seconds the voter listened to clip A, if the UI said
    listen_b: float | None = None


@dataclasses.dataclass(frozen=True)
class VoteRow:
    """A vote joined with its pair: the unit of every export and of the leaderboard."""

    vote_id: int
    pair_id: str
    prompt: str
    system_a: str
    system_b: str
    audio_a: str
    audio_b: str
    settings_a: dict
    settings_b: dict
    choice: str
    comment: str | None
    created: float
    session_hash: str
    listen_a: float | None
    listen_b: float | None

    @property
    def time(self) -> str:
        """The vote's time as ISO 8601 UTC."""
        return _iso(self.created)


@dataclasses.dataclass(frozen=True)
class RatingRow:
    """One 1–5 rating of one clip by one session (the latest, if it was changed)."""

    session_hash: str
    audio_id: str
    rating: int
    prompt: str
    created: float


# ----------------------------------------------------------------------------
# The interface
# ----------------------------------------------------------------------------

class PreferenceStore(ABC):
    """What the app needs from a preference store. See :class:`SqliteStore`."""

    @abstractmethod
    def put_audio(self, wav: np.ndarray, sample_rate: int) -> str:
        """Stores a clip ([t] or [t, channels], float in [-1, 1]); returns its id (sha256)."""

    @abstractmethod
    def audio_path(self, audio_id: str) -> Path:
        """The file of a clip; raises :class:`StoreError` for a malformed id."""

    @abstractmethod
    def record_generation(self, system: str, prompt: str, audio_id: str, seconds_audio: float,
                          seconds_wall: float, session: str, settings: dict) -> str:
        """Records one generated clip and how long it took; returns the generation id."""

    @abstractmethod
    def record_pair(self, session: str, prompt: str, system_a: str, system_b: str,
                    audio_a: str, audio_b: str, settings_a: dict, settings_b: dict) -> str:
        """Records a pair served to ``session``; returns its random, unguessable id."""

    @abstractmethod
    def get_pair(self, pair_id: str) -> Pair | None:
        """The pair, or None if there is none with this id."""

    @abstractmethod
    def record_vote(self, pair_id: str, session: str, choice: str,
                    comment: str | None = None, *, listen_a: float | None = None,
                    listen_b: float | None = None) -> Vote:
        """Stores the one vote on a pair or raises :class:`VoteError` (storing nothing)."""

    @abstractmethod
    def record_rating(self, session: str, audio_id: str, rating: int, prompt: str) -> None:
        """Stores a 1–5 rating of a clip by a session (a later one replaces it)."""

    @abstractmethod
    def votes(self) -> list[VoteRow]:
        """All votes joined with their pairs, oldest first."""

    @abstractmethod
    def ratings(self) -> list[RatingRow]:
        """All ratings, oldest first."""

    @abstractmethod
    def counts_by_system_day(self) -> list[dict]:
        """Per UTC day and system: ``generations``, ``pairs`` served, ``votes``."""

    @abstractmethod
    def generation_speed(self) -> dict[str, dict]:
        """Per system: ``clips`` and ``rtf`` (seconds of audio per second of wall time)."""

    @abstractmethod
    def totals(self) -> dict[str, int]:
        """Row counts: audio, generations, pairs, votes, ratings."""

    @abstractmethod
    def session_hash(self, session: str) -> str:
        """The anonymised id under which ``session`` is stored and exported."""

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version of the open database."""

    @abstractmethod
    def close(self) -> None:
        """Releases the store's connections."""

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
