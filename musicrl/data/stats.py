"""``musicrl data stats``: what a corpus holds, as a table or JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from musicrl.data.manifest import SPLITS, Clip

__all__ = ["stats_json", "format_stats"]


def stats_json(clips: Sequence[Clip]) -> dict[str, Any]:
    """Counts of clips per split, style, instrument, family, tempo bucket, mode, drums."""
    def count(fn) -> dict[str, int]:
        c: Counter = Counter()
        for clip in clips:
            v = fn(clip)
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                c[str(item)] += 1
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    lab = lambda k, d="?": (lambda c: c.labels.get(k, d))  # noqa: E731
    by_split = {s: {"clips": 0, "hours": 0.0, "pieces": set()} for s in SPLITS}
    for c in clips:
        b = by_split.setdefault(c.split, {"clips": 0, "hours": 0.0, "pieces": set()})
        b["clips"] += 1
        b["hours"] += c.duration / 3600
        b["pieces"].add(c.piece)
    return {
        "clips": len(clips),
        "hours": sum(c.duration for c in clips) / 3600,
        "pieces": len({c.piece for c in clips}),
        "splits": {s: {"clips": b["clips"], "hours": round(b["hours"], 3),
                       "pieces": len(b["pieces"])} for s, b in by_split.items()},
        "origin": count(lambda c: c.origin),
        "style": count(lab("style")),
        "instrument": count(lab("instruments", ["unknown"])),
        "family": count(lab("families", ["unknown"])),
        "tempo": count(lab("tempo_bucket")),
        "mode": count(lab("mode")),
        "drums": count(lambda c: {True: "drums", False: "no drums"}.get(c.labels.get("drums"), "?")),
        "drum_style": count(lambda c: c.labels.get("drum_style") or "none"),
    }


def format_stats(clips: Sequence[Clip]) -> str:
    s = stats_json(clips)
    lines = [f"{s['clips']} clips, {s['hours']:.2f} hours, {s['pieces']} pieces", ""]
    lines.append(f"{'split':<8}{'clips':>8}{'hours':>9}{'pieces':>8}")
    for name, b in s["splits"].items():
        lines.append(f"{name:<8}{b['clips']:>8}{b['hours']:>9.2f}{b['pieces']:>8}")
    for section in ("origin", "style", "family", "instrument", "tempo", "mode", "drums",
                    "drum_style"):
        lines.append("")
        lines.append(f"{section:<28}{'clips':>8}{'share':>8}")
        for k, v in s[section].items():
            share = v / max(s["clips"], 1)
            lines.append(f"  {k:<26}{v:>8}{share:>8.1%}")
    return "\n".join(lines)
