"""End-to-end tests of the web app in headless Chromium (Playwright), DESIGN §11.

The app runs as ``musicrl app`` in a subprocess on a free loopback port, with the TEST
GENERATOR (tones, see conftest.py) and a temporary database; min listen is 0.5 s and arena
clips are 2 s. Skipped only when chromium (or playwright) is missing here; CI installs both.
"""

from __future__ import annotations

import json
import time

import pytest

from app.store import SqliteStore
from tests.app.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.browser

T = 30_000  # ms: generous for a loaded 1-core machine


@pytest.fixture
def page(browser, app_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=T)
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.goto(app_server.url)
    pg.locator("#create-go").wait_for(timeout=T)
    yield pg
    ctx.close()


def _store(app_server) -> SqliteStore:
    return SqliteStore(app_server.db, app_server.db.parent / "audio", create=False)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _play(page, elem_id: str) -> None:
    """Clicks the player's Play button once the clip is loaded (its duration is shown)."""
    page.wait_for_function(
        "(id) => { const d = document.querySelector('#' + id + ' time#duration');"
        " return d && !['', '0:00'].includes(d.textContent.trim()); }", arg=elem_id, timeout=T)
    page.locator(f"#{elem_id} button[aria-label='Play']").click()


def _played_seconds(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} time#time").inner_text()


def test_create_generates_plays_and_offers_downloads(page, app_server):
    from playwright.sync_api import expect

    page.locator("#create-prompt textarea").fill("a calm piano piece in C major")
    page.locator("#create-go").click()
    expect(page.locator("#create-status")).to_contain_text("Generated 1 ×")
    expect(page.locator("#create-spec-0 img")).to_be_visible()
    files = page.locator("#create-files-0")
    expect(files).to_contain_text(".wav")
    expect(files).to_contain_text(".flac")
    _play(page, "create-audio-0")
    # The player's clock advances: the clip really plays in the browser.
    page.wait_for_function(
        "() => { const t = document.querySelector('#create-audio-0 time#time');"
        " return t && t.textContent.trim() !== '0:00'; }", timeout=T)
    with _store(app_server) as s:
        assert s.totals()["generations"] >= 1


def test_create_refuses_an_empty_prompt(page, app_server):
    from playwright.sync_api import expect

    with _store(app_server) as s:
        before = s.totals()["generations"]
    page.locator("#create-prompt textarea").fill("   ")
    page.locator("#create-go").click()
    expect(page.get_by_text("The prompt is empty").first).to_be_visible()
    with _store(app_server) as s:
        assert s.totals()["generations"] == before


def test_arena_vote_needs_listening_then_reveals_and_counts(page, app_server):
    from playwright.sync_api import expect

    _tab(page, "Arena")
    page.locator("#arena-prompt textarea").fill("a lively Irish reel on fiddle")
    page.locator("#arena-new").click()
    expect(page.locator("#arena-clip-a button[aria-label='Play']")).to_be_visible()
    expect(page.locator("#arena-clip-b button[aria-label='Play']")).to_be_visible()
    vote_ids = ["vote-a", "vote-b", "vote-tie", "vote-both-bad"]
    for v in vote_ids:
        expect(page.locator(f"#{v}")).to_be_disabled()

    # Only clip A played (all of its 2 s, 4x the minimum): voting stays locked.
    _play(page, "arena-clip-a")
    page.wait_for_function("() => window.musicrlArena.listened('a') >= 1.0", timeout=T)
    time.sleep(1.5)
    for v in vote_ids:
        expect(page.locator(f"#{v}")).to_be_disabled()
    assert page.evaluate("window.musicrlArena.listened('b')") == 0

    # Clip B played too: the server agrees and enables the buttons.
    _play(page, "arena-clip-b")
    expect(page.locator("#vote-b")).to_be_enabled()
    for v in vote_ids:
        expect(page.locator(f"#{v}")).to_be_enabled()
    page.locator("#arena-comment textarea").fill("B has the nicer tune")
    page.locator("#vote-b").click()
    reveal = page.locator("#arena-reveal")
    expect(reveal).to_contain_text("A was")
    expect(reveal).to_contain_text("You voted: B is better")
    for v in vote_ids:
        expect(page.locator(f"#{v}")).to_be_disabled()

    with _store(app_server) as s:
        votes = s.votes()
    assert len(votes) == 1
    v = votes[0]
    assert v.choice == "b" and v.comment == "B has the nicer tune"
    assert v.prompt == "a lively Irish reel on fiddle"
    assert v.listen_a >= 0.5 and v.listen_b >= 0.5
    assert v.system_a != v.system_b
    text = reveal.inner_text()
    assert f"A was {v.system_a}" in text and f"B was {v.system_b}" in text

    # The leaderboard reflects the vote: the winner first, one vote each.
    _tab(page, "Leaderboard")
    table = page.locator("#leaderboard-table")
    expect(table).to_contain_text(v.system_b)
    expect(table).to_contain_text(v.system_a)
    text = table.inner_text()
    assert text.index(v.system_b) < text.index(v.system_a), text  # the winner ranks first
    assert "100%" in text and "0%" in text, text                  # win rates of 1 vote


def test_admin_export_refuses_without_token_and_exports_with_it(page, app_server):
    from playwright.sync_api import expect

    _tab(page, "Data (admin)")
    page.locator("#admin-export").click()
    expect(page.get_by_text("Admin token required").first).to_be_visible()
    page.locator("#admin-token input").fill("not-the-admin-token-at-all")
    page.locator("#admin-counts").click()
    expect(page.get_by_text("Admin token required").nth(1)).to_be_visible()
    assert page.locator("#admin-files a").count() == 0
    expect(page.locator("#admin-table")).not_to_contain_text("tone-")

    page.locator("#admin-token input").fill(ADMIN_TOKEN)
    page.locator("#admin-counts").click()
    expect(page.locator("#admin-totals")).to_contain_text("generations")
    expect(page.locator("#admin-table")).to_contain_text("tone-")
    page.locator("#admin-export").click()
    links = page.locator("#admin-files a")
    expected = sorted(["votes.jsonl", "votes.parquet", "trl.jsonl", "votes.csv", "audio.zip",
                       "export.json"])
    expect(links).to_have_count(len(expected))
    hrefs = [links.nth(k).get_attribute("href") for k in range(len(expected))]
    assert sorted(h.rsplit("/", 1)[-1] for h in hrefs) == expected
    # Download the JSONL through the page's link: one row per vote in the database.
    jsonl = next(h for h in hrefs if h.endswith("/votes.jsonl"))
    resp = page.request.get(jsonl)
    assert resp.ok
    rows = [json.loads(x) for x in resp.text().splitlines() if x.strip()]
    with _store(app_server) as s:
        assert len(rows) == len(s.votes())
        if rows:
            assert {r["pair_id"] for r in rows} == {v.pair_id for v in s.votes()}
