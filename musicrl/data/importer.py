"""Users' own audio (``musicrl data import``): validate, resample, clip, record.

A folder of audio files (wav/flac/ogg/mp3) plus a caption file becomes clips
under ``root/imported/audio/`` and rows of ``root/imported.jsonl``, in the same
format as the bundled corpus (16 kHz mono, -20 LUFS, ``clip_seconds`` long).

The caption file is JSONL or CSV (columns: :mod:`musicrl.data.caption_file`).
Several rows for the same file are several phrasings of one description. With
MusicCaps ``start_s``/``end_s`` only that segment of the file is used; a file
that ends before ``end_s`` but is as long as the segment, give or take 1 s, is
taken to be the segment already cut (as MusicCaps downloaders write it) and is
used whole.

Every entry is checked and each bad one is reported by name with the reason:
malformed rows (by line number), paths that leave the folder, missing files,
audio without a caption row, unsupported formats, empty captions, and files
that are corrupt, empty, not audio, silent or too short.

Idempotence: a clip's id is a sanitized file stem plus a hash of the file's
content (and segment), so a second run finds every file already recorded and
rewrites nothing, a renamed copy is not imported twice, and two different files
with the same name do not collide. A file already imported is left as it is
(re-running with another ``clip_seconds`` does not re-cut it); one whose clips
went missing from disk is imported again. The manifest is merged under a lock and
written atomically; rows already in it are kept byte for byte.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from musicrl.atomic import write_text_atomic
from musicrl.audio import (
    SAMPLE_RATE,
    SUPPORTED_SUFFIXES,
    AudioError,
    load_audio,
    loudness_normalize,
    rms_dbfs,
    write_wav_atomic,
)
from musicrl.data.caption_file import (
    CAPTION_COLUMNS,
    FILE_COLUMNS,
    TAG_COLUMNS,
    CaptionFileError,
    first,
    parse_captions,
    parse_segment,
    parse_tags,
    read_rows,
    unsafe_path,
)
from musicrl.data.manifest import (
    IMPORTED_MANIFEST,
    SPLITS,
    Clip,
    sha256_file,
)
from musicrl.errors import MusicrlError

__all__ = ["ImportReport", "ImportFolderError", "import_folder", "AUDIO_DIR"]

AUDIO_DIR = "imported/audio"
SILENCE_DBFS = -60.0
TARGET_LUFS = -20.0


class ImportFolderError(MusicrlError, ValueError):
    """The import cannot start (caption file or existing manifest unusable)."""


@dataclasses.dataclass
class ImportReport:
    """What one import did.

    Attributes:
      imported: entries (file names, with the segment if any) turned into clips now.
      skipped: (name, reason) for every entry refused.
      unchanged: entries found already imported (nothing rewritten).
      clips: ids of the clips written now.
      manifest: the manifest file.
    """

    imported: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)
    clips: list[str] = dataclasses.field(default_factory=list)
    manifest: str = ""

    def summary(self) -> str:
        lines = [f"imported {len(self.imported)} file(s) as {len(self.clips)} clip(s)"
                 f"{' into ' + self.manifest if self.manifest else ''}; "
                 f"{len(self.unchanged)} already imported (unchanged); "
                 f"{len(self.skipped)} skipped"]
        if self.skipped:
            width = min(max(len(n) for n, _ in self.skipped), 40)
            lines.append("skipped:")
            lines.extend(f"  {name.ljust(width)}  {reason}" for name, reason in self.skipped)
        return "\n".join(lines)


@dataclasses.dataclass
class _Entry:
    """One caption row resolved to a file (rows for the same file and segment merged)."""

    rel: str                                   # file relative to the folder (posix)
    captions: list[str]
    tags: list[str]
    split: str | None
    segment: tuple[float, float] | None
    line: int

    @property
    def name(self) -> str:
        if self.segment is None:
            return self.rel
        return f"{self.rel} [{self.segment[0]:g}-{self.segment[1]:g} s]"


# ----------------------------------------------------------------------------
# Folder
# ----------------------------------------------------------------------------

def _scan(folder: Path, exclude: set[Path]) -> list[str]:
    """Non-hidden files under the folder (relative, posix), sorted."""
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        real = p.resolve()
        if any(real.is_relative_to(x) for x in exclude):
            continue
        out.append(rel.as_posix())
    return sorted(out)


def _resolve(folder: Path, raw: str, by_noext: dict[str, list[str]],
             by_stem: dict[str, list[str]], column: str) -> tuple[str | None, str]:
    """The file a row names → (relative path, "") or (None, reason)."""
    if column == "ytid":
        hits = by_stem.get(raw, [])
    elif (folder / raw).is_file():
        hits = [raw]
    elif PurePosixPath(raw).suffix.lower() in SUPPORTED_SUFFIXES:
        hits = []
    else:  # suffix left out: any supported extension
        hits = by_noext.get(raw, [])
    if not hits:
        return None, "file not found"
    if len(hits) > 1:
        return None, f"ambiguous: matches {', '.join(hits)}"
    if not (folder / hits[0]).resolve().is_relative_to(folder.resolve()):
        return None, "path escapes the folder (link to outside)"
    if PurePosixPath(hits[0]).suffix.lower() not in SUPPORTED_SUFFIXES:
        return None, _unsupported(hits[0])
    return hits[0], ""


def _unsupported(rel: str) -> str:
    suffix = PurePosixPath(rel).suffix or "no suffix"
    return f"unsupported format ({suffix}; use {'/'.join(s[1:] for s in SUPPORTED_SUFFIXES)})"


def _slug(rel: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", PurePosixPath(rel).with_suffix("").as_posix())
    return s.strip("_-")[:48] or "clip"


def _key(file_sha: str, segment: tuple[float, float] | None) -> str:
    """Content key: the file's bytes and the segment used (10 hex digits in ids)."""
    if segment is None:
        return file_sha[:10]
    seg = f"{file_sha}:{segment[0]:.3f}:{segment[1]:.3f}"
    return hashlib.sha256(seg.encode()).hexdigest()[:10]


