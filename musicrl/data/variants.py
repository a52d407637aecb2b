"""Tempo and mode variants: the train clips of a corpus re-rendered with one label changed.

``musicrl data tempo-variants --source data/small --root data/small-tempo``
``musicrl data mode-variants --source data/small --root data/small-mode``

In the bundled corpus every passage is heard at one tempo, so a model that
predicts the next semantic token well from the previous ones gains little by
reading the tempo from its prefix (docs/generator.md, "Where tempo is lost").
A variant re-renders one train clip's exact arrangement (same passage start,
instruments, groove, dynamics, key and the same random draws of the
arrangement) at a new bpm, drawn uniformly from the style's range at least
``min_change`` away in ratio, and captions it from the new labels. A clip and
its variants differ in tempo alone, so tempo is what the prefix must explain.

A *mode* variant is the same arrangement in the parallel mode (same tonic):
every pitched note on the 3rd, 6th or 7th degree of the piece's scale moves
a semitone (major → natural minor lowers them, minor → major raises them;
notes off the scale, drums and everything else stay), and the caption is
written from the flipped labels. One per clip (``<clip>-m0``); the pair
differs in mode alone, the hard negative a MuLan audio tower needs to hear
mode (docs/mulan.md, "Mode twins").

The variants go to their own root (manifest, audio, notes; train split only,
pieces of the source's train split, ids ``<clip>-v<k>`` or ``<clip>-m0``; labels ``tempo_variant_of`` or ``mode_variant_of``
name the source clip, :func:`variant_groups` gathers them), so the bundled corpus
and everything measured on it stay as they are; ``musicrl train lm
extra_data=<root>`` adds their clips to the training stream. Resumable: a
finished piece is not redone (``units/<piece>.json``); the manifest is written
once all pieces are done. Deterministic for (source corpus, seed, variants).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_text_atomic
from musicrl.data.build import _stable_hash, plan_units, write_clip_files
from musicrl.data.config import DataConfig
from musicrl.data.manifest import (
    BUNDLED_MANIFEST,
    Clip,
    load_clips,
    sha256_bytes,
    write_jsonl_atomic,
)
from musicrl.errors import MusicrlError

__all__ = ["TempoVariantsError", "VariantsReport", "source_config", "variant_bpms",
           "parallel_mode_events", "render_clip_at", "tempo_variants", "mode_variants",
           "split_roots", "variant_groups", "held_out_twins"]

INFO = "variants.json"
KINDS = ("tempo", "mode")
VARIANT_OF = {"tempo": "tempo_variant_of", "mode": "mode_variant_of"}
_TO_MINOR = {4: -1, 9: -1, 11: -1}      # scale degrees 3, 6, 7 of major → natural minor
_TO_MAJOR = {3: 1, 8: 1, 10: 1}         # … of natural minor → major


class TempoVariantsError(MusicrlError, ValueError):
    """The source corpus cannot be re-rendered (no build.json, edited clips, bad options)."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise TempoVariantsError(f"variant kind must be one of {KINDS}, got {kind!r}")


def parallel_mode_events(events: np.ndarray, key_pc: int, mode: str) -> np.ndarray:
    """The events moved to the parallel mode of (``key_pc``, ``mode``): pitched notes on the
    scale's 3rd, 6th and 7th degrees move a semitone (down from major, up from minor)."""
    if mode not in ("major", "minor"):
        raise TempoVariantsError(f"mode must be 'major' or 'minor', got {mode!r}")
    shift = _TO_MINOR if mode == "major" else _TO_MAJOR
    table = np.zeros(12, np.int64)
    table[list(shift)] = list(shift.values())
    out = events.copy()
    move = np.where(out["is_drum"], 0, table[(out["pitch"].astype(np.int64) - key_pc) % 12])
    out["pitch"] = np.clip(out["pitch"] + move, 0, 127)
    return out


@dataclasses.dataclass
class VariantsReport:
    root: str
    pieces: int = 0
    reused: int = 0
    clips: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    kind: str = "tempo"

    def summary(self) -> str:
        lines = [f"{self.kind} variants {self.root}: {self.clips} clips from {self.pieces} train pieces "
                 f"(reused {self.reused} finished), {self.seconds:.1f} s"]
        for name, why in self.skipped[:10]:
            lines.append(f"  skipped {name}: {why}")
        return "\n".join(lines)


