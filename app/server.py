"""The web app's server side (DESIGN §11): configuration, the request logic, and ``serve``.

:class:`AppCore` holds everything a request needs — the preference store, the system
registry, the bounded generation queue, the rate limiter and the admin check — and
implements each user action as a plain method that either returns a result or raises
:class:`AppError` with a message for the user. It imports no Gradio, so it is tested
directly; :mod:`app.ui` lays out the Gradio views over it and :func:`serve` starts both.

Rules every action follows:

* rate limits (per browser session and per salted client-address hash) and prompt/comment
  cleaning from :mod:`app.security` run first; a refusal stores nothing;
* generation is submitted to :class:`app.jobs.JobQueue` and awaited, never run on a
  request thread, so votes and the leaderboard stay fast while the generator is busy;
* the arena's pair id lives in per-session server state (``gr.State``), is checked against
  the session by the store, and a vote needs the minimum listening time, both as reported
  by the browser and as elapsed on the server since the clips were served.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.export import FORMATS, ExportError, export
from app.jobs import Job, JobQueue, QueueFull
from app.leaderboard import leaderboard
from app.security import (
    AdminAuth,
    RateLimited,
    RateLimiter,
    SecurityConfig,
    TextError,
    clean_comment,
    clean_prompt,
)
from app.store import CHOICES, SqliteStore, StoreError, VoteError
from app.systems import SystemRegistry, SystemUnavailable
from musicrl.errors import MusicrlError

__all__ = ["AppConfig", "AppCore", "AppError", "ArenaPair", "Clip", "build_core", "main",
           "serve"]

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_DB = Path("runs/app/prefs.sqlite")
CHOICE_LABELS = {"a": "A is better", "b": "B is better", "tie": "a tie",
                 "both_bad": "both are bad"}


class AppError(MusicrlError):
    """A request was refused or failed; ``str(e)`` is shown to the user as is."""


@dataclasses.dataclass
class AppConfig:
    """Settings of one app instance (the ``musicrl app`` flags)."""

    db_path: Path = DEFAULT_DB
    audio_dir: Path | None = None          # default: <db folder>/audio
    min_listen_seconds: float = 3.0        # each arena clip, before voting is enabled
    arena_seconds: float = 5.0             # length of arena clips
    default_seconds: float = 5.0           # Create view default duration
    max_seconds: float = 30.0              # longest clip a user may ask for
    max_variations: int = 4
    workers: int = 1                       # generations running at once
    max_pending: int = 16                  # generations waiting at most
    leaderboard_rounds: int = 200          # bootstrap resamples for the intervals
    prompts_file: Path | None = None       # arena prompt set (one per line); default bundled
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    admin_token: str | None = None         # default: $MUSICRL_ADMIN_TOKEN; none disables admin
    work_dir: Path | None = None           # downloads/exports; default a new temp folder

    def resolved_audio_dir(self) -> Path:
        return Path(self.audio_dir) if self.audio_dir else Path(self.db_path).parent / "audio"


@dataclasses.dataclass(frozen=True)
class Clip:
    """One generated clip as the UI shows it."""

    audio_id: str
    audio_path: Path        # the stored FLAC (played in the page)
    wav_path: Path          # download copies with readable names
    flac_path: Path
    spectrogram: Path       # PNG
    seconds: float


@dataclasses.dataclass(frozen=True)
class CreateResult:
    clips: list[Clip]
    system: str
    settings: dict
    run_seconds: float      # the generation call (queue wait is on the job)


@dataclasses.dataclass(frozen=True)
class ArenaPair:
    """What the arena keeps in the session's server state between serving and voting."""

    pair_id: str
    prompt: str
    system_a: str
    system_b: str
    clip_a: Path
    clip_b: Path
    served_at: float          # time.monotonic() when the clips were handed to the page
    queue_wait: float = 0.0
    run_seconds: float = 0.0