def _reason(e: AudioError, path: Path) -> str:
    msg = str(e)
    msg = msg.removeprefix(f"{path}: ")
    return msg.replace(f"Error opening '{path}': ", "").replace(str(path), path.name)


# ----------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock beside the manifest, so concurrent imports cannot lose rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as f:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_manifest(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line text, parsed row) for each row; a damaged manifest stops the import."""
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict) or "id" not in d:
                    raise ValueError("not a clip row")
            except ValueError as e:
                raise ImportFolderError(
                    f"{path}:{i}: damaged manifest row ({e}); fix or remove that line "
                    f"(the import does not rewrite a manifest it cannot read)") from None
            rows.append((line.rstrip("\n"), d))
    return rows


def _merge(path: Path, new: list[Clip], replace: set[str]) -> None:
    """Adds ``new`` rows, dropping old rows of the pieces in ``replace``; keeps the rest."""
    if not new and not replace:
        return
    with _locked(path):
        old = _read_manifest(path)  # re-read under the lock: another import may have run
        kept = [(t, d) for t, d in old if d.get("piece") not in replace]
        ids = {d["id"] for _, d in kept}
        add = [c for c in new if c.id not in ids]
        if not add and len(kept) == len(old):
            return
        write_text_atomic(path, "".join(t + "\n" for t, _ in kept)
                          + "".join(c.to_json() + "\n" for c in add))


# ----------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------