def source_config(source: str | os.PathLike) -> DataConfig:
    """The DataConfig a bundled corpus was built with (from its build.json)."""
    from musicrl.config import from_dict

    info = Path(source) / "build.json"
    if not info.exists():
        raise TempoVariantsError(
            f"{info} not found: tempo variants re-render a corpus made by `musicrl data build` "
            "(imported audio has no score to re-render)")
    cfg = json.loads(info.read_text())["config"]
    return from_dict(DataConfig, {**cfg, "root": str(source)})


def variant_bpms(bpm: int, lo: int, hi: int, n: int, min_change: float,
                 rng: np.random.Generator) -> list[int]:
    """``n`` tempi in [lo, hi], each at least ``min_change`` (ratio) from ``bpm`` and from
    one another, drawn uniformly; fewer when the range has no room for more."""
    allowed = [b for b in range(lo, hi + 1) if abs(math.log(b / bpm)) >= math.log1p(min_change)]
    out: list[int] = []
    for b in rng.permutation(allowed):
        if len(out) == n:
            break
        if all(abs(math.log(int(b) / o)) >= math.log1p(min_change) for o in out):
            out.append(int(b))
    return out


def _arrangement(piece: Any, ref: Any, cfg: DataConfig, j: int):
    """Clip ``j``'s arrangement and the random state right after it, as the build drew them."""
    from musicrl.data.arrange import sample_arrangement

    rng = np.random.default_rng([cfg.seed, _stable_hash(ref.id), j])
    arr = sample_arrangement(piece, rng, j, cfg.clips_per_piece, (cfg.bpm_min, cfg.bpm_max),
                             cfg.drum_fraction)
    return arr, rng.bit_generator.state


def render_clip_at(piece: Any, ref: Any, cfg: DataConfig, j: int, bpm: int | None = None,
                   flip_mode: bool = False):
    """(audio, events, labels, rng) of clip ``j`` of a piece, at ``bpm`` (None: as built),
    in the parallel mode with ``flip_mode``.

    With ``bpm=None`` and no flip this is exactly what ``musicrl data build`` rendered (tested).
    """
    from musicrl.data.arrange import arrangement_events, events_to_midi
    from musicrl.data.render import render_clip

    arr, state = _arrangement(piece, ref, cfg, j)
    if bpm is not None:
        arr = dataclasses.replace(arr, bpm=int(bpm))
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    events = arrangement_events(piece, arr, cfg.clip_seconds, rng)
    labels = arr.labels(piece)
    if flip_mode:
        events = parallel_mode_events(events, (piece.tonic_pc + arr.transpose) % 12,
                                      labels["mode"])
        labels["mode"] = "minor" if labels["mode"] == "major" else "major"
    audio, _ = render_clip(events_to_midi(events, arr.bpm), cfg.clip_seconds,
                           cfg.sample_rate, cfg.loudness_lufs)
    labels["n_notes"] = int((~events["is_drum"]).sum())
    return audio, events, labels, rng


def _variant_unit(ref: Any, clips: list[dict[str, Any]], cfg: DataConfig, root: str,
                  variants: int, seed: int, min_change: float, kind: str = "tempo"
                  ) -> dict[str, Any]:
    """Renders the variants of one piece's train clips. Runs in a worker process."""
    from musicrl.audio import rms_dbfs
    from musicrl.data.arrange import style_bpm_range
    from musicrl.data.captioning import make_captions, make_tags
    from musicrl.data.scores import parse_piece

    rec: dict[str, Any] = {"piece": ref.id, "status": "ok", "reason": "", "clips": []}
    try:
        piece = parse_piece(ref, cfg.max_piece_quarters)
    except Exception as e:  # noqa: BLE001 — as the build: an unreadable score is skipped
        piece, rec["reason"] = None, f"parse error: {type(e).__name__}: {e}"[:300]
    if piece is None:
        rec.update(status="skipped", reason=rec["reason"] or "no usable notes")
        return rec
    lo, hi = style_bpm_range(ref.style, (cfg.bpm_min, cfg.bpm_max))
    out = Path(root)
    for src in clips:
        j = int(src["id"].rsplit("-", 1)[1])
        arr, _ = _arrangement(piece, ref, cfg, j)
        if arr.bpm != src["labels"]["bpm"]:
            rec["reason"] = (f"{src['id']}: the arrangement does not reproduce "
                             f"(bpm {arr.bpm} vs {src['labels']['bpm']})")
            continue
        if kind == "mode":
            todo = [(f"{src['id']}-m0", None, True)]
        else:
            brng = np.random.default_rng([seed, _stable_hash(src["id"]), 1])
            todo = [(f"{src['id']}-v{k}", bpm, False) for k, bpm in
                    enumerate(variant_bpms(arr.bpm, lo, hi, variants, min_change, brng))]
        for cid, bpm, flip in todo:
            audio, events, labels, rng = render_clip_at(piece, ref, cfg, j, bpm, flip)
            if labels["n_notes"] < 4 or rms_dbfs(audio) < -50:
                continue
            what = f" in {labels['mode']}" if flip else f" @ {bpm} bpm"
            rec["clips"].append({
                "id": cid, "duration": cfg.clip_seconds,
                "captions": make_captions(labels, cfg.captions_per_clip, rng),
                "tags": make_tags(labels), "labels": {**labels, VARIANT_OF[kind]: src["id"]},
                "piece": ref.id, "source": src["source"] + what,
                **write_clip_files(out, ref.id, cid, audio, events, cfg.sample_rate),
            })
    return rec


