"""Caption files of users' imports: JSONL or CSV rows → file, captions, tags.

JSONL has one object per line (``.jsonl``/``.json``; a ``.json`` file may also
hold one JSON array); CSV has a header. Column names are case-insensitive:

* the file: ``file``, ``path``, ``filename`` or ``audio`` (a path relative to
  the folder; the suffix may be left out), or MusicCaps ``ytid`` (the file stem);
* the caption: ``caption``, ``captions``, ``text`` or ``description`` (a string,
  or in JSONL a list of phrasings);
* optional: ``aspect_list``/``tags`` (a Python-style list string as in MusicCaps,
  a JSON list, or comma-separated), ``split``, and MusicCaps ``start_s``/``end_s``.

A malformed row is yielded as a problem with its line number, so that the
import can report it and go on; a file that cannot be read as a whole raises
:class:`CaptionFileError`.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from musicrl.errors import MusicrlError

__all__ = [
    "CaptionFileError",
    "CAPTION_SUFFIXES",
    "FILE_COLUMNS",
    "CAPTION_COLUMNS",
    "TAG_COLUMNS",
    "read_rows",
    "first",
    "parse_tags",
    "parse_captions",
    "parse_segment",
    "unsafe_path",
]

CAPTION_SUFFIXES = (".jsonl", ".json", ".csv")
FILE_COLUMNS = ("file", "path", "filename", "audio", "ytid")
CAPTION_COLUMNS = ("caption", "captions", "text", "description")
TAG_COLUMNS = ("aspect_list", "tags")


class CaptionFileError(MusicrlError, ValueError):
    """The caption file cannot be used at all (type, encoding, header)."""


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yields (line, row) with lower-cased keys, or (line, problem) for a malformed row."""
    suffix = path.suffix.lower()
    if suffix not in CAPTION_SUFFIXES:
        raise CaptionFileError(
            f"{path}: unsupported caption file type {suffix or '(none)'!r}; "
            f"give JSONL (.jsonl/.json) or CSV (.csv)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise CaptionFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if suffix == ".csv":
        yield from _read_csv(path, text)
    elif suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise CaptionFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        for i, item in enumerate(items, 1):
            yield (i, _lower_keys(item) if isinstance(item, dict)
                   else f"item {i} is not a JSON object")
    else:
        # Split on "\n" only: JSON strings may hold U+2028 and other line separators.
        for i, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, f"not valid JSON ({e.msg})"
                continue
            yield i, _lower_keys(item) if isinstance(item, dict) else "not a JSON object"


def _lower_keys(d: dict[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in d.items()}


def _read_csv(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise CaptionFileError(f"{path}:1: unreadable CSV header ({e})") from None
    if not header:
        raise CaptionFileError(f"{path}: empty CSV file (no header)")
    cols = [h.strip().lower() for h in header]
    for want, kind in ((FILE_COLUMNS, "file-name"), (CAPTION_COLUMNS, "caption")):
        if not set(want) & set(cols):
            raise CaptionFileError(
                f"{path}: no {kind} column; expected one of {', '.join(want)}, "
                f"found {', '.join(cols)}")
    prev = reader.line_num
    while True:
        start = prev + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise CaptionFileError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from None
        prev = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(cols):
            yield start, f"{len(fields)} fields, but the header has {len(cols)}"
            continue
        yield start, dict(zip(cols, fields, strict=True))


def first(row: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    """(column, value) of the first of ``keys`` the row fills, else (None, None)."""
    for k in keys:
        if k in row and row[k] is not None and row[k] != "":
            return k, row[k]
    return None, None


def parse_tags(v: Any) -> list[str]:
    """MusicCaps ``"['piano', 'slow']"``, a JSON list, or ``"piano, slow"``."""
    if v is None or v == "":
        return []
    if isinstance(v, str):
        s = v.strip()
        if s.startswith(("[", "(")):
            if len(s) > 20_000:
                raise ValueError("tag list too long")
            try:
                v = ast.literal_eval(s)  # literals only: never runs code
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise ValueError(f"cannot parse tag list {s[:40]!r}") from None
        else:
            v = s.split(",")
    if not isinstance(v, list | tuple) or not all(isinstance(t, str) for t in v):
        raise ValueError("tags must be a list of strings")
    return list(dict.fromkeys(t.strip() for t in v if t.strip()))


def parse_captions(v: Any) -> list[str]:
    """A caption or a list of phrasings → non-empty captions, whitespace collapsed."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(c, str) for c in v):
        raise ValueError("caption must be a string (or a list of strings)")
    return [" ".join(c.split()) for c in v if c.strip()]


def parse_segment(row: dict[str, Any]) -> tuple[float, float] | None:
    """MusicCaps ``start_s``/``end_s`` → (start, end) in seconds, or None when absent."""
    s, e = row.get("start_s"), row.get("end_s")
    if (s is None or s == "") and (e is None or e == ""):
        return None
    try:
        start, end = float(s), float(e)
    except (TypeError, ValueError):
        raise ValueError(f"start_s/end_s must both be numbers (got {s!r}, {e!r})") from None
    if not (0 <= start < end) or not math.isfinite(end):
        raise ValueError(f"need 0 <= start_s < end_s (got {start:g}, {end:g})")
    return start, end


def unsafe_path(raw: str) -> bool:
    """Absolute paths, drive letters and ``..`` would read outside the folder."""
    if raw.startswith(("/", "\\")) or PureWindowsPath(raw).drive:
        return True
    return ".." in PurePosixPath(raw.replace("\\", "/")).parts
