"""`vsr run --progress json`: one JSON object per line on standard error, at least once a second
and at the end, for one stream, segment workers, Ray and folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.segments.test_segments import write_clip

KEYS = {"state", "frames_done", "frames_total", "fps", "eta_seconds", "file"}


def vsr_json(*args, env=None, timeout=180) -> tuple[int, list[tuple[float, dict]], list[str]]:
    """Run `vsr run ... --progress json`, reading standard error as it comes: (exit status,
    [(arrival time, object)], the lines that are not JSON)."""
    proc = subprocess.Popen([sys.executable, "-m", "vsr", "run", *map(str, args), "--progress", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
    records, other = [], []
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if line.startswith("{"):
            records.append((time.monotonic(), json.loads(line)))
        else:
            other.append(line.rstrip("\n"))
        assert time.monotonic() < deadline
    return proc.wait(timeout), records, other


def check_stream(records: list[tuple[float, dict]], frames: int, file: str | None = None, *,
                 max_gap_s: float = 1.8) -> None:
    assert records, "no progress objects"
    objects = [r for _, r in records]
    for record in objects:
        assert KEYS <= set(record), record
        assert record["state"] in ("running", "done", "failed")
    assert all(r["state"] == "running" for r in objects[:-1])
    done = [r["frames_done"] for r in objects]
    assert done == sorted(done)  # never goes backwards
    last = objects[-1]
    assert last["state"] == "done" and last["frames_done"] == frames and last["eta_seconds"] == 0
    if file is not None:
        assert all(r["file"] == file for r in objects)
    gaps = [b - a for (a, _), (b, _) in zip(records, records[1:])]
    assert max(gaps, default=0) < max_gap_s, gaps  # at least once a second (slack for a busy machine)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "in.mp4"
    write_clip(path, frames=60, gop=10, width=96, height=64)
    return path


def test_one_stream(tmp_path, clip):
    code, records, other = vsr_json(clip, tmp_path / "out.mp4", "--scale", "2", "--model", "espcn", "--workers", "1")
    assert code == 0, other
    check_stream(records, 60, str(clip))
    assert records[-1][1]["output"] == str(tmp_path / "out.mp4")
    assert other == []  # every line of ours is JSON


def test_segment_workers(tmp_path, clip):
    code, records, other = vsr_json(clip, tmp_path / "out.mp4", "--scale", "2", "--model", "espcn",
                                    "--workers", "2", "--segment-seconds", "0.4")
    assert code == 0, other
    check_stream(records, 60, str(clip))
    assert "2 workers" in records[0][1].get("backend", "") or any("2 workers" in r.get("backend", "")
                                                                  for _, r in records)


def test_ray(tmp_path, clip):
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    import tempfile

    ray_dir = tempfile.mkdtemp(prefix="vsr-rayprog-", dir="/tmp")  # short: Ray's socket paths
    try:
        code, records, other = vsr_json(clip, tmp_path / "out.mp4", "--scale", "2", "--model", "espcn",
                                        "--segment-seconds", "0.4", "--ray", env={"RAY_TMPDIR": ray_dir})
        assert code == 0, other
        # ray.init holds Python's lock for up to ~2 s on this 2-core machine (measured while
        # connecting to its new GCS): no thread of ours can report during that.
        check_stream(records, 60, str(clip), max_gap_s=5.0)
        assert any("Ray at local" in r.get("backend", "") for _, r in records)
    finally:
        import shutil

        shutil.rmtree(ray_dir, ignore_errors=True)


def test_failure_is_the_last_object(tmp_path):
    code, records, other = vsr_json(tmp_path / "missing.mp4", tmp_path / "out.mp4", "--scale", "2")
    assert code == 1
    last = records[-1][1]
    assert last["state"] == "failed" and "no such file" in last["error"]
    assert len(other) == 1 and other[0].startswith("Error:")


def test_folder_names_each_file(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_clip(folder / "a.mp4", frames=8)
    write_clip(folder / "b.mp4", frames=5)
    (folder / "c.mp4").write_bytes(b"not a video" * 100)
    code, records, other = vsr_json(folder, tmp_path / "out", "--scale", "2", "--model", "espcn", "--workers", "1")
    assert code == 1  # c.mp4 failed
    objects = [r for _, r in records]
    ends = {Path(r["file"]).name: r for r in objects if r["file"] and r["state"] != "running"}
    assert ends["a.mp4"]["state"] == "done" and ends["a.mp4"]["frames_done"] == 8
    assert ends["b.mp4"]["state"] == "done" and ends["b.mp4"]["frames_done"] == 5
    assert ends["c.mp4"]["state"] == "failed" and ends["c.mp4"]["error"]
    assert all(r["files_total"] == 3 for r in objects if r["file"])
    assert objects[-1]["state"] == "failed" and objects[-1]["file"] is None and objects[-1]["failed_files"] == 1


@pytest.mark.parametrize("folder", [False, True], ids=["file", "folder"])
def test_a_first_run_notes_go_into_the_last_object(tmp_path, clip, folder):
    """An empty cache: precision auto is measured in this run and says so; with --progress json that
    note is part of the last object, not a line of its own."""
    source = clip
    if folder:
        source = tmp_path / "in"
        source.mkdir()
        write_clip(source / "a.mp4", frames=6)
    out = tmp_path / ("out" if folder else "out.mp4")
    code, records, other = vsr_json(source, out, "--scale", "2", "--model", "espcn", "--workers", "1",
                                    env={"VSR_CACHE_DIR": str(tmp_path / "cache")})
    assert code == 0, other
    assert other == []  # every line of ours is JSON
    last = records[-1][1]
    assert last["state"] == "done" and any(n.startswith("precision auto:") for n in last["notes"]), last
