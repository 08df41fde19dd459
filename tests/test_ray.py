"""Segments as Ray tasks, on a real local Ray instance and on a simulated two-node cluster."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")

from vsr.pipeline.pipeline import RunConfig  # noqa: E402
from vsr.segments import plan_segments, upscale_video  # noqa: E402

from .test_segments import psnr_db, video_frames, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("ray") / "in.mp4"
    return path, write_clip(path, frames=40, gop=8, bframes=2, audio=True)


@pytest.fixture(autouse=True)
def no_ray_left():
    yield
    if ray.is_initialized():
        ray.shutdown()
    assert not ray.is_initialized()


def test_local_ray_instance_matches_the_single_stream(tmp_path, clip):
    src, pts = clip
    upscale_video(RunConfig(input_path=src, output_path=tmp_path / "one.mp4", scale=2, workers=1))
    stats = upscale_video(RunConfig(input_path=src, output_path=tmp_path / "ray.mp4", scale=2, workers=2,
                                    segment_seconds=0.3, ray_address="local"))
    assert stats.frames == len(pts) and not ray.is_initialized()  # the instance it started is gone
    got_pts, got = video_frames(tmp_path / "ray.mp4")
    want_pts, want = video_frames(tmp_path / "one.mp4")
    assert got_pts == want_pts == pts
    assert min(psnr_db(a, b) for a, b in zip(got, want)) > 38
    assert not list(tmp_path.glob(".*vsr-work"))


def test_two_node_cluster_runs_segments_on_both_nodes(tmp_path, clip):
    from ray.cluster_utils import Cluster

    from vsr.backends import EngineSpec
    from vsr.media.decode import VideoReader
    from vsr.media.encode import EncodeOptions, VideoSpec
    from vsr.segments.ray_runner import run_ray
    from vsr.segments.worker import SegmentJob

    src, pts = clip
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        _start_a_worker_on_every_node(cluster.address)
        with VideoReader(src) as reader:
            info = reader.info
        plan = plan_segments(src, segment_seconds=0.3)
        assert len(plan.segments) >= 4
        jobs = [SegmentJob(input_path=str(src), segment=s, output_path=str(tmp_path / f"seg{s.index}.mp4"),
                           engine=EngineSpec(scale=2, backend="onnxruntime", num_threads=1),
                           encode=EncodeOptions(encoder_threads=1), video=VideoSpec(info.time_base, info.average_fps),
                           layout=info.layout, out_layout="yuv420p", out_size=(info.width * 2, info.height * 2))
                for s in plan.segments]
        events = []
        results = run_ray(jobs, address=cluster.address, on_event=events.append)
        assert sorted(results) == [s.index for s in plan.segments]
        assert [results[s.index].frames for s in plan.segments] == [s.num_frames for s in plan.segments]
        assert len({r.worker for r in results.values()}) == 2  # both nodes took segments
        assert {e[0] for e in events} >= {"start", "progress", "done"}
        for s in plan.segments:  # each segment file is the segment's frames, at the source's timestamps
            seg_pts, _ = video_frames(tmp_path / f"seg{s.index}.mp4")
            assert len(seg_pts) == s.num_frames
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


def test_a_segment_that_fails_in_its_task_is_one_clear_line(tmp_path, clip):
    """SVT-AV1 encodes only 4:2:0: every task fails when its encoder opens, and the driver says
    which segment and why, with no output and no Ray left running."""
    from vsr.errors import VsrError
    from vsr.media.encode import EncodeOptions

    src, _ = clip
    with pytest.raises(VsrError, match=r"libsvtav1") as failure:
        upscale_video(RunConfig(input_path=src, output_path=tmp_path / "bad.mp4", scale=2, workers=2,
                                segment_seconds=0.3, ray_address="local",
                                encode=EncodeOptions(codec="libsvtav1", pix_fmt="yuv422p")))
    assert "\n" not in str(failure.value)
    assert not (tmp_path / "bad.mp4").exists()


def test_an_unreachable_cluster_is_one_clear_line(tmp_path, clip):
    from vsr.segments.pool import WorkerFailed

    src, _ = clip
    with pytest.raises(WorkerFailed, match="cannot reach Ray at '127.0.0.1:1'"):
        upscale_video(RunConfig(input_path=src, output_path=tmp_path / "x.mp4", scale=2, workers=2,
                                segment_seconds=0.3, ray_address="127.0.0.1:1"))
    assert not (tmp_path / "x.mp4").exists()
