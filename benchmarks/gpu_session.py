"""Every GPU check of vsr in one prepared run (issue 23), sized for one lease of a GPU machine.

On the GPU machine (through ``benchmarks/gpu_session.sh``, which installs the carried PyAV wheel):

1. environment: the GPU (nvidia-smi), driver, library versions, whether NVDEC opens;
2. the clips: 640x360 and 1280x720 H.264 of at least ``--seconds`` s, a keyframe every
   ``--keyframe-seconds``, made here from the carried real clips (``.gpu_clips/``, looped) or,
   without them, from synthetic frames;
3. ``vsr bench --device cuda`` at 1080p and 4K output (x3);
4. whole-process ``vsr run --device cuda`` at 1080p output (640x360 x3) and 4K output (1280x720 x3)
   with each ``--workers`` count, each run's per-stage busy time read from ``--stats-json``;
5. the best worker count of each resolution again with ``--decoder nvdec``;
6. the tests marked ``needs_cuda`` / ``needs_tensorrt``;
7. ``--model auto --workers auto``.

Each step has its own timeout (a hang costs that step, not the lease) and the whole script a
budget (``--budget-s``): steps that no longer fit are recorded as skipped. Results are rewritten
after every step, so a killed session still leaves what it measured:
``OUT_DIR/NAME.json`` (``gpu``, ``run_fps_1080p``, ``run_fps_4k``, ``best_workers``, ``rows``,
``versions`` ...), ``OUT_DIR/NAME.md`` and ``OUT_DIR/NAME.log``.

On a CPU machine, ``--device cpu --quick`` is the dry run the tests use: tiny clips, workers 1
and 2, ONNX Runtime fp32, no GPU tests; it writes ``gpu_session_cpu_dryrun.*`` by default (never
commit those as GPU results).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Stages of a row, in the order a frame meets them (``vsr run --stats-json``): the decode and
#: encode threads' busy time, and inside the engine thread each stage the upscaler timed.
STAGES = ("decode", "upload", "engine", "chroma", "download", "encode")
#: (label, input size, output scale): the two outputs the issue asks for.
RESOLUTIONS = {"1080p": ((640, 360), 3), "4k": ((1280, 720), 3)}
#: The --quick stand-ins (CPU dry run): same labels, tiny frames.
QUICK_RESOLUTIONS = {"1080p": ((96, 64), 3), "4k": ((128, 72), 3)}
#: The real clips each resolution loops when they were carried (``.gpu_clips/``) or are beside the repo.
SOURCE_CLIPS = {"1080p": "car_traffic_640x360.mp4", "4k": "cockatoo_1280x720.mp4"}
CLIP_FOLDERS = (REPO / ".gpu_clips", REPO.parent / "shared" / "data" / "video")


class Session:
    """The results so far, written out after every step."""

    def __init__(self, args) -> None:
        self.args = args
        self.started = time.monotonic()
        self.out_dir = Path(args.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="vsr-gpu-session-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out_dir / f"{args.name}.log"
        self.log_path.write_text("")
        self.results: dict = {
            "mode": "cpu-dryrun" if args.device == "cpu" else "gpu",
            "device": args.device, "gpu": None, "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "budget_s": args.budget_s, "model": args.model, "scale": 3, "workers": args.workers,
            "segment_seconds": args.keyframe_seconds, "run_fps_1080p": None, "run_fps_4k": None,
            "best_workers": {}, "rows": [], "bench": [], "tests": None, "nvdec": None, "clips": {},
            "versions": {}, "steps": [],
        }

    # -- bookkeeping --------------------------------------------------------------------------
    def log(self, text: str) -> None:
        line = f"[{self.elapsed():6.1f}s] {text}"
        print(line, flush=True)
        with self.log_path.open("a") as log:
            log.write(line + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def step(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        self.results["steps"].append({"step": name, "status": status, "seconds": round(seconds, 1),
                                      "detail": detail})
        self.log(f"step {name}: {status} in {seconds:.1f}s" + (f" ({detail})" if detail else ""))
        self.write()

    def write(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        json_path = self.out_dir / f"{self.args.name}.json"
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.results, indent=2) + "\n")
        tmp.replace(json_path)
        (self.out_dir / f"{self.args.name}.md").write_text(markdown(self.results))

    def command(self, cmd: list[str], timeout_s: float, label: str, env: dict | None = None) -> dict:
        """Run ``cmd`` in its own process group (a timeout kills the group: the run's workers
        too), output to a file whose tail goes to the log; returns rc, wall seconds, state."""
        out_path = self.work / f"{label}.out"
        timeout_s = max(1.0, min(timeout_s, self.left()))
        self.log(f"$ {' '.join(cmd)}  (timeout {timeout_s:.0f}s)")
        started = time.monotonic()
        with out_path.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                    env={**os.environ, **(env or {})})
            state = "ok"
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                state = "timeout"
                _kill_group(proc)
        wall = time.monotonic() - started
        if state == "ok" and proc.returncode != 0:
            state = "failed"
        tail = out_path.read_text(errors="replace").splitlines()[-self.args.log_tail_lines:]
        with self.log_path.open("a") as log:
            log.write("".join(f"    | {line}\n" for line in tail))
        return {"rc": proc.returncode, "wall_seconds": wall, "state": state, "tail": tail}


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started (vsr run stops its workers on it), SIGKILL after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def vsr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vsr", *args]


def engine_args(args) -> list[str]:
    """--device and, on the CPU dry run, ONNX Runtime fp32 (no OpenVINO precision timing)."""
    extra = ["--device", args.device]
    if args.device == "cpu":
        extra += ["--backend", "onnxruntime", "--precision", "fp32"]
    return extra


# -- steps ----------------------------------------------------------------------------------------
def environment(session: Session) -> None:
    started = time.monotonic()
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for module in ("vsr", "numpy", "torch", "av", "onnxruntime", "cv2", "triton", "tensorrt", "openvino"):
        try:
            versions[module] = __import__(module).__version__
        except Exception as exc:  # noqa: BLE001 - a version table: whatever fails to import is noted
            versions[module] = f"not importable ({type(exc).__name__})"
    try:
        import av

        versions["ffmpeg"] = {name: ".".join(map(str, v)) for name, v in av.library_versions.items()}
    except ImportError:
        pass
    try:
        import torch

        versions["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            versions["cudnn"] = torch.backends.cudnn.version()
            versions["torch_gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        query = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        if query.returncode == 0 and query.stdout.strip():
            name, driver, memory, clock = (part.strip() for part in query.stdout.splitlines()[0].split(","))
            session.results["gpu"] = name
            versions.update(nvidia_driver=driver, gpu_memory=memory, gpu_max_sm_clock=clock)
    versions["vsr_commit"] = session.args.commit or _git_commit()
    from vsr.hardware import cpu_model_name

    versions["cpu"] = cpu_model_name()
    versions["cpu_cores"] = os.cpu_count()
    session.results["versions"] = versions
    session.results["nvdec"] = nvdec_probe(session)
    session.step("environment", "ok", time.monotonic() - started,
                 f"gpu {session.results['gpu']}, nvdec {session.results['nvdec']['decoder']}")


def _git_commit() -> str:
    """HEAD of this tree, where git and .git are here (the device gets a copy without .git: pass --commit)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return "unknown (no git here: give --commit)"
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def nvdec_probe(session: Session) -> dict:
    """Whether NVDEC opens here (vsr's own ``open_decoder``) on a tiny H.264 clip: "nvdec" or,
    with the fallback note, "cpu"."""
    try:
        from vsr.media.decode import VideoReader
    except ImportError as exc:
        return {"decoder": "unknown", "note": f"vsr.media.decode not importable: {exc}"}
    import numpy as np

    clip = session.work / "nvdec_probe.mp4"
    make_clip(clip, (160, 96), frames=10, fps=10, keyframe_frames=5, source=None)
    with VideoReader(clip) as reader:
        reference = list(reader.frames())
    with VideoReader(clip, decoder="nvdec", cuda=True) as reader:
        frames = list(reader.frames())
        probe = {"decoder": reader.report.decoder, "note": reader.report.decoder_note, "frames": len(frames)}
    # H.264 decoding is exact: NVDEC's frames must be the CPU decoder's, pixel for pixel.
    probe["same_frames_as_cpu"] = len(frames) == len(reference) and all(
        a.pts == b.pts and np.array_equal(a.luma, b.luma) and np.array_equal(a.chroma_u, b.chroma_u)
        for a, b in zip(frames, reference))
    return probe


