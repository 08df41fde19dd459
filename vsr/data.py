"""Training data: download, verify and unpack the DIV2K HR archives (``vsr data div2k DEST``).

One archive flows through four stages: download to ``DEST/.NAME.zip.partial`` (resumed with an
HTTP ``Range`` request when a previous run broke off), verify its size and SHA-256, rename it to
``DEST/NAME.zip``, unpack it into a temporary folder that is renamed to ``DEST/NAME`` only when
every member is out and counted. A marker ``DEST/.NAME.verified`` records a finished archive, so a
rerun makes no request at all. Only the standard library talks HTTP (``urllib.request``).
"""
from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable

from .cache import file_sha256
from .errors import InputError, OutputError

DIV2K_BASE_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ArchiveSpec:
    """One zip archive to fetch: where it lives and what a good copy looks like."""

    name: str                 # archive stem and the folder it unpacks to, e.g. "DIV2K_train_HR"
    url: str
    size_bytes: int | None    # None: not known, only the zip's own CRCs are checked
    sha256: str | None
    member_count: int | None  # image files expected after unpacking

    @property
    def filename(self) -> str:
        return f"{self.name}.zip"


# Sizes and SHA-256 from tensorflow/datasets, tensorflow_datasets/url_checksums/div2k.txt
# (commit 1054f22dfd67025f459c5735206ab404dbb12a6e), the checksums TFDS verifies its own
# DIV2K downloads against. Member counts from the DIV2K page: 0001-0800 train, 0801-0900 valid.
DIV2K_ARCHIVES: dict[str, ArchiveSpec] = {
    "train": ArchiveSpec(
        name="DIV2K_train_HR", url=DIV2K_BASE_URL + "DIV2K_train_HR.zip", size_bytes=3_530_603_713,
        sha256="9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", member_count=800),
    "valid": ArchiveSpec(
        name="DIV2K_valid_HR", url=DIV2K_BASE_URL + "DIV2K_valid_HR.zip", size_bytes=448_993_893,
        sha256="20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", member_count=100),
}

_IMAGE_SUFFIXES = {".png"}


@dataclass(frozen=True)
class FetchOptions:
    dest: Path
    splits: tuple[str, ...] = ("train", "valid")
    keep_archives: bool = False
    progress: bool = False


@dataclass(frozen=True)
class FetchResult:
    name: str
    folder: Path
    image_count: int
    skipped: bool  # already downloaded and verified by an earlier run


def div2k_archives(base_url: str | None = None, manifest: Path | None = None) -> dict[str, ArchiveSpec]:
    """The DIV2K specs; ``base_url`` swaps the host (a mirror), ``manifest`` replaces them all.

    The manifest is JSON, ``{"train": {"name": ..., "url": ..., "size_bytes": ..., "sha256": ...,
    "member_count": ...}, ...}``: how tests (and mirrors with other files) describe their archives.
    """
    if manifest is not None:
        try:
            raw = json.loads(Path(manifest).read_text())
            specs = {split: ArchiveSpec(**fields) for split, fields in raw.items()}
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"cannot read archive manifest {manifest}: {exc}") from None
    else:
        specs = dict(DIV2K_ARCHIVES)
    if base_url is not None:
        base = base_url if base_url.endswith("/") else base_url + "/"
        specs = {split: replace(spec, url=base + spec.filename) for split, spec in specs.items()}
    return specs


def fetch_div2k(specs: dict[str, ArchiveSpec], options: FetchOptions,
                say: Callable[[str], None] = lambda line: None) -> list[FetchResult]:
    unknown = [split for split in options.splits if split not in specs]
    if unknown:
        raise InputError(f"no archive for split {unknown[0]!r} (have: {', '.join(specs)})")
    try:
        options.dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {options.dest}: {exc.strerror}") from None
    if not os.access(options.dest, os.W_OK | os.X_OK):
        raise OutputError(f"{options.dest} is not writable")
    return [fetch_archive(specs[split], options, say) for split in options.splits]


def fetch_archive(spec: ArchiveSpec, options: FetchOptions,
                  say: Callable[[str], None] = lambda line: None) -> FetchResult:
    dest = options.dest
    folder = dest / spec.name
    marker = dest / f".{spec.name}.verified"
    if marker.is_file() and folder.is_dir():
        return FetchResult(spec.name, folder, _count_images(folder), skipped=True)
    if folder.exists():
        raise OutputError(f"{folder} exists but is not a verified download; move it away and run again")

    archive = dest / spec.filename
    with _disk_errors(dest):
        if archive.is_file():
            say(f"{spec.name}: checking the archive already in {dest}")
            _verify(archive, spec)
        else:
            partial = dest / f".{spec.filename}.partial"
            _download(spec, partial, options.progress)
            _verify(partial, spec)
            os.replace(partial, archive)
        for stale in dest.glob(f".{spec.name}.*.unpacking"):  # left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        count = _unpack(archive, spec, folder, marker)
        if not options.keep_archives:
            archive.unlink()
    return FetchResult(spec.name, folder, count, skipped=False)


