"""Screenshots of the app's four views for the docs (docs/img/app-*.png).

Starts ``musicrl app`` on a free loopback port with the TEST GENERATOR (tones from
tests/app/conftest.py, no model) and a temporary database, drives headless Chromium with
Playwright (Debian's ``chromium``), creates two clips, serves an arena pair, listens and
votes a few times so the leaderboard and the admin counts have rows, and saves:

    docs/img/app-create.png  app-arena.png  app-leaderboard.png  app-data.png

Usage: ``python benchmarks/screenshots.py [--out docs/img] [--real]`` (``--real``: the
bundled model instead of the test generator; the committed screenshots use it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.conftest import ADMIN_TOKEN, CHROMIUM_ARGS, AppServer  # noqa: E402

T = 60_000


def _play(page, elem_id: str) -> None:
    page.wait_for_function(
        "(id) => { const d = document.querySelector('#' + id + ' time#duration');"
        " return d && !['', '0:00'].includes(d.textContent.trim()); }", arg=elem_id, timeout=T)
    page.locator(f"#{elem_id} button[aria-label='Play']").click()


def _arena_round(page, choice: str, prompt: str = "") -> None:
    page.locator("#arena-prompt textarea").fill(prompt)
    page.locator("#arena-new").click()
    page.locator("#arena-reveal").get_by_text("New pair ready").wait_for(timeout=T)
    time.sleep(1.0)  # let the players load the new clips
    _play(page, "arena-clip-a")
    _play(page, "arena-clip-b")
    page.wait_for_function("() => !document.querySelector('#vote-a').disabled", timeout=T)
    page.locator(f"#{choice}").click()
    page.locator("#arena-reveal").get_by_text("A was").wait_for(timeout=T)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "img"))
    p.add_argument("--real", action="store_true",
                   help="serve the bundled model (assets/small at CFG 3 and 1) instead of the "
                        "test tone generator")
    args = p.parse_args()
    exe = shutil.which("chromium")
    if exe is None:
        print("screenshots: chromium is not installed (apt-get install -y chromium)")
        return 2
    from playwright.sync_api import expect, sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shots-") as d:
        systems = None
        if args.real:
            from app.systems import DEFAULT_SYSTEMS

            systems = DEFAULT_SYSTEMS
        server = AppServer(Path(d), min_listen=0.5, systems=systems)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(server.url)
                page.locator("#create-go").wait_for(timeout=T)

                # Create: two variations of one prompt.
                page.locator("#create-prompt textarea").fill(
                    "A lively Irish reel on fiddle and acoustic guitar, around 140 bpm.")
                page.locator("#create-variations input[type=number]").fill("2")
                page.locator("#create-variations input[type=number]").press("Enter")
                page.locator("#create-go").click()
                page.locator("#create-status").get_by_text("Generated").wait_for(timeout=T)
                page.locator("#create-spec-1 img").wait_for(timeout=T)
                time.sleep(1.0)
                page.screenshot(path=str(out / "app-create.png"), full_page=True)

                # Arena: a few votes, then a fresh pair half-listened (buttons still locked)
                # and one finished vote with the identities revealed for the screenshot.
                page.get_by_role("tab", name="Arena").click()
                for choice in ("vote-a", "vote-b", "vote-a", "vote-tie", "vote-a"):
                    _arena_round(page, choice)
                _arena_round(page, "vote-b", "A calm solo piano piece in C major, slow and "
                                              "gentle, around 70 bpm.")
                time.sleep(0.5)
                page.screenshot(path=str(out / "app-arena.png"), full_page=True)

                page.get_by_role("tab", name="Leaderboard").click()
                expect(page.locator("#leaderboard-table")).to_contain_text(
                    "small-" if args.real else "tone-", timeout=T)
                time.sleep(1.0)
                page.screenshot(path=str(out / "app-leaderboard.png"), full_page=True)

                page.get_by_role("tab", name="Data (admin)").click()
                page.locator("#admin-token input").fill(ADMIN_TOKEN)
                page.locator("#admin-counts").click()
                page.locator("#admin-totals").get_by_text("generations").wait_for(timeout=T)
                page.locator("#admin-export").click()
                page.locator("#admin-files a").first.wait_for(timeout=T)
                time.sleep(1.0)
                page.screenshot(path=str(out / "app-data.png"), full_page=True)
                browser.close()
        finally:
            server.stop()
    for name in ("create", "arena", "leaderboard", "data"):
        print(out / f"app-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