def make_clip(path: Path, size: tuple[int, int], *, frames: int, fps: int, keyframe_frames: int,
              source: Path | None) -> dict:
    """H.264 yuv420p at ``size``, ``frames`` long, a keyframe every ``keyframe_frames``: the
    ``source`` clip looped (resized when it is another size), or moving synthetic frames."""
    import av
    import numpy as np

    width, height = size
    time_base = Fraction(1, fps)

    def source_frames():
        if source is None:
            yy, xx = np.mgrid[0:height, 0:width]
            rng = np.random.default_rng(0)
            noise = rng.integers(0, 24, (height + 64, width + 64), dtype=np.uint8)
            for i in range(frames):
                luma = ((xx + 3 * i) % 256 // 2 + (yy // 16 % 2) * 60).astype(np.uint8)
                luma = luma + noise[i % 64 : i % 64 + height, (2 * i) % 64 : (2 * i) % 64 + width]
                rgb = np.stack([luma, np.roll(luma, i, axis=1), 255 - luma], axis=-1)
                yield av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            return
        done = 0
        while done < frames:
            with av.open(str(source)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    if done >= frames:
                        return
                    yield frame
                    done += 1

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = keyframe_frames
        stream.options = {"preset": "veryfast", "crf": "18",
                          "x264-params": f"keyint={keyframe_frames}:min-keyint={keyframe_frames}:scenecut=0"}
        for index, frame in enumerate(source_frames()):
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = index, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return {"path": str(path), "size": f"{width}x{height}", "frames": frames, "fps": fps,
            "seconds": frames / fps, "keyframe_every_frames": keyframe_frames,
            "source": source.name if source is not None else "synthetic", "bytes": path.stat().st_size}


def clips(session: Session) -> dict[str, Path]:
    args = session.args
    started = time.monotonic()
    made = {}
    for label, (size, _) in resolutions(args).items():
        source = None if args.quick else next(
            (folder / SOURCE_CLIPS[label] for folder in CLIP_FOLDERS if (folder / SOURCE_CLIPS[label]).is_file()), None)
        path = session.work / f"in_{label}.mp4"
        shape = dict(frames=round(args.seconds * args.fps), fps=args.fps,
                     keyframe_frames=round(args.keyframe_seconds * args.fps))
        try:
            info = make_clip(path, size, source=source, **shape)
        except Exception as exc:  # noqa: BLE001 - a real clip that will not loop: synthetic frames instead
            if source is None:
                raise
            session.log(f"clip {label}: {source} failed ({type(exc).__name__}: {exc}); synthetic frames instead")
            info = make_clip(path, size, source=None, **shape)
        session.results["clips"][label] = info
        made[label] = path
        session.log(f"clip {label}: {info}")
    session.step("clips", "ok", time.monotonic() - started)
    return made


def resolutions(args) -> dict:
    chosen = QUICK_RESOLUTIONS if args.quick else RESOLUTIONS
    return {label: chosen[label] for label in args.resolutions}


def gpu_tests(session: Session) -> None:
    """pytest on the files that hold needs_cuda / needs_tensorrt tests, only those tests."""
    started = time.monotonic()
    if session.left() < 30:
        session.step("gpu_tests", "skipped", 0.0, "budget")
        return
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "needs_cuda" in p.read_text() or "needs_tensorrt" in p.read_text())
    junit = session.work / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           "-m", "needs_cuda or needs_tensorrt", f"--junitxml={junit}", *files]
    if _has_module("pytest_timeout"):
        cmd.insert(3, f"--timeout={session.args.test_timeout_s}")
    result = session.command(cmd, session.args.tests_timeout_s, "gpu_tests")
    summary = {"files": files, "rc": result["rc"], "state": result["state"], "wall_seconds": round(result["wall_seconds"], 1)}
    summary.update(_junit_counts(junit))
    session.results["tests"] = summary
    # pytest exits 5 when every selected test was deselected or skipped: no failure.
    status = "ok" if result["rc"] in (0, 5) else result["state"]
    session.step("gpu_tests", status, time.monotonic() - started,
                 f"{summary.get('passed', 0)} passed, {summary.get('failed', 0)} failed, "
                 f"{summary.get('skipped', 0)} skipped, {summary.get('errors', 0)} errors")


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _junit_counts(path: Path) -> dict:
    """passed / failed / errors / skipped and the failing tests' names from pytest's JUnit XML."""
    if not path.is_file():
        return {}
    import xml.etree.ElementTree as ET

    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": []}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            counts["failed"] += 1
            counts["failures"].append(name)
        elif case.find("error") is not None:
            counts["errors"] += 1
            counts["failures"].append(name)
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
            counts["skips"].append(f"{name}: {case.find('skipped').get('message', '')}"[:200])
        else:
            counts["passed"] += 1
    return counts


