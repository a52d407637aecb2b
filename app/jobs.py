"""A bounded job queue for generation, off the request threads (DESIGN §11).

Generation is slow (seconds to minutes on a CPU); votes, the leaderboard and the admin view
are fast. Gradio event handlers therefore never generate themselves: they :meth:`submit` a
job here and *await* it, so a slow generation holds neither a Gradio worker thread nor a
place in front of a vote. The queue is bounded: beyond ``max_pending`` waiting jobs a new
one is refused at once with :class:`QueueFull` (a message the user can act on) instead of
piling up unbounded work.

Each :class:`Job` records when it was submitted, started and finished, so the app can show
"queued 3.1 s, generated in 1.2 s" and the load benchmark can separate queue wait from run
time.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from musicrl.errors import MusicrlError

__all__ = ["Job", "JobQueue", "QueueFull"]


class QueueFull(MusicrlError):
    """The generation queue is at its bound; nothing was queued. Shown to the user as is."""


@dataclasses.dataclass(eq=False)
class Job:
    """One queued call. Times are ``time.monotonic()`` seconds."""

    id: int
    label: str
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    future: concurrent.futures.Future
    submitted: float
    started: float | None = None
    finished: float | None = None

    @property
    def queue_wait(self) -> float | None:
        """Seconds between submission and the start of the run (None while waiting)."""
        return None if self.started is None else self.started - self.submitted

    @property
    def run_seconds(self) -> float | None:
        """Seconds the call itself took (None until it finished)."""
        return None if self.finished is None or self.started is None \
            else self.finished - self.started

    def done(self) -> bool:
        """True once the call returned or raised."""
        return self.future.done()

    def result(self, timeout: float | None = None) -> Any:
        """The call's return value (re-raises its exception); blocks up to ``timeout``."""
        return self.future.result(timeout)

    async def wait(self, timeout: float | None = None) -> Any:
        """Awaits the result without blocking the event loop."""
        return await asyncio.wait_for(asyncio.wrap_future(self.future), timeout)


class JobQueue:
    """``workers`` threads running jobs first-in first-out, at most ``max_pending`` waiting.

    Args:
      workers: jobs run at the same time (1 suits a CPU: one generation already uses every
        core through XLA).
      max_pending: jobs that may wait; :meth:`submit` refuses more with :class:`QueueFull`.
      name: used in thread names and messages.
    """

    def __init__(self, workers: int = 1, max_pending: int = 16, name: str = "generate"):
        if workers < 1 or max_pending < 0:
            raise ValueError("workers must be >= 1 and max_pending >= 0")
        self.workers = workers
        self.max_pending = max_pending
        self.name = name
        self._pending: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        self._stopped = False
        self.completed = 0
        self.refused = 0
        self._threads = [threading.Thread(target=self._work, name=f"{name}-worker-{k}",
                                          daemon=True) for k in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any, label: str = "",
               **kwargs: Any) -> Job:
        """Queues ``fn(*args, **kwargs)``; raises :class:`QueueFull` when at the bound."""
        with self._cv:
            if self._stopped:
                raise QueueFull("The server is shutting down; try again in a moment.")
            if len(self._pending) >= self.max_pending:
                self.refused += 1
                raise QueueFull(f"The generator is busy ({len(self._pending)} requests are "
                                "waiting, the most this server queues). Please try again in "
                                "a minute.")
            job = Job(next(self._ids), label, fn, args, kwargs, concurrent.futures.Future(),
                      time.monotonic())
            self._pending.append(job)
            self._cv.notify()
        return job

    def position(self, job: Job) -> int:
        """Jobs ahead of ``job`` (waiting before it, plus running ones); 0 once it runs."""
        with self._cv:
            if job.started is not None:
                return 0
            ahead = 0
            for j in self._pending:
                if j is job:
                    return ahead + len(self._running)
                ahead += 1
            return 0

    def stats(self) -> dict[str, int]:
        """``pending``, ``running``, ``completed``, ``refused`` counts, and the bounds."""
        with self._cv:
            return {"pending": len(self._pending), "running": len(self._running),
                    "completed": self.completed, "refused": self.refused,
                    "workers": self.workers, "max_pending": self.max_pending}

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stopped:
                    self._cv.wait()
                if self._stopped and not self._pending:
                    return
                job = self._pending.popleft()
                job.started = time.monotonic()
                self._running.add(job)
            if job.future.set_running_or_notify_cancel():
                try:
                    value = job.fn(*job.args, **job.kwargs)
                except BaseException as e:  # delivered to the waiting request
                    job.finished = time.monotonic()
                    job.future.set_exception(e)
                else:
                    job.finished = time.monotonic()
                    job.future.set_result(value)
            with self._cv:
                self._running.discard(job)
                self.completed += 1

    def shutdown(self, wait: bool = True) -> None:
        """Stops taking jobs; waiting jobs still run. Joins the workers if ``wait``."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        if wait:
            for t in self._threads:
                t.join()
