"""Load benchmark of the web app over its HTTP API (Gradio's queue API, direct HTTP).

Runs against ``musicrl app`` servers on loopback that it starts itself (bounded in count and
time), serving the TEST GENERATOR (deterministic tones from tests/app/conftest.py, no
model), so it needs no trained weights. Two parts:

1. **Votes**: N clients (default 50), each with its own browser session, each gets a pair
   served (``/new_pair``) and votes on it (``/vote_*``), M times (default 20) → exactly
   N·M vote rows expected in the database, zero errors; p50/p95/max latency of the vote
   call and of pair serving.
2. **Queue**: a second server whose generator sleeps ``--gen-delay`` s per call (a stand-in
   for a slow model), one worker and a bounded queue; K concurrent ``/create`` requests
   (more than the bound) while V clients vote and read the leaderboard: a table of queue
   wait vs run time per request, the refusals beyond the bound, and the vote/leaderboard
   latency while the generator is saturated.

Clients speak Gradio's own HTTP protocol directly (``POST /gradio_api/queue/join``, then the
server-sent events of ``GET /gradio_api/queue/data``), each with its own random session hash,
exactly as the browser does: gradio_client would measure its own thread-and-polling
overhead as much as the server's (about 0.4 s per call on this loaded 2-core machine).

Prints tables; asserts only correctness (row count, zero errors), never times. Usage::

    python benchmarks/bench_app_load.py                 # 50 × 20 votes, 12 creates
    python benchmarks/bench_app_load.py --clients 10 --votes 5 --creates 6   # quick
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import random
import re
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.store import SqliteStore  # noqa: E402
from tests.app.conftest import AppServer, tone_systems  # noqa: E402

CHOICES = ("a", "b", "tie", "both_bad")


class Session:
    """One browser session talking to the app's Gradio queue API over HTTP."""

    def __init__(self, url: str, http, fns: dict[str, int]):
        self.url, self.http, self.fns = url, http, fns
        self.session_hash = secrets.token_hex(8)

    def call(self, api_name: str, *data):
        """Runs an event like the page would; returns its outputs or raises RuntimeError."""
        r = self.http.post(f"{self.url}/gradio_api/queue/join",
                           json={"data": list(data), "fn_index": self.fns[api_name],
                                 "session_hash": self.session_hash, "event_data": None,
                                 "trigger_id": None})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        with self.http.stream("GET", f"{self.url}/gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    if not msg.get("success"):
                        raise RuntimeError((msg.get("output") or {}).get("error") or str(msg))
                    return msg["output"]["data"]
        raise RuntimeError(f"{api_name}: the event stream ended without a result")


def _sessions(url: str, n: int) -> list[Session]:
    import httpx

    cfg = httpx.get(f"{url}/config", timeout=30).json()
    fns = {d["api_name"]: d["id"] for d in cfg["dependencies"] if d.get("api_name")}
    out = []
    for _ in range(n):
        http = httpx.Client(timeout=httpx.Timeout(120.0),
                            limits=httpx.Limits(max_connections=4))
        out.append(Session(url, http, fns))
    return out


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _row(name: str, xs: list[float]) -> str:
    ms = [1000 * x for x in xs]
    return (f"  {name:<24} {len(xs):>6} {_pct(ms, 50):>9.1f} {_pct(ms, 95):>9.1f} "
            f"{max(ms) if ms else float('nan'):>9.1f}")


def bench_votes(args: argparse.Namespace, work: Path) -> bool:
    server = AppServer(work / "votes", min_listen=0.0,
                       extra=["--arena-seconds", "1", "--rate-per-minute", "100000",
                              "--max-pending", "256"])
    print(f"server: {server.url}  db: {server.db}")
    print(f"  musicrl app --systems {server.systems} --db {server.db} --min-listen 0 "
          "--arena-seconds 1 --rate-per-minute 100000 --max-pending 256")
    deadline = time.monotonic() + args.time_limit
    lat_vote, lat_pair, errors = [], [], []
    lock = threading.Lock()

    clients = _sessions(server.url, args.clients)

    # Rounds: every client gets a pair served, then all vote at once (a barrier between the
    # phases), so the vote latencies are those of N concurrent votes, not of votes queued
    # behind pair generation on the same CPU core.
    barrier = threading.Barrier(args.clients)

    def worker(k: int) -> int:
        rng = random.Random(k)
        c = clients[k]
        done = 0
        for _ in range(args.votes):
            served = False
            if time.monotonic() < deadline:
                try:
                    t0 = time.perf_counter()
                    c.call("new_pair", "")
                    with lock:
                        lat_pair.append(time.perf_counter() - t0)
                    served = True
                except Exception as e:  # counted, never hidden
                    with lock:
                        errors.append(f"client {k} new_pair: {type(e).__name__}: {e}")
            else:
                with lock:
                    errors.append(f"client {k}: time limit reached")
            barrier.wait()
            if served:
                try:
                    # Listen times as the page's script reports them (min listen is 0 here);
                    # the last input is the session's server-side state (the page sends
                    # null for it too).
                    t1 = time.perf_counter()
                    c.call(f"vote_{rng.choice(CHOICES)}", 1.0, 1.0, "", None)
                    with lock:
                        lat_vote.append(time.perf_counter() - t1)
                    done += 1
                except Exception as e:
                    with lock:
                        errors.append(f"client {k} vote: {type(e).__name__}: {e}")
            barrier.wait()
        return done

    t0 = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(args.clients) as ex:
            cast = sum(ex.map(worker, range(args.clients)))
        print(f"  votes cast: {cast}")
        wall = time.perf_counter() - t0
        with SqliteStore(server.db, server.db.parent / "audio", create=False) as s:
            rows = s.votes()
            totals = s.totals()
    finally:
        server.stop()
    expected = args.clients * args.votes
    sessions = len({r.session_hash for r in rows})
    print(f"\n1) {args.clients} clients × {args.votes} rounds (each: a pair served to every "
          f"client, then all {args.clients} vote at once), {wall:.1f} s wall")
    print(f"  {'call':<24} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    print(_row(f"vote, {args.clients} at once", lat_vote))
    print(_row(f"new pair, {args.clients} at once", lat_pair))
    print(f"  vote rows in the database: {len(rows)} (expected {expected}); pairs "
          f"{totals['pairs']}; distinct sessions {sessions}; errors {len(errors)}")
    for e in errors[:5]:
        print(f"    error: {e}")
    return len(rows) == expected and not errors and sessions == args.clients


def bench_queue(args: argparse.Namespace, work: Path) -> bool:
    server = AppServer(work / "queue", min_listen=0.0,
                       systems=tone_systems(delay_s=args.gen_delay),
                       extra=["--arena-seconds", "1", "--rate-per-minute", "100000",
                              "--workers", "1", "--max-pending", str(args.max_pending)])
    print(f"\nserver: {server.url} (generator sleeps {args.gen_delay} s per call; 1 worker, "
          f"at most {args.max_pending} waiting)")
    try:
        # Voters get a pair served first, before the generator is saturated.
        voters = _sessions(server.url, args.voters)
        for v in voters:
            v.call("new_pair", "")
        creators = _sessions(server.url, args.creates)
        results: list[dict] = []
        lat_vote, lat_board, errors = [], [], []
        lock = threading.Lock()
        start = threading.Barrier(args.creates + args.voters)

        def create(k: int) -> None:
            start.wait()
            t0 = time.perf_counter()
            try:
                out = creators[k].call("create", f"bench prompt {k}", "tone-low", 1.0, k, 3.0,
                                       1.0, 1, 0.5)
                status = out[0]
                m = re.search(r"in ([\d.]+) s after ([\d.]+) s in the queue", status)
                res = {"k": k, "ok": True, "total": time.perf_counter() - t0,
                       "run": float(m.group(1)), "wait": float(m.group(2))}
            except Exception as e:
                res = {"k": k, "ok": False, "total": time.perf_counter() - t0,
                       "error": str(e)[:90]}
            with lock:
                results.append(res)

        def vote(k: int) -> None:
            start.wait()
            time.sleep(0.5 + 0.2 * k)  # while the creates are queued
            try:
                t0 = time.perf_counter()
                voters[k].call("vote_a", 1.0, 1.0, "", None)
                t1 = time.perf_counter()
                voters[k].call("leaderboard")
                t2 = time.perf_counter()
                with lock:
                    lat_vote.append(t1 - t0)
                    lat_board.append(t2 - t1)
            except Exception as e:
                with lock:
                    errors.append(f"voter {k}: {e}")

        with cf.ThreadPoolExecutor(args.creates + args.voters) as ex:
            futs = [ex.submit(create, k) for k in range(args.creates)]
            futs += [ex.submit(vote, k) for k in range(args.voters)]
            for f in futs:
                f.result(timeout=args.time_limit)
        with SqliteStore(server.db, server.db.parent / "audio", create=False) as s:
            votes = len(s.votes())
    finally:
        server.stop()
    ok = sorted((r for r in results if r["ok"]), key=lambda r: r["wait"])
    refused = [r for r in results if not r["ok"]]
    print(f"\n2) {args.creates} concurrent /create requests (1 clip of 1 s each) + {args.voters} "
          "voters during the burst")
    print(f"  {'request':>7} {'queue wait s':>13} {'run s':>7} {'total s':>8}   (run = the generation call)")
    for r in ok:
        print(f"  {r['k']:>7} {r['wait']:>13.2f} {r['run']:>7.2f} {r['total']:>8.2f}")
    for r in refused:
        print(f"  {r['k']:>7} refused after {r['total']:.2f} s: {r['error']}")
    print(f"  served {len(ok)}, refused {len(refused)} (queue bound {args.max_pending} "
          "waiting + 1 running)")
    print(f"  {'call during the burst':<24} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    print(_row("vote", lat_vote))
    print(_row("leaderboard", lat_board))
    print(f"  votes stored: {votes} of {args.voters}; voter errors {len(errors)}")
    for e in errors[:5]:
        print(f"    error: {e}")
    return not errors and votes == args.voters and len(ok) >= 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--votes", type=int, default=20, help="votes per client")
    p.add_argument("--creates", type=int, default=12, help="concurrent /create requests")
    p.add_argument("--voters", type=int, default=5, help="voters during the create burst")
    p.add_argument("--gen-delay", type=float, default=0.5,
                   help="seconds the test generator sleeps per call in part 2")
    p.add_argument("--max-pending", type=int, default=8, help="queue bound in part 2")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per part, at most")
    p.add_argument("--skip-votes", action="store_true")
    p.add_argument("--skip-queue", action="store_true")
    args = p.parse_args()
    print("bench_app_load: TEST GENERATOR (deterministic tones from tests/app/conftest.py, "
          "no trained model): measures the app, the store and the queue, not generation.")
    with tempfile.TemporaryDirectory(prefix="bench-app-") as d:
        work = Path(d)
        ok = True
        if not args.skip_votes:
            ok &= bench_votes(args, work)
        if not args.skip_queue:
            ok &= bench_queue(args, work)
    print("\nresult:", "OK" if ok else "FAILED (see above)")
    print(json.dumps({"ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
