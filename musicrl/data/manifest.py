"""The clip manifest: one JSON object per line, one line per audio clip.

A data root holds two manifests so that no operation can lose another's rows:

* ``manifest.jsonl`` — the bundled corpus, rewritten (atomically) by ``data build``;
* ``imported.jsonl`` — users' own clips, appended by ``data import``.

Every row has the fields of :class:`Clip`. Paths are relative to the data root.
Files are written through a temporary file and ``os.replace`` so that a crash
mid-write leaves the previous version intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from musicrl.atomic import write_text_atomic

__all__ = [
    "Clip",
    "BUNDLED_MANIFEST",
    "IMPORTED_MANIFEST",
    "SPLITS",
    "sha256_file",
    "sha256_bytes",
    "write_jsonl_atomic",
    "read_jsonl",
    "load_clips",
    "manifest_checksum",
]

BUNDLED_MANIFEST = "manifest.jsonl"
IMPORTED_MANIFEST = "imported.jsonl"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip of the corpus.

    Attributes:
      id: unique, filesystem-safe identifier.
      path: audio file (16 kHz mono WAV), relative to the data root.
      duration: seconds.
      captions: several phrasings of a description (≥ 1).
      tags: aspect tags (MusicCaps style), e.g. ("reel", "fiddle", "major").
      labels: machine-readable attributes (style, bpm, key, mode, instruments,
        drums, ...). Bundled clips have all of them; imported clips what the
        caption file gave.
      split: "train", "valid" or "test" (split by source piece).
      piece: the source piece (all clips of a piece share a split).
      source: where the music came from (e.g. "music21:bach/bwv66.6.mxl").
      checksum: sha256 of the audio file.
      notes_path: note events actually rendered (``.npy``, see
        :mod:`musicrl.data.events`), or "" when unknown (imported audio).
      origin: "bundled" or "import".
    """

    id: str
    path: str
    duration: float
    captions: tuple[str, ...]
    tags: tuple[str, ...]
    labels: dict[str, Any]
    split: str
    piece: str
    source: str
    checksum: str
    notes_path: str = ""
    origin: str = "bundled"

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        return json.dumps(d, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clip:
        d = dict(d)
        d["captions"] = tuple(d.get("captions", ()))
        d["tags"] = tuple(d.get("tags", ()))
        return cls(**d)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[Clip | dict]) -> None:
    lines = [r.to_json() if isinstance(r, Clip) else json.dumps(r, sort_keys=True)
             for r in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a JSONL file; a malformed line is reported with its number."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return rows


def load_clips(root: str | os.PathLike, splits: Sequence[str] | None = None,
               include_imported: bool = True) -> list[Clip]:
    """All clips under a data root (bundled, then imported), optionally by split.

    Raises:
      FileNotFoundError: the root has no manifest (with the command to make one).
    """
    root = Path(root)
    files = [root / BUNDLED_MANIFEST]
    if include_imported:
        files.append(root / IMPORTED_MANIFEST)
    present = [f for f in files if f.exists()]
    if not present:
        raise FileNotFoundError(
            f"no manifest under {root}: run `musicrl data build --root {root}` "
            f"or `musicrl data import DIR --captions FILE --root {root}` first")
    if splits is not None:
        bad = set(splits) - set(SPLITS)
        if bad:
            raise ValueError(f"unknown split(s) {sorted(bad)}; choose from {list(SPLITS)}")
    clips = []
    for f in present:
        for d in read_jsonl(f):
            c = Clip.from_dict(d)
            if splits is None or c.split in splits:
                clips.append(c)
    return clips


def manifest_checksum(root: str | os.PathLike, name: str = BUNDLED_MANIFEST) -> str:
    return sha256_file(Path(root) / name)
