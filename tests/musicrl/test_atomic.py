"""musicrl.atomic: a write is all or nothing, and a failed one leaves the old file alone."""

from __future__ import annotations

import stat

import pytest

from musicrl.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_writes_creates_folders_and_replaces(tmp_path):
    path = tmp_path / "a" / "b" / "x.txt"
    write_text_atomic(path, "one")
    assert path.read_text() == "one"
    assert write_bytes_atomic(path, b"two", sync_dir=True) == path
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644      # readable, not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["x.txt"]   # no temp file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new")
            assert path.read_bytes() == b"old"       # nothing visible before the rename
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_the_temp_file_sits_beside_the_target(tmp_path):
    # same folder → same file system → os.replace is an atomic rename
    with atomic_path(tmp_path / "out.zip") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.zip.")
        tmp.write_bytes(b"z")
    assert (tmp_path / "out.zip").read_bytes() == b"z"