def tempo_variants(source: str | os.PathLike, root: str | os.PathLike, *, variants: int = 2,
                   seed: int = 0, min_change: float = 0.1, workers: int = 0,
                   progress: bool = True) -> VariantsReport:
    """Renders ``variants`` other-tempo versions of each train clip of ``source`` into ``root``."""
    return _make_variants(source, root, "tempo", variants=variants, seed=seed,
                          min_change=min_change, workers=workers, progress=progress)


def mode_variants(source: str | os.PathLike, root: str | os.PathLike, *, workers: int = 0,
                  progress: bool = True) -> VariantsReport:
    """Renders each train clip of ``source`` in its parallel mode into ``root``."""
    return _make_variants(source, root, "mode", variants=1, seed=0, min_change=0.1,
                          workers=workers, progress=progress)


def _make_variants(source: str | os.PathLike, root: str | os.PathLike, kind: str, *,
                   variants: int, seed: int, min_change: float, workers: int,
                   progress: bool) -> VariantsReport:
    from tqdm import tqdm

    t0 = time.time()
    _check_kind(kind)
    if variants < 1:
        raise TempoVariantsError(f"variants must be ≥ 1, got {variants}")
    if not 0.0 < min_change < 1.0:
        raise TempoVariantsError(f"min_change is a tempo ratio in (0, 1), got {min_change}")
    source, root = Path(source), Path(root)
    if source.resolve() == root.resolve():
        raise TempoVariantsError("--root must differ from --source: the variants get their own "
                                 "corpus so the bundled one stays as it was measured")
    cfg = source_config(source)
    train = load_clips(source, splits=["train"], include_imported=False)
    if not train:
        raise TempoVariantsError(f"{source} has no bundled train clips")
    by_piece: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in train:
        by_piece[c.piece].append(dataclasses.asdict(c))
    refs = [u for u in plan_units(cfg) if u.id in by_piece]
    missing = set(by_piece) - {u.id for u in refs}
    if missing:
        raise TempoVariantsError(f"{len(missing)} train pieces of {source} are not in the score "
                                 f"catalogue (e.g. {sorted(missing)[0]}): another music21 version?")
    opts = {"source": str(source), "source_manifest": sha256_bytes(
        (source / BUNDLED_MANIFEST).read_bytes()), "variants": variants, "seed": seed,
        "min_change": min_change}
    root.mkdir(parents=True, exist_ok=True)
    info = root / INFO
    if info.exists():
        old = json.loads(info.read_text())          # roots made before mode variants: tempo
        if {k: old.get(k) for k in opts} != opts or old.get("kind", "tempo") != kind:
            raise TempoVariantsError(
                f"{root} holds variants made with other options ({ {k: old.get(k) for k in opts} });"
                " choose another --root")
    else:
        write_text_atomic(info, json.dumps({**opts, "kind": kind}, indent=1))
    report = VariantsReport(str(root), pieces=len(refs), kind=kind)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for ref in refs:
        f = root / "units" / f"{ref.id}.json"
        if f.exists():
            records[ref.id] = json.loads(f.read_text())
        else:
            todo.append(ref)
    report.reused = len(records)

    def finish(rec: dict[str, Any]) -> None:
        write_text_atomic(root / "units" / f"{rec['piece']}.json", json.dumps(rec, sort_keys=True))
        records[rec["piece"]] = rec
        bar.update(1)

    args = (cfg, str(root), variants, seed, min_change, kind)
    bar = tqdm(total=len(refs), initial=len(records), unit="piece", desc=f"{kind} variants",
               disable=not progress, dynamic_ncols=True)
    try:
        n = workers or os.cpu_count() or 1
        if n == 1 or len(todo) <= 1:
            for ref in todo:
                finish(_variant_unit(ref, by_piece[ref.id], *args))
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(n, mp_context=ctx) as pool:
                futs = [pool.submit(_variant_unit, ref, by_piece[ref.id], *args) for ref in todo]
                for fut in cf.as_completed(futs):
                    finish(fut.result())
    finally:
        bar.close()
    clips = [Clip(id=c["id"], path=c["path"], duration=c["duration"],
                  captions=tuple(c["captions"]), tags=tuple(c["tags"]), labels=c["labels"],
                  split="train", piece=r["piece"], source=c["source"], checksum=c["checksum"],
                  notes_path=c["notes_path"], origin="bundled")
             for r in (records[u.id] for u in refs) for c in r["clips"]]
    write_jsonl_atomic(root / BUNDLED_MANIFEST, clips)
    report.clips = len(clips)
    report.skipped = sorted((r["piece"], r["reason"]) for r in records.values() if r["reason"])
    report.seconds = time.time() - t0
    return report