def bench(session: Session) -> None:
    args = session.args
    for label, ((width, height), scale) in resolutions(args).items():
        started = time.monotonic()
        if session.left() < args.bench_timeout_s / 2:
            session.step(f"bench_{label}", "skipped", 0.0, "budget")
            continue
        json_path = session.work / f"bench_{label}.json"
        frames = ["--frames", "10", "--warmup", "2"] if args.quick else ["--frames", str(args.bench_frames)]
        result = session.command(vsr_command("bench", "--size", f"{width}x{height}", "--scale", str(scale),
                                             "--model", args.model, *engine_args(args), *frames,
                                             "--json", str(json_path)),
                                 args.bench_timeout_s, f"bench_{label}")
        row = {"resolution": label, "state": result["state"], "wall_seconds": round(result["wall_seconds"], 1)}
        if result["state"] == "ok" and json_path.is_file():
            report = json.loads(json_path.read_text())
            row.update(backend=report["backend"], engine_only_fps=round(report["engine_only_fps"], 1),
                       engine_note=report["engine_note"],
                       stage_fps={k: (round(v, 1) if v else None) for k, v in report["stage_fps"].items()},
                       end_to_end_fps=round(report["end_to_end_fps"], 1), frames=report["frames"],
                       output_hw=report["output_hw"], notes=report["notes"])
        else:
            row["error"] = "\n".join(result["tail"][-5:])
        session.results["bench"].append(row)
        session.step(f"bench_{label}", result["state"], time.monotonic() - started,
                     f"end to end {row.get('end_to_end_fps')} fps, engine only {row.get('engine_only_fps')} fps")


