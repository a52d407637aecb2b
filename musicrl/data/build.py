"""``musicrl data build``: render the bundled corpus, resumably and in parallel.

Layout of a data root::

    audio/<piece>/<clip>.wav     16 kHz mono PCM-16, loudness normalized
    notes/<piece>/<clip>.npy     the note events rendered (EVENT_DTYPE)
    units/<piece>.json           one record per finished piece (the resume log)
    manifest.jsonl               the clips, sorted; rewritten atomically at the end
    manifest.sha256              checksum of manifest.jsonl
    build.json                   config, counts and timing of the last build

The unit of work is a piece. A worker parses it once and renders all its clips;
the main process then writes the piece's record atomically. A build killed at
any moment loses at most the pieces in flight: on restart, pieces with a record
(and their files) are not redone. Everything is a function of the config seed,
so the same config yields byte-identical audio and an identical manifest.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_bytes_atomic, write_text_atomic
from musicrl.config import to_dict
from musicrl.data.config import STYLE_NAMES, DataConfig
from musicrl.data.manifest import (
    BUNDLED_MANIFEST,
    Clip,
    sha256_bytes,
    write_jsonl_atomic,
)

__all__ = ["BuildReport", "plan_units", "build_corpus", "render_unit"]

OVERSAMPLE = 0.05  # extra candidates per style (fraction of the quota): some scores are unusable


def _stable_hash(*parts: Any) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def plan_units(cfg: DataConfig) -> list[Any]:
    """Candidate pieces in a fixed order: per style, a seeded shuffle of the catalogue."""
    from musicrl.data.scores import catalogue

    units = []
    for style in cfg.styles:
        refs = catalogue(style)
        rng = np.random.default_rng([cfg.seed, STYLE_NAMES.index(style)])
        order = rng.permutation(len(refs))
        n = min(len(refs), cfg.pieces_per_style + int(np.ceil(cfg.pieces_per_style * OVERSAMPLE)))
        units.extend(refs[i] for i in order[:n])
    return units


def write_clip_files(root: Path, piece_id: str, clip_id: str, audio: np.ndarray,
                     events: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Writes a clip's audio (PCM-16 WAV) and note events under ``root`` atomically;
    returns their manifest fields (paths relative to ``root``, checksums, size)."""
    import io

    import soundfile as sf

    from musicrl.data.events import save_events_bytes

    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="PCM_16")
    wav = buf.getvalue()
    notes = save_events_bytes(events)
    apath = Path("audio") / piece_id / f"{clip_id}.wav"
    npath = Path("notes") / piece_id / f"{clip_id}.npy"
    write_bytes_atomic(root / apath, wav)
    write_bytes_atomic(root / npath, notes)
    return {"path": apath.as_posix(), "checksum": sha256_bytes(wav),
            "notes_path": npath.as_posix(), "notes_checksum": sha256_bytes(notes),
            "bytes": len(wav)}