def import_folder(folder: str | Path, captions: str | Path, *, root: str | Path,
                  clip_seconds: float = 10.0, split: str = "train",
                  min_seconds: float = 2.0, progress: bool = False) -> ImportReport:
    """Imports a folder of audio with captions into ``root`` (see the module doc).

    Args:
      folder: folder of audio files (searched recursively; hidden files ignored).
      captions: JSONL or CSV caption file (may lie inside the folder).
      root: data root; clips go to ``root/imported/audio``, rows to ``root/imported.jsonl``.
      clip_seconds: long files are cut into clips of this length; the last piece is
        kept when at least ``min_seconds`` long.
      split: split for entries whose row names none.
      min_seconds: files (or segments) shorter than this are refused.
      progress: tqdm progress bar on stderr.

    Returns:
      The report; ``report.skipped`` lists every refused entry with its reason.

    Raises:
      FileNotFoundError: the folder or the caption file does not exist.
      ImportFolderError: unusable caption file, bad arguments, or a damaged manifest.
    """
    folder, captions, root = Path(folder), Path(captions), Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not captions.is_file():
        raise FileNotFoundError(f"{captions}: no such caption file")
    if split not in SPLITS:
        raise ImportFolderError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    if not clip_seconds > 0 or not min_seconds >= 0:
        raise ImportFolderError(
            f"need clip_seconds > 0 and min_seconds >= 0 (got {clip_seconds}, {min_seconds})")
    manifest = root / IMPORTED_MANIFEST
    report = ImportReport(manifest=str(manifest))
    existing = _read_manifest(manifest)  # fail early on a damaged manifest

    # The caption file and earlier imports may sit inside the folder: not inputs.
    files = _scan(folder, {captions.resolve(), manifest.resolve(),
                           (root / AUDIO_DIR).resolve()})
    audio = [f for f in files if PurePosixPath(f).suffix.lower() in SUPPORTED_SUFFIXES]
    by_noext: dict[str, list[str]] = {}
    by_stem: dict[str, list[str]] = {}
    for f in audio:
        p = PurePosixPath(f)
        by_noext.setdefault(p.with_suffix("").as_posix(), []).append(f)
        by_stem.setdefault(p.stem, []).append(f)

    entries = _entries(folder, captions, split, by_noext, by_stem, report)
    claimed = {e.rel for e in entries.values()} | {n for n, _ in report.skipped}
    for f in files:
        if f in claimed:
            continue
        if f in audio:
            report.skipped.append((f, "no caption"))
        else:
            report.skipped.append((f, _unsupported(f)))

    # Pieces already recorded, by content key → (piece id, all its audio present).
    done: dict[str, tuple[str, bool]] = {}
    for _, d in existing:
        if d.get("origin") != "import" or "-" not in d.get("piece", ""):
            continue
        key = d["piece"].rsplit("-", 1)[1]
        present = (root / d.get("path", "")).is_file()
        prev = done.get(key, (d["piece"], True))
        done[key] = (d["piece"], prev[1] and present)

    new: list[Clip] = []
    replace: set[str] = set()
    seen: dict[str, str] = {}
    try:
        from tqdm import tqdm

        for e in tqdm(sorted(entries.values(), key=lambda e: (e.rel, e.segment or ())),
                      desc="import", unit="file", file=sys.stderr, disable=not progress):
            path = folder / e.rel
            key = _key(sha256_file(path), e.segment)
            if key in seen:
                report.skipped.append((e.name, f"same audio as {seen[key]} (not imported twice)"))
                continue
            seen[key] = e.name
            if key in done and done[key][1]:
                report.unchanged.append(e.name)
                continue
            if key in done:  # recorded, but some audio went missing: redo it
                replace.add(done[key][0])
            clips, reason = _import_one(e, path, f"{_slug(e.rel)}-{key}", root,
                                        clip_seconds, min_seconds)
            if reason:
                report.skipped.append((e.name, reason))
                continue
            new.extend(clips)
            report.imported.append(e.name)
            report.clips.extend(c.id for c in clips)
    finally:  # an interrupted import still records what it finished
        _merge(manifest, new, replace)
    return report


