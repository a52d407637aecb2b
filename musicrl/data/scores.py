"""The music21 corpus as a catalogue of pieces, and a piece as plain note lists.

Styles map to folders of the music21 core corpus. Collection files (ABC tune
books with many ``X:`` tunes) are expanded into one piece per tune, found by
scanning the text for ``X:`` numbers (cheap: no parsing). A piece is parsed
only when a build worker renders it, into a :class:`Piece` — a few NumPy-free
lists that are easy to slice by time and loop.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

__all__ = ["STYLES", "StyleInfo", "PieceRef", "Piece", "catalogue", "parse_piece",
           "subtype_from_title"]


@dataclasses.dataclass(frozen=True)
class StyleInfo:
    name: str
    sources: tuple[str, ...]      # folders of the music21 core corpus
    bpm_range: tuple[int, int]    # typical tempi for the style (clipped to the config's)
    phrases: tuple[str, ...]      # how captions name the style


STYLES: dict[str, StyleInfo] = {s.name: s for s in (
    StyleInfo("chorale", ("bach",), (60, 110),
              ("Bach chorale", "four-part chorale", "Baroque chorale", "church chorale",
               "hymn-like chorale")),
    StyleInfo("renaissance", ("palestrina", "josquin", "lusitano", "luca"), (60, 120),
              ("Renaissance polyphony", "sacred Renaissance piece", "Renaissance mass movement",
               "polyphonic Renaissance choral piece")),
    StyleInfo("medieval", ("trecento", "ciconia"), (70, 140),
              ("medieval song", "Italian trecento piece", "medieval Italian ballata",
               "fourteenth-century song")),
    StyleInfo("celtic", ("ryansMammoth", "oneills1850", "airdsAirs"), (90, 180),
              ("Celtic fiddle tune", "traditional Irish tune", "Scottish fiddle tune",
               "Celtic folk tune")),
    StyleInfo("folk", ("essenFolksong",), (70, 150),
              ("European folk song", "German folk song", "traditional folk melody",
               "old European folk tune")),
    StyleInfo("madrigal", ("monteverdi",), (60, 130),
              ("Italian madrigal", "Monteverdi madrigal", "late Renaissance madrigal",
               "polyphonic madrigal")),
    StyleInfo("classical", ("mozart", "haydn", "beethoven", "schubert"), (60, 160),
              ("Classical-era string quartet", "classical chamber music",
               "Viennese classical quartet", "classical period piece")),
)}

_SUBTYPES = ("slip jig", "reel", "jig", "hornpipe", "strathspey", "polka", "march", "air",
             "slide", "waltz", "set dance", "lament")


def subtype_from_title(title: str) -> str | None:
    """The dance/tune type named in a folk tune's title ("… Reel" → "reel")."""
    low = (title or "").lower()
    for s in _SUBTYPES:
        if re.search(rf"\b{s}s?\b", low):
            return s
    return None


@dataclasses.dataclass(frozen=True)
class PieceRef:
    """A piece in the corpus: a file, and for tune books the tune's X: number."""

    style: str
    path: str                 # relative to the music21 corpus folder, e.g. "bach/bwv66.6.mxl"
    number: int | None = None

    @property
    def id(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9.]+", "-", self.path.rsplit(".", 1)[0]).strip("-")
        return f"{stem}-{self.number}" if self.number is not None else stem


@dataclasses.dataclass
class Piece:
    """A parsed piece. Times in quarter notes from the start of the score."""

    ref: PieceRef
    title: str
    composer: str | None
    parts: list[list[tuple[int, float, float]]]  # per part: (midi pitch, onset, offset)
    length_q: float
    measure_starts: list[float]
    numerator: int
    denominator: int
    tonic_pc: int                 # pitch class of the tonic (C = 0)
    tonic_name: str
    mode: str                     # "major" | "minor"

    @property
    def compound(self) -> bool:
        """6/8, 9/8, 12/8: the beat is a dotted quarter."""
        return self.denominator == 8 and self.numerator in (6, 9, 12)

    @property
    def beat_q(self) -> float:
        return 1.5 if self.compound else 1.0

    @property
    def beats_per_bar(self) -> int:
        bar_q = self.numerator * 4.0 / self.denominator
        return max(1, round(bar_q / self.beat_q))


