"""Boundary checks: prompt cleaning, rate limiting, admin auth, spreadsheet escaping."""

from __future__ import annotations

import threading

import pytest

from app.security import (
    ADMIN_TOKEN_ENV,
    AdminAuth,
    AdminAuthError,
    RateLimited,
    RateLimiter,
    SecurityConfig,
    TextError,
    clean_comment,
    clean_prompt,
    hash_client,
    spreadsheet_safe,
)

# ----------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t\r\n", None, "\u202e \u2066"])
def test_empty_prompt_is_refused(text):
    with pytest.raises(TextError, match="empty"):
        clean_prompt(text)


def test_huge_prompt_is_refused_with_its_length():
    with pytest.raises(TextError, match=r"102,400 characters long; the limit is 300"):
        clean_prompt("a" * 102_400)


def test_length_limit_is_exact_and_configurable():
    assert clean_prompt("x" * 300) == "x" * 300
    with pytest.raises(TextError, match="301 characters"):
        clean_prompt("x" * 301)
    assert clean_prompt("y" * 40, max_chars=40) == "y" * 40
    with pytest.raises(TextError, match="the limit is 39"):
        clean_prompt("y" * 40, max_chars=39)
    # The limit applies after cleaning: collapsed whitespace does not count.
    assert clean_prompt("a" + " " * 500 + "b") == "a b"


@pytest.mark.parametrize("data", [
    bytes(range(256)),                          # not UTF-8
    b"\xff\xfe\x00\x00garbage",                # not UTF-8
    "piano\x00 melody",                         # NUL
    "".join(chr(c) for c in range(1, 32)) * 3,  # nothing but control characters
    "\x1b\x1b\x1b\x07\x08\x0e ab",              # mostly control characters
    "\ufffd" * 5 + "abc",                       # a failed decode
])
def test_binary_garbage_is_refused(data):
    with pytest.raises(TextError, match="binary|not readable|not valid UTF-8"):
        clean_prompt(data)


def test_control_characters_are_removed_and_newlines_become_spaces():
    raw = "A calm\n piano\r\nmelody\twith \x1b[31mstrings\x07,  in\u202e C major\u2066 "
    assert clean_prompt(raw) == "A calm piano melody with [31mstrings, in C major"


def test_prompt_is_nfc_normalised_and_keeps_unicode():
    decomposed = "cafe\u0301 jazz, 東京 🎹 ZWJ 👩\u200d🎤"
    cleaned = clean_prompt(decomposed)
    assert cleaned == "caf\u00e9 jazz, 東京 🎹 ZWJ 👩\u200d🎤"
    assert clean_prompt("café sax".encode()) == "café sax"  # UTF-8 bytes are decoded


def test_comment_cleaning():
    assert clean_comment(None) is None and clean_comment("  \n ") is None
    assert clean_comment("too\nloud") == "too loud"
    with pytest.raises(TextError, match="comment"):
        clean_comment("x" * 1001)


@pytest.mark.parametrize("cell, escaped", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+2", "'+1+2"),
    ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tcmd", "'\tcmd"), ("\rcmd", "'\rcmd"),
    ("piano =1", "piano =1"), ("", ""), (3, 3), (None, None),
])
def test_spreadsheet_safe(cell, escaped):
    assert spreadsheet_safe(cell) == escaped


# ----------------------------------------------------------------------------
# Rate limiting
# ----------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _limiter(clock, **kw):
    cfg = SecurityConfig(**{"session_per_minute": 6.0, "session_burst": 3,
                            "client_per_minute": 60.0, "client_burst": 5, **kw})
    return RateLimiter(cfg, salt=b"test-salt", clock=clock)


def test_session_bucket_allows_a_burst_then_refills():
    clock = Clock()
    rl = _limiter(clock)
    assert [rl.allow("s1", None) for _ in range(4)] == [True, True, True, False]
    with pytest.raises(RateLimited, match="wait 10 s") as e:
        rl.check("s1", None)
    assert e.value.retry_after == pytest.approx(10.0)  # 6 per minute: one every 10 s
    clock.t += 9.9
    assert not rl.allow("s1", None)
    clock.t += 0.1
    assert rl.allow("s1", None) and not rl.allow("s1", None)
    assert rl.allow("s2", None)  # another session has its own bucket
    clock.t += 1000
    assert [rl.allow("s1", None) for _ in range(4)] == [True, True, True, False]  # burst cap


def test_client_bucket_limits_many_sessions_from_one_address():
    clock = Clock()
    rl = _limiter(clock)
    allowed = [rl.allow(f"session-{k}", "203.0.113.7") for k in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    assert rl.allow("session-x", "198.51.100.1")  # another address is not affected


def test_a_refused_request_charges_nothing():
    clock = Clock()
    rl = _limiter(clock, client_burst=1, session_burst=5)
    assert rl.allow("s", "1.2.3.4")
    assert not rl.allow("s", "1.2.3.4")  # the client bucket is empty …
    assert rl.allow("s", "5.6.7.8")      # … and the session was not charged for the refusal
    assert rl.allow("s", "9.9.9.9") and rl.allow("s", "8.8.8.8") and rl.allow("s", "7.7.7.7")
    assert not rl.allow("s", "6.6.6.6")  # five charged: the session's burst is spent


def test_raw_addresses_are_never_kept():
    rl = _limiter(Clock())
    rl.check("s", "203.0.113.7")
    keys = rl.known_keys()
    assert ("client", hash_client("203.0.113.7", b"test-salt")) in keys
    assert not any("203.0.113.7" in k for _, k in keys)
    assert hash_client("203.0.113.7", b"other") != hash_client("203.0.113.7", b"test-salt")


def test_limiter_is_thread_safe():
    rl = _limiter(Clock(), session_burst=50)
    results = []
    lock = threading.Lock()

    def hammer():
        for _ in range(10):
            ok = rl.allow("one-session", None)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=hammer) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 50 and len(results) == 200


def test_idle_buckets_are_forgotten():
    clock = Clock()
    rl = RateLimiter(SecurityConfig(), salt=b"s", clock=clock, max_keys=10)
    for k in range(11):
        rl.check(f"s{k}", None)
    clock.t += 3600
    rl.check("new", None)
    assert rl.known_keys() == [("session", "new")]


# ----------------------------------------------------------------------------
# Admin auth
# ----------------------------------------------------------------------------

def test_admin_is_disabled_without_a_token():
    auth = AdminAuth(None, env={})
    assert not auth.enabled
    for guess in ("", "admin", "password", None, "None"):
        assert not auth.check(guess)
    assert not AdminAuth("", env={ADMIN_TOKEN_ENV: ""}).enabled


def test_admin_token_from_env_and_config():
    token = "correct-horse-battery-staple"
    auth = AdminAuth(None, env={ADMIN_TOKEN_ENV: token})
    assert auth.enabled and auth.check(token)
    assert not auth.check(token[:-1]) and not auth.check(token + "x") and not auth.check("")
    assert auth.gradio_auth("anyone", token) and not auth.gradio_auth(token, "nope")
    cfg = AdminAuth("config-token-0123456789", env={ADMIN_TOKEN_ENV: token})
    assert cfg.check("config-token-0123456789") and not cfg.check(token)
    assert token not in repr(auth)


def test_short_admin_token_is_refused_with_advice(monkeypatch):
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "admin")
    with pytest.raises(AdminAuthError, match="at least 16"):
        AdminAuth()