def load_prompts(path: Path | None) -> list[str]:
    """Prompts from a text file (one per line; blank lines and ``#`` comments skipped)."""
    p = Path(path) if path else ASSETS / "prompts.txt"
    if not p.is_file():
        raise AppError(f"prompt set {p} does not exist")
    prompts = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            prompts.append(line)
    if not prompts:
        raise AppError(f"prompt set {p} holds no prompts (one per line)")
    return prompts


def _spectrogram_png(wav: np.ndarray, sr: int, path: Path) -> None:
    """A log-magnitude spectrogram (dB) of ``wav`` as a small PNG (matplotlib, no pyplot)."""
    from matplotlib.figure import Figure

    n_fft, hop = 1024, 256
    x = np.asarray(wav, np.float32)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft)[None, :], axis=1)).T
    db = 20 * np.log10(np.maximum(spec, 1e-5))
    db = np.maximum(db, db.max() - 80)
    fig = Figure(figsize=(6, 2.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
              extent=(0, x.size / sr, 0, sr / 2000))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


class AppCore:
    """The app's request logic over the store, the registry and the job queue.

    Args:
      config: the app settings.
      registry: the systems to serve.
      store: the preference store (default: :class:`SqliteStore` at ``config.db_path``).
    """

    def __init__(self, config: AppConfig, registry: SystemRegistry,
                 store: SqliteStore | None = None):
        self.config = config
        self.registry = registry
        self.store = store or SqliteStore(config.db_path, config.resolved_audio_dir())
        self.jobs = JobQueue(config.workers, config.max_pending)
        self.limiter = RateLimiter(config.security)
        self.auth = AdminAuth(config.admin_token)
        self.prompts = load_prompts(config.prompts_file)
        self._own_work_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="musicrl-app-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._rng = random.SystemRandom()
        self._board_cache: tuple[Any, list] | None = None
        self._board_lock = threading.Lock()

    # -- shared checks ---------------------------------------------------------

    def check_rate(self, session: str | None, client: str | None, cost: float = 1.0) -> None:
        """Charges one request to the session and the client, or raises :class:`AppError`."""
        if not session:
            raise AppError("Your browser session is not known to the server; reload the page.")
        try:
            self.limiter.check(session, client, cost)
        except RateLimited as e:
            raise AppError(str(e)) from None

    def clean_prompt(self, prompt: Any) -> str:
        try:
            return clean_prompt(prompt, self.config.security.max_prompt_chars)
        except TextError as e:
            raise AppError(str(e)) from None

    def random_prompt(self) -> str:
        """A prompt drawn from the prompt set."""
        return self._rng.choice(self.prompts)

    # -- Create ----------------------------------------------------------------

    def submit_create(self, session: str | None, client: str | None, prompt: Any, system: Any,
                      seconds: Any, seed: Any, guidance: Any, temperature: Any,
                      variations: Any, mix: Any = None) -> Job:
        """Validates a Create request and queues it; the job returns a :class:`CreateResult`."""
        self.check_rate(session, client)
        text = self.clean_prompt(prompt)
        if system not in self.registry.specs:
            raise AppError(f"Unknown system {str(system)[:40]!r}; choose one from the list.")
        c = self.config
        seconds = self._number(seconds, "Duration", 1.0, c.max_seconds)
        seed = int(self._number(seed, "Seed", 0, 2**31 - 1))
        guidance = self._number(guidance, "Guidance", 0.0, 20.0)
        temperature = self._number(temperature, "Temperature", 0.05, 5.0)
        n = int(self._number(variations, "Variations", 1, c.max_variations))
        merge = self.registry.merge
        if merge is not None and merge.system == system and mix is not None:
            mix = self._number(mix, "Quality ↔ diversity", 0.0, 1.0)
        else:
            mix = None
        try:
            return self.jobs.submit(self._run_create, session, text, system, seconds, seed,
                                    guidance, temperature, n, mix, label=f"create {system}")
        except QueueFull as e:
            raise AppError(str(e)) from None

    @staticmethod
    def _number(value: Any, what: str, lo: float, hi: float) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise AppError(f"{what} must be a number.") from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise AppError(f"{what} must be between {lo:g} and {hi:g}; got {value!r}.")
        return v

    def _run_create(self, session: str, prompt: str, system: str, seconds: float, seed: int,
                    guidance: float, temperature: float, n: int,
                    mix: float | None) -> CreateResult:
        t0 = time.perf_counter()
        audio, sr, settings = self._generate(system, [prompt] * n, seconds, seed,
                                             guidance=guidance, temperature=temperature, mix=mix)
        wall = time.perf_counter() - t0
        clips = [self._keep(system, prompt, row, sr, wall / n, session,
                            {**settings, "variation": k}) for k, row in enumerate(audio)]
        return CreateResult(clips, system, settings, wall)

    def _generate(self, system: str, prompts: list[str], seconds: float, seed: int,
                  **kw: Any) -> tuple[np.ndarray, int, dict]:
        try:
            return self.registry.generate(system, prompts, seconds, seed, **kw)
        except SystemUnavailable as e:
            raise AppError(f"System {system} is not available: {e}") from None
        except MusicrlError as e:  # e.g. the pipeline refusing a setting: the user can fix it
            raise AppError(f"{system}: {e}") from None

    def _keep(self, system: str, prompt: str, wav: np.ndarray, sr: int, wall: float,
              session: str, settings: dict) -> Clip:
        """Stores one clip and its generation record; writes its downloads and spectrogram."""
        import soundfile as sf

        audio_id = self.store.put_audio(wav, sr)
        seconds = wav.shape[-1] / sr
        self.store.record_generation(system, prompt, audio_id, seconds, wall, session, settings)
        folder = self.work_dir / "clips" / audio_id[:2]
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"musicrl-{audio_id[:12]}"
        wav_path, flac_path = folder / f"{stem}.wav", folder / f"{stem}.flac"
        png = folder / f"{stem}.png"
        if not wav_path.exists():
            tmp = folder / f".{stem}.wav.tmp"
            sf.write(tmp, np.clip(wav, -1, 1), sr, format="WAV", subtype="PCM_16")
            os.replace(tmp, wav_path)
        if not flac_path.exists():
            shutil.copyfile(self.store.audio_path(audio_id), flac_path)
        if not png.exists():
            _spectrogram_png(wav, sr, png)
        return Clip(audio_id, self.store.audio_path(audio_id), wav_path, flac_path, png, seconds)

    # -- Arena -----------------------------------------------------------------

    def submit_pair(self, session: str | None, client: str | None, prompt: Any) -> Job:
        """Queues a new arena pair; the job returns ``(pair_id, prompt, systems, paths)``.

        An empty prompt draws one from the prompt set. Two different systems are drawn at
        random and shown in random order; both use the same random seed.
        """
        self.check_rate(session, client)
        names = self.registry.names
        if len(names) < 2:
            raise AppError("The arena needs at least two systems; add one to the systems file.")
        text = self.clean_prompt(prompt) if str(prompt or "").strip() else self.random_prompt()
        system_a, system_b = self._rng.sample(names, 2)
        seed = self._rng.randrange(2**31)
        try:
            return self.jobs.submit(self._run_pair, session, text, system_a, system_b, seed,
                                    label="arena pair")
        except QueueFull as e:
            raise AppError(str(e)) from None

    def _run_pair(self, session: str, prompt: str, system_a: str, system_b: str,
                  seed: int) -> dict:
        seconds = self.config.arena_seconds
        out = {}
        for slot, system in (("a", system_a), ("b", system_b)):
            t0 = time.perf_counter()
            audio, sr, settings = self._generate(system, [prompt], seconds, seed)
            wall = time.perf_counter() - t0
            audio_id = self.store.put_audio(audio[0], sr)
            self.store.record_generation(system, prompt, audio_id, audio.shape[1] / sr, wall,
                                         session, settings)
            out[slot] = (audio_id, settings)
        pair_id = self.store.record_pair(session, prompt, system_a, system_b, out["a"][0],
                                         out["b"][0], out["a"][1], out["b"][1])
        return {"pair_id": pair_id, "prompt": prompt, "system_a": system_a,
                "system_b": system_b, "clip_a": self.store.audio_path(out["a"][0]),
                "clip_b": self.store.audio_path(out["b"][0])}

    def serve_pair(self, job: Job) -> ArenaPair:
        """The state to keep for a finished pair job; its clips count as served *now*."""
        r = job.result()
        return ArenaPair(r["pair_id"], r["prompt"], r["system_a"], r["system_b"], r["clip_a"],
                         r["clip_b"], time.monotonic(), job.queue_wait or 0.0,
                         job.run_seconds or 0.0)

    def listen_ok(self, pair: ArenaPair | None, listen_a: Any, listen_b: Any,
                  now: float | None = None) -> tuple[bool, str]:
        """Whether voting may be enabled: both clips heard ``min_listen_seconds``.

        The browser reports how long each clip played; the server also requires that at
        least that long has passed since it served the pair (a client cannot claim more
        listening than there was time for).
        """
        if pair is None:
            return False, "Load a pair first."
        need = self.config.min_listen_seconds
        elapsed = (time.monotonic() if now is None else now) - pair.served_at
        la, lb = _seconds(listen_a), _seconds(listen_b)
        if elapsed + 1e-6 < need:
            return False, f"Listen to both clips for at least {need:g} s before voting."
        if la is None or lb is None or min(la, lb) + 1e-6 < need:
            return False, (f"Listen to both clips for at least {need:g} s before voting "
                           f"(heard A {la or 0:.1f} s, B {lb or 0:.1f} s).")
        return True, ""

    def vote(self, session: str | None, client: str | None, pair: ArenaPair | None,
             choice: str, comment: Any, listen_a: Any, listen_b: Any) -> dict:
        """Records the session's vote on its served pair; returns the revealed identities."""
        self.check_rate(session, client)
        if pair is None:
            raise AppError("There is no comparison to vote on; click 'New pair' first.")
        if choice not in CHOICES:
            raise AppError("Choose A, B, tie or both bad.")
        ok, why = self.listen_ok(pair, listen_a, listen_b)
        if not ok:
            raise AppError(why)
        elapsed = time.monotonic() - pair.served_at
        # Keep what the browser said, but never more than the time since serving.
        la = min(_seconds(listen_a), elapsed)
        lb = min(_seconds(listen_b), elapsed)
        try:
            comment = clean_comment(comment, self.config.security.max_comment_chars)
        except TextError as e:
            raise AppError(str(e)) from None
        try:
            vote = self.store.record_vote(pair.pair_id, session, choice, comment,
                                          listen_a=round(la, 3), listen_b=round(lb, 3))
        except VoteError as e:
            raise AppError(str(e)) from None
        return {"vote_id": vote.id, "pair_id": pair.pair_id, "choice": choice,
                "system_a": pair.system_a, "system_b": pair.system_b}

    # -- Leaderboard -----------------------------------------------------------

    LEADERBOARD_HEADERS = ["rank", "system", "score", "95% CI", "votes", "wins", "losses",
                           "ties", "both bad", "win rate", "clips", "real-time factor"]

    def leaderboard_rows(self) -> list[list]:
        """Bradley–Terry scores (bootstrap CIs), vote counts and generation speed per system.

        Recomputed only when votes were added (cached on the vote count)."""
        votes = self.store.votes()
        speed = self.store.generation_speed()
        key = (len(votes), votes[-1].vote_id if votes else None, tuple(
            (s, v["clips"]) for s, v in sorted(speed.items())))
        with self._board_lock:
            if self._board_cache and self._board_cache[0] == key:
                return self._board_cache[1]
        table = leaderboard(votes, rounds=self.config.leaderboard_rounds)
        rows = []
        seen = set()
        for r in table:
            seen.add(r["system"])
            sp = speed.get(r["system"], {})
            ci = ("—" if r["ci_low"] is None
                  else f"{r['ci_low']:.0f} – {r['ci_high']:.0f}")
            rows.append([r["rank"], r["system"], round(r["score"], 1), ci, r["votes"], r["wins"],
                         r["losses"], r["ties"], r["both_bad"],
                         "—" if r["win_rate"] is None else f"{r['win_rate']:.0%}",
                         sp.get("clips", 0), _rtf(sp.get("rtf"))])
        for name in sorted(set(self.registry.names) | set(speed)):
            if name not in seen:
                sp = speed.get(name, {})
                rows.append(["—", name, "—", "—", 0, 0, 0, 0, 0, "—", sp.get("clips", 0),
                             _rtf(sp.get("rtf"))])
        with self._board_lock:
            self._board_cache = (key, rows)
        return rows

    # -- Data (admin) ----------------------------------------------------------

    def require_admin(self, session: str | None, client: str | None, token: Any) -> None:
        """Raises :class:`AppError` unless ``token`` is the admin token (rate-limited)."""
        # Admin attempts cost more, so guessing the token is slow even within the limits.
        self.check_rate(session, client, cost=2.0)
        if not self.auth.enabled:
            raise AppError("The admin area is disabled: start the app with "
                           "MUSICRL_ADMIN_TOKEN set (at least 16 characters).")
        if not self.auth.check(token if isinstance(token, str) else None):
            raise AppError("Admin token required: the token is missing or wrong.")

    COUNT_HEADERS = ["day (UTC)", "system", "generations", "pairs", "votes"]

    def admin_counts(self, session: str | None, client: str | None,
                     token: Any) -> tuple[list[list], dict]:
        """Counts by system and day, and the store's totals (admin only)."""
        self.require_admin(session, client, token)
        rows = [[r["day"], r["system"], r["generations"], r["pairs"], r["votes"]]
                for r in self.store.counts_by_system_day()]
        return rows, self.store.totals()

    def admin_export(self, session: str | None, client: str | None, token: Any,
                     formats: Sequence[str], with_audio: bool) -> tuple[list[Path], str]:
        """Exports the votes into a new folder; returns its files and a summary (admin only)."""
        self.require_admin(session, client, token)
        formats = [f for f in (formats or []) if f in FORMATS]
        if not formats:
            raise AppError(f"Choose at least one export format ({', '.join(FORMATS)}).")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        out = Path(tempfile.mkdtemp(prefix=f"export-{stamp}-", dir=self.work_dir))
        try:
            report = export(self.store, out, formats, with_audio=bool(with_audio))
        except (ExportError, StoreError) as e:
            raise AppError(f"Export failed: {e}") from None
        # The admin sees the export's folder name, not the server's file system layout.
        return list(report.files), report.summary().replace(str(report.out_dir),
                                                             report.out_dir.name)

    def close(self) -> None:
        """Stops the queue (finishing queued jobs), closes the store, removes temp files."""
        self.jobs.shutdown(wait=True)
        self.store.close()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _seconds(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _rtf(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


# ----------------------------------------------------------------------------
# Starting the server
# ----------------------------------------------------------------------------

def build_core(systems: str | Path | None = None, db: str | Path | None = None,
               **config: Any) -> AppCore:
    """An :class:`AppCore` from a systems file (default: the bundled systems) and a db path."""
    registry = SystemRegistry.from_file(systems) if systems else SystemRegistry.default()
    cfg = AppConfig(db_path=Path(db) if db else DEFAULT_DB, **config)
    return AppCore(cfg, registry)


def serve(core: AppCore, host: str = "127.0.0.1", port: int = 7860, *,
          block: bool = True, quiet: bool = False) -> Any:
    """Builds the Gradio app over ``core`` and serves it on ``host:port``.

    Binds to loopback unless ``host`` says otherwise. With ``block=False`` returns the
    launched ``gr.Blocks`` (call ``.close()`` to stop it).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.ui import build_ui, launch_kwargs

    demo = build_ui(core)
    kwargs = launch_kwargs(core)
    if not quiet:
        where = "all interfaces" if host in ("0.0.0.0", "::") else host
        print(f"musicrl app: http://{host}:{port} (bound to {where}); systems: "
              f"{', '.join(core.registry.names)} from {core.registry.source}; "
              f"database {core.store.db_path}; admin "
              f"{'enabled' if core.auth.enabled else 'disabled (set MUSICRL_ADMIN_TOKEN)'}",
              flush=True)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                quiet=True, **kwargs)
    return demo


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``musicrl app`` flags (shared by ``python -m app.server``)."""
    p.add_argument("--systems", default=None,
                   help="systems file (JSON or TOML; default: the bundled small model at "
                        "guidance 3 and 1)")
    p.add_argument("--db", default=str(DEFAULT_DB),
                   help=f"preference database (default {DEFAULT_DB}; audio goes to "
                        "<its folder>/audio)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--min-listen", type=float, default=3.0, metavar="S",
                   help="seconds each arena clip must be played before voting (default 3)")
    p.add_argument("--prompts", default=None,
                   help="arena prompt set, one prompt per line (default: bundled)")
    p.add_argument("--arena-seconds", type=float, default=5.0,
                   help="length of arena clips in seconds (default 5)")
    p.add_argument("--workers", type=int, default=1,
                   help="generations running at once (default 1)")
    p.add_argument("--max-pending", type=int, default=16,
                   help="generations that may wait; more are refused (default 16)")
    p.add_argument("--rate-per-minute", type=float, default=None,
                   help="sustained requests per minute per session (default 20; the "
                        "per-address limit is 3× this)")


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``build_core`` keyword arguments from parsed ``add_arguments`` flags."""
    if not 0 <= args.min_listen <= 600:
        raise AppError("--min-listen must be between 0 and 600 seconds")
    if not 0.5 <= args.arena_seconds <= 60:
        raise AppError("--arena-seconds must be between 0.5 and 60")
    if not 1 <= args.port <= 65535:
        raise AppError("--port must be between 1 and 65535")
    if args.workers < 1 or args.max_pending < 0:
        raise AppError("--workers must be at least 1 and --max-pending at least 0")
    sec = SecurityConfig()
    if args.rate_per_minute is not None:
        if args.rate_per_minute <= 0:
            raise AppError("--rate-per-minute must be > 0")
        r = args.rate_per_minute
        sec = dataclasses.replace(sec, session_per_minute=r, client_per_minute=3 * r,
                                  session_burst=max(sec.session_burst, int(r // 2)),
                                  client_burst=max(sec.client_burst, int(3 * r // 2)))
    return {"min_listen_seconds": args.min_listen, "arena_seconds": args.arena_seconds,
            "prompts_file": Path(args.prompts) if args.prompts else None,
            "workers": args.workers, "max_pending": args.max_pending, "security": sec}


def run_from_args(args: argparse.Namespace) -> int:
    """Starts the app from parsed flags and blocks until interrupted (``musicrl app``)."""
    try:
        core = build_core(args.systems, args.db, **config_from_args(args))
    except MusicrlError as e:
        raise AppError(str(e)) from None
    try:
        serve(core, args.host, args.port)
    finally:
        core.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.server`` (the same flags as ``musicrl app``)."""
    p = argparse.ArgumentParser(prog="python -m app.server", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_from_args(args)
    except MusicrlError as e:
        print(f"musicrl app: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
