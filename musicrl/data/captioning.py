"""Captions and aspect tags from a clip's labels, MusicCaps style.

Several phrasings per clip, from different sentence shapes, synonyms, word
orders and omissions, so that a text encoder learns the attributes rather than
one template. Only true statements: every word comes from the labels.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from musicrl.data.instruments import INSTRUMENTS
from musicrl.data.scores import STYLES

__all__ = ["make_captions", "make_tags", "make_aspect_caption", "label_phrase", "LABEL_CLASSES",
           "TEMPO_WORDS", "MOOD_WORDS", "mode_from_prompt", "flip_mode", "flip_tempo"]

_TEMPO_WORDS = {
    "slow": ("slow", "gentle", "unhurried", "calm", "leisurely", "slow-moving"),
    "medium": ("moderate", "mid-tempo", "steady", "relaxed", "easygoing"),
    "fast": ("lively", "fast", "brisk", "upbeat", "energetic", "quick"),
}
_MOOD_WORDS = {
    "major": ("bright", "cheerful", "happy", "sunny", "joyful", "uplifting"),
    "minor": ("melancholic", "sad", "dark", "wistful", "somber", "mournful"),
}
_DYN_WORDS = {
    "soft": ("played softly", "quiet and delicate", "with a soft touch"),
    "medium": ("", "", "at a moderate volume"),
    "loud": ("played loudly", "bold and loud", "with strong, forceful playing"),
}
# The vocabularies, for code that rewrites captions (MuLan's counterfactual negatives).
TEMPO_WORDS, MOOD_WORDS = _TEMPO_WORDS, _MOOD_WORDS

_GROOVE_WORDS = {
    "rock": ("rock", "straight rock", "backbeat"),
    "four_on_the_floor": ("four-on-the-floor", "dance", "disco-style four-on-the-floor"),
    "swing": ("swing", "jazzy swing", "swung ride-cymbal"),
    "bossa": ("bossa nova", "Latin bossa", "laid-back bossa nova"),
    "waltz": ("waltz", "oom-pah-pah waltz", "three-four waltz"),
    "shuffle": ("shuffle", "triplet shuffle", "rolling shuffle"),
}
_PATTERN_WORDS = {
    "block": ("sustained chords", "block chords", "held chords"),
    "arpeggio": ("arpeggiated chords", "broken chords", "flowing arpeggios"),
    "oompah": ("an oom-pah accompaniment", "a bass-and-chord vamp", "a bouncy bass-chord pattern"),
    "parts": ("the lower voices", "the inner parts", "the harmony parts"),
}


def _pick(rng: np.random.Generator, options) -> str:
    return options[rng.integers(len(options))]


def _inst(rng: np.random.Generator, program: int, celtic: bool = False) -> str:
    if program == 40 and celtic:
        return "fiddle"
    return _pick(rng, INSTRUMENTS[program].words)


def _style_phrase(rng: np.random.Generator, labels: dict[str, Any]) -> str:
    style = labels["style"]
    sub = labels.get("subtype")
    if style == "celtic" and sub:
        return _pick(rng, (f"Irish {sub}", f"Celtic {sub}", f"traditional {sub}",
                           f"Scottish-style {sub}"))
    phrase = _pick(rng, STYLES[style].phrases)
    comp = labels.get("composer")
    if style == "classical" and comp and rng.random() < 0.5:
        phrase += f" by {comp.split()[-1]}"
    return phrase


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def make_captions(labels: dict[str, Any], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct phrasings (fewer only if the sentence shapes run out)."""
    shapes = list(range(7))
    rng.shuffle(shapes)
    out: list[str] = []
    for shape in shapes * 3:
        if len(out) >= n:
            break
        c = _caption(labels, shape, rng)
        if c not in out:
            out.append(c)
    return out[:n]