def _corpus_dir() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def _abc_numbers(path: Path) -> list[int]:
    text = path.read_text(encoding="latin-1", errors="replace")
    return [int(m.group(1)) for m in re.finditer(r"^X:\s*(\d+)", text, flags=re.M)]


def catalogue(style: str) -> list[PieceRef]:
    """All candidate pieces of a style, in a fixed order (no parsing)."""
    info = STYLES[style]
    root = _corpus_dir()
    refs: list[PieceRef] = []
    # Some works exist in several encodings (movement1.mxl and movement1.krn): keep one.
    preference = {".mxl": 0, ".musicxml": 1, ".xml": 2, ".krn": 3, ".abc": 4}
    for src in info.sources:
        folder = root / src
        if not folder.exists():
            continue
        files: dict[Path, Path] = {}
        for f in sorted(folder.rglob("*")):
            suffix = f.suffix.lower()
            if suffix not in preference or not f.is_file():
                continue
            stem = f.with_suffix("")
            if stem not in files or preference[suffix] < preference[files[stem].suffix.lower()]:
                files[stem] = f
        for f in sorted(files.values()):
            rel = f.relative_to(root).as_posix()
            if f.suffix.lower() == ".abc":
                nums = _abc_numbers(f)
                if len(nums) > 1:
                    refs.extend(PieceRef(style, rel, n) for n in sorted(set(nums)))
                    continue
            refs.append(PieceRef(style, rel))
    return refs


def parse_piece(ref: PieceRef, max_quarters: float = 2000.0) -> Piece | None:
    """Parses a score into note lists; None when it has no usable notes or is too long."""
    from music21 import converter, key, meter

    path = _corpus_dir() / ref.path
    if ref.number is not None:
        s = converter.parse(path, number=ref.number)
    else:
        s = converter.parse(path)
    if hasattr(s, "scores"):  # an Opus despite a single X: number
        if not s.scores:
            return None
        s = s.scores[0]
    length = float(s.highestTime)
    if length <= 0 or length > max_quarters:
        return None
    s = s.stripTies()
    parts = []
    for p in (s.parts if s.parts else [s]):
        notes = []
        for n in p.flatten().notes:
            dur = float(n.quarterLength)
            if dur <= 0:  # grace notes
                continue
            on = float(n.getOffsetInHierarchy(s)) if p is not s else float(n.offset)
            for pitch in n.pitches:
                notes.append((int(pitch.midi), on, on + dur))
        if notes:
            notes.sort(key=lambda x: (x[1], x[0]))
            parts.append(notes)
    if not parts or sum(len(p) for p in parts) < 8:
        return None
    # Highest part first: it carries the melody.
    parts.sort(key=lambda p: -sum(n[0] for n in p) / len(p))

    first = s.parts[0] if s.parts else s
    starts = sorted({float(m.offset) for m in first.getElementsByClass("Measure")}) or [0.0]
    ts = next(iter(s.recurse().getElementsByClass(meter.TimeSignature)), None)
    num, den = (ts.numerator, ts.denominator) if ts is not None else (4, 4)
    try:
        k = s.analyze("key")
    except Exception:  # too few notes for the Krumhansl profiles
        k = key.Key("C")
    mode = k.mode if k.mode in ("major", "minor") else "major"
    md = s.metadata
    title = (md.title if md and md.title else "") or Path(ref.path).stem
    composer = md.composer if md and md.composer else None
    return Piece(ref=ref, title=str(title), composer=composer, parts=parts, length_q=length,
                 measure_starts=starts, numerator=int(num), denominator=int(den),
                 tonic_pc=int(k.tonic.pitchClass), tonic_name=k.tonic.name, mode=mode)
