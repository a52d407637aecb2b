"""The app's boundary checks (DESIGN §11): prompt cleaning, rate limits, admin auth, escaping.

* :func:`clean_prompt` / :func:`clean_comment` turn untrusted text from the browser into
  one NFC-normalised line (control characters removed, newlines and tabs become spaces),
  or refuse it with a :class:`TextError` whose message can be shown to the user as is.
* :class:`RateLimiter` is a token bucket per browser session *and* per client address. The
  address is only ever held as a salted SHA-256 (:func:`hash_client`); raw IPs are never
  stored, logged or exported.
* :class:`AdminAuth` guards the Data tab. The token comes from the config or the
  ``MUSICRL_ADMIN_TOKEN`` environment variable; there is no default, and without a token
  the admin area is disabled. Comparison is constant-time (``hmac.compare_digest``).
* :func:`spreadsheet_safe` defuses formula injection (``=`` ``+`` ``-`` ``@`` tab, CR) in
  text that may be opened by a spreadsheet (the CSV export and admin tables).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from musicrl.config import opt
from musicrl.errors import MusicrlError

__all__ = [
    "ADMIN_TOKEN_ENV",
    "CLIENT_SALT_ENV",
    "AdminAuth",
    "AdminAuthError",
    "RateLimited",
    "RateLimiter",
    "SecurityConfig",
    "TextError",
    "TokenBucket",
    "clean_comment",
    "clean_prompt",
    "hash_client",
    "spreadsheet_safe",
]

ADMIN_TOKEN_ENV = "MUSICRL_ADMIN_TOKEN"
CLIENT_SALT_ENV = "MUSICRL_CLIENT_SALT"
MIN_ADMIN_TOKEN_CHARS = 16


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    """Limits applied at the app's boundary."""

    max_prompt_chars: int = opt(300, "longest prompt accepted, in characters (after cleaning)",
                                min=1, max=10_000)
    max_comment_chars: int = opt(1000, "longest vote comment accepted, in characters",
                                 min=0, max=100_000)
    session_per_minute: float = opt(20.0, "sustained requests per minute per browser session",
                                    min=0.01)
    session_burst: int = opt(10, "requests a browser session may make at once", min=1)
    client_per_minute: float = opt(60.0, "sustained requests per minute per client address "
                                   "(several people may share one address)", min=0.01)
    client_burst: int = opt(30, "requests a client address may make at once", min=1)


# ----------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------

class TextError(MusicrlError, ValueError):
    """User-supplied text was refused; the message says why and what to do."""


# Bidirectional overrides/isolates can make a prompt display differently from what it is.
_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))
_WS = re.compile(r"\s+")
# Characters that do not occur in text a person typed: C0/C1 controls other than
# whitespace, unassigned code points, private use, lone surrogates, U+FFFD (a failed decode).
_GARBAGE_CATS = {"Cc", "Cn", "Co", "Cs"}
_GARBAGE_FRACTION = 0.1


def _is_garbage(ch: str) -> bool:
    if ch in "\n\r\t":
        return False
    return ch == "\ufffd" or unicodedata.category(ch) in _GARBAGE_CATS


def _clean_text(text: Any, *, what: str, max_chars: int) -> str:
    """Shared cleaning; returns the cleaned text (maybe empty) or raises TextError."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise TextError(f"The {what} is not readable text (it is not valid UTF-8). "
                            "Type it as plain text.") from None
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TextError(f"The {what} must be text, not {type(text).__name__}.")
    # Refuse huge inputs before doing any per-character work on them.
    if len(text) > 4 * max_chars + 64:
        raise TextError(f"The {what} is {len(text):,} characters long; the limit is "
                        f"{max_chars:,}. Please shorten it.")
    if "\x00" in text:
        raise TextError(f"The {what} contains binary data (a NUL byte). Type it as plain text.")
    if text:
        garbage = sum(_is_garbage(c) for c in text)
        if garbage and garbage >= max(1, _GARBAGE_FRACTION * len(text)):
            raise TextError(f"The {what} looks like binary data ({garbage} of {len(text)} "
                            "characters are control or invalid characters). "
                            "Type it as plain text.")
    text = unicodedata.normalize("NFC", text)
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append(" ")
        elif _is_garbage(ch) or ord(ch) in _BIDI:
            continue
        else:
            out.append(ch)
    cleaned = _WS.sub(" ", "".join(out)).strip()
    if len(cleaned) > max_chars:
        raise TextError(f"The {what} is {len(cleaned):,} characters long; the limit is "
                        f"{max_chars:,}. Please shorten it.")
    return cleaned


def clean_prompt(text: Any, max_chars: int = 300) -> str:
    """Returns ``text`` as a clean one-line prompt, or raises :class:`TextError`.

    Cleaning: UTF-8 bytes are decoded; newlines, CR and tabs become spaces; other control
    characters, bidi overrides, unassigned and private-use code points are removed; the
    text is NFC-normalised, runs of whitespace collapse to one space, ends are stripped.

    Refused (each with its own message): empty or whitespace-only text; text longer than
    ``max_chars`` after cleaning; text that is not valid UTF-8, contains NUL, or is at
    least 10% control/invalid characters (binary garbage).
    """
    cleaned = _clean_text(text, what="prompt", max_chars=max_chars)
    if not cleaned:
        raise TextError("The prompt is empty. Describe the music you want, e.g. "
                        "'a calm piano melody in C major'.")
    return cleaned


def clean_comment(text: Any, max_chars: int = 1000) -> str | None:
    """Like :func:`clean_prompt` for an optional vote comment; empty gives ``None``."""
    if text is None:
        return None
    cleaned = _clean_text(text, what="comment", max_chars=max_chars)
    return cleaned or None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Prefixes ``'`` to a string a spreadsheet would run as a formula (OWASP CSV injection).

    Strings starting with ``= + - @`` tab or CR get a leading apostrophe; other values are
    returned unchanged. Use on every text cell of an output meant for spreadsheets.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


# ----------------------------------------------------------------------------
# Rate limiting
# ----------------------------------------------------------------------------

class RateLimited(MusicrlError):
    """Too many requests; ``retry_after`` says how many seconds until one is allowed."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