def run_row(session: Session, label: str, clip: Path, *, workers: str, decoder: str = "cpu",
            model: str | None = None, tag: str = "") -> dict:
    """One whole-process ``vsr run``: fps counted over the process's whole life (start-up,
    model choice, workers, join), its stages from ``--stats-json``."""
    args = session.args
    (width, height), scale = resolutions(args)[label]
    name = f"run_{label}_w{workers}_{decoder}{tag}"
    stats_path = session.work / f"{name}.json"
    output = session.work / f"{name}.mp4"
    cmd = vsr_command("run", str(clip), str(output), "--overwrite", "--scale", str(scale),
                      "--model", model or args.model, *engine_args(args), "--workers", workers,
                      "--segment-seconds", str(args.keyframe_seconds), "--decoder", decoder,
                      "--stats-json", str(stats_path))
    result = session.command(cmd, args.run_timeout_s, name, env={"VSR_PROGRESS_EVERY_S": "10"})
    row = {"resolution": label, "input": f"{width}x{height}", "output": f"{width * scale}x{height * scale}",
           "workers_asked": workers, "decoder_asked": decoder, "model_asked": model or args.model,
           "state": result["state"], "process_seconds": round(result["wall_seconds"], 2)}
    if result["state"] == "ok" and stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        row.update(row_from_stats(stats, result["wall_seconds"]))
    else:
        row["error"] = "\n".join(result["tail"][-8:])
    output.unlink(missing_ok=True)  # 4K outputs add up: only the numbers are kept
    session.results["rows"].append(row)
    return row