class _disk_errors:
    """Turn a full disk or a permission failure under DEST into one OutputError line."""

    def __init__(self, dest: Path):
        self.dest = dest

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, OSError) and not isinstance(exc, (urllib.error.URLError, ConnectionError,
                                                               socket.timeout)):
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS):
                raise OutputError(f"cannot write under {self.dest}: {exc.strerror}") from None
        return False


def _download(spec: ArchiveSpec, partial: Path, progress: bool) -> None:
    """Fetch spec.url into ``partial``, continuing from its current length where the server allows."""
    offset_bytes = partial.stat().st_size if partial.exists() else 0
    if spec.size_bytes is not None and offset_bytes > spec.size_bytes:
        partial.unlink()  # longer than the real file: cannot be a prefix of it
        offset_bytes = 0
    if spec.size_bytes is not None and offset_bytes == spec.size_bytes:
        return  # the last run got every byte but stopped before the check
    headers = {"Range": f"bytes={offset_bytes}-"} if offset_bytes else {}
    request = urllib.request.Request(spec.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset_bytes:
            # The partial is as long as (or longer than) what the server has: let the check decide.
            return
        raise InputError(f"download of {spec.url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise InputError(f"cannot reach {spec.url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"cannot reach {spec.url}: {exc}") from None

    with response:
        if response.status == 206:
            if _range_start(response) != offset_bytes:
                raise InputError(f"{spec.url} answered a range other than bytes={offset_bytes}- "
                                 f"({response.headers.get('Content-Range')})")
            mode = "ab"
        else:  # 200: the server ignores Range, so the whole file comes again
            offset_bytes, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total_bytes = offset_bytes + int(length) if length is not None else spec.size_bytes
        if spec.size_bytes is not None and total_bytes is not None and total_bytes != spec.size_bytes:
            raise InputError(f"{spec.url} is {total_bytes} bytes, expected {spec.size_bytes}; "
                             "the server holds a different file")
        from tqdm import tqdm

        got_bytes = offset_bytes
        with open(partial, mode) as out, tqdm(total=total_bytes, initial=offset_bytes, unit="B",
                                               unit_scale=True, unit_divisor=1024, desc=spec.filename,
                                               disable=not progress, leave=False) as bar:
            try:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    got_bytes += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as exc:
                out.flush()
                got_bytes = out.tell()
                raise InputError(f"download of {spec.filename} broke off after {got_bytes} of {total_bytes} "
                                 f"bytes ({type(exc).__name__}); run again to resume") from None
    if total_bytes is not None and got_bytes < total_bytes:
        raise InputError(f"download of {spec.filename} broke off after {got_bytes} of {total_bytes} bytes; "
                         "run again to resume")


def _range_start(response) -> int | None:
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _verify(path: Path, spec: ArchiveSpec) -> None:
    """Size, then SHA-256. A bad file is removed: resuming cannot repair bytes already wrong,
    and a kept copy of full length would only fail the same check on every rerun."""
    size_bytes = path.stat().st_size
    problem = None
    if spec.size_bytes is not None and size_bytes != spec.size_bytes:
        problem = f"is {size_bytes} bytes, expected {spec.size_bytes}"
    elif spec.sha256 is not None:
        digest = file_sha256(path)
        if digest != spec.sha256.lower():
            problem = f"has SHA-256 {digest}, expected {spec.sha256}"
    if problem is None:
        return
    path.unlink()
    raise InputError(f"{spec.filename} {problem} (removed; run again to download it afresh)")


def _safe_member(name: str) -> bool:
    """Refuse zip-slip: absolute paths, drive letters, backslashes, and '..' anywhere."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in PurePosixPath(name).parts


def _unpack(archive: Path, spec: ArchiveSpec, folder: Path, marker: Path) -> int:
    """Extract into a temporary sibling of ``folder`` and rename it into place when complete.

    The marker is written just before the rename: a run killed between the two leaves a marker
    without a folder, which a rerun treats as not done, never a folder without its marker."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".unpacking", dir=folder.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for member in members:
                    if not _safe_member(member.filename):
                        raise InputError(f"{archive.name}: refusing member {member.filename!r} "
                                         "(absolute path or '..')")
                for member in members:  # extract() checks each member's CRC as it reads
                    zf.extract(member, staging)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise InputError(f"{archive.name} is not a readable zip: {exc}") from None
        entries = list(staging.iterdir())
        # DIV2K zips hold one top folder named like the archive; unwrap it, else take everything.
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        count = _count_images(content)
        if spec.member_count is not None and count != spec.member_count:
            raise InputError(f"{archive.name} holds {count} images, expected {spec.member_count}")
        marker.write_text((spec.sha256 or "") + "\n")
        os.replace(content, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
