"""Arranging a window of a score for General MIDI: the labels are the recipe.

For each clip an arrangement is sampled — start bar, tempo, transposition,
melody / accompaniment / bass instruments, accompaniment pattern (for one-line
tunes the accompaniment is harmonized from the key), drum groove, dynamics —
and turned into note events in seconds. Every sampled choice is recorded as a
label, so the labels are true of the audio by construction; tests check them
against the audio independently (beat tracking, chroma).
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import numpy as np

from musicrl.data.events import ROLES, make_events
from musicrl.data.instruments import (
    ACCOMPANIMENT,
    BASS,
    MELODY,
    Instrument,
    groove_hits,
    grooves_for_meter,
)
from musicrl.data.scores import STYLES, Piece, subtype_from_title

__all__ = ["Arrangement", "sample_arrangement", "arrangement_events", "events_to_midi",
           "tempo_bucket", "TEMPO_BUCKET_BPM"]

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
DYNAMICS = {"soft": 55, "medium": 78, "loud": 100}
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


# BPM range of each tempo bucket (the captions' tempo words name a bucket, not a number)
TEMPO_BUCKET_BPM = {"slow": (0.0, 90.0), "medium": (90.0, 130.0), "fast": (130.0, float("inf"))}


def tempo_bucket(bpm: float) -> str:
    return "slow" if bpm < 90 else ("medium" if bpm <= 130 else "fast")


@dataclasses.dataclass(frozen=True)
class Arrangement:
    start_q: float
    bpm: int
    transpose: int
    melody: Instrument
    accompaniment: Instrument
    bass: Instrument | None
    pattern: str                  # how the accompaniment plays: "parts" | block | arpeggio | oompah
    drums: str | None             # groove style, or None
    dynamics: str

    def labels(self, piece: Piece) -> dict[str, Any]:
        key_pc = (piece.tonic_pc + self.transpose) % 12
        inst = [self.melody, self.accompaniment] + ([self.bass] if self.bass else [])
        return {
            "style": piece.ref.style,
            "subtype": subtype_from_title(piece.title) if piece.ref.style == "celtic" else None,
            "title": piece.title,
            "composer": piece.composer,
            "meter": f"{piece.numerator}/{piece.denominator}",
            "beat_unit": "dotted quarter" if piece.compound else "quarter",
            "bpm": self.bpm,
            "tempo_bucket": tempo_bucket(self.bpm),
            "key": PITCH_NAMES[key_pc],
            "mode": piece.mode,
            "transpose": self.transpose,
            "melody_program": self.melody.program,
            "melody_instrument": self.melody.name,
            "melody_family": self.melody.family,
            "accompaniment_program": self.accompaniment.program,
            "accompaniment_instrument": self.accompaniment.name,
            "accompaniment_family": self.accompaniment.family,
            "accompaniment_pattern": self.pattern,
            "bass_program": self.bass.program if self.bass else None,
            "bass_instrument": self.bass.name if self.bass else None,
            "instruments": sorted({i.name for i in inst}),
            "families": sorted({i.family for i in inst}),
            "drums": self.drums is not None,
            "drum_style": self.drums,
            "dynamics": self.dynamics,
            "start_quarter": self.start_q,
        }


def style_bpm_range(style: str, bpm_range: tuple[int, int]) -> tuple[int, int]:
    """The tempi a clip of ``style`` is drawn from: the style's range clipped to the
    config's (the config's alone when they do not overlap)."""
    lo_s, hi_s = STYLES[style].bpm_range
    lo, hi = max(lo_s, bpm_range[0]), min(hi_s, bpm_range[1])
    return (lo, hi) if lo <= hi else tuple(bpm_range)


def sample_arrangement(piece: Piece, rng: np.random.Generator, clip_index: int, n_clips: int,
                       bpm_range: tuple[int, int], drum_fraction: float) -> Arrangement:
    """Samples one arrangement; clips of a piece start in different parts of it."""
    starts = piece.measure_starts
    pos = int((clip_index + rng.random()) / n_clips * len(starts))
    start_q = float(starts[min(pos, len(starts) - 1)])

    lo, hi = style_bpm_range(piece.ref.style, bpm_range)
    bpm = int(rng.integers(lo, hi + 1))

    melody = MELODY[rng.integers(len(MELODY))]
    acc_choices = [a for a in ACCOMPANIMENT if a.program != melody.program]
    accompaniment = acc_choices[rng.integers(len(acc_choices))]
    polyphonic = len(piece.parts) >= 2
    if polyphonic:
        pattern = "parts"
        bass = BASS[rng.integers(len(BASS))] if len(piece.parts) >= 3 and rng.random() < 0.5 else None
    else:
        pattern = ("block", "arpeggio", "oompah")[rng.integers(3)]
        bass = BASS[rng.integers(len(BASS))] if rng.random() < 0.5 else None
    drums = None
    if rng.random() < drum_fraction:
        styles = grooves_for_meter(piece.beats_per_bar, piece.compound)
        drums = styles[rng.integers(len(styles))]
    dynamics = ("soft", "medium", "loud")[rng.choice(3, p=(0.25, 0.5, 0.25))]
    transpose = int(rng.integers(-5, 7))
    return Arrangement(start_q, bpm, transpose, melody, accompaniment, bass, pattern, drums,
                       dynamics)


def _window(notes: list[tuple[int, float, float]], start: float, width: float,
            period: float) -> list[tuple[int, float, float]]:
    """Notes overlapping [start, start+width), looping the piece with ``period``."""
    out = []
    k0 = int(math.floor(start / period))
    k1 = int(math.floor((start + width) / period))
    for k in range(k0, k1 + 1):
        shift = k * period
        for p, on, off in notes:
            on2, off2 = on + shift, min(off, period) + shift
            if off2 <= start or on2 >= start + width:
                continue
            out.append((p, max(on2, start) - start, min(off2, start + width) - start))
    return out


def _octave_fit(notes: list[tuple[int, float, float]], inst: Instrument, transpose: int) -> int:
    """Transposition (semitones) that puts the part's median pitch in the instrument range."""
    if not notes:
        return transpose
    med = float(np.median([n[0] for n in notes])) + transpose
    center = (inst.low + inst.high) / 2
    return transpose + 12 * round((center - med) / 12)