def row_from_stats(stats: dict, process_seconds: float) -> dict:
    """A row's numbers from ``vsr run --stats-json``: fps over the whole process, every stage's
    seconds summed over workers, per frame, and per worker."""
    frames = stats["frames"]
    busy, inside = stats.get("busy_seconds", {}), stats.get("stage_seconds", {})
    stages = {"decode": busy.get("decode", 0.0),
              "upload": inside.get("upload"), "engine": inside.get("engine", busy.get("engine", 0.0)),
              "chroma": inside.get("chroma"), "download": inside.get("download"), "encode": busy.get("encode", 0.0)}
    per_worker: dict[str, dict] = {}
    for segment in stats.get("segments", []):
        worker = per_worker.setdefault(segment["worker"], {"segments": 0, "frames": 0, "wall_seconds": 0.0,
                                                           "seconds": {}})
        worker["segments"] += 1
        worker["frames"] += segment["frames"]
        worker["wall_seconds"] = round(worker["wall_seconds"] + segment["wall_seconds"], 3)
        # The engine thread's busy time is "engine_thread" here: "engine" is the network inside it.
        seconds = {("engine_thread" if stage == "engine" else stage): value
                   for stage, value in segment.get("busy_seconds", {}).items()}
        for stage, value in [*seconds.items(), *segment.get("stage_seconds", {}).items()]:
            worker["seconds"][stage] = round(worker["seconds"].get(stage, 0.0) + value, 3)
    return {
        "frames": frames, "fps": round(frames / process_seconds, 2) if process_seconds > 0 else 0.0,
        "pipeline_fps": stats.get("fps"), "wall_seconds": stats.get("wall_seconds"),
        "first_frame_seconds": stats.get("first_frame_seconds"), "workers": stats.get("workers"),
        "segments": len(stats.get("segments", [])), "model": stats.get("model"), "backend": stats.get("backend"),
        "decoder": stats.get("decoder"),
        # Microseconds kept: a short run's chroma stage can take under half a millisecond in all, and
        # rounded to 3 decimals a measured stage read 0.0, as if it had not run.
        "stage_seconds": {k: round(v, 6) for k, v in stages.items() if v is not None},
        "stage_ms_per_frame": {k: round(1000 * v / frames, 3) for k, v in stages.items() if v is not None and frames},
        "engine_thread_seconds": round(busy.get("engine", 0.0), 3),
        # Building the upscaler (model load, CUDA context, compile), summed over the workers.
        "startup_seconds": round(inside.get("startup", 0.0), 3),
        "per_worker": per_worker, "notes": stats.get("notes", []),
    }


def runs(session: Session, clip_paths: dict[str, Path]) -> None:
    args = session.args
    for label in args.resolutions:
        for workers in args.workers:
            started = time.monotonic()
            if session.left() < args.min_run_s:
                session.step(f"run_{label}_w{workers}", "skipped", 0.0, "budget")
                continue
            row = run_row(session, label, clip_paths[label], workers=str(workers))
            session.step(f"run_{label}_w{workers}", row["state"], time.monotonic() - started,
                         f"{row.get('fps')} fps whole-process, stages {row.get('stage_ms_per_frame')} ms/frame")
        summarise(session)


def summarise(session: Session) -> None:
    """run_fps_<resolution>: the best whole-process fps of the cpu-decoder rows with a fixed
    worker count; best_workers: the worker count that gave it."""
    for label in session.args.resolutions:
        rows = [r for r in session.results["rows"] if r["resolution"] == label and r["state"] == "ok"
                and r["decoder_asked"] == "cpu" and r["workers_asked"] != "auto" and r.get("fps")]
        if rows:
            best = max(rows, key=lambda r: r["fps"])
            session.results[f"run_fps_{label}"] = best["fps"]
            session.results["best_workers"][label] = int(best["workers_asked"])
    session.write()


def nvdec_rows(session: Session, clip_paths: dict[str, Path]) -> None:
    """The best worker count of each resolution again, decoded by NVDEC (or, where it does not
    open, by the CPU after the fallback note: the row says which ran)."""
    for label in session.args.resolutions:
        started = time.monotonic()
        workers = session.results["best_workers"].get(label, session.args.workers[-1])
        if session.left() < session.args.min_run_s:
            session.step(f"nvdec_{label}", "skipped", 0.0, "budget")
            continue
        row = run_row(session, label, clip_paths[label], workers=str(workers), decoder="nvdec")
        session.step(f"nvdec_{label}", row["state"], time.monotonic() - started,
                     f"decoder {row.get('decoder')}, {row.get('fps')} fps")


