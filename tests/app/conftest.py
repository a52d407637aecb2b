"""Fixtures for the app tests, and the TEST GENERATOR used instead of a trained model.

:class:`ToneGenerator` is **not a music model**: it renders deterministic tones (a short
melody of sine partials chosen from the seed) so that the web app, its browser tests and
its load benchmark run without trained weights. It is registered through the same
mechanism as any system, a ``factory`` entry of the systems file::

    {"systems": [{"name": "tone-low",
                  "factory": "tests/app/conftest.py:ToneGenerator",
                  "options": {"base_hz": 220}}]}

``delay_s`` makes it sleep per call, to stand in for a slow model (queue tests and the
load benchmark); ``mix`` (λ in [0, 1]) implements the merge-slider hook.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFTEST = Path(__file__).resolve()
ADMIN_TOKEN = "test-admin-token-0123456789"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


class ToneGenerator:
    """TEST GENERATOR (no model): deterministic tone melodies from the seed.

    Row ``k`` of a batch uses seed ``seed + 7919 k``, so variations differ. ``guidance``
    scales the brightness (number of partials), ``temperature`` the melodic range, ``mix``
    (if given) blends towards a square-ish timbre. Output: float32 ``(b, n)`` in [-1, 1].
    """

    def __init__(self, name: str = "tones", base_hz: float = 220.0, sample_rate: int = 16000,
                 delay_s: float = 0.0):
        self.name = name
        self.base_hz = float(base_hz)
        self.sample_rate = int(sample_rate)
        self.delay_s = float(delay_s)
        self.calls = 0

    def generate(self, prompts: list[str], seconds: float, seed: int, guidance: float,
                 temperature: float, mix: float | None = None) -> np.ndarray:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        n = max(1, int(round(seconds * self.sample_rate)))
        t = np.arange(n) / self.sample_rate
        out = np.zeros((len(prompts), n), np.float32)
        for k, prompt in enumerate(prompts):
            rng = np.random.default_rng([seed + 7919 * k, len(prompt)])
            notes = 4
            span = max(1, int(round(7 * min(temperature, 3.0))))
            steps = rng.integers(0, span + 1, notes)
            partials = 1 + int(min(guidance, 8))
            seg = np.minimum((t * notes / max(seconds, 1e-3)).astype(int), notes - 1)
            f = self.base_hz * 2 ** (steps[seg] / 12)
            phase = 2 * np.pi * np.cumsum(f) / self.sample_rate
            x = sum(np.sin(h * phase) / h for h in range(1, partials + 1))
            if mix is not None:
                x = (1 - mix) * x + mix * np.sign(np.sin(phase)) * 0.6
            env = np.minimum(1.0, np.minimum(t, seconds - t) * 50)   # 20 ms fades
            x = x * np.clip(env, 0, 1)
            out[k] = (0.3 * x / max(1e-6, np.abs(x).max())).astype(np.float32)
        return out


def tone_systems(delay_s: float = 0.0, merge: bool = False) -> dict:
    """A systems config of three tone 'systems' (for tests and the benchmark)."""
    ref = f"{CONFTEST}:ToneGenerator"
    systems = [
        {"name": "tone-low", "factory": ref, "options": {"base_hz": 220, "delay_s": delay_s},
         "guidance": 3.0, "temperature": 1.0, "description": "TEST GENERATOR (tones)"},
        {"name": "tone-mid", "factory": ref, "options": {"base_hz": 330, "delay_s": delay_s},
         "guidance": 1.0, "temperature": 1.0, "description": "TEST GENERATOR (tones)"},
        {"name": "tone-high", "factory": ref, "options": {"base_hz": 440, "delay_s": delay_s},
         "guidance": 2.0, "temperature": 0.7, "description": "TEST GENERATOR (tones)"},
    ]
    cfg: dict = {"systems": systems}
    if merge:
        cfg["merge"] = {"system": "tone-mid", "default": 0.5}
    return cfg


@pytest.fixture
def systems_file(tmp_path) -> Path:
    p = tmp_path / "systems.json"
    p.write_text(json.dumps(tone_systems()))
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 90.0) -> None:
    """Waits until ``url`` answers (or the server process died)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s ({last})")


class AppServer:
    """``musicrl app`` running in a subprocess on a free loopback port."""

    def __init__(self, root: Path, min_listen: float = 0.5, extra: list[str] | None = None,
                 env: dict | None = None, systems: dict | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "prefs.sqlite"
        self.systems = root / "systems.json"
        self.systems.write_text(json.dumps(systems or tone_systems()))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        cmd = [sys.executable, "-m", "musicrl.cli", "app", "--systems", str(self.systems),
               "--db", str(self.db), "--port", str(self.port), "--min-listen", str(min_listen),
               "--arena-seconds", "2", *(extra or [])]
        full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                    "MUSICRL_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_http(self.url + "/", self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("the app did not start:\n" + self.log.read_text()[-4000:]) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    server = AppServer(tmp_path_factory.mktemp("app"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