def render_unit(ref: Any, cfg: DataConfig) -> dict[str, Any]:
    """Parses one piece and renders its clips. Runs in a worker process.

    Returns:
      A record: {"piece", "style", "status": "ok"|"skipped", "reason", "clips": [...]}.
    """
    from musicrl.audio import rms_dbfs
    from musicrl.data.arrange import arrangement_events, events_to_midi, sample_arrangement
    from musicrl.data.captioning import make_captions, make_tags
    from musicrl.data.render import render_clip
    from musicrl.data.scores import parse_piece

    rec: dict[str, Any] = {"piece": ref.id, "style": ref.style, "path": ref.path,
                           "number": ref.number, "status": "ok", "reason": "", "clips": []}
    try:
        piece = parse_piece(ref, cfg.max_piece_quarters)
    except Exception as e:  # a score music21 cannot read is skipped, not fatal
        piece, rec["reason"] = None, f"parse error: {type(e).__name__}: {e}"[:300]
    if piece is None:
        rec["status"] = "skipped"
        rec["reason"] = rec["reason"] or "no usable notes or too long"
        return rec
    root = Path(cfg.root)
    for j in range(cfg.clips_per_piece):
        rng = np.random.default_rng([cfg.seed, _stable_hash(ref.id), j])
        arr = sample_arrangement(piece, rng, j, cfg.clips_per_piece, (cfg.bpm_min, cfg.bpm_max),
                                 cfg.drum_fraction)
        events = arrangement_events(piece, arr, cfg.clip_seconds, rng)
        pitched = events[~events["is_drum"]]
        if pitched.size < 4:
            continue  # a window of rests: nothing to learn from
        audio, _ = render_clip(events_to_midi(events, arr.bpm), cfg.clip_seconds,
                               cfg.sample_rate, cfg.loudness_lufs)
        if rms_dbfs(audio) < -50:
            continue
        labels = arr.labels(piece)
        labels["n_notes"] = int(pitched.size)
        clip_id = f"{ref.style}-{ref.id}-{j:02d}"
        rec["clips"].append({
            "id": clip_id, "duration": cfg.clip_seconds,
            "captions": make_captions(labels, cfg.captions_per_clip, rng),
            "tags": make_tags(labels), "labels": labels, "piece": ref.id,
            "source": f"music21:{ref.path}" + (f"#X{ref.number}" if ref.number is not None else ""),
            **write_clip_files(root, ref.id, clip_id, audio, events, cfg.sample_rate),
        })
    if not rec["clips"]:
        rec["status"], rec["reason"] = "skipped", "every window was silent"
    return rec


def _unit_done(root: Path, ref: Any) -> dict[str, Any] | None:
    """The record of a finished piece, if it and all its files are intact."""
    path = root / "units" / f"{ref.id}.json"
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if rec.get("path") != ref.path or rec.get("number") != ref.number:
        return None  # a record of another score under the same id: redo
    for c in rec.get("clips", []):
        a = root / c["path"]
        if not a.exists() or a.stat().st_size != c["bytes"] or not (root / c["notes_path"]).exists():
            return None
    return rec


def _assign_splits(cfg: DataConfig, pieces: list[str]) -> dict[str, str]:
    """Split by piece, stable under the seed: a hash of the piece id picks the split."""
    u = {p: (_stable_hash(cfg.seed, "split", p) % 1_000_003) / 1_000_003 for p in pieces}
    split = {}
    for p in pieces:
        if u[p] < cfg.test_fraction:
            split[p] = "test"
        elif u[p] < cfg.test_fraction + cfg.valid_fraction:
            split[p] = "valid"
        else:
            split[p] = "train"
    # Tiny corpora: make sure each requested split has a piece (deterministically).
    for name, frac in (("test", cfg.test_fraction), ("valid", cfg.valid_fraction)):
        if frac > 0 and len(pieces) >= 3 and name not in split.values():
            train = sorted((p for p in pieces if split[p] == "train"), key=lambda p: u[p])
            if len(train) > 1:
                split[train[0]] = name
    return split


@dataclasses.dataclass
class BuildReport:
    root: str
    units: int = 0
    reused: int = 0
    rendered: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    clips: int = 0
    pieces: int = 0
    hours: float = 0.0
    seconds: float = 0.0
    complete: bool = False
    manifest_sha256: str = ""

    def summary(self) -> str:
        lines = [
            f"data root      {self.root}",
            f"pieces planned {self.units} (reused {self.reused} finished, rendered {self.rendered},"
            f" skipped {len(self.skipped)})",
        ]
        if self.complete:
            lines += [f"corpus         {self.clips} clips, {self.hours:.2f} h, {self.pieces} pieces",
                      f"manifest       sha256 {self.manifest_sha256}"]
        else:
            lines.append("status         INCOMPLETE: re-run the same command to resume")
        lines.append(f"wall time      {self.seconds:.1f} s")
        for name, why in self.skipped[:10]:
            lines.append(f"  skipped {name}: {why}")
        if len(self.skipped) > 10:
            lines.append(f"  … and {len(self.skipped) - 10} more (see build.json)")
        return "\n".join(lines)


