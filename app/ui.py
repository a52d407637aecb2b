"""The Gradio 6 views of the web app (DESIGN §11): Create, Arena, Leaderboard, Data.

All logic lives in :class:`app.server.AppCore`; the handlers here only translate between
Gradio values and core calls, and turn :class:`app.server.AppError` into ``gr.Error``
(an error toast; outputs are left unchanged and nothing is stored).

Concurrency: the two generating actions (Create, Arena ▸ New pair) are ``async`` handlers
that submit to the core's bounded :class:`app.jobs.JobQueue` and await it while reporting
their place in the queue through ``gr.Progress``; they hold no worker thread while waiting.
Votes, the leaderboard and the admin actions run in their own Gradio concurrency groups,
so a queue full of generation never delays them.

Arena listening check: ``assets/arena.js`` measures how long each clip actually played
and clicks a hidden "unlock" button once both reached ``min_listen_seconds``; the unlock
handler re-checks on the server (elapsed time since serving) before enabling the vote
buttons, and the vote handler checks again before storing anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app.export import FORMATS
from app.server import ASSETS, CHOICE_LABELS, AppCore, AppError, ArenaPair

__all__ = ["build_ui", "launch_kwargs"]

log = logging.getLogger(__name__)

VOTE_BUTTONS = (("a", "A is better", "vote-a"), ("b", "B is better", "vote-b"),
                ("tie", "Tie", "vote-tie"), ("both_bad", "Both are bad", "vote-both-bad"))


def _refuse(e: Exception) -> gr.Error:
    """The error toast for a refused request (a user error: no traceback in the log)."""
    return gr.Error(str(e), print_exception=False)


def _who(request: gr.Request | None) -> tuple[str | None, str | None]:
    """(session id, client address) of a request; the address is only used hashed."""
    if request is None:
        return None, None
    host = None
    client = getattr(request, "client", None)
    if client is not None:
        host = getattr(client, "host", None)
    return getattr(request, "session_hash", None), host


def _playable(path: Path) -> tuple[int, Any]:
    """A stored clip as ``(sample_rate, int16 samples)`` for ``gr.Audio``.

    Handing Gradio a file path makes it probe the file with ffprobe (a subprocess, ~0.2 s per
    clip here) to check that browsers can play it; our clips are always 16-bit PCM, so we
    pass the samples and Gradio writes a WAV into its cache directly.
    """
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="int16", always_2d=False)
    return int(sr), data


async def _await_job(core: AppCore, job: Any, progress: gr.Progress, what: str) -> Any:
    """Awaits a queued job, reporting its place in the queue; re-raises its error."""
    fut = asyncio.wrap_future(job.future)
    shown, at = None, 0.0
    while not fut.done():
        # Report only changes, and a moving place in the queue at most every 2 s: each
        # report is a message to the page, and a long queue moves often.
        now = ("wait", core.jobs.position(job)) if job.started is None else ("run", 0)
        t = time.monotonic()
        if now != shown and (shown is None or now[0] != shown[0] or t - at >= 2.0):
            shown, at = now, t
            if now[0] == "wait":
                progress(0.0, desc=f"Waiting for the generator: {now[1]} request"
                                   f"{'s' if now[1] != 1 else ''} ahead")
            else:
                progress(0.5, desc=f"Generating {what}…")
        await asyncio.wait({fut}, timeout=0.5)
    try:
        return fut.result()
    except AppError:
        raise
    except Exception as e:  # a bug or a broken model: say so, keep the server up
        log.exception("generation failed")
        raise AppError(f"Generation failed: {type(e).__name__}: {e}") from None


def launch_kwargs(core: AppCore) -> dict[str, Any]:
    """``Blocks.launch`` keyword arguments: page assets and file-serving rules."""
    js = (ASSETS / "arena.js").read_text(encoding="utf-8")
    cfg = json.dumps({"minListen": core.config.min_listen_seconds})
    head = f"<script>window.MUSICRL_CONFIG = {cfg};</script>\n<script>\n{js}\n</script>"
    return {
        "head": head,
        "css": (ASSETS / "app.css").read_text(encoding="utf-8"),
        # No allowed_paths: the store's folders are never served directly. Clips, downloads
        # and exports reach the page only as files Gradio copies into its cache for the
        # response that returns them (under unguessable content-hash folder names).
        "max_threads": 64,
        "ssr_mode": False,
        "footer_links": ["api"],
        "show_error": True,
    }


def build_ui(core: AppCore) -> gr.Blocks:
    """The four-tab Blocks app over ``core`` (queue configured, not launched)."""
    cfg = core.config
    reg = core.registry
    first = reg.names[0]
    merge = reg.merge

    with gr.Blocks(title="musicrl", analytics_enabled=False) as demo:
        gr.Markdown("# musicrl\nText to music, compared by people. Create clips, vote in the "
                    "arena, see which system people prefer.")
        with gr.Tabs():
            # ---------------------------------------------------------------- Create
            with gr.Tab("Create", id="create"):
                with gr.Row():
                    with gr.Column(scale=2):
                        c_prompt = gr.Textbox(label="Prompt", lines=2, elem_id="create-prompt",
                                              max_length=cfg.security.max_prompt_chars,
                                              placeholder="A calm solo piano piece in C major…")
                        c_go = gr.Button("Generate", variant="primary", elem_id="create-go")
                        c_status = gr.Markdown(elem_id="create-status")
                    with gr.Column(scale=1):
                        c_system = gr.Dropdown(reg.names, value=first, label="System",
                                               elem_id="create-system")
                        c_seconds = gr.Slider(1, cfg.max_seconds, value=cfg.default_seconds,
                                              step=0.5, label="Duration (s)",
                                              elem_id="create-seconds")
                        c_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed",
                                           elem_id="create-seed")
                        c_temp = gr.Slider(0.05, 2.0, value=reg.spec(first).temperature,
                                           step=0.05, label="Temperature",
                                           elem_id="create-temperature")
                        c_guid = gr.Slider(0.0, 10.0, value=reg.spec(first).guidance, step=0.5,
                                           label="Guidance (classifier-free; 1 = none)",
                                           elem_id="create-guidance")
                        c_vars = gr.Slider(1, cfg.max_variations, value=1, step=1,
                                           label="Variations", elem_id="create-variations")
                        c_mix = gr.Slider(0.0, 1.0, value=merge.default if merge else 0.5,
                                          step=0.05, label=merge.label if merge else "mix",
                                          visible=bool(merge and merge.system == first),
                                          elem_id="create-mix",
                                          info="0 = the first model of the merge, 1 = the "
                                               "second (interpolated weights)")
                c_slots = []
                for k in range(cfg.max_variations):
                    with gr.Column(visible=False) as col:
                        gr.Markdown(f"**Variation {k + 1}**")
                        with gr.Row():
                            audio = gr.Audio(label=f"Clip {k + 1}", type="filepath",
                                             interactive=False, elem_id=f"create-audio-{k}",
                                             buttons=["download"])
                            image = gr.Image(label="Spectrogram", type="filepath",
                                             interactive=False, elem_id=f"create-spec-{k}",
                                             height=200)
                            files = gr.File(label="Download (WAV, FLAC)", file_count="multiple",
                                            interactive=False, elem_id=f"create-files-{k}")
                    c_slots.append((col, audio, image, files))

            # ----------------------------------------------------------------- Arena
            with gr.Tab("Arena", id="arena"):
                gr.Markdown(f"Two anonymous systems play the same prompt. Listen to **both** "
                            f"clips (at least {cfg.min_listen_seconds:g} s each), then vote. "
                            "The systems are revealed after your vote.")
                a_state = gr.State(None)
                with gr.Row():
                    a_prompt = gr.Textbox(label="Prompt (leave empty for one from the "
                                                "prompt set)", elem_id="arena-prompt",
                                          max_length=cfg.security.max_prompt_chars, scale=4)
                    a_draw = gr.Button("Draw a prompt", elem_id="arena-draw", scale=1)
                a_new = gr.Button("New pair", variant="primary", elem_id="arena-new")
                with gr.Row():
                    a_clip = gr.Audio(label="A", type="filepath", interactive=False,
                                      elem_id="arena-clip-a", buttons=[])
                    b_clip = gr.Audio(label="B", type="filepath", interactive=False,
                                      elem_id="arena-clip-b", buttons=[])
                gr.HTML('<div id="arena-listen-status"></div>', elem_id="arena-listen-box",
                        js_on_load=None)
                with gr.Row():
                    vote_btns = [gr.Button(label, interactive=False, elem_id=eid)
                                 for _, label, eid in VOTE_BUTTONS]
                a_comment = gr.Textbox(label="Comment (optional)", elem_id="arena-comment",
                                       max_length=cfg.security.max_comment_chars)
                a_reveal = gr.Markdown(elem_id="arena-reveal")
                a_unlock = gr.Button("unlock", visible="hidden", elem_id="arena-unlock")
                listen_a = gr.Number(value=0, visible=False)
                listen_b = gr.Number(value=0, visible=False)

            # ----------------------------------------------------------- Leaderboard
            with gr.Tab("Leaderboard", id="leaderboard") as lb_tab:
                gr.Markdown("Bradley–Terry scores from the arena votes (Elo-like scale: mean "
                            "1000, +100 ≈ 64% win chance), with 95% bootstrap intervals. Ties "
                            "count half a win each way; 'both bad' votes are counted but not "
                            "fitted. Real-time factor = seconds of audio per second of "
                            "generation (above 1 is faster than real time).")
                lb_table = gr.Dataframe(headers=AppCore.LEADERBOARD_HEADERS,
                                        interactive=False, elem_id="leaderboard-table",
                                        wrap=True)
                lb_refresh = gr.Button("Refresh", elem_id="leaderboard-refresh")

            # ------------------------------------------------------------------ Data
            with gr.Tab("Data (admin)", id="data"):
                gr.Markdown("Collected preferences, for the people who run this server. "
                            "Requires the admin token (`MUSICRL_ADMIN_TOKEN`)."
                            + ("" if core.auth.enabled else
                               "\n\n**The admin area is disabled on this server: no admin "
                               "token is configured.**"))
                d_token = gr.Textbox(label="Admin token", type="password",
                                     elem_id="admin-token")
                d_show = gr.Button("Show counts", elem_id="admin-counts")
                d_totals = gr.Markdown(elem_id="admin-totals")
                d_counts = gr.Dataframe(headers=AppCore.COUNT_HEADERS, interactive=False,
                                        elem_id="admin-table")
                with gr.Row():
                    d_formats = gr.CheckboxGroup(list(FORMATS), value=list(FORMATS),
                                                 label="Formats", elem_id="admin-formats")
                    d_audio = gr.Checkbox(value=True, label="Include the audio (zip)",
                                          elem_id="admin-audio")
                d_export = gr.Button("Export", variant="primary", elem_id="admin-export")
                d_summary = gr.Markdown(elem_id="admin-summary")
                d_files = gr.File(label="Export files", file_count="multiple",
                                  interactive=False, elem_id="admin-files")

        # ------------------------------------------------------------------ handlers
        async def create(prompt, system, seconds, seed, guidance, temperature, variations,
                         mix, request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio idiom)
            session, client = _who(request)
            try:
                job = core.submit_create(session, client, prompt, system, seconds, seed,
                                         guidance, temperature, variations,
                                         mix if merge and system == merge.system else None)
                result = await _await_job(core, job, progress, f"with {system}")
            except AppError as e:
                raise _refuse(e) from None
            n = len(result.clips)
            audio_s = sum(c.seconds for c in result.clips)
            rtf = audio_s / result.run_seconds if result.run_seconds > 0 else float("inf")
            status = (f"Generated {n} × {result.clips[0].seconds:.1f} s with **{system}** "
                      f"(guidance {result.settings['guidance']:g}, temperature "
                      f"{result.settings['temperature']:g}, seed {result.settings['seed']}) in "
                      f"{result.run_seconds:.2f} s after {job.queue_wait or 0:.2f} s in the "
                      f"queue — real-time factor {rtf:.1f}×.")
            out: list[Any] = [status]
            for k in range(cfg.max_variations):
                if k < n:
                    c = result.clips[k]
                    out += [gr.update(visible=True), _playable(c.audio_path), str(c.spectrogram),
                            [str(c.wav_path), str(c.flac_path)]]
                else:
                    out += [gr.update(visible=False), None, None, None]
            return out

        create_outputs = [c_status] + [x for slot in c_slots for x in slot]
        c_inputs = [c_prompt, c_system, c_seconds, c_seed, c_guid, c_temp, c_vars, c_mix]
        c_go.click(create, c_inputs, create_outputs, api_name="create",
                   concurrency_limit=None, concurrency_id="generate",
                   show_progress_on=[c_status])
        c_prompt.submit(create, c_inputs, create_outputs, api_visibility="private",
                        concurrency_limit=None, concurrency_id="generate",
                        show_progress_on=[c_status])

        def pick_system(system):
            s = reg.specs.get(system)
            if s is None:
                return gr.update(), gr.update(), gr.update(visible=False)
            return (gr.update(value=s.guidance), gr.update(value=s.temperature),
                    gr.update(visible=bool(merge and merge.system == system)))

        c_system.change(pick_system, c_system, [c_guid, c_temp, c_mix],
                        api_visibility="private", queue=False)

        # Arena ------------------------------------------------------------------
        locked = [gr.update(interactive=False) for _ in VOTE_BUTTONS]

        def draw(request: gr.Request):
            session, client = _who(request)
            try:
                core.check_rate(session, client, cost=0.25)
            except AppError as e:
                raise _refuse(e) from None
            return core.random_prompt()

        a_draw.click(draw, None, a_prompt, api_name="draw_prompt", concurrency_limit=16,
                     concurrency_id="light")

        async def new_pair(prompt, request: gr.Request, progress=gr.Progress()):  # noqa: B008 (Gradio idiom)
            session, client = _who(request)
            try:
                job = core.submit_pair(session, client, prompt)
                await _await_job(core, job, progress, "two clips")
                pair = core.serve_pair(job)
            except AppError as e:
                raise _refuse(e) from None
            need = cfg.min_listen_seconds
            status = (f"New pair ready (queued {pair.queue_wait:.2f} s, generated in "
                      f"{pair.run_seconds:.2f} s). Listen to both clips for at least {need:g} s "
                      "each to enable voting.")
            return [pair.prompt, _playable(pair.clip_a), _playable(pair.clip_b), pair, status, "",
                    *locked]

        np_outputs = [a_prompt, a_clip, b_clip, a_state, a_reveal, a_comment, *vote_btns]
        a_new.click(new_pair, a_prompt, np_outputs, api_name="new_pair",
                    concurrency_limit=None, concurrency_id="generate",
                    js="(p) => { if (window.musicrlArena) window.musicrlArena.reset(); "
                       "return p; }",
                    show_progress_on=[a_clip, b_clip]
                    ).then(None, None, None, js="() => { if (window.musicrlArena) "
                                                 "window.musicrlArena.loaded(); }")

        listen_js = ("(la, lb) => { const m = window.musicrlArena; "
                     "return m ? [m.listened('a'), m.listened('b')] : [la, lb]; }")

        def unlock(la, lb, pair: ArenaPair | None):
            ok, _ = core.listen_ok(pair, la, lb)
            return [gr.update(interactive=ok) for _ in VOTE_BUTTONS]

        a_unlock.click(unlock, [listen_a, listen_b, a_state], vote_btns, js=listen_js,
                       api_name="unlock", api_visibility="undocumented",
                       concurrency_limit=32, concurrency_id="vote")

        def make_vote(choice: str):
            def vote(la, lb, comment, pair: ArenaPair | None, request: gr.Request):
                session, client = _who(request)
                try:
                    r = core.vote(session, client, pair, choice, comment, la, lb)
                except AppError as e:
                    raise _refuse(e) from None
                reveal = (f"### A was **{r['system_a']}**, B was **{r['system_b']}**\n"
                          f"You voted: {CHOICE_LABELS[choice]}. Thank you! Click "
                          "'New pair' for another comparison.")
                return [reveal, *locked]
            return vote

        vote_js = ("(la, lb, c) => { const m = window.musicrlArena; if (!m) return [la, lb, c]; "
                   "const r = [m.listened('a'), m.listened('b'), c]; m.voted(); return r; }")
        for (choice, _, _), btn in zip(VOTE_BUTTONS, vote_btns, strict=True):
            btn.click(make_vote(choice), [listen_a, listen_b, a_comment, a_state],
                      [a_reveal, *vote_btns], js=vote_js, api_name=f"vote_{choice}",
                      concurrency_limit=32, concurrency_id="vote")

        # Leaderboard --------------------------------------------------------------
        def board():
            return core.leaderboard_rows()

        lb_refresh.click(board, None, lb_table, api_name="leaderboard", concurrency_limit=2,
                         concurrency_id="board")
        lb_tab.select(board, None, lb_table, api_visibility="private", concurrency_limit=2,
                      concurrency_id="board")

        # Data ---------------------------------------------------------------------
        def counts(token, request: gr.Request):
            session, client = _who(request)
            try:
                rows, totals = core.admin_counts(session, client, token)
            except AppError as e:
                raise _refuse(e) from None
            text = "Totals: " + ", ".join(f"{v:,} {k}" for k, v in totals.items())
            return text, rows

        d_show.click(counts, d_token, [d_totals, d_counts], api_name="admin_counts",
                     concurrency_limit=4, concurrency_id="admin")

        def do_export(token, formats, with_audio, request: gr.Request):
            session, client = _who(request)
            try:
                files, summary = core.admin_export(session, client, token, formats,
                                                   with_audio)
            except AppError as e:
                raise _refuse(e) from None
            return "```\n" + summary + "\n```", [str(Path(f)) for f in files]

        d_export.click(do_export, [d_token, d_formats, d_audio], [d_summary, d_files],
                       api_name="admin_export", concurrency_limit=1, concurrency_id="admin")

    demo.queue(default_concurrency_limit=16, max_size=1024)
    return demo