def _caption(lb: dict[str, Any], shape: int, rng: np.random.Generator) -> str:
    celtic = lb["style"] == "celtic"
    tempo = _pick(rng, _TEMPO_WORDS[lb["tempo_bucket"]])
    mood = _pick(rng, _MOOD_WORDS[lb["mode"]])
    style = _style_phrase(rng, lb)
    mel = _inst(rng, lb["melody_program"], celtic)
    acc = _inst(rng, lb["accompaniment_program"])
    bass = _inst(rng, lb["bass_program"]) if lb["bass_program"] is not None else None
    key = f"{lb['key']} {lb['mode']}"
    bpm = lb["bpm"]
    pattern = _pick(rng, _PATTERN_WORDS[lb["accompaniment_pattern"]])
    dyn = _pick(rng, _DYN_WORDS[lb["dynamics"]])
    groove = _pick(rng, _GROOVE_WORDS[lb["drum_style"]]) if lb["drums"] else None
    if groove:
        drums = _pick(rng, (f"over a {groove} drum beat", f"with a steady {groove} groove",
                            f"backed by drums playing a {groove} pattern",
                            f"with {groove} drums"))
    else:
        drums = _pick(rng, ("without drums", "with no percussion", "", ""))
    bass_part = f" and a {bass} bass line" if bass else ""
    inst = mel if mel == acc else f"{mel} and {acc}"

    if shape == 0:
        s = f"{_article(tempo)} {tempo}, {mood} {style} played on {inst}{bass_part}"
        s += f" {drums}" if drums else ""
        s += f", around {bpm} bpm, in {key}."
    elif shape == 1:
        s = f"{style[0].upper() + style[1:]} arranged for {mel} with {acc} playing {pattern}"
        s += f"{bass_part}. "
        s += (f"Drums keep a {groove} beat. " if groove else "There are no drums. ")
        s += f"The tempo is {tempo}, about {bpm} BPM, and the key is {key}."
    elif shape == 2:
        s = f"This is a {mood} {style} in {key}. The {mel} carries the tune while {acc} "
        s += f"accompanies{bass_part}. "
        s += f"It is {tempo} ({bpm} bpm)" + (f" and {dyn}." if dyn else ".")
        if groove:
            s += f" A {groove} drum pattern runs underneath."
    elif shape == 3:
        parts = [style, mel, acc] + ([bass] if bass else [])
        parts += [f"{groove} drums" if groove else "no drums", f"{bpm} bpm", key, tempo, mood]
        s = ", ".join(parts)
    elif shape == 4:
        s = f"{tempo.capitalize()} {style} on {mel}"
        s += f" {drums}." if drums else "."
    elif shape == 5:
        s = f"{mood.capitalize()} {lb['mode']}-key music: a {style} with {mel} over {pattern} "
        s += f"on {acc}{bass_part}, {tempo} at {bpm} beats per minute"
        s += f", {drums}." if drums else "."
    else:
        s = f"{style[0].upper() + style[1:]}. Lead: {mel}. Accompaniment: {acc}"
        s += f". Bass: {bass}" if bass else ""
        s += f". Drums: {groove}" if groove else ". No drums"
        s += f". Tempo: {bpm} bpm ({tempo}). Key: {key}."
        if dyn:
            s += f" {dyn.capitalize()}."
    return " ".join(s.split())


def make_tags(labels: dict[str, Any]) -> list[str]:
    """Aspect tags (MusicCaps ``aspect_list`` style)."""
    tags = [labels["style"]]
    if labels.get("subtype"):
        tags.append(labels["subtype"])
    tags += list(labels["instruments"])
    tags += [labels["tempo_bucket"] + " tempo", labels["mode"], f"{labels['key']} {labels['mode']}",
             labels["dynamics"]]
    tags += ([labels["drum_style"].replace("_", " ") + " drums"] if labels["drums"]
             else ["no drums"])
    tags.append(_MOOD_WORDS[labels["mode"]][0])
    return tags



# The attributes with a small closed set of values, in a fixed class order: what
# ``label_phrase`` names and what MuLan's label-prompt loss (``label_weight``) classifies.
LABEL_CLASSES: dict[str, tuple[Any, ...]] = {
    "tempo_bucket": ("slow", "medium", "fast"),
    "mode": ("major", "minor"),
    "drums": (False, True),
}


def label_phrase(attribute: str, value: Any, rng: np.random.Generator) -> str:
    """One short phrase, in one of its wordings, that says ``attribute`` = ``value``:
    ("tempo_bucket", "slow") → "unhurried tempo", ("mode", "minor") → "in minor",
    ("drums", False) → "no percussion". The vocabulary is the captions' own."""
    if attribute not in LABEL_CLASSES or value not in LABEL_CLASSES[attribute]:
        raise ValueError(f"label_phrase: no phrases for {attribute}={value!r}; known: "
                         f"{ {a: list(v) for a, v in LABEL_CLASSES.items()} }")
    if attribute == "tempo_bucket":
        return _pick(rng, (*_TEMPO_WORDS[value], f"{value} tempo",
                           f"{_pick(rng, _TEMPO_WORDS[value])} tempo"))
    if attribute == "mode":
        return _pick(rng, (*_MOOD_WORDS[value], f"{value} key", f"in {value}"))
    return _pick(rng, ("drums", "with drums", "a drum kit") if value
                 else ("no drums", "without drums", "no percussion"))