def build_corpus(cfg: DataConfig, progress: bool = True,
                 limit_units: int | None = None) -> BuildReport:
    """Renders (or resumes) the corpus described by ``cfg``; writes the manifest when done.

    Args:
      cfg: the data config.
      progress: show a progress bar on stderr.
      limit_units: render at most this many new pieces, then stop (for tests of resume).
    """
    from tqdm import tqdm

    t0 = time.time()
    root = Path(cfg.root)
    root.mkdir(parents=True, exist_ok=True)
    units = plan_units(cfg)
    report = BuildReport(root=str(root), units=len(units))
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for ref in units:
        rec = _unit_done(root, ref)
        if rec is not None:
            records[ref.id] = rec
        else:
            todo.append(ref)
    report.reused = len(records)
    if limit_units is not None:
        todo = todo[:limit_units]

    workers = cfg.workers or os.cpu_count() or 1
    bar = tqdm(total=len(units), initial=len(records), unit="piece", desc="render",
               disable=not progress, dynamic_ncols=True)
    try:
        if workers == 1 or len(todo) <= 1:
            results = (render_unit(ref, cfg) for ref in todo)
            for rec in results:
                _finish(root, rec, records, report, bar)
        else:
            ctx = multiprocessing.get_context("spawn")  # safe even if JAX is loaded here
            with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(render_unit, ref, cfg) for ref in todo]
                for fut in cf.as_completed(futures):
                    _finish(root, fut.result(), records, report, bar)
    finally:
        bar.close()

    report.seconds = time.time() - t0
    report.skipped = sorted((r["piece"], r["reason"]) for r in records.values()
                            if r["status"] != "ok")
    if len(records) < len(units):
        return report
    _write_manifest(cfg, units, records, report)
    report.complete = True
    report.seconds = time.time() - t0
    return report


def _finish(root: Path, rec: dict[str, Any], records: dict, report: BuildReport, bar) -> None:
    write_text_atomic(root / "units" / f"{rec['piece']}.json", json.dumps(rec, sort_keys=True))
    records[rec["piece"]] = rec
    report.rendered += 1
    bar.update(1)


def _write_manifest(cfg: DataConfig, units: list[Any], records: dict[str, dict[str, Any]],
                    report: BuildReport) -> None:
    root = Path(cfg.root)
    chosen: list[dict[str, Any]] = []
    for style in cfg.styles:  # the first `pieces_per_style` usable pieces, in plan order
        ok = [records[u.id] for u in units if u.style == style and records[u.id]["status"] == "ok"]
        chosen.extend(ok[:cfg.pieces_per_style])
    splits = _assign_splits(cfg, [r["piece"] for r in chosen])
    clips = []
    for rec in chosen:
        for c in rec["clips"]:
            clips.append(Clip(
                id=c["id"], path=c["path"], duration=c["duration"], captions=tuple(c["captions"]),
                tags=tuple(c["tags"]), labels=c["labels"], split=splits[rec["piece"]],
                piece=rec["piece"], source=c["source"], checksum=c["checksum"],
                notes_path=c["notes_path"], origin="bundled"))
    write_jsonl_atomic(root / BUNDLED_MANIFEST, clips)
    digest = sha256_bytes((root / BUNDLED_MANIFEST).read_bytes())
    write_text_atomic(root / "manifest.sha256", f"{digest}  {BUNDLED_MANIFEST}\n")
    report.clips = len(clips)
    report.pieces = len(chosen)
    report.hours = sum(c.duration for c in clips) / 3600
    report.manifest_sha256 = digest
    info = {"config": to_dict(cfg), "clips": report.clips, "pieces": report.pieces,
            "hours": report.hours, "manifest_sha256": digest,
            "skipped": [list(s) for s in report.skipped],
            "last_build_seconds": round(report.seconds, 1)}
    write_text_atomic(root / "build.json", json.dumps(info, indent=2, sort_keys=True))
