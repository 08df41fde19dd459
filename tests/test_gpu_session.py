"""Issue 23: the GPU session script's CPU dry run, `vsr run --stats-json`, per-stage times and
``--decoder nvdec`` (its fallback here; its frames on a GPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, make_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "tiny.mp4"
    make_clip(path, width=64, height=48, frames=8, fps=10)
    return path


def test_gpu_session_dry_run_writes_its_report(tmp_path):
    """The whole script on the CPU (--device cpu --quick): clips made, each configuration run as
    a whole process, the JSON and markdown written with fps and per-stage times per row."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_session.py"), "--device", "cpu", "--quick",
         "--resolutions", "1080p", "--steps", "runs,nvdec", "--seconds", "3", "--out-dir", str(out),
         "--budget-s", "300"],
        capture_output=True, text=True, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "gpu_session_cpu_dryrun.json").read_text())
    assert (out / "gpu_session_cpu_dryrun.md").is_file() and (out / "gpu_session_cpu_dryrun.log").is_file()
    assert results["mode"] == "cpu-dryrun" and results["gpu"] is None
    assert {"gpu", "run_fps_1080p", "run_fps_4k", "rows", "versions", "best_workers"} <= set(results)
    assert results["versions"]["av"] and results["versions"]["python"]
    assert results["run_fps_1080p"] > 0 and results["run_fps_4k"] is None  # 4K was not asked for
    assert results["best_workers"]["1080p"] in (1, 2)
    rows = {(r["workers_asked"], r["decoder_asked"]): r for r in results["rows"]}
    assert set(rows) == {("1", "cpu"), ("2", "cpu"), (str(results["best_workers"]["1080p"]), "nvdec")}
    for row in rows.values():
        assert row["state"] == "ok" and row["fps"] > 0 and row["frames"] == 30
        assert row["output"] == "288x192"
        for stage in ("decode", "engine", "chroma", "encode"):
            assert row["stage_seconds"][stage] > 0, (stage, row)
        assert row["startup_seconds"] > 0
    assert rows[("1", "cpu")]["workers"] == 1 and rows[("1", "cpu")]["segments"] == 0
    segmented = rows[("2", "cpu")]
    assert segmented["workers"] == 2 and segmented["segments"] == 3  # a keyframe every second
    assert len(segmented["per_worker"]) == 2
    assert sum(w["frames"] for w in segmented["per_worker"].values()) == 30
    # No NVDEC here: the row says the CPU decoded it, and why, in one note.
    nvdec = rows[(str(results["best_workers"]["1080p"]), "nvdec")]
    assert nvdec["decoder"] == "cpu"
    assert sum("NVDEC unavailable" in note for note in nvdec["notes"]) == 1
    assert results["nvdec"]["decoder"] == "cpu" and "NVDEC unavailable" in results["nvdec"]["note"]
    assert results["nvdec"]["same_frames_as_cpu"] is True


