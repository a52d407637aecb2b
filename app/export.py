"""Export of the preference data (DESIGN §4.3, §11) for reward-model training and analysis.

``export(store, out_dir, formats)`` writes, into the folder the user names:

================  ==================================================================
``votes.jsonl``   one JSON object per vote (all fields of :data:`COLUMNS`), exact text
``votes.parquet`` the same table (settings as JSON strings), exact text
``trl.jsonl``     TRL preference layout: ``prompt``, ``chosen``, ``rejected`` (audio paths
                  relative to the export folder) plus ``chosen_system``,
                  ``rejected_system``, ``pair_id``, ``rater``, ``time``. Only votes with a
                  winner (``a``/``b``) become rows: a ``tie`` or ``both_bad`` vote states no
                  preference between the two clips, so it is left out (counted in
                  ``export.json``); the full record of them is in votes.jsonl/.parquet.
``votes.csv``     the votes table for spreadsheets: **formula-escaped** (every text cell
                  starting with ``= + - @`` tab or CR gets a leading ``'``)
``audio.zip``     with ``--with-audio``: every referenced clip once, as
                  ``audio/<sha256>.flac`` (content-addressed; entry names are built only
                  from validated hex ids, so no entry can escape the archive's folder).
                  Unzipped inside the export folder, the paths in the other files resolve.
``export.json``   written last: counts, formats, schema version, which files are escaped
================  ==================================================================

Only ``votes.csv`` is escaped: the JSONL/Parquet/TRL files are training data read by
programs, where an added apostrophe would corrupt prompts and comments. Open those in a
spreadsheet only through the CSV.

Every file is written atomically (temporary file in the folder, fsync, rename), only
under the named folder, and an existing export is not overwritten unless ``force``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from app.security import spreadsheet_safe
from app.store import AUDIO_SUFFIX, PreferenceStore, VoteRow, is_audio_id
from musicrl.atomic import atomic_path, write_bytes_atomic
from musicrl.errors import MusicrlError

__all__ = ["COLUMNS", "FORMATS", "ExportError", "ExportReport", "export", "parse_formats"]

FORMATS = ("jsonl", "parquet", "trl", "csv")
DEFAULT_FORMATS = ("jsonl", "parquet", "trl", "csv")
COLUMNS = ("vote_id", "pair_id", "time", "rater", "prompt", "system_a", "system_b",
           "audio_a", "audio_b", "path_a", "path_b", "settings_a", "settings_b", "choice",
           "comment", "listen_a", "listen_b")
_FILES = {"jsonl": "votes.jsonl", "parquet": "votes.parquet", "trl": "trl.jsonl",
          "csv": "votes.csv", "audio": "audio.zip", "manifest": "export.json"}


class ExportError(MusicrlError):
    """The export was refused (existing files, bad folder or format); nothing was changed."""


@dataclasses.dataclass
class ExportReport:
    """What an export wrote."""

    out_dir: Path
    files: list[Path]
    votes: int
    trl_rows: int
    trl_skipped: dict[str, int]
    audio_files: int = 0
    audio_missing: list[str] = dataclasses.field(default_factory=list)
    audio_invalid: int = 0

    @property
    def complete(self) -> bool:
        """False if some referenced audio could not be put in the zip."""
        return not self.audio_missing and not self.audio_invalid

    def summary(self) -> str:
        lines = [f"exported {self.votes} votes to {self.out_dir}"]
        lines += [f"  {f.name}" for f in self.files]
        if self.trl_skipped:
            lines.append(f"  TRL layout: {self.trl_rows} rows; left out (no preference): "
                         + ", ".join(f"{v} {k}" for k, v in sorted(self.trl_skipped.items())))
        if self.audio_files or self.audio_missing:
            lines.append(f"  audio: {self.audio_files} clips")
        if self.audio_missing:
            lines.append(f"  warning: {len(self.audio_missing)} referenced clips are missing "
                         f"from the audio folder (e.g. {self.audio_missing[0]}); check --audio-dir")
        if self.audio_invalid:
            lines.append(f"  warning: {self.audio_invalid} malformed audio ids in the database "
                         "were refused (not exported)")
        return "\n".join(lines)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"jsonl,parquet"`` → ``("jsonl", "parquet")``; unknown names raise ExportError."""
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ExportError(f"unknown export format(s) {bad or names}; choose from "
                          f"{', '.join(FORMATS)} (comma-separated)")
    return tuple(dict.fromkeys(names))


def _rel_audio(audio_id: str) -> str:
    return f"audio/{audio_id}{AUDIO_SUFFIX}"


def _record(v: VoteRow) -> dict[str, Any]:
    return {"vote_id": v.vote_id, "pair_id": v.pair_id, "time": v.time, "rater": v.session_hash,
            "prompt": v.prompt, "system_a": v.system_a, "system_b": v.system_b,
            "audio_a": v.audio_a, "audio_b": v.audio_b,
            "path_a": _rel_audio(v.audio_a) if is_audio_id(v.audio_a) else None,
            "path_b": _rel_audio(v.audio_b) if is_audio_id(v.audio_b) else None,
            "settings_a": v.settings_a, "settings_b": v.settings_b, "choice": v.choice,
            "comment": v.comment, "listen_a": v.listen_a, "listen_b": v.listen_b}