def _harmonize(melody: list[tuple[int, float, float]], piece: Piece, arr: Arrangement,
               width_q: float) -> list[tuple[int, float, float, int]]:
    """Chords for a one-line tune: per half bar, the diatonic triad that best fits the melody.

    Returns (pitch, onset_q, offset_q, role) with role 1 (accompaniment) or 2 (bass).
    """
    tonic = (piece.tonic_pc + arr.transpose) % 12
    scale = _MAJOR if piece.mode == "major" else _MINOR
    triads = []
    for deg in range(7):
        root = (tonic + scale[deg]) % 12
        pcs = {root, (tonic + scale[(deg + 2) % 7]) % 12, (tonic + scale[(deg + 4) % 7]) % 12}
        prior = 0.3 if deg in (0, 3, 4) else 0.0
        triads.append((root, pcs, prior))
    bar_q = piece.numerator * 4.0 / piece.denominator
    seg_q = bar_q / 2 if piece.beats_per_bar >= 4 else bar_q
    beat_q = piece.beat_q
    out = []
    t = 0.0
    while t < width_q - 1e-6:
        end = min(t + seg_q, width_q)
        weight = np.zeros(12)
        for p, on, off in melody:
            ov = min(off, end) - max(on, t)
            if ov > 0:
                weight[(p + arr.transpose) % 12] += ov
        root, pcs, _ = max(triads, key=lambda tr: sum(weight[pc] for pc in tr[1]) + tr[2])
        third = next(pc for pc in pcs if (pc - root) % 12 in (3, 4))
        fifth = (root + 7) % 12
        chord = [48 + root, 48 + root + (third - root) % 12, 48 + root + 7]
        if arr.pattern == "block":
            out += [(p, t, end, 1) for p in chord]
        elif arr.pattern == "arpeggio":
            step = beat_q / 2 if not piece.compound else beat_q / 3
            i, u = 0, t
            while u < end - 1e-6:
                out.append((chord[i % 3] + (12 if i % 4 == 3 else 0), u, min(u + step, end), 1))
                u += step
                i += 1
        else:  # oompah: bass root on the strong beat, chord on the others
            u, i = t, 0
            while u < end - 1e-6:
                e = min(u + beat_q, end)
                if i == 0:
                    out.append((36 + root, u, e, 1))
                else:
                    out += [(p, u, e, 1) for p in chord]
                u += beat_q
                i += 1
        if arr.bass is not None:
            out.append((36 + root if arr.pattern != "oompah" else 36 + fifth, t, end, 2))
        t = end
    return out