def make_aspect_caption(labels: dict[str, Any], rng: np.random.Generator,
                        max_aspects: int = 3) -> str:
    """A short aspect-list caption of 1..``max_aspects`` randomly chosen aspects, each in
    one of its phrasings: "slow, minor key", "fiddle, no drums, cheerful".

    Full captions always name the instruments and the style, so a text→audio model trained
    on them alone never learns what a bare "slow" or "minor key" means on its own (the
    zero-shot label prompts of ``musicrl eval mulan``); MuLan trains on some of these too
    (``tag_prob``), like the aspect lists of MusicCaps. Only true statements.
    """
    aspects = [
        lambda: label_phrase("tempo_bucket", labels["tempo_bucket"], rng),
        lambda: (label_phrase("mode", labels["mode"], rng) if rng.random() < 0.8
                 else f"{labels['key']} {labels['mode']}"),
        lambda: (_pick(rng, (f"{_pick(rng, _GROOVE_WORDS[labels['drum_style']])} drums",
                             label_phrase("drums", True, rng))) if labels["drums"]
                 else label_phrase("drums", False, rng)),
        lambda: _inst(rng, labels["melody_program"], labels["style"] == "celtic"),
        lambda: _style_phrase(rng, labels),
    ]
    k = int(rng.integers(1, min(max_aspects, len(aspects)) + 1))
    chosen = rng.choice(len(aspects), size=k, replace=False)
    return ", ".join(aspects[int(i)]() for i in chosen)


# ----------------------------------------------------------------------------
# Counterfactual captions: the same caption with one attribute flipped. MuLan trains on
# them as hard negatives and its evaluation asks whether the true caption beats them.
# ----------------------------------------------------------------------------

def _word_re(words) -> re.Pattern:
    alts = sorted({w for w in words}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in alts) + r")\b", re.IGNORECASE)


def _keep_case(src: str, dst: str) -> str:
    return dst[:1].upper() + dst[1:] if src[:1].isupper() else dst


_MODE_MAP = {"major": "minor", "minor": "major"}
for _a, _b in zip(_MOOD_WORDS["major"], _MOOD_WORDS["minor"], strict=True):
    _MODE_MAP[_a], _MODE_MAP[_b] = _b, _a
_MODE_RE = _word_re(_MODE_MAP)
_TEMPO_OF = {w: b for b, ws in _TEMPO_WORDS.items() for w in ws}
_TEMPO_RE = _word_re(_TEMPO_OF)
_BPM_RE = re.compile(r"\b(\d{2,3})(\s*)(bpm|beats per minute)\b", re.IGNORECASE)
_BPM_RANGE = {"slow": (56, 84), "medium": (96, 124), "fast": (140, 180)}


_MODE_OF = {w: m for m, ws in _MOOD_WORDS.items() for w in (m, *ws)}


def mode_from_prompt(prompt: str) -> str | None:
    """The mode a prompt names by its words ("minor", "a melancholic waltz" → "minor",
    "bright" → "major"), or None when it names none or both."""
    found = {_MODE_OF[m.group(1).lower()] for m in _MODE_RE.finditer(prompt)}
    return found.pop() if len(found) == 1 else None


def flip_mode(caption: str) -> str | None:
    """The caption with major↔minor and its mood words swapped; None if it names neither."""
    out = _MODE_RE.sub(lambda m: _keep_case(m.group(1), _MODE_MAP[m.group(1).lower()]), caption)
    return out if out != caption else None


def flip_tempo(caption: str, rng: np.random.Generator) -> str | None:
    """The caption moved to another tempo bucket (slow ↔ fast, medium → either): tempo
    words and the BPM number rewritten; None if it names no tempo."""
    m = _BPM_RE.search(caption)
    words = [w.lower() for w in _TEMPO_RE.findall(caption)]
    if m:
        bpm = int(m.group(1))
        src = "slow" if bpm < 90 else ("medium" if bpm <= 130 else "fast")
    elif words:
        src = _TEMPO_OF[words[0]]
    else:
        return None
    dst = {"slow": "fast", "fast": "slow"}.get(src) or ("slow" if rng.random() < 0.5 else "fast")
    pool = _TEMPO_WORDS[dst]
    out = _TEMPO_RE.sub(lambda w: _keep_case(w.group(1), pool[int(rng.integers(len(pool)))]),
                        caption)
    lo, hi = _BPM_RANGE[dst]
    out = _BPM_RE.sub(lambda b: f"{int(rng.integers(lo, hi + 1))}{b.group(2)}{b.group(3)}", out)
    return out if out != caption else None
