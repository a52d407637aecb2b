"""Crash durability: every vote acknowledged before a SIGKILL is on disk, exactly once."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from app.store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]

THREADS = 4  # concurrent voters in the child, so kills also land inside group commits

# The child votes on the pairs named in a file from THREADS threads, printing each pair id
# only after record_vote returned (i.e. after its COMMIT): a printed id is an acknowledged
# vote.
CHILD = textwrap.dedent("""
    import sys, threading
    from app.store import SqliteStore, VoteError
    db, audio, ids = sys.argv[1:4]
    store = SqliteStore(db, audio)
    pairs = open(ids).read().split()
    out = threading.Lock()
    print("ready", flush=True)

    def voter(k):
        for i in range(k, len(pairs), THREADS):
            try:
                store.record_vote(pairs[i], "rater", ("a", "b", "tie", "both_bad")[i % 4],
                                  f"comment {i}", listen_a=1.0 * i, listen_b=2.0)
            except VoteError as e:
                assert e.reason == "already_voted", e
                continue
            with out:
                print(pairs[i], flush=True)

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""").replace("THREADS", str(THREADS))

def _kill_after_random_acks(db: Path, audio: Path, ids_file: Path, rng: random.Random
                            ) -> list[str]:
    """Runs the child, SIGKILLs it at a random moment, returns the acknowledged ids."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(audio), str(ids_file)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    acked = []
    target = rng.randint(5, 60)
    while len(acked) < target:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    time.sleep(rng.uniform(0, 0.02))  # land the kill anywhere inside a commit
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    acked += rest.split()  # printed (so acknowledged) before the kill
    assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed"
    return acked


def test_acknowledged_votes_survive_sigkill(tmp_path):
    db, audio = tmp_path / "prefs.sqlite", tmp_path / "audio"
    with SqliteStore(db, audio) as store:
        t = np.arange(1600) / 16000
        a = store.put_audio(0.2 * np.sin(2 * np.pi * 440 * t), 16000)
        b = store.put_audio(0.2 * np.sin(2 * np.pi * 660 * t), 16000)
        pairs = [store.record_pair("rater", f"prompt {i}", "x", "y", a, b, {}, {})
                 for i in range(600)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(pairs))
    rng = random.Random(1234)
    acked_all: list[str] = []
    for round_ in range(3):  # each round resumes on the same file after the previous crash
        acked = _kill_after_random_acks(db, audio, ids_file, rng)
        assert acked, "the child acknowledged nothing"
        acked_all += acked

        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = con.execute("SELECT pair_id, choice, comment, session_hash, created FROM votes"
                           ).fetchall()
        con.close()
        stored = [r[0] for r in rows]
        assert len(stored) == len(set(stored)), "a pair has two votes"
        missing = set(acked_all) - set(stored)
        assert not missing, f"{len(missing)} acknowledged votes were lost"
        # Only the votes in flight at each kill (one per thread) may be stored unacknowledged.
        assert len(set(stored) - set(acked_all)) <= THREADS * (round_ + 1)
        assert all(r[1] in ("a", "b", "tie", "both_bad") and r[2].startswith("comment ")
                   and len(r[3]) == 32 and r[4] > 0 for r in rows), "a partial row"
        assert len(acked_all) == len(set(acked_all))

    with SqliteStore(db, audio) as store:
        assert {v.pair_id for v in store.votes()} >= set(acked_all)
