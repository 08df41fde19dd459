"""The work folder beside OUTPUT: finished segments and the manifest that makes ``--resume`` safe.

Layout (``.NAME.vsr-work/``)::

    manifest.json      the input's identity and every option that changes the output
    lock               held (flock) by the run using the folder: a second run to the same OUTPUT is refused
    seg-00003.mp4      a finished segment (written under a temporary name, renamed when complete)
    seg-00003.json     its record: frames and sha256, written after the segment file, atomically
    .vsr-*             a file being written (renamed into place when complete); a killed run's are removed

A segment counts as done only when its record exists and the file still matches it, so a run
killed at any moment (SIGKILL included) leaves nothing that ``--resume`` could mistake for
finished work. Success removes the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..cache import file_sha256, text_digest, write_atomic, write_json_atomic
from ..errors import OutputError

MANIFEST_VERSION = 1


def work_folder_for(output: Path) -> Path:
    """``.NAME.vsr-work`` beside OUTPUT; long names are shortened with a hash so the folder
    name stays valid for any valid OUTPUT name."""
    name = output.name
    if len(name.encode()) > 120:
        name = name[:60] + "-" + text_digest(name, 16)
    return output.parent / f".{name}.vsr-work"


def input_identity(path: Path) -> dict:
    """Enough to notice a changed input: size, modification time, and a hash of its first
    and last MiB (cheap on any size, and catches a file replaced by one of the same length)."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        if stat.st_size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "head_tail_sha256": digest.hexdigest()}


#: How files being written into the work folder are named (``.vsr-XXXXXXXX.partial.EXT``, as the
#: video writer names its own, vsr.media.mux.partial_path): a run removes those a killed run left.
TEMP_PREFIX = ".vsr-"


def _temp_names(path: Path) -> dict:
    return {"prefix": TEMP_PREFIX, "suffix": f".partial{path.suffix}", "shared": True}


def write_into(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in the work folder atomically, under the temporary-name pattern
    a resumed run cleans up."""
    write_atomic(path, data, **_temp_names(path),
                 create_error=lambda exc: OutputError(f"{path}: cannot write in {path.parent} ({exc.strerror})"))


def _write_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data, indent=1, sort_keys=True, **_temp_names(path))


class WorkFolder:
    """Open (creating it if needed) and lock the work folder of ``output``.

    ``manifest`` is what this run would write; an existing folder with another manifest is
    refused unless ``discard`` (then emptied), and one with the same manifest is reused only
    with ``resume``: otherwise finished work would be thrown away without the user asking.
    """

    def __init__(self, output: Path, manifest: dict, *, resume: bool, discard: bool) -> None:
        self.path = work_folder_for(output)
        self.manifest = {"version": MANIFEST_VERSION, **manifest}
        existed = self.path.is_dir()
        try:
            self.path.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{output}: cannot create the work folder {self.path} ({exc.strerror})") from None
        self._lock = self._take_lock(output)
        try:
            self._check(existed, output, resume=resume, discard=discard)
        except BaseException:
            self.release()
            raise

    def _take_lock(self, output: Path):
        import fcntl

        handle = open(self.path / "lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputError(f"{output}: another vsr run is writing this output now "
                              f"(its work folder {self.path} is locked)") from None
        return handle

    def _check(self, existed: bool, output: Path, *, resume: bool, discard: bool) -> None:
        manifest_path = self.path / "manifest.json"
        old = None
        if existed and manifest_path.is_file():
            try:
                old = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                old = None
        done = self.done_indices()
        if old is not None and done and not discard:
            if old != self.manifest:
                raise OutputError(f"{output}: the work folder {self.path} holds segments of another input or other "
                                  "options; run with --overwrite to discard it")
            if not resume:
                raise OutputError(f"{output}: an interrupted run left {len(done)} finished segments in {self.path}; "
                                  "add --resume to continue it, or --overwrite to start over")
        if not (resume and old == self.manifest):
            self._empty()
        _write_json(manifest_path, self.manifest)
        for stray in self.path.glob(f"{TEMP_PREFIX}*"):  # temporary files of a killed run
            stray.unlink()

    def _empty(self) -> None:
        for entry in self.path.iterdir():
            if entry.name != "lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def segment_path(self, index: int) -> Path:
        return self.path / f"seg-{index:05d}.mp4"

    def _record_path(self, index: int) -> Path:
        return self.path / f"seg-{index:05d}.json"

    def done_indices(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.path.glob("seg-*.json")}

    def finished(self, index: int, num_frames: int) -> bool:
        """Whether segment ``index`` is done: its record says ``num_frames`` and the file's
        hash still matches."""
        record_path, part = self._record_path(index), self.segment_path(index)
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return False
        if record.get("frames") != num_frames or not part.is_file():
            return False
        return part.stat().st_size == record.get("bytes") and file_sha256(part) == record.get("sha256")

    def mark_done(self, index: int, frames: int) -> None:
        part = self.segment_path(index)
        _write_json(self._record_path(index), {"frames": frames, "bytes": part.stat().st_size,
                                               "sha256": file_sha256(part)})

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self) -> None:
        """Delete the folder (after a successful join)."""
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)
