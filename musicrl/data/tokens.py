"""``musicrl tokenize``: the corpus as cached semantic and acoustic token shards.

Language-model training reads these shards and never runs the codec. Layout::

    <out>/shard-00000.npz    ids [n] (str), semantic int16 [n, t_s], acoustic int16 [n, t_a, q]
    <out>/tokens.json        tokenizer identities, per-shard sha256, per-clip entries

A clip entry is keyed by clip id *and* the sha256 of its audio, so an edited or
re-rendered clip is tokenized again. Re-running only tokenizes clips that are
new; each run adds whole shards (written atomically) and then rewrites
``tokens.json`` atomically, so a crash loses at most the shard in flight.
Tokens made by other tokenizers than the saved ones are refused (a mixed cache
would silently poison training): choose a new ``--out`` or pass ``--force``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_text_atomic
from musicrl.data.manifest import load_clips, sha256_file
from musicrl.errors import MusicrlError

__all__ = ["TokenizeReport", "TokenCacheError", "tokenize_corpus", "load_tokens", "TOKENS_INDEX"]

TOKENS_INDEX = "tokens.json"


class TokenCacheError(MusicrlError, ValueError):
    """A token cache is corrupt or was made by other tokenizers."""


@dataclasses.dataclass
class TokenizeReport:
    out: str
    new: int
    cached: int
    shards: int
    seconds: float

    def summary(self) -> str:
        return (f"tokens in {self.out}: {self.new} clips tokenized, {self.cached} already cached, "
                f"{self.shards} shards, {self.seconds:.1f} s")


def _identity(meta: dict[str, Any], path: Path) -> str:
    """A stable fingerprint of a tokenizer: a hash of its weights' *contents* (names,
    dtypes, shapes, values), so that re-saving the same weights in another file
    encoding (e.g. deflated) keeps the caches it made valid."""
    npz = path / "weights.npz"
    if npz.exists():
        h = hashlib.sha256()
        with np.load(npz, allow_pickle=False) as z:
            for name in sorted(z.files):
                a = np.ascontiguousarray(z[name])
                h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
                h.update(a.tobytes())
        return h.hexdigest()[:16]
    f = path / "meta.json"
    if f.exists():
        return hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def tokenize_corpus(root: str | os.PathLike, out: str | os.PathLike, *, codec_path: str,
                    semantic_path: str, num_levels: int | None = None, shard_size: int = 256,
                    batch_size: int = 8, force: bool = False, progress: bool = True,
                    splits: Sequence[str] | None = None) -> TokenizeReport:
    """Tokenizes every clip of a data root that is not cached yet."""
    import time

    import jax.numpy as jnp
    from tqdm import tqdm

    from musicrl.audio import load_audio
    from musicrl.codec import load_codec
    from musicrl.semantic import load_semantic

    t0 = time.time()
    root, out = Path(root), Path(out)
    codec, codec_meta = load_codec(codec_path)
    semantic, sem_meta = load_semantic(semantic_path)
    q = num_levels or codec.num_levels
    ident = {"codec": _identity(codec_meta, Path(codec_path)),
             "semantic": _identity(sem_meta, Path(semantic_path)), "num_levels": q,
             "codec_path": str(codec_path), "semantic_path": str(semantic_path),
             "frame_rate_acoustic": codec.frame_rate, "frame_rate_semantic": semantic.frame_rate}
    index = _read_index(out)
    if index and (index["identity"]["codec"] != ident["codec"]
                  or index["identity"]["semantic"] != ident["semantic"]
                  or index["identity"]["num_levels"] != q):
        if not force:
            raise TokenCacheError(
                f"{out} holds tokens of other tokenizers ({index['identity']}); "
                f"use a new --out, or --force to delete them and start again")
        shutil.rmtree(out)
        index = None
    if not index:
        index = {"identity": ident, "shards": {}, "clips": {}}
    clips = load_clips(root, splits=splits)
    done = index["clips"]
    todo = [c for c in clips if done.get(c.id, {}).get("audio_sha256") != c.checksum]
    cached = len(clips) - len(todo)
    bar = tqdm(total=len(todo), desc="tokenize", unit="clip", disable=not progress)
    shards_written = 0
    for s in range(0, len(todo), shard_size):
        part = todo[s:s + shard_size]
        ids, sem, aco = [], [], []
        for b in range(0, len(part), batch_size):
            batch = part[b:b + batch_size]
            wavs = [load_audio(root / c.path) for c in batch]
            n = min(w.shape[0] for w in wavs) // codec.hop * codec.hop
            if any(w.shape[0] // codec.hop * codec.hop != n for w in wavs):
                # clips of different lengths (imports): one at a time
                codes = [np.asarray(codec.encode(jnp.asarray(w[None, : w.shape[0] // codec.hop
                                                                 * codec.hop]), q))[0]
                         for w in wavs]
            else:
                x = jnp.asarray(np.stack([w[:n] for w in wavs]))
                codes = list(np.asarray(codec.encode(x, q)))
            for c, w, a in zip(batch, wavs, codes, strict=True):
                ids.append(c.id)
                sem.append(np.asarray(semantic.tokenize(w), np.int16))
                aco.append(a.astype(np.int16))
            bar.update(len(batch))
        name = f"shard-{len(index['shards']):05d}.npz"
        digest = _write_shard(out / name, ids, sem, aco)
        index["shards"][name] = {"sha256": digest, "clips": len(ids)}
        for i, (cid, clip) in enumerate(zip(ids, part, strict=True)):
            done[cid] = {"shard": name, "index": i, "audio_sha256": clip.checksum,
                         "split": clip.split, "semantic_frames": int(sem[i].shape[0]),
                         "acoustic_frames": int(aco[i].shape[0])}
        write_text_atomic(out / TOKENS_INDEX, json.dumps(index, indent=1, sort_keys=True))
        shards_written += 1
    bar.close()
    return TokenizeReport(str(out), len(todo), cached, len(index["shards"]), time.time() - t0)


def _read_index(out: Path) -> dict[str, Any] | None:
    f = out / TOKENS_INDEX
    if not f.exists():
        return None
    return json.loads(f.read_text())


def _write_shard(path: Path, ids: list[str], sem: list[np.ndarray], aco: list[np.ndarray]) -> str:
    """Ragged lists are stored flat with offsets (imports may differ in length)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(ids, dtype=str),
             semantic=np.concatenate(sem), semantic_offsets=np.cumsum([0] + [len(s) for s in sem]),
             acoustic=np.concatenate(aco), acoustic_offsets=np.cumsum([0] + [len(a) for a in aco]))
    data = buf.getvalue()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def load_tokens(out: str | os.PathLike, split: str | None = None, verify: bool = True
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{clip id: (semantic [t_s], acoustic [t_a, q])}, optionally one split only.

    Raises ValueError if a shard's checksum does not match the index (corrupt cache).
    """
    out = Path(out)
    index = _read_index(out)
    if index is None:
        raise FileNotFoundError(f"no token cache in {out}: run `musicrl tokenize` first")
    result = {}
    wanted = {cid for cid, e in index["clips"].items() if split is None or e["split"] == split}
    for name, info in index["shards"].items():
        if verify and sha256_file(out / name) != info["sha256"]:
            raise TokenCacheError(f"{out / name}: checksum mismatch; re-run `musicrl tokenize --force`")
        with np.load(out / name, allow_pickle=False) as z:
            so, ao = z["semantic_offsets"], z["acoustic_offsets"]
            for i, cid in enumerate(z["ids"]):
                cid = str(cid)
                entry = index["clips"].get(cid)
                if cid in wanted and entry and entry["shard"] == name:
                    result[cid] = (z["semantic"][so[i]:so[i + 1]], z["acoustic"][ao[i]:ao[i + 1]])
    return result