def arrangement_events(piece: Piece, arr: Arrangement, seconds: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Note events (seconds from clip start) of a clip: melody, accompaniment, bass, drums."""
    q_per_s = arr.bpm * piece.beat_q / 60.0
    width_q = seconds * q_per_s
    period = max(piece.length_q, piece.numerator * 4.0 / piece.denominator)
    vel = DYNAMICS[arr.dynamics]
    rows = []

    def add(notes, inst, role, base_vel, tr):
        for p, on, off in notes:
            v = int(np.clip(base_vel + rng.integers(-6, 7), 1, 127))
            pitch = int(np.clip(p + tr, 0, 127))
            rows.append((pitch, on / q_per_s, off / q_per_s, v, inst.program, False, role))

    melody = _window(piece.parts[0], arr.start_q, width_q, period)
    add(melody, arr.melody, ROLES.index("melody"), vel + 8,
        _octave_fit(melody, arr.melody, arr.transpose))
    if arr.pattern == "parts":
        inner = piece.parts[1:-1] if arr.bass is not None else piece.parts[1:]
        acc = [n for part in inner for n in _window(part, arr.start_q, width_q, period)]
        add(acc, arr.accompaniment, ROLES.index("accompaniment"), vel - 6,
            _octave_fit(acc, arr.accompaniment, arr.transpose))
        if arr.bass is not None:
            bass = _window(piece.parts[-1], arr.start_q, width_q, period)
            add(bass, arr.bass, ROLES.index("bass"), vel, _octave_fit(bass, arr.bass, arr.transpose))
    else:
        gen = _harmonize(melody, piece, arr, width_q)
        add([g[:3] for g in gen if g[3] == 1], arr.accompaniment, ROLES.index("accompaniment"),
            vel - 10, 0)
        if arr.bass is not None:
            add([g[:3] for g in gen if g[3] == 2], arr.bass, ROLES.index("bass"), vel - 2, 0)
    if arr.drums is not None:
        beat_s = 60.0 / arr.bpm
        bar_beats = piece.beats_per_bar
        hits = groove_hits(arr.drums, bar_beats)
        n_bars = int(math.ceil(seconds / (beat_s * bar_beats))) + 1
        for bar in range(n_bars):
            for pos, key, scale in hits:
                t = (bar * bar_beats + pos) * beat_s
                if t >= seconds:
                    continue
                v = int(np.clip(vel * scale + 12 + rng.integers(-4, 5), 1, 127))
                rows.append((key, t, min(t + 0.1, seconds), v, 0, True, ROLES.index("drums")))
    return make_events(rows)


def events_to_midi(events: np.ndarray, bpm: int) -> bytes:
    """Standard MIDI file bytes for note events (one track per program/role)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=float(bpm))
    tracks: dict[tuple[int, bool, int], pretty_midi.Instrument] = {}
    for e in events:
        key = (int(e["program"]), bool(e["is_drum"]), int(e["role"]))
        if key not in tracks:
            tracks[key] = pretty_midi.Instrument(program=key[0], is_drum=key[1],
                                                 name=ROLES[key[2]])
        tracks[key].notes.append(pretty_midi.Note(
            velocity=int(e["velocity"]), pitch=int(e["pitch"]),
            start=float(e["onset"]), end=float(max(e["offset"], e["onset"] + 1e-3))))
    pm.instruments.extend(tracks.values())
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()