def split_roots(spec: str) -> list[str]:
    """The corpus roots of a comma-separated option (``extra_data=``, ``twin_data=``)."""
    return [r.strip() for r in spec.split(",") if r.strip()]


def variant_groups(root: str | os.PathLike) -> dict[str, list[Clip]]:
    """{source clip id: its variants} of a tempo- or mode-variants root."""
    from musicrl.data.manifest import load_clips

    groups: dict[str, list[Clip]] = {}
    for c in load_clips(root):
        src = next((c.labels[k] for k in VARIANT_OF.values() if c.labels.get(k)), None)
        if src:
            groups.setdefault(src, []).append(c)
    return dict(sorted(groups.items()))


def held_out_twins(root: str | os.PathLike, split: str = "valid", *, max_clips: int = 80,
                   drums_only: bool | None = None, seed: int = 7, progress: bool = True,
                   kind: str = "tempo") -> list[dict[str, Any]]:
    """Each clip of a held-out split, and the same arrangement at another tempo (or, with
    ``kind="mode"``, in the parallel mode).

    For evaluation (never written to disk): per clip — for tempo, clips with drums only
    (where tempo is audible and the beat tracker trustworthy), unless ``drums_only`` says
    otherwise — a second rendering at a tempo drawn as the tempo variants draw theirs (the
    style's range, ≥ 10 % away), or in the other mode. Returns dicts with ``id``, ``wav``
    (the built clip, the new rendering), ``captions`` (the clip's, and as many written
    from the new labels), ``bpm`` and ``mode`` (old, new).
    """
    from tqdm import tqdm

    from musicrl.audio import load_audio
    from musicrl.data.arrange import style_bpm_range
    from musicrl.data.build import plan_units
    from musicrl.data.captioning import make_captions
    from musicrl.data.manifest import load_clips
    from musicrl.data.scores import parse_piece

    _check_kind(kind)
    drums_only = kind == "tempo" if drums_only is None else drums_only
    cfg = source_config(root)
    refs = {u.id: u for u in plan_units(cfg)}
    clips = [c for c in load_clips(root, splits=[split])
             if c.labels.get("drums") or not drums_only]
    clips = clips[:max_clips] if max_clips else clips
    pieces: dict = {}
    out: list[dict[str, Any]] = []
    for c in tqdm(clips, desc=f"render second {kind}", unit="clip", disable=not progress):
        if c.piece not in pieces:
            pieces[c.piece] = parse_piece(refs[c.piece], cfg.max_piece_quarters)
        piece, ref = pieces[c.piece], refs[c.piece]
        j = int(c.id.rsplit("-", 1)[1])
        if kind == "mode":
            wav_b, _, labels_b, rng = render_clip_at(piece, ref, cfg, j, None, flip_mode=True)
        else:
            new = variant_bpms(c.labels["bpm"], *style_bpm_range(ref.style, (cfg.bpm_min,
                                                                            cfg.bpm_max)),
                               1, 0.1, np.random.default_rng([seed, len(out)]))
            if not new:
                continue
            wav_b, _, labels_b, rng = render_clip_at(piece, ref, cfg, j, new[0])
        wav_a = load_audio(Path(root) / c.path, cfg.sample_rate)
        out.append({"id": c.id, "wav": (wav_a, wav_b),
                    "captions": (list(c.captions),
                                 make_captions(labels_b, len(c.captions), rng)),
                    "bpm": (c.labels["bpm"], labels_b["bpm"]),
                    "mode": (c.labels["mode"], labels_b["mode"])})
    return out
