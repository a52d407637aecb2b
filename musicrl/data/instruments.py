"""General MIDI instruments and drum grooves used to arrange scores.

Each instrument has a GM program, a family (the label an instrument classifier
predicts), a playable range (parts are moved by octaves into it), and the
words captions may use for it. Drum grooves are one bar of hits on the GM
percussion map (channel 10), written in beats of the piece's beat unit.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Instrument", "MELODY", "ACCOMPANIMENT", "BASS", "INSTRUMENTS", "FAMILIES",
           "GROOVES", "grooves_for_meter", "groove_hits"]


@dataclasses.dataclass(frozen=True)
class Instrument:
    program: int
    name: str
    family: str
    low: int
    high: int
    words: tuple[str, ...]


def _i(program, name, family, low, high, *words):
    return Instrument(program, name, family, low, high, words or (name,))


MELODY = (
    _i(0, "acoustic grand piano", "piano", 48, 96, "piano", "grand piano"),
    _i(40, "violin", "strings", 55, 96, "violin", "fiddle"),
    _i(73, "flute", "woodwind", 60, 96, "flute"),
    _i(71, "clarinet", "woodwind", 52, 88, "clarinet"),
    _i(68, "oboe", "woodwind", 58, 88, "oboe"),
    _i(65, "alto saxophone", "woodwind", 50, 80, "alto sax", "saxophone"),
    _i(56, "trumpet", "brass", 55, 82, "trumpet"),
    _i(12, "marimba", "mallet", 48, 96, "marimba"),
    _i(11, "vibraphone", "mallet", 53, 89, "vibraphone", "vibes"),
    _i(80, "square lead", "synth", 48, 90, "square-wave synth lead", "chiptune synth",
       "synth lead"),
    _i(81, "sawtooth lead", "synth", 48, 90, "sawtooth synth lead", "synth lead"),
    _i(21, "accordion", "organ", 53, 89, "accordion"),
    _i(22, "harmonica", "woodwind", 60, 84, "harmonica"),
    _i(52, "choir aahs", "voice", 55, 79, "choir", "wordless choir", "vocal ahs"),
    _i(19, "church organ", "organ", 48, 90, "church organ", "pipe organ"),
    _i(24, "nylon guitar", "guitar", 52, 84, "classical guitar", "nylon-string guitar"),
)

ACCOMPANIMENT = (
    _i(0, "acoustic grand piano", "piano", 36, 84, "piano", "grand piano"),
    _i(4, "electric piano", "piano", 36, 84, "electric piano", "Rhodes piano"),
    _i(6, "harpsichord", "piano", 36, 84, "harpsichord"),
    _i(19, "church organ", "organ", 36, 84, "church organ", "pipe organ", "organ"),
    _i(16, "drawbar organ", "organ", 36, 84, "drawbar organ", "Hammond organ"),
    _i(48, "string ensemble", "strings", 36, 84, "strings", "string section",
       "string ensemble"),
    _i(24, "nylon guitar", "guitar", 40, 76, "classical guitar", "nylon-string guitar"),
    _i(25, "steel guitar", "guitar", 40, 76, "acoustic guitar", "steel-string guitar"),
    _i(52, "choir aahs", "voice", 45, 76, "choir", "vocal pad"),
    _i(46, "harp", "strings", 36, 84, "harp"),
    _i(89, "warm pad", "synth", 36, 84, "warm synth pad", "synth pad"),
)

BASS = (
    _i(32, "acoustic bass", "bass", 28, 55, "upright bass", "double bass"),
    _i(33, "electric bass", "bass", 28, 55, "bass guitar", "electric bass"),
    _i(42, "cello", "strings", 36, 64, "cello"),
    _i(58, "tuba", "brass", 28, 55, "tuba"),
    _i(70, "bassoon", "woodwind", 34, 65, "bassoon"),
)

INSTRUMENTS = {i.program: i for i in (*MELODY, *ACCOMPANIMENT, *BASS)}
FAMILIES = tuple(sorted({i.family for i in INSTRUMENTS.values()}))

# GM percussion keys.
KICK, SIDE, SNARE, CLAP, HAT, PEDAL, OPEN, RIDE = 36, 37, 38, 39, 42, 44, 46, 51

# One bar of hits: (beat position, GM key, velocity scale). ``{n}`` beats per bar.
GROOVES = ("rock", "four_on_the_floor", "swing", "bossa", "waltz", "shuffle")


def groove_hits(style: str, beats: int) -> list[tuple[float, int, float]]:
    """The hits of one bar of ``beats`` beats for a groove style."""
    hits: list[tuple[float, int, float]] = []
    for b in range(beats):
        if style == "rock":
            hits += [(b, HAT, 0.7), (b + 0.5, HAT, 0.5)]
            if b % 2 == 0:
                hits.append((b, KICK, 1.0))
            else:
                hits.append((b, SNARE, 0.95))
            if b == beats - 2 and beats >= 4:
                hits.append((b + 0.5, KICK, 0.8))
        elif style == "four_on_the_floor":
            hits += [(b, KICK, 1.0), (b + 0.5, OPEN, 0.6)]
            if b % 2 == 1:
                hits.append((b, CLAP, 0.9))
        elif style == "swing":
            hits += [(b, RIDE, 0.75), (b + 2 / 3, RIDE, 0.55)]
            if b % 2 == 1:
                hits.append((b, PEDAL, 0.7))
            else:
                hits.append((b, KICK, 0.6))
        elif style == "bossa":
            hits += [(b, HAT, 0.45), (b + 0.5, HAT, 0.35)]
            hits += [(b, KICK, 0.85), (b + 0.75, KICK, 0.55)]
            if b % 2 == 0:
                hits.append((b, SIDE, 0.8))
            else:
                hits.append((b + 0.5, SIDE, 0.8))
        elif style == "waltz":
            hits.append((b, KICK, 1.0) if b == 0 else (b, SNARE, 0.6))
            hits.append((b, HAT, 0.5))
        elif style == "shuffle":  # compound meter: the beat splits in three
            hits += [(b, HAT, 0.7), (b + 1 / 3, HAT, 0.35), (b + 2 / 3, HAT, 0.5)]
            hits.append((b, KICK, 1.0) if b % 2 == 0 else (b, SNARE, 0.95))
        else:
            raise ValueError(f"unknown groove {style!r}; choose from {GROOVES}")
    return hits


def grooves_for_meter(beats_per_bar: int, compound: bool) -> tuple[str, ...]:
    """Grooves that fit a meter."""
    if compound:
        return ("shuffle",)
    if beats_per_bar == 3:
        return ("waltz",)
    return ("rock", "four_on_the_floor", "swing", "bossa")
