"""Segments as Ray tasks, on a real local Ray instance and on a simulated two-node cluster."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")

from tests.conftest import run_config  # noqa: E402
from vsr.segments import plan_segments, upscale_video  # noqa: E402

from tests.segments.test_segments import psnr_db, video_frames, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("ray") / "in.mp4"
    return path, write_clip(path, frames=40, gop=8, bframes=2, audio=True)


def _ray_processes(temp_dir: str) -> set[int]:
    """Ray's processes (GCS, raylets, monitors, agents) of the instances using ``temp_dir``, from
    /proc; their workers die with their raylet."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if temp_dir.encode() in f.read():
                        found.add(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module", autouse=True)
def no_ray_processes_left():
    """Every Ray instance these tests start (the CLI run's included) keeps its files in a folder
    of its own (RAY_TMPDIR, short: Ray's socket paths must fit in 107 bytes) and is gone when
    the tests end: nothing is left running."""
    import shutil
    import tempfile

    temp_dir = tempfile.mkdtemp(prefix="vsr-raytest-", dir="/tmp")
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir
    try:
        yield
        deadline = time.monotonic() + 20
        while (left := _ray_processes(temp_dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"Ray processes left running: {sorted(left)}"
        from vsr.segments.ray_runner import _sweep_task_folders

        _sweep_task_folders(tempfile.gettempdir())  # of the tasks the failure tests cancelled (killed)
    finally:
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_ray_left():
    yield
    if ray.is_initialized():
        ray.shutdown()
    assert not ray.is_initialized()


def test_local_ray_instance_matches_the_single_stream(tmp_path, clip):
    src, pts = clip
    upscale_video(run_config(src, tmp_path / "one.mp4", scale=2, workers=1))
    stats = upscale_video(run_config(src, tmp_path / "ray.mp4", scale=2, workers=2,
                                    segment_seconds=0.3, ray_address="local"))
    assert stats.frames == len(pts) and not ray.is_initialized()  # the instance it started is gone
    got_pts, got = video_frames(tmp_path / "ray.mp4")
    want_pts, want = video_frames(tmp_path / "one.mp4")
    assert got_pts == want_pts == pts
    assert min(psnr_db(a, b) for a, b in zip(got, want)) > 38
    assert not list(tmp_path.glob(".*vsr-work"))


def test_two_node_cluster_runs_segments_on_both_nodes(tmp_path, clip):
    import dataclasses

    from ray.cluster_utils import Cluster

    from vsr.segments.ray_runner import run_ray

    src, pts = clip
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        # What the module's final check looks for is there: 2 raylets, the GCS ...
        assert len(_ray_processes(os.environ["RAY_TMPDIR"])) >= 4
        _start_a_worker_on_every_node(cluster.address)
        plan = plan_segments(src, segment_seconds=0.3)
        assert len(plan.segments) >= 4
        jobs = _jobs(src, plan, tmp_path)
        events = []
        results = run_ray(jobs, address=cluster.address, on_event=events.append)
        assert sorted(results) == [s.index for s in plan.segments]
        assert [results[s.index].frames for s in plan.segments] == [s.num_frames for s in plan.segments]
        assert len({r.worker for r in results.values()}) == 2  # both nodes took segments
        assert {e[0] for e in events} >= {"start", "progress", "done"}
        for s in plan.segments:  # per segment: start (naming its node) first, done last
            mine = [e for e in events if e[1] == s.index]
            assert mine[0] == ("start", s.index, results[s.index].worker) and mine[-1][0] == "done"
            assert [e[0] for e in mine].count("start") == 1
        for s in plan.segments:  # each segment file is the segment's frames, at the source's timestamps
            seg_pts, _ = video_frames(tmp_path / f"seg{s.index}.mp4")
            assert len(seg_pts) == s.num_frames
        # The input must be at the same path on every node: where it is not, one line says so.
        from vsr.segments.pool import WorkerFailed

        lost = [dataclasses.replace(job, input_path=str(tmp_path / "not-on-this-node.mp4"),
                                    output_path=str(tmp_path / f"lost{job.segment.index}.mp4")) for job in jobs[:2]]
        with pytest.raises(WorkerFailed, match=r"^segment \d \([\d.]+-[\d.]+ s\): \S*not-on-this-node.mp4 is not "
                                               r"on Ray node [\d.]+: the input must be on a filesystem every node sees"
                           ) as failure:
            run_ray(lost, address=cluster.address, on_event=lambda event: None)
        assert "\n" not in str(failure.value)
        assert not list(tmp_path.glob("lost*")) and not list(tmp_path.glob(".vsr-*"))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def _start_a_worker_on_every_node(address: str) -> None:
    """Ray reuses a leased worker for queued tasks that finish quickly: tiny test segments would
    all run on the first node to start a worker. A warm worker on each node (of this driver's
    job: workers belong to one job) makes both take some."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=address, log_to_driver=False)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    assert len(nodes) == 2

    @ray.remote(num_cpus=1)
    def warm() -> str:
        import vsr.segments.worker  # noqa: F401  (the imports a segment needs)

        return ray.get_runtime_context().get_node_id()

    placed = [warm.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
              for node in nodes]
    assert sorted(ray.get(placed)) == sorted(nodes)  # connected still: run_ray uses this job's workers


def _jobs(src: Path, plan, folder: Path, *, input_path: Path | None = None) -> list:
    """The driver's jobs for ``plan`` (x2, ONNX Runtime, one thread each), written into ``folder``."""
    from vsr.backends import EngineSpec
    from vsr.media.decode import VideoReader
    from vsr.media.encode import EncodeOptions, VideoSpec
    from vsr.segments.worker import SegmentJob

    with VideoReader(src) as reader:
        info = reader.info
    return [SegmentJob(input_path=str(input_path or src), segment=s, output_path=str(folder / f"seg{s.index}.mp4"),
                       engine=EngineSpec(scale=2, backend="onnxruntime", num_threads=1),
                       encode=EncodeOptions(encoder_threads=1), video=VideoSpec(info.time_base, info.average_fps),
                       layout=info.layout, out_layout="yuv420p", out_size=(info.width * 2, info.height * 2))
            for s in plan.segments]


def test_a_segment_that_fails_in_its_task_is_one_clear_line(tmp_path, clip):
    """A segment whose task raises (here: its input cannot be read on the node) fails the run
    with one line naming the segment and why; the other tasks are cancelled, no segment file is
    written and the instance run_ray started is gone."""
    from vsr.segments.pool import WorkerFailed
    from vsr.segments.ray_runner import run_ray

    src, _ = clip
    plan = plan_segments(src, segment_seconds=0.3)
    events = []
    with pytest.raises(WorkerFailed) as failure:
        run_ray(_jobs(src, plan, tmp_path, input_path=tmp_path / "unreadable.mp4"), address="local",
                on_event=events.append)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("segment ") and "unreadable.mp4 is not on Ray node" in message
    assert not ray.is_initialized()
    assert not any(e[0] == "done" for e in events)
    assert not list(tmp_path.glob("seg*")) and not list(tmp_path.glob(".vsr-*"))


def test_an_unreachable_cluster_is_one_clear_line(tmp_path, clip):
    from vsr.segments.pool import WorkerFailed

    src, _ = clip
    with pytest.raises(WorkerFailed, match="cannot reach Ray at '127.0.0.1:1'"):
        upscale_video(run_config(src, tmp_path / "x.mp4", scale=2, workers=2,
                                segment_seconds=0.3, ray_address="127.0.0.1:1"))
    assert not (tmp_path / "x.mp4").exists()
    assert not list(tmp_path.glob(".*vsr-work"))  # nothing was finished: nothing is kept


def test_without_ray_or_its_client_the_error_says_what_to_install(tmp_path, monkeypatch):
    """No Ray (or no grpcio for ray://): one line naming the extra, before any work starts."""
    from vsr.errors import BackendUnavailable
    from vsr.segments.ray_runner import run_ray

    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(BackendUnavailable, match=r"Ray Client \(ray://127.0.0.1:10001\) needs grpcio: "
                                                 r'pip install -e "\.\[ray\]"'):
        run_ray([], address="ray://127.0.0.1:10001", on_event=print)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BackendUnavailable, match=r'^Ray is not installed: pip install -e "\.\[ray\]"'):
        run_ray([], address="local", on_event=print)
    assert not ray.is_initialized()


def test_the_command_line_with_ray(tmp_path, clip):
    """`vsr run IN OUT --ray` end to end in its own process: exit code 0, every frame, its summary."""
    src, pts = clip
    out = tmp_path / "cli.mp4"
    proc = subprocess.run([sys.executable, "-m", "vsr", "run", str(src), str(out), "--scale", "2",
                           "--segment-seconds", "0.3", "--ray"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "segments on Ray at local" in proc.stderr  # the start line: the segments did go to Ray
    got_pts, _ = video_frames(out)
    assert got_pts == pts
    assert not list(tmp_path.glob(".*vsr-work"))


def test_task_folders_of_killed_tasks_are_swept(tmp_path):
    """A task killed by a cancel (force) or a crash cannot remove its folder: the next task on
    that node removes the folders of Ray workers that no longer exist, and only those."""
    from vsr.segments.ray_runner import TASK_FOLDER_PREFIX, _sweep_task_folders

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{TASK_FOLDER_PREFIX}{gone.pid}-abc"
    live = tmp_path / f"{TASK_FOLDER_PREFIX}{os.getpid()}-def"
    other = tmp_path / f"{TASK_FOLDER_PREFIX}cache"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / ".vsr-x.partial.mp4").write_bytes(b"x")
    _sweep_task_folders(str(tmp_path))
    assert not dead.exists() and live.exists() and other.exists()
