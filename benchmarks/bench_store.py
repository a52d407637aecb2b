"""Concurrent vote writing into the preference store (app/store/): rows, errors, latency.

A program, not a test: it prints a table and never asserts a time.

    python benchmarks/bench_store.py                 # 50 threads x 20 votes
    python benchmarks/bench_store.py --threads 100 --votes 10 --db /tmp/bench.sqlite

Each writer thread stands for one browser session: it is served ``--votes`` pairs
(record_pair, before the clock starts), waits at a barrier with the others, then votes on
them one after another, timing each ``record_vote`` (durable: WAL, synchronous=FULL, the
call returns after its COMMIT). The run is correct when rows = threads × votes, every pair
has one vote, integrity_check is ok and no call raised. A second phase replays every vote:
all must be refused as already_voted, storing nothing.

Both store modes are measured on fresh databases: group commit (the default: concurrent
writes share one COMMIT/fsync, each in its own SAVEPOINT) and one transaction per write.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.store import SqliteStore, VoteError  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=50, help="concurrent writers (default 50)")
    p.add_argument("--votes", type=int, default=20, help="votes per writer (default 20)")
    p.add_argument("--db", default=None,
                   help="database file name stem: PATH-group.sqlite and PATH-single.sqlite are "
                        "(re)created (default: a temporary folder, removed afterwards)")
    return p.parse_args(argv)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def _run(store: SqliteStore, work: dict[int, list[str]]
         ) -> tuple[list[float], list[str], list[str], float]:
    """All threads vote on their pairs at once; returns latencies, errors, refusals, wall."""
    n = len(work)
    barrier = threading.Barrier(n + 1)
    lat: list[float] = []
    errors: list[str] = []
    refusals: list[str] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        mine, err, ref = [], [], []
        barrier.wait()
        for i, pid in enumerate(work[k]):
            t0 = time.perf_counter()
            try:
                store.record_vote(pid, f"session-{k}", ("a", "b", "tie", "both_bad")[i % 4])
            except VoteError as e:
                ref.append(e.reason)
            except Exception as e:  # noqa: BLE001 - a benchmark reports every failure
                err.append(f"{type(e).__name__}: {e}")
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
            errors.extend(err)
            refusals.extend(ref)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return lat, errors, refusals, time.perf_counter() - t0


def _count(db: Path) -> tuple[int, int, str]:
    con = sqlite3.connect(db)
    try:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT pair_id) FROM votes").fetchone()
        return n, distinct, con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _mode(db: Path, threads: int, votes: int, group_commit: bool) -> tuple[list[tuple], bool]:
    """One mode on a fresh database: table rows and whether the counts are right."""
    store = SqliteStore(db, db.parent / "bench-audio", group_commit=group_commit)
    t = np.arange(1600) / 16000
    a = store.put_audio(0.2 * np.sin(2 * np.pi * 440 * t), 16000)
    b = store.put_audio(0.2 * np.sin(2 * np.pi * 550 * t), 16000)
    work = {k: [store.record_pair(f"session-{k}", f"prompt {k}/{i}", "sys-x", "sys-y", a, b,
                                  {}, {}) for i in range(votes)]
            for k in range(threads)}
    expected = threads * votes
    lat, errors, refusals, wall = _run(store, work)
    rows1 = _count(db)
    lat2, errors2, refusals2, wall2 = _run(store, work)  # every one must be refused
    rows2 = _count(db)
    store.close()
    name = "group commit" if group_commit else "txn per write"
    table = [(f"{name}: first votes", lat, errors, refusals, wall, rows1[0]),
             (f"{name}: replayed", lat2, errors2, refusals2, wall2, rows2[0] - rows1[0])]
    ok = (rows1[:2] == rows2[:2] == (expected, expected) and rows2[2] == "ok"
          and not errors and not errors2 and not refusals
          and len(refusals2) == expected and set(refusals2) == {"already_voted"})
    for e in (errors + errors2)[:3]:
        print("  error:", e)
    return table, ok


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    base = Path(args.db) if args.db else tmp / "prefs.sqlite"
    try:
        results, oks = [], []
        for group_commit in (True, False):
            db = base.with_name(f"{base.stem}-{'group' if group_commit else 'single'}"
                                f"{base.suffix}")
            for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                f.unlink(missing_ok=True)
            rows, ok = _mode(db, args.threads, args.votes, group_commit)
            results += rows
            oks.append(ok)
        expected = args.threads * args.votes
        print(f"preference store: {args.threads} writer threads x {args.votes} votes = "
              f"{expected} (SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL)\n")
        head = (f"{'phase':<30}{'calls':>7}{'stored':>8}{'errors':>8}{'refused':>9}"
                f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'calls/s':>9}")
        print(head)
        print("-" * len(head))
        for name, ls, errs, refs, w, stored in results:
            ms = [x * 1000 for x in ls]
            print(f"{name:<30}{len(ls):>7}{stored:>8}{len(errs):>8}{len(refs):>9}"
                  f"{_pct(ms, 50):>9.2f}{_pct(ms, 95):>9.2f}{_pct(ms, 99):>9.2f}"
                  f"{max(ms):>9.2f}{len(ls) / w:>9.0f}")
        g, single = results[0], results[2]
        print(f"\ngroup commit vs one transaction per write: "
              f"{(len(g[1]) / g[4]) / (len(single[1]) / single[4]):.1f}x the vote rate, "
              f"p95 latency {_pct(g[1], 95) / _pct(single[1], 95):.2f}x")
        print("result: " + ("OK: in both modes every vote stored exactly once, replays refused, "
                            "no errors, integrity_check ok" if all(oks) else
                            "WRONG: see the counts above"))
        return 0 if all(oks) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
