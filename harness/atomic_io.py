"""Atomic file writes (temp file in the same folder + os.replace): a kill at any moment
leaves either the old file or the new one, never a half-written file a rerun would trust.
And the content hash of a file, read in blocks (weights can be gigabytes)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _finished_temp_file(path: Path, data: bytes, mode: int | None) -> Path:
    """`data` in a synced temp file beside `path` (same folder: renaming or linking it into place is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_bytes_atomic(path: Path, data: bytes, *, skip_unchanged: bool = False, mode: int | None = None) -> Path:
    """`skip_unchanged`: leave a file that already holds `data` alone (files other processes may be reading,
    e.g. the domain tasks' data while another sweep cell's lm-eval runs). `mode`: the file's permissions
    (a temp file is created 0600; a report page is meant to be read by others: 0644)."""
    path = Path(path)
    if skip_unchanged and path.is_file() and path.read_bytes() == data:
        return path
    tmp = _finished_temp_file(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str, *, mode: int | None = None) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode("utf-8")


def write_json_atomic(path: Path, obj: Any) -> Path:
    return write_bytes_atomic(path, _json_bytes(obj))


def create_json_exclusive(path: Path, obj: Any) -> bool:
    """Write `obj` to `path` only if no file is there, atomically: the first of several concurrent writers wins
    (a hard link of the finished temp file fails if the name exists), the others leave the file alone. Returns
    whether this call created it."""
    path = Path(path)
    if path.exists():
        return False
    tmp = _finished_temp_file(path, _json_bytes(obj), None)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any | None:
    """The cached object, or None when absent (a temp file from a killed write is never read)."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