@dataclasses.dataclass
class TokenBucket:
    """A token bucket: holds up to ``burst`` tokens, refilled at ``rate`` tokens per second."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` tokens are available (0 if they are now)."""
        return 0.0 if self.tokens >= cost else (cost - self.tokens) / self.rate


def _salt_from_env() -> bytes:
    value = os.environ.get(CLIENT_SALT_ENV)
    return value.encode() if value else secrets.token_bytes(16)


def hash_client(address: str, salt: bytes) -> str:
    """The salted SHA-256 of a client address (hex, 32 chars): the only form we keep."""
    return hmac.new(salt, address.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


class RateLimiter:
    """Token-bucket limits per browser session and per salted-hashed client address.

    A request is allowed only if both its session's and its client's bucket hold enough
    tokens; then both are charged, atomically (thread-safe). Buckets that have refilled
    completely are forgotten, so memory stays bounded by the number of active clients.

    Args:
      config: the limits (``session_*`` and ``client_*`` fields).
      salt: key for hashing client addresses; default ``$MUSICRL_CLIENT_SALT`` or random per
        process (hashes then differ across restarts, which only resets the limits).
      clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, config: SecurityConfig | None = None, *, salt: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.config = config or SecurityConfig()
        self._salt = salt if salt is not None else _salt_from_env()
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def _limits(self, kind: str) -> tuple[float, float]:
        c = self.config
        if kind == "session":
            return c.session_per_minute / 60.0, float(c.session_burst)
        return c.client_per_minute / 60.0, float(c.client_burst)

    def _bucket(self, kind: str, key: str, now: float) -> TokenBucket:
        b = self._buckets.get((kind, key))
        if b is None:
            rate, burst = self._limits(kind)
            b = self._buckets[(kind, key)] = TokenBucket(rate, burst, burst, now)
        else:
            b.refill(now)
        return b

    def _prune(self, now: float) -> None:
        for k in [k for k, b in self._buckets.items()
                  if b.tokens + (now - b.updated) * b.rate >= b.burst]:
            del self._buckets[k]

    def check(self, session: str | None, client: str | None, cost: float = 1.0) -> None:
        """Charges one request (of ``cost`` tokens) or raises :class:`RateLimited`.

        Args:
          session: the browser session id (e.g. Gradio's ``request.session_hash``), or None.
          client: the client address (e.g. ``request.client.host``), or None; it is hashed
            with the salt before it is used as a key and never kept in the clear.
        """
        keys = []
        if session:
            keys.append(("session", str(session)))
        if client:
            keys.append(("client", hash_client(str(client), self._salt)))
        now = self._clock()
        with self._lock:
            if len(self._buckets) > self._max_keys:
                self._prune(now)
            buckets = [self._bucket(kind, key, now) for kind, key in keys]
            wait = max((b.wait_for(cost) for b in buckets), default=0.0)
            if wait > 0:
                raise RateLimited(f"Too many requests; please wait {max(1, round(wait))} s "
                                  "and try again.", retry_after=wait)
            for b in buckets:
                b.tokens -= cost

    def allow(self, session: str | None, client: str | None, cost: float = 1.0) -> bool:
        """Like :meth:`check`, returning False instead of raising."""
        try:
            self.check(session, client, cost)
        except RateLimited:
            return False
        return True

    def known_keys(self) -> list[tuple[str, str]]:
        """The (kind, key) pairs held now; client keys are salted hashes (for tests/audits)."""
        with self._lock:
            return list(self._buckets)


# ----------------------------------------------------------------------------
# Admin authentication
# ----------------------------------------------------------------------------

class AdminAuthError(MusicrlError):
    """The admin token is unusable (e.g. too short); the message says how to set one."""


class AdminAuth:
    """Checks the admin token. No default: with no token configured, admin is disabled.

    Args:
      token: the token from the app config; ``None`` or empty falls back to
        ``$MUSICRL_ADMIN_TOKEN``; if that is unset or empty too, :attr:`enabled` is False and
        every check fails.
    """

    def __init__(self, token: str | None = None, *, env: dict[str, str] | None = None):
        env = os.environ if env is None else env
        token = token or env.get(ADMIN_TOKEN_ENV) or None
        if token is not None and len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise AdminAuthError(
                f"the admin token is {len(token)} characters; use at least "
                f"{MIN_ADMIN_TOKEN_CHARS}, e.g. export {ADMIN_TOKEN_ENV}=$(python -c "
                "'import secrets; print(secrets.token_urlsafe(24))')")
        self._token = token.encode("utf-8") if token else None

    @property
    def enabled(self) -> bool:
        """True when a token is configured (the admin area may be shown)."""
        return self._token is not None

    def check(self, supplied: str | None) -> bool:
        """True iff admin is enabled and ``supplied`` equals the token (constant time)."""
        if self._token is None or not isinstance(supplied, str):
            return False
        return hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"), self._token)

    def gradio_auth(self, username: str, password: str) -> bool:
        """A ``gr.Blocks.launch(auth=...)`` callable: any user name, the token as password."""
        return self.check(password)

    def __repr__(self) -> str:  # never print the token
        return f"AdminAuth(enabled={self.enabled})"
