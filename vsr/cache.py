"""Files that several processes may build at once (ONNX exports, fp16 copies, TensorRT plans and
timing caches): each is built under a lock and written under a unique temporary name, then
renamed into place, so segment workers starting together never read a half-written file or
clobber each other's temporary file, and the work is done once.

Every file vsr writes atomically goes through ``atomic_path`` (or ``write_atomic`` /
``write_json_atomic`` / ``atomic_dir`` on top of it), and every whole-file checksum through
``file_sha256``. The video writer's partial files (vsr.media.mux) follow their own scheme.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

#: Bytes read at a time when hashing a file: large files are never read whole.
HASH_CHUNK_BYTES = 1 << 20


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


def file_mode() -> int:
    """The mode a plain open() would give a new file (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str, *, prefix: str | None = None, suffix: str = ".part", shared: bool = False,
                create_error: Callable[[OSError], Exception] | None = None) -> Iterator[Path]:
    """A new empty file beside ``path`` (same filesystem, so the rename is atomic) for a writer
    that wants a path (an image encoder, ``torch.onnx.export``): renamed over ``path`` when the
    block ends without an error, removed otherwise, so ``path`` never holds a half-written file.

    Named ``.NAME.XXXXXXXX.part`` unless ``prefix``/``suffix`` say otherwise; mode 0600 (mkstemp's)
    unless ``shared``, which gives it the mode a plain open() would (outputs other users read).
    When the temporary file cannot be made, ``create_error(exc)`` is raised in place of mkstemp's
    OSError if given; what the block raises passes through unchanged.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix,
                                   dir=parent)
    except OSError as exc:
        if create_error is None:
            raise
        raise create_error(exc) from None
    os.close(fd)
    try:
        if shared:
            os.chmod(tmp, file_mode())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: os.PathLike | str, data: bytes, **names) -> None:
    """Write ``data`` to a unique temporary file beside ``path``, then rename it over ``path``
    (``names``: atomic_path's ``prefix``, ``suffix``, ``shared`` and ``create_error``)."""
    with atomic_path(path, **names) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_json_atomic(path: os.PathLike | str, data, *, indent: int | None = 1, sort_keys: bool = True,
                      **names) -> None:
    """``json.dumps(data, indent=indent, sort_keys=sort_keys)``, written like write_atomic."""
    write_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys).encode(), **names)


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str, *, suffix: str = ".part") -> Iterator[Path]:
    """A new empty folder beside ``path`` (``.NAME.XXXXXXXX.part``) to fill, renamed to ``path``
    when the block ends without an error (its files appear together), removed otherwise."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_sha256(path: os.PathLike | str, chars: int | None = None) -> str:
    """The hex SHA-256 of a file's bytes, read in chunks; only its first ``chars`` characters
    when given (the short digests cache names carry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()[:chars]


def text_digest(text: str, chars: int | None = None) -> str:
    """The hex SHA-256 of ``text`` (UTF-8), cut to its first ``chars`` characters when given."""
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def cached_file(target: Path, build: Callable[[Path], object]) -> Path:
    """``target``, made by ``build(target)`` unless it exists; one builder at a time. ``build``
    must write atomically (all of vsr's writers do)."""
    if target.exists():
        return target
    with build_lock(target):
        if not target.exists():  # another process may have built it while we waited
            build(target)
    return target