def _entries(folder: Path, captions: Path, split: str, by_noext: dict[str, list[str]],
             by_stem: dict[str, list[str]], report: ImportReport) -> dict[tuple, _Entry]:
    """Caption rows → entries by (file, segment); row problems go to the report."""
    entries: dict[tuple, _Entry] = {}
    cname = captions.name
    try:
        rows = list(read_rows(captions))
    except CaptionFileError as e:
        raise ImportFolderError(str(e)) from None
    for line, row in rows:
        where = f"{cname}:{line}"
        if isinstance(row, str):
            report.skipped.append((where, row))
            continue
        column, raw = first(row, FILE_COLUMNS)
        if not isinstance(raw, str) or not raw.strip():
            report.skipped.append(
                (where, f"no file name (columns {', '.join(FILE_COLUMNS)})" if raw is None
                 else "file name must be a string"))
            continue
        raw = raw.strip()
        if unsafe_path(raw):
            report.skipped.append((raw, f"path escapes the folder (absolute or '..'; {where})"))
            continue
        if column != "ytid":  # "./a.wav", "sub\\a.wav" → "a.wav", "sub/a.wav"
            raw = PurePosixPath(raw.replace("\\", "/")).as_posix()
        rel, why = _resolve(folder, raw, by_noext, by_stem, column)
        if rel is None:
            report.skipped.append((raw, f"{why} ({where})"))
            continue
        try:
            caps = parse_captions(first(row, CAPTION_COLUMNS)[1] or "")
            tags = parse_tags(first(row, TAG_COLUMNS)[1])
            segment = parse_segment(row)
        except ValueError as e:
            report.skipped.append((rel, f"{e} ({where})"))
            continue
        row_split = str(row.get("split") or "").strip().lower() or None
        if row_split is not None and row_split not in SPLITS:
            report.skipped.append((rel, f"unknown split {row_split!r}; choose from "
                                        f"{'/'.join(SPLITS)} ({where})"))
            continue
        if not caps:
            report.skipped.append((rel, f"empty caption ({where})"))
            continue
        e = entries.get((rel, segment))
        if e is None:
            entries[(rel, segment)] = _Entry(rel, caps, tags, row_split, segment, line)
            continue
        # Another row for the same audio: more phrasings of one description.
        if row_split and e.split and row_split != e.split:
            report.skipped.append((e.name, f"split {row_split!r} conflicts with "
                                           f"{e.split!r} on line {e.line} ({where})"))
            continue
        e.captions = list(dict.fromkeys(e.captions + caps))
        e.tags = list(dict.fromkeys(e.tags + tags))
        e.split = e.split or row_split
    for e in entries.values():
        e.split = e.split or split
    return entries


def _import_one(e: _Entry, path: Path, piece: str, root: Path, clip_seconds: float,
                min_seconds: float) -> tuple[list[Clip], str]:
    """Validates and clips one entry → (clips written, "") or ([], reason)."""
    try:
        x = load_audio(path, SAMPLE_RATE)
    except AudioError as err:
        return [], _reason(err, path)
    dur = len(x) / SAMPLE_RATE
    offset = 0.0
    if e.segment is not None:
        start, end = e.segment
        if abs(dur - (end - start)) <= 1.0 and end > dur + 0.05:
            pass  # the file already is the segment (MusicCaps downloads are cut)
        elif start < dur:  # a segment running past the end keeps what exists
            offset = start
            x = x[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)]
        else:
            return [], f"segment {start:g}-{end:g} s lies outside the file ({dur:.1f} s)"
    dur = len(x) / SAMPLE_RATE
    if dur < min_seconds:
        return [], f"too short ({dur:.1f} s < {min_seconds:g} s)"
    level = rms_dbfs(x)
    if level < SILENCE_DBFS:
        return [], ("silent (no signal)" if level == float("-inf")
                    else f"silent (RMS {level:.0f} dBFS < {SILENCE_DBFS:g})")

    y, _ = loudness_normalize(x, SAMPLE_RATE, TARGET_LUFS)
    n = round(clip_seconds * SAMPLE_RATE)
    clips = []
    for k, s in enumerate(range(0, len(y), n)):
        seg = x[s:s + n]
        if len(seg) < min_seconds * SAMPLE_RATE or rms_dbfs(seg) < SILENCE_DBFS:
            continue  # a short tail or a silent stretch is no training clip
        cid = f"{piece}-{k:03d}"
        rel = f"{AUDIO_DIR}/{cid}.wav"
        write_wav_atomic(root / rel, y[s:s + n], SAMPLE_RATE)
        labels = {"source_file": e.rel, "offset_s": round(offset + s / SAMPLE_RATE, 3)}
        clips.append(Clip(
            id=cid, path=rel, duration=round(len(seg) / SAMPLE_RATE, 4),
            captions=tuple(e.captions), tags=tuple(e.tags), labels=labels,
            split=e.split or "train", piece=piece, source=f"import:{e.rel}",
            checksum=sha256_file(root / rel), notes_path="", origin="import"))
    if not clips:
        return [], "silent (no clip above the silence threshold)"
    return clips, ""