def model_auto(session: Session, clip_paths: dict[str, Path]) -> None:
    for label in session.args.resolutions:
        started = time.monotonic()
        if session.left() < session.args.min_run_s:
            session.step(f"auto_{label}", "skipped", 0.0, "budget")
            continue
        row = run_row(session, label, clip_paths[label], workers="auto", model="auto", tag="_auto")
        session.step(f"auto_{label}", row["state"], time.monotonic() - started,
                     f"model {row.get('model')}, workers {row.get('workers')}, {row.get('fps')} fps")


# -- the report -----------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    dry = results["mode"] == "cpu-dryrun"
    lines = [f"# vsr GPU session{' (CPU dry run: NOT GPU figures)' if dry else ''}", "",
             f"- GPU: {results.get('gpu') or 'none'}; device {results['device']}; started {results['started_utc']} UTC, "
             f"{results.get('elapsed_s', 0)} s of a {results['budget_s']} s budget",
             f"- best whole-process fps: 1080p output {results.get('run_fps_1080p')}, 4K output "
             f"{results.get('run_fps_4k')}; best --workers {results.get('best_workers')}",
             f"- model {results['model']} x{results['scale']}, segments of {results['segment_seconds']} s "
             "(a keyframe every segment)"]
    versions = results.get("versions", {})
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if not isinstance(v, dict)))
    nvdec = results.get("nvdec") or {}
    if nvdec:
        lines.append(f"- NVDEC: {nvdec.get('decoder')}" + (f" ({nvdec['note']})" if nvdec.get("note") else "")
                     + f"; frames identical to the CPU decoder's: {nvdec.get('same_frames_as_cpu')}")
    tests = results.get("tests")
    if tests:
        lines.append(f"- GPU tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                     f"{tests.get('errors', 0)} errors, {tests.get('skipped', 0)} skipped ({tests['state']})"
                     + (f"; failing: {', '.join(tests['failures'])}" if tests.get("failures") else ""))
    lines += ["", "## Whole-process `vsr run`", "",
              "fps = frames / the process's whole wall time (start-up, workers, join). Stage columns: ms per "
              "frame summed over workers (busy time, not wall): decode and encode threads; upload/engine/"
              "chroma/download inside the engine thread (device time on GPU-resident frames). startup s: "
              "building the upscaler (model, CUDA context), summed over workers; first frame s: from the "
              "run's start (after imports) to its first finished frame.", "",
              "| resolution | workers | decoder | model | state | frames | fps | first frame s | startup s | "
              + " | ".join(STAGES) + " |",
              "|---|---:|---|---|---|---:|---:|---:|---:|" + "---:|" * len(STAGES)]
    for row in results["rows"]:
        ms = row.get("stage_ms_per_frame", {})
        workers = row["workers_asked"] if row.get("workers") is None else f"{row['workers_asked']} ({row['workers']})"
        lines.append(f"| {row['resolution']} {row['input']}->{row['output']} | {workers} | "
                     f"{row.get('decoder') or row['decoder_asked']} | {row.get('model') or row['model_asked']} | "
                     f"{row['state']} | {row.get('frames', '')} | {row.get('fps', '')} | "
                     f"{row.get('first_frame_seconds', '')} | {row.get('startup_seconds', '')} | "
                     + " | ".join(str(ms.get(stage, "")) for stage in STAGES) + " |")
    if results.get("bench"):
        lines += ["", "## `vsr bench`", "", "| resolution | backend | engine only fps | end to end fps | stage fps |",
                  "|---|---|---:|---:|---|"]
        for row in results["bench"]:
            lines.append(f"| {row['resolution']} | {row.get('backend', '')} | {row.get('engine_only_fps', '')} | "
                         f"{row.get('end_to_end_fps', '')} | {row.get('stage_fps', row.get('error', ''))} |")
    best = results.get("best_workers") or {}
    lines += ["", "## Setting `--workers auto` from this session", "",
              "`vsr.tuning.GPU_WORKERS_PER_GPU` is what `--workers auto` runs per GPU with `--device "
              "cuda` (capped by the cores). Take the best worker count above at the resolution that matters "
              "(`best_workers` in the JSON"
              + (f": {', '.join(f'{k} {v}' for k, v in best.items())}" if best else "")
              + "); when 1080p and 4K disagree, the smaller count loses least at the other (compare their rows).",
              "", "## Steps", "", "| step | status | s | detail |", "|---|---|---:|---|"]
    for step in results["steps"]:
        lines.append(f"| {step['step']} | {step['status']} | {step['seconds']} | {step['detail']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the GPU session) or cpu (the dry run).")
    parser.add_argument("--quick", action="store_true",
                        help="Dry run: tiny clips, workers 1 and 2, no GPU tests, no --model auto.")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", default=None,
                        help="File names in OUT_DIR [default: gpu_session, gpu_session_cpu_dryrun on the CPU].")
    parser.add_argument("--work-dir", default=None, help="Clips, outputs and logs of each step [default: a temp dir].")
    parser.add_argument("--budget-s", type=float, default=480.0, help="The whole script's time.")
    parser.add_argument("--workers", default=None, help="Comma list [default: 1,4,8,16; --quick 1,2].")
    parser.add_argument("--resolutions", default="1080p,4k")
    parser.add_argument("--model", default="espcn", help="The model of the fixed rows (--model auto has its own step).")
    parser.add_argument("--seconds", type=float, default=None, help="Clip length [default: 64; --quick 4].")
    parser.add_argument("--fps", type=int, default=None, help="Clip frame rate [default: 30; --quick 10].")
    parser.add_argument("--keyframe-seconds", type=float, default=2.0,
                        help="A keyframe every this many seconds, and --segment-seconds of the runs.")
    parser.add_argument("--steps", default=None,
                        help="Comma list of tests,bench,runs,nvdec,auto [default: all; --quick bench,runs,nvdec].")
    parser.add_argument("--tests-timeout-s", type=float, default=100.0)
    parser.add_argument("--test-timeout-s", type=float, default=60.0, help="Per test (pytest-timeout, where there).")
    parser.add_argument("--bench-timeout-s", type=float, default=90.0)
    parser.add_argument("--bench-frames", type=int, default=200)
    parser.add_argument("--run-timeout-s", type=float, default=150.0)
    parser.add_argument("--min-run-s", type=float, default=20.0, help="Skip a run when less budget is left.")
    parser.add_argument("--log-tail-lines", type=int, default=15)
    parser.add_argument("--commit", default=None, help="The vsr commit measured [default: git rev-parse HEAD, where there].")
    args = parser.parse_args(argv)
    args.name = args.name or ("gpu_session" if args.device.startswith("cuda") else "gpu_session_cpu_dryrun")
    args.workers = [int(w) for w in (args.workers or ("1,2" if args.quick else "1,4,8,16")).split(",")]
    args.resolutions = [r for r in args.resolutions.split(",") if r]
    unknown = set(args.resolutions) - set(RESOLUTIONS)
    if unknown:
        parser.error(f"--resolutions: {sorted(unknown)}: choose from {', '.join(RESOLUTIONS)}")
    args.seconds = args.seconds or (4.0 if args.quick else 64.0)
    args.fps = args.fps or (10 if args.quick else 30)
    if args.quick:
        args.keyframe_seconds = min(args.keyframe_seconds, 1.0)
    args.steps = (args.steps or ("bench,runs,nvdec" if args.quick else "tests,bench,runs,nvdec,auto")).split(",")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    session = Session(args)
    session.log(f"vsr GPU session: {vars(args)}")
    environment(session)
    if args.device.startswith("cuda") and session.results["gpu"] is None:
        session.log("warning: nvidia-smi names no GPU")
    clip_paths = clips(session)
    # The headline numbers first: a lease cut short keeps them.
    steps = [("bench", bench, ()), ("runs", runs, (clip_paths,)), ("nvdec", nvdec_rows, (clip_paths,)),
             ("tests", gpu_tests, ()), ("auto", model_auto, (clip_paths,))]
    for name, step, extra in steps:
        if name not in args.steps:
            continue
        started = time.monotonic()
        try:
            step(session, *extra)
        except Exception:  # noqa: BLE001 - one broken step must not cost the lease the others
            import traceback

            session.log(traceback.format_exc())
            session.step(name, "crashed", time.monotonic() - started, traceback.format_exc(limit=-1).splitlines()[-1])
    summarise(session)
    session.log(f"done: 1080p {session.results['run_fps_1080p']} fps, 4K {session.results['run_fps_4k']} fps, "
                f"best workers {session.results['best_workers']}; wrote {session.out_dir / args.name}.json/.md/.log")
    print(markdown(session.results))
    if not args.work_dir:
        shutil.rmtree(session.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
