"""vsr.cache: the one atomic writer, the one file digest and the one cache root."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import vsr.cache as cache
from vsr.cache import atomic_dir, atomic_path, file_sha256, text_digest, write_atomic, write_json_atomic


class _Boom(Exception):
    pass


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- atomic writes ---------------------------------------------------------------------------

def test_write_atomic_replaces_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "plan.bin"
    target.write_bytes(b"old")
    write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["plan.bin"]


@pytest.mark.parametrize("error", [_Boom, KeyboardInterrupt])
def test_a_failed_write_leaves_no_temporary_file_and_never_a_half_file(tmp_path, error):
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(b"complete")
    for target in (old, new):
        with pytest.raises(error):
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half")
                assert tmp.parent == target.parent and tmp != target and tmp.name.endswith(".part")
                assert old.read_bytes() == b"complete" and not new.exists()  # never written in place
                raise error()
    assert old.read_bytes() == b"complete" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.bin"]


def test_write_atomic_cleans_up_when_the_data_cannot_be_written(tmp_path):
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "x.json", "text, not bytes")
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_file_is_named_and_moded_as_asked(tmp_path, umask_022):
    seen = []
    with atomic_path(tmp_path / "seg-00001.json", prefix=".vsr-", suffix=".partial.json", shared=True) as tmp:
        seen.append((tmp.name, _mode(tmp)))
    name, mode = seen[0]
    assert name.startswith(".vsr-") and name.endswith(".partial.json") and mode == 0o644
    assert _mode(tmp_path / "seg-00001.json") == 0o644
    write_atomic(tmp_path / "private", b"x")  # caches keep mkstemp's mode
    assert _mode(tmp_path / "private") == 0o600


def test_create_error_replaces_mkstemps_error_only(tmp_path):
    missing = tmp_path / "no" / "such" / "f.bin"
    with pytest.raises(FileNotFoundError):
        write_atomic(missing, b"x")
    with pytest.raises(_Boom, match="cannot write"):
        write_atomic(missing, b"x", create_error=lambda exc: _Boom(f"cannot write ({exc.strerror})"))
    with pytest.raises(OSError):  # what the block raises passes through
        with atomic_path(tmp_path / "f.bin", create_error=lambda exc: _Boom()):
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_writes_what_json_dumps_gives(tmp_path):
    data = {"b": [1, 2], "a": {"z": None}}
    write_json_atomic(tmp_path / "m.json", data)
    assert (tmp_path / "m.json").read_text() == json.dumps(data, indent=1, sort_keys=True)
    write_json_atomic(tmp_path / "c.json", data, indent=None, sort_keys=False)
    assert (tmp_path / "c.json").read_text() == json.dumps(data)


def test_atomic_dir_renames_a_filled_folder_or_removes_it(tmp_path):
    folder = tmp_path / "model"
    with pytest.raises(_Boom):
        with atomic_dir(folder) as tmp:
            (tmp / "model.xml").write_text("x")
            raise _Boom()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(folder) as tmp:
        (tmp / "model.xml").write_text("x")
        (tmp / "model.bin").write_bytes(b"y")
        assert not folder.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "model.xml"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_work_folder_writes_use_the_temporary_names_a_resumed_run_removes(tmp_path, monkeypatch):
    from vsr.segments import workdir

    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(cache.os, "replace", lambda src, dst: (renamed.append(Path(src).name), real_replace(src, dst)))
    workdir._write_json(tmp_path / "seg-00002.json", {"frames": 3})
    workdir.write_into(tmp_path / "seg-00002.mp4", b"video")
    assert renamed[0].startswith(workdir.TEMP_PREFIX) and renamed[0].endswith(".partial.json")
    assert renamed[1].startswith(workdir.TEMP_PREFIX) and renamed[1].endswith(".partial.mp4")
    assert json.loads((tmp_path / "seg-00002.json").read_text()) == {"frames": 3}


def test_output_writers_report_an_unwritable_place_as_an_output_error(tmp_path, monkeypatch):
    import errno

    from vsr.errors import OutputError
    from vsr.images import atomic_output, write_image

    with pytest.raises(OutputError, match="does not exist"):
        atomic_output(tmp_path / "no" / "o.png")

    def refuse(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(cache.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"o\.png: cannot write \(Permission denied\)"):
        with atomic_output(tmp_path / "o.png"):
            pass
    with pytest.raises(OutputError, match="cannot write"):
        write_image(tmp_path / "o.png", np.zeros((2, 2, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


# -- digests ---------------------------------------------------------------------------------

def test_file_sha256_streams_a_multi_chunk_file_and_matches_hashlib(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 4096 + 123)
    path.write_bytes(data)
    reads = []
    real_open = open

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, size=-1):
            reads.append(size)
            return self.handle.read(size)

    monkeypatch.setattr(cache, "HASH_CHUNK_BYTES", 4096)
    monkeypatch.setattr(cache, "open", lambda *a, **k: Spy(real_open(*a, **k)), raising=False)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert len(reads) >= 4 and all(0 < size <= 4096 for size in reads)  # never the whole file at once


def test_file_sha256_of_a_file_larger_than_one_chunk(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(2 * cache.HASH_CHUNK_BYTES + 7)
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_digests_truncate_to_the_characters_asked(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    full = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(path) == full and file_sha256(path, 16) == full[:16] and file_sha256(path, 8) == full[:8]
    assert text_digest("abc") == full and text_digest("abc", 16) == full[:16]
    assert text_digest("é") == hashlib.sha256("é".encode()).hexdigest()


def test_cache_keys_are_unchanged():
    """Names that existing caches and work folders were made under (before the digests moved here)."""
    from vsr.backends.engine_cache import ShapeRange, plan_name
    from vsr.segments.workdir import work_folder_for

    assert work_folder_for(Path("/x") / ("é" * 70 + ".mp4")).name == \
        "." + "é" * 60 + "-dc64562ecf231869.vsr-work"
    assert plan_name(onnx_sha256="a" * 64, shapes=ShapeRange.for_frames(360, 640), precision="fp16",
                     tensorrt_version="10.1", gpu_name="NVIDIA H100", compute_capability=(9, 0)) == \
        "espcn_aaaaaaaaaaaa_1x1x360x640-1x1x360x640-1x1x360x640_fp16_trt10.1_nvidia-h100_sm90_6f8166a21888c6ca.plan"


def test_weights_digests_are_the_files_sha256(tmp_path):
    from vsr.backends.int8 import onnx_digest

    path = tmp_path / "m.onnx"
    path.write_bytes(os.urandom(5000))
    assert onnx_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# -- one cache root --------------------------------------------------------------------------

def test_engine_plans_cache_under_vsr_cache_dir(tmp_path, monkeypatch):
    from vsr.backends.engine_cache import engine_dir

    monkeypatch.delenv("VSR_ENGINE_DIR", raising=False)
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "cache"))
    assert engine_dir() == tmp_path / "cache" / "engines"
    monkeypatch.delenv("VSR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_dir() == tmp_path / "home" / ".cache" / "vsr" / "engines"
    monkeypatch.setenv("VSR_ENGINE_DIR", str(tmp_path / "plans"))  # an explicit folder still wins
    assert engine_dir() == tmp_path / "plans"

