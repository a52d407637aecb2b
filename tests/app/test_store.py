"""The preference store: content-addressed audio, votes exactly once, reads, threads."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import numpy as np
import pytest
import soundfile as sf

from app.store import PreferenceStore, SqliteStore, StoreError, VoteError

SR = 16_000


def _tone(seed: int, seconds: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t)).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "db" / "prefs.sqlite", tmp_path / "audio")
    yield s
    s.close()


def _pair(store: SqliteStore, session: str = "sess-1", seed: int = 0) -> str:
    a, b = store.put_audio(_tone(seed), SR), store.put_audio(_tone(seed + 1000), SR)
    return store.record_pair(session, "a calm piano", "base", "rl", a, b, {"t": 1.0}, {"t": 0.9})


def _audio_files(store: SqliteStore) -> list:
    return sorted(p for p in store.audio_dir.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------

def test_store_is_a_preference_store(store):
    assert isinstance(store, PreferenceStore)


def test_same_audio_same_id_one_file(store):
    x = _tone(1)
    a1 = store.put_audio(x, SR)
    a2 = store.put_audio(x.copy(), SR)
    b = store.put_audio(_tone(2), SR)
    assert a1 == a2 != b
    files = _audio_files(store)
    assert files == sorted([store.audio_path(a1), store.audio_path(b)])
    assert store.totals()["audio"] == 2
    # The id is the SHA-256 of the stored bytes, and the file decodes to the samples.
    data = store.audio_path(a1).read_bytes()
    assert hashlib.sha256(data).hexdigest() == a1
    y, sr = sf.read(store.audio_path(a1), dtype="float32")
    assert sr == SR and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1.0 / 32768 + 1e-6
    # No temporary files are left behind.
    assert not [p for p in store.audio_dir.rglob(".*")]


def test_int16_pcm_is_the_same_clip_as_float(store):
    x = np.round(_tone(3) * 32767).astype(np.int16)
    assert store.put_audio(x, SR) == store.put_audio(x.astype(np.float32) / 32768, SR)


@pytest.mark.parametrize("wav, sr", [
    (np.zeros(0, np.float32), SR),
    (np.full(100, np.nan, np.float32), SR),
    (np.zeros((2, 3, 4), np.float32), SR),
    (np.zeros(100, np.float32), 0),
    (np.zeros(100, np.float32), 16000.5),
    (np.array(["x"] * 10), SR),
])
def test_put_audio_refuses_bad_input(store, wav, sr):
    with pytest.raises(StoreError):
        store.put_audio(wav, sr)
    assert _audio_files(store) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x",
                                 "", None, "0" * 62 + "..", "/" + "0" * 63])
def test_audio_path_validates_ids(store, bad):
    with pytest.raises(StoreError):
        store.audio_path(bad)


def test_audio_path_is_inside_audio_dir(store):
    aid = store.put_audio(_tone(4), SR)
    p = store.audio_path(aid)
    assert p.resolve().is_relative_to(store.audio_dir.resolve()) and p.is_file()


def test_pairs_and_generations_need_stored_audio(store):
    a = store.put_audio(_tone(5), SR)
    with pytest.raises(StoreError, match="put_audio"):
        store.record_pair("s", "p", "x", "y", a, "f" * 64, {}, {})
    with pytest.raises(StoreError, match="put_audio"):
        store.record_generation("x", "p", "../x", 1.0, 1.0, "s", {})
    assert store.totals()["pairs"] == store.totals()["generations"] == 0


# ----------------------------------------------------------------------------
# Votes
# ----------------------------------------------------------------------------

def test_vote_is_stored_and_joined(store):
    pid = _pair(store)
    pair = store.get_pair(pid)
    assert pair.system_a == "base" and pair.settings_b == {"t": 0.9}
    v = store.record_vote(pid, "sess-1", "b", "  nicer\ndrums ", listen_a=4.5, listen_b=6.0)
    assert (v.pair_id, v.choice, v.comment) == (pid, "b", "nicer drums")
    [row] = store.votes()
    assert (row.pair_id, row.prompt, row.system_a, row.system_b, row.choice) == \
           (pid, "a calm piano", "base", "rl", "b")
    assert (row.audio_a, row.audio_b) == (pair.audio_a, pair.audio_b)
    assert row.session_hash == store.session_hash("sess-1") == pair.session_hash
    assert (row.listen_a, row.listen_b) == (4.5, 6.0) and row.time.endswith("+00:00")
    assert store.get_vote(pid) == v


def test_vote_refusals_store_nothing(store):
    pid = _pair(store)
    forged = "x" * 22

    def refused(reason, *args, **kw):
        with pytest.raises(VoteError) as e:
            store.record_vote(*args, **kw)
        assert e.value.reason == reason and str(e.value)
        assert store.votes() == [] or [v.choice for v in store.votes()] == ["tie"]

    # Refusals before the vote leave the pair votable by its own session.
    refused("other_session", pid, "sess-2", "a")
    refused("other_session", pid, "", "a")
    refused("unknown_pair", forged, "sess-1", "a")
    refused("unknown_pair", "../../etc/passwd", "sess-1", "a")
    refused("unknown_pair", None, "sess-1", "a")
    refused("bad_choice", pid, "sess-1", "A")
    refused("bad_choice", pid, "sess-1", "'; DROP TABLE votes; --")
    refused("bad_comment", pid, "sess-1", "a", "x" * 5000)
    refused("bad_comment", pid, "sess-1", "a", b"\xff\xfe\x00binary")
    refused("bad_listen_time", pid, "sess-1", "a", listen_a=-1.0)
    assert store.votes() == []
    store.record_vote(pid, "sess-1", "tie")
    # A second vote, by anyone, on the same pair is refused; the first is unchanged.
    refused("already_voted", pid, "sess-1", "a")
    refused("already_voted", pid, "sess-1", "tie")
    refused("other_session", pid, "sess-2", "b")
    [row] = store.votes()
    assert row.choice == "tie" and store.totals()["votes"] == 1


def test_pair_ids_are_random_and_unguessable(store):
    a, b = store.put_audio(_tone(6), SR), store.put_audio(_tone(7), SR)
    ids = [store.record_pair("s", "p", "x", "y", a, b, {}, {}) for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(len(i) >= 22 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                              "0123456789-_") for i in ids)
    assert store.get_pair("nonexistent-pair-id-000") is None
    assert store.get_pair("../../etc") is None


def test_raw_session_ids_are_not_stored(store, tmp_path):
    session = "browser-session-SECRET-1234"
    pid = _pair(store, session)
    store.record_vote(pid, session, "a")
    store.close()
    con = sqlite3.connect(tmp_path / "db" / "prefs.sqlite")
    dump = "\n".join(con.iterdump())
    con.close()
    assert session not in dump and "SECRET" not in dump


@pytest.mark.parametrize("group_commit", [True, False])
def test_concurrent_votes_on_one_pair_store_exactly_one(tmp_path, group_commit):
    store = SqliteStore(tmp_path / "p.sqlite", tmp_path / "audio", group_commit=group_commit)
    pid = _pair(store)
    barrier = threading.Barrier(12)
    results = []

    def vote(choice):
        barrier.wait()
        try:
            store.record_vote(pid, "sess-1", choice)
            results.append("ok")
        except VoteError as e:
            results.append(e.reason)

    threads = [threading.Thread(target=vote, args=("ab"[k % 2],)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["already_voted"] * 11 + ["ok"]
    assert store.totals()["votes"] == 1
    store.close()


@pytest.mark.parametrize("group_commit", [True, False])
def test_many_threads_write_every_vote(tmp_path, group_commit):
    store = SqliteStore(tmp_path / "p.sqlite", tmp_path / "audio", group_commit=group_commit)
    a, b = store.put_audio(_tone(8), SR), store.put_audio(_tone(9), SR)
    errors, n_threads, per = [], 8, 15

    def worker(k):
        try:
            for i in range(per):
                s = f"sess-{k}"
                pid = store.record_pair(s, f"prompt {k} {i}", "x", "y", a, b, {}, {})
                store.record_vote(pid, s, "a" if i % 2 else "b")
                with pytest.raises(VoteError):  # refusals share batches with good writes
                    store.record_vote(pid, "intruder", "a")
        except Exception as e:  # noqa: BLE001 - the test reports any failure
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.votes()) == n_threads * per
    assert len({v.pair_id for v in store.votes()}) == n_threads * per
    assert all(v.session_hash != store.session_hash("intruder") for v in store.votes())
    store.close()


# ----------------------------------------------------------------------------
# Ratings and aggregates
# ----------------------------------------------------------------------------

def test_ratings(store):
    a = store.put_audio(_tone(10), SR)
    store.record_rating("s1", a, 4, "lofi beat")
    store.record_rating("s2", a, 2, "lofi beat")
    store.record_rating("s1", a, 5, "lofi beat")  # re-rating replaces
    assert sorted((r.session_hash, r.rating) for r in store.ratings()) == sorted(
        [(store.session_hash("s1"), 5), (store.session_hash("s2"), 2)])
    for bad in (0, 6, 2.5, True, "5"):
        with pytest.raises(StoreError):
            store.record_rating("s3", a, bad, "lofi beat")
    with pytest.raises(StoreError):
        store.record_rating("s3", "0" * 64, 3, "lofi beat")
    assert len(store.ratings()) == 2


def test_counts_and_generation_speed(store):
    t = [1_700_000_000.0]  # 2023-11-14 22:13:20 UTC
    s = SqliteStore(store.db_path, store.audio_dir, clock=lambda: t[0])
    a, b = s.put_audio(_tone(11), SR), s.put_audio(_tone(12), SR)
    s.record_generation("base", "p", a, 10.0, 4.0, "u", {"seed": np.int64(3)})
    s.record_generation("base", "p", b, 10.0, 6.0, "u", {})
    s.record_generation("rl", "p", b, 5.0, 1.0, "u", {})
    p1 = s.record_pair("u", "p", "base", "rl", a, b, {}, {})
    s.record_vote(p1, "u", "a")
    t[0] += 86_400
    s.record_pair("u", "p", "rl", "rl", a, b, {}, {})
    assert s.counts_by_system_day() == [
        {"day": "2023-11-14", "system": "base", "generations": 2, "pairs": 1, "votes": 1},
        {"day": "2023-11-14", "system": "rl", "generations": 1, "pairs": 1, "votes": 1},
        {"day": "2023-11-15", "system": "rl", "generations": 0, "pairs": 1, "votes": 0},
    ]
    speed = s.generation_speed()
    assert speed["base"]["clips"] == 2 and speed["base"]["rtf"] == pytest.approx(2.0)
    assert speed["rl"] == {"clips": 1, "rtf": 5.0, "seconds_audio": 5.0, "seconds_wall": 1.0}
    s.close()


def test_bad_settings_and_text_are_refused(store):
    a = store.put_audio(_tone(13), SR)
    with pytest.raises(StoreError, match="JSON"):
        store.record_generation("x", "p", a, 1.0, 1.0, "s", {"f": object()})
    with pytest.raises(StoreError, match="JSON"):
        store.record_generation("x", "p", a, 1.0, 1.0, "s", {"f": float("nan")})
    with pytest.raises(StoreError, match="prompt"):
        store.record_pair("s", "  ", "x", "y", a, a, {}, {})
    with pytest.raises(StoreError, match="session"):
        store.record_pair("", "p", "x", "y", a, a, {}, {})
    assert store.totals()["generations"] == store.totals()["pairs"] == 0
