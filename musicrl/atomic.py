"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

Every writer in musicrl (data sets, token caches, codes, reports, exported votes, the
preference store's audio) goes through :func:`atomic_path`: the bytes go to a temporary
file in the target's folder, are fsynced, and the file is renamed onto the target (an
atomic replace on POSIX). If the block raises, or the process dies, the temporary file is
removed (or left as a ``.<name>.*.tmp`` that nothing reads) and the target is untouched.

Checkpoints (:mod:`musicrl.checkpoint`) write whole folders and have their own protocol on
top of the same idea.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "fsync_dir", "write_bytes_atomic", "write_text_atomic"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a rename inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform: the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, sync_dir: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` for the caller to write; on a clean exit the
    file is fsynced and renamed onto ``path`` (created readable, mode 0644), and with
    ``sync_dir`` the folder is fsynced too, so the rename itself survives power loss.

    Example::

        with atomic_path("out/clips.zip") as tmp:
            with zipfile.ZipFile(tmp, "w") as z: ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; these files are meant to be read
        os.close(fd)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, sync_dir: bool = False
                       ) -> Path:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path, sync_dir=sync_dir) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"))
