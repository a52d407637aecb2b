"""The Gradio web app and the preference store (DESIGN §11). Imports ``musicrl`` and ``rewards``.

Nothing is imported here, so ``import app.store`` stays light (no Gradio):

* ``app.store``       — the :class:`~app.store.PreferenceStore` interface and its SQLite
  implementation (WAL, durable, versioned schema, content-addressed audio).
* ``app.security``    — prompt cleaning, rate limits, admin auth, spreadsheet escaping.
* ``app.leaderboard`` — Bradley–Terry scores with bootstrap intervals.
* ``app.export``      — JSONL / Parquet / TRL / CSV exports and the audio zip.
* ``app.server``, ``app.ui``, ``app.systems``, ``app.jobs`` — the web app itself.
"""
