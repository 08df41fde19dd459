"""Files that several processes may build at once (ONNX exports, fp16 copies, TensorRT plans and
timing caches): each is built under a lock and written under a unique temporary name, then
renamed into place, so segment workers starting together never read a half-written file or
clobber each other's temporary file, and the work is done once.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def cache_dir(kind: str) -> Path:
    """vsr's cache folder for one ``kind`` of file (``$VSR_CACHE_DIR/KIND``, by default under
    ``~/.cache/vsr``); callers create it when they write."""
    return Path(os.environ.get("VSR_CACHE_DIR", Path.home() / ".cache" / "vsr")) / kind


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock named after ``target`` (``.NAME.lock`` beside it) while building it."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a unique temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached_file(target: Path, build: Callable[[Path], object]) -> Path:
    """``target``, made by ``build(target)`` unless it exists; one builder at a time. ``build``
    must write atomically (all of vsr's writers do)."""
    if target.exists():
        return target
    with build_lock(target):
        if not target.exists():  # another process may have built it while we waited
            build(target)
    return target