def test_stats_json_and_the_nvdec_fallback_line(tiny_clip, tmp_path):
    """`vsr run --decoder nvdec` without NVDEC: decoded on the CPU, one note line says so; the
    stats JSON has every thread's and stage's seconds."""
    from click.testing import CliRunner

    from vsr.cli import main

    stats_path = tmp_path / "stats.json"
    result = CliRunner().invoke(main, [
        "run", str(tiny_clip), str(tmp_path / "out.mp4"), "--model", "espcn", "--backend", "onnxruntime",
        "--precision", "fp32", "--workers", "1", "--decoder", "nvdec", "--stats-json", str(stats_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "NVDEC" in line]
    assert len(lines) == 1 and lines[0].startswith("note: --decoder nvdec: NVDEC unavailable (")
    assert lines[0].endswith("decoded on the CPU")
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 8 and stats["fps"] > 0 and stats["decoder"] == "cpu"
    assert stats["model"] == "espcn" and stats["workers"] == 1 and stats["segments"] == []
    assert set(stats["busy_seconds"]) == {"decode", "engine", "encode"}
    assert set(stats["stage_seconds"]) == {"startup", "engine", "chroma"}
    assert stats["stage_seconds"]["engine"] <= stats["busy_seconds"]["engine"] + 1e-3
    assert stats["first_frame_seconds"] > 0 and stats["command_seconds"] >= stats["wall_seconds"]


def test_decoder_cpu_never_tries_nvdec_and_auto_needs_cuda(tiny_clip):
    from vsr.media.decode import VideoReader

    for decoder, cuda in (("cpu", True), ("auto", False)):
        with VideoReader(tiny_clip, decoder=decoder, cuda=cuda) as reader:
            assert len(list(reader.frames())) == 8
            assert reader.report.decoder == "cpu" and reader.notes == []


def test_other_decoder_path_gives_the_cpu_decoders_frames(tiny_clip, monkeypatch):
    """The NVDEC path (a decoder context of its own beside the stream) run with FFmpeg's software
    h264 decoder in h264_cuvid's place: the same frames and timestamps as the plain path, whole
    video and segment."""
    from vsr.media import decode

    def frames(**kwargs):
        with decode.VideoReader(tiny_clip, **kwargs) as reader:
            return list(reader.frames()), reader.report.decoder

    plain, _ = frames()
    monkeypatch.setitem(decode.CUVID_DECODERS, "h264", "h264")
    other, used = frames(decoder="nvdec")
    assert used == "nvdec" and len(other) == len(plain) == 8
    for a, b in zip(plain, other):
        assert a.pts == b.pts and np.array_equal(a.luma, b.luma) and np.array_equal(a.chroma_v, b.chroma_v)
    start, end = plain[3].pts, plain[6].pts
    report = decode.DecodeReport()
    segment = list(decode.decode_range(tiny_clip, start, end, layout="yuv420p", decoder="auto", cuda=True,
                                       report=report))
    assert report.decoder == "nvdec" and [f.pts for f in segment] == [f.pts for f in plain[3:6]]
    assert all(np.array_equal(a.luma, b.luma) for a, b in zip(segment, plain[3:6]))


def test_nvdec_leaves_444_to_the_cpu_with_a_note(tmp_path, monkeypatch):
    """NVDEC never decodes H.264 4:4:4: such an input is decoded on the CPU from the start (a
    note says why) instead of failing at its first frame."""
    from vsr.media import decode

    clip = tmp_path / "444.mp4"
    make_clip(clip, width=64, height=48, frames=4, pix_fmt="yuv444p")
    monkeypatch.setitem(decode.CUVID_DECODERS, "h264", "h264")  # NVDEC's place taken by a decoder that opens
    with decode.VideoReader(clip, decoder="nvdec") as reader:
        assert len(list(reader.frames())) == 4 and reader.report.decoder == "cpu"
        assert reader.notes == ["--decoder nvdec: NVDEC unavailable (it decodes 4:2:0 video here, the input is "
                                "yuv444p): decoded on the CPU"]


def _gpu_frames_stage_seconds(device: str) -> dict:
    pytest.importorskip("torch")
    from vsr.backends.gpu_frames import STAGES, GpuFrameUpscaler
    from vsr.backends.torch_cuda import TorchCudaOptions
    from vsr.frames import YuvFrame

    rng = np.random.default_rng(0)
    frames = [YuvFrame(rng.integers(0, 256, (48, 64), dtype=np.uint8), rng.integers(0, 256, (24, 32), dtype=np.uint8),
                       rng.integers(0, 256, (24, 32), dtype=np.uint8), "yuv420p", i, None, i) for i in range(4)]
    with GpuFrameUpscaler(2, options=TorchCudaOptions(device=device), out_layout="yuv420p") as upscaler:
        out = list(upscaler.upscale_frames(frames))
        assert [f.luma.shape for f in out] == [(96, 128)] * 4
        assert set(upscaler.stage_seconds) == set(STAGES)
        return dict(upscaler.stage_seconds)


def test_gpu_resident_frames_time_their_stages_on_the_cpu():
    assert all(seconds > 0 for seconds in _gpu_frames_stage_seconds("cpu").values())


@pytest.mark.needs_cuda
def test_gpu_resident_frames_time_their_stages_with_cuda_events():
    seconds = _gpu_frames_stage_seconds("cuda")
    assert all(0 < value < 5 for value in seconds.values()), seconds


@pytest.mark.needs_cuda
def test_nvdec_decodes_the_cpu_decoders_frames(tmp_path):
    """With a GPU: NVDEC's frames are the CPU decoder's (H.264 decoding is exact), or, where
    NVDEC does not open here, the fallback note says why."""
    from vsr.media.decode import VideoReader

    clip = tmp_path / "clip.mp4"
    make_clip(clip, width=160, height=96, frames=12)
    with VideoReader(clip) as reader:
        plain = list(reader.frames())
    with VideoReader(clip, decoder="auto", cuda=True) as reader:
        nvdec = list(reader.frames())
        if reader.report.decoder != "nvdec":
            pytest.skip(reader.report.decoder_note)
    assert [f.pts for f in nvdec] == [f.pts for f in plain]
    assert all(np.array_equal(a.luma, b.luma) and np.array_equal(a.chroma_u, b.chroma_u)
               for a, b in zip(plain, nvdec))


def test_a_gpu_rows_numbers_and_report_from_its_stats():
    """What a GPU-resident segmented run's --stats-json becomes in the session's row and report:
    device stages per frame, startup apart, per worker, best fps and worker count."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_session", REPO / "benchmarks" / "gpu_session.py")
    session = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(session)
    segment = {"frames": 100, "wall_seconds": 1.0, "busy_seconds": {"decode": 0.2, "engine": 0.5, "encode": 0.4},
               "stage_seconds": {"upload": 0.05, "engine": 0.1, "chroma": 0.02, "download": 0.08}}
    stats = {"frames": 200, "fps": 180.0, "wall_seconds": 1.1, "first_frame_seconds": 0.6, "workers": 2,
             "model": "espcn", "backend": "torch", "decoder": "nvdec", "notes": [],
             "busy_seconds": {"decode": 0.4, "engine": 1.0, "encode": 0.8},
             "stage_seconds": {"startup": 3.0, "upload": 0.1, "engine": 0.2, "chroma": 0.04, "download": 0.16},
             "segments": [dict(segment, index=0, worker="pid 1", stage_seconds=dict(segment["stage_seconds"], startup=1.5)),
                          dict(segment, index=1, worker="pid 2")]}
    row = session.row_from_stats(stats, process_seconds=2.0)
    assert row["fps"] == 100.0 and row["pipeline_fps"] == 180.0 and row["startup_seconds"] == 3.0
    assert row["stage_ms_per_frame"] == {"decode": 2.0, "upload": 0.5, "engine": 1.0, "chroma": 0.2,
                                         "download": 0.8, "encode": 4.0}
    assert row["engine_thread_seconds"] == 1.0 and row["segments"] == 2
    assert row["per_worker"]["pid 1"]["seconds"] == {"decode": 0.2, "engine_thread": 0.5, "encode": 0.4,
                                                     "upload": 0.05, "engine": 0.1, "chroma": 0.02,
                                                     "download": 0.08, "startup": 1.5}
    row.update(resolution="1080p", input="640x360", output="1920x1080", workers_asked="2", decoder_asked="cpu",
               model_asked="espcn", state="ok")
    results = {"mode": "gpu", "device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "started_utc": "now", "budget_s": 480,
               "model": "espcn", "scale": 3, "segment_seconds": 2.0, "rows": [row], "bench": [], "steps": [],
               "best_workers": {}, "run_fps_1080p": None, "run_fps_4k": None}

    class Args:
        resolutions = ["1080p", "4k"]

    class Fake:
        args, write = Args, staticmethod(lambda: None)

    Fake.results = results
    session.summarise(Fake)
    assert results["run_fps_1080p"] == 100.0 and results["best_workers"] == {"1080p": 2}
    report = session.markdown(results)
    assert "| 1080p 640x360->1920x1080 | 2 (2) | nvdec | espcn | ok | 200 | 100.0 | 0.6 | 3.0 | 2.0 | 0.5 | 1.0 | " \
           "0.2 | 0.8 | 4.0 |" in report
    assert "1080p 2" in report