def _trl_rows(votes: Iterable[VoteRow]) -> tuple[list[dict], dict[str, int]]:
    rows, skipped = [], {}
    for v in votes:
        if v.choice not in ("a", "b") or not (is_audio_id(v.audio_a) and is_audio_id(v.audio_b)):
            key = v.choice if v.choice not in ("a", "b") else "invalid_audio_id"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        win, lose = ("a", "b") if v.choice == "a" else ("b", "a")
        rows.append({"prompt": v.prompt,
                     "chosen": _rel_audio(getattr(v, f"audio_{win}")),
                     "rejected": _rel_audio(getattr(v, f"audio_{lose}")),
                     "chosen_system": getattr(v, f"system_{win}"),
                     "rejected_system": getattr(v, f"system_{lose}"),
                     "pair_id": v.pair_id, "rater": v.session_hash, "time": v.time})
    return rows, skipped


def _jsonl(rows: Iterable[dict]) -> bytes:
    # U+2028/U+2029 are valid inside JSON strings, but some line readers split on them.
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _csv(records: list[dict]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for r in records:
        w.writerow([spreadsheet_safe(json.dumps(r[c], sort_keys=True)
                                     if isinstance(r[c], dict) else r[c])
                    if r[c] is not None else "" for c in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")  # BOM: spreadsheets detect UTF-8


def _parquet(records: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("vote_id", pa.int64()), ("pair_id", pa.string()), ("time", pa.string()),
        ("rater", pa.string()), ("prompt", pa.string()), ("system_a", pa.string()),
        ("system_b", pa.string()), ("audio_a", pa.string()), ("audio_b", pa.string()),
        ("path_a", pa.string()), ("path_b", pa.string()), ("settings_a", pa.string()),
        ("settings_b", pa.string()), ("choice", pa.string()), ("comment", pa.string()),
        ("listen_a", pa.float64()), ("listen_b", pa.float64())])
    cols = {c: [json.dumps(r[c], sort_keys=True) if c.startswith("settings") else r[c]
                for r in records] for c in COLUMNS}
    table = pa.table(cols, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _write_into(out_dir: Path, name: str, data: bytes) -> Path:
    """Atomically writes ``out_dir/name`` (``name`` is one of our fixed file names)."""
    assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
    return write_bytes_atomic(out_dir / name, data)


def _audio_zip(out_dir: Path, store: PreferenceStore, audio_ids: Iterable[str],
               report: ExportReport) -> Path:
    name = _FILES["audio"]
    # FLAC is already compressed: store the entries as they are.
    with atomic_path(out_dir / name) as tmp, \
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for audio_id in sorted(set(audio_ids)):
            if not is_audio_id(audio_id):
                report.audio_invalid += 1
                continue
            src = store.audio_path(audio_id)
            if not src.is_file():
                report.audio_missing.append(audio_id)
                continue
            z.write(src, arcname=_rel_audio(audio_id))
            report.audio_files += 1
    return out_dir / name


def _prepare_dir(out_dir: str | os.PathLike, names: Sequence[str], force: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; name a folder for the export")
    out.mkdir(parents=True, exist_ok=True)
    existing = [n for n in names if os.path.lexists(out / n)]
    if existing and not force:
        raise ExportError(f"{out} already holds an export ({', '.join(existing)}); choose "
                          "another --out folder or pass --force to replace these files")
    for n in existing:  # with force: only regular files of ours are replaced
        if (out / n).is_symlink() or not (out / n).is_file():
            raise ExportError(f"{out / n} is not a regular file; remove it or choose another "
                              "--out folder")
    return out


def export(store: PreferenceStore, out_dir: str | os.PathLike,
           formats: Sequence[str] = DEFAULT_FORMATS, *, with_audio: bool = False,
           force: bool = False) -> ExportReport:
    """Writes the chosen formats (and the audio zip) into ``out_dir``; see the module doc.

    Raises :class:`ExportError` (writing nothing) if ``out_dir`` is a file or already holds
    one of the files this export would write, unless ``force``.
    """
    formats = parse_formats(formats)
    names = [_FILES[f] for f in formats] + ([_FILES["audio"]] if with_audio else [])
    out = _prepare_dir(out_dir, [*names, _FILES["manifest"]], force)

    votes = store.votes()
    records = [_record(v) for v in votes]
    trl, skipped = _trl_rows(votes)
    report = ExportReport(out.resolve(), [], len(votes), len(trl), skipped)
    writers = {"jsonl": lambda: _jsonl(records), "parquet": lambda: _parquet(records),
               "trl": lambda: _jsonl(trl), "csv": lambda: _csv(records)}
    for f in formats:
        report.files.append(_write_into(out, _FILES[f], writers[f]()))
    if with_audio:
        ids = [a for v in votes for a in (v.audio_a, v.audio_b)]
        report.files.append(_audio_zip(out, store, ids, report))
    manifest = {
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "votes": report.votes, "formats": list(formats), "with_audio": with_audio,
        "files": [p.name for p in report.files],
        "schema_version": store.schema_version(),
        "trl": {"rows": report.trl_rows, "left_out": skipped,
                "rule": "a/b votes become prompt/chosen/rejected rows; tie and both_bad "
                        "votes state no preference and are left out"},
        "formula_escaped": ["votes.csv"] if "csv" in formats else [],
        "audio": {"files": report.audio_files, "missing": report.audio_missing,
                  "invalid_ids": report.audio_invalid},
    }
    report.files.append(_write_into(out, _FILES["manifest"],
                                    json.dumps(manifest, indent=2).encode("utf-8")))
    return report
