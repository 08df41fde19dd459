"""`vsr run` on the CPU against the way an OpenCV user upscales video, and what each speed lever gave.

    python benchmarks/cpu_realtime.py [--clip ../shared/data/video/car_traffic_640x360.mp4]

Measures, on one machine in one run:
  * whole-process `vsr run CLIP out.mp4 --scale 3` (start-up included), default settings
    (--precision auto: what it chose is in the summary), and with --precision int8;
  * the same for the `balanced` rung (its first --rung-frames frames), --precision auto (which
    may pick int8 there: its int8 is recorded within 0.05 dB of fp32) against bf16;
  * engine-only time per 640x360 -> 1920x1080 luma plane for each backend / precision;
  * the OpenCV peer: cv2.dnn_superres ESPCN x3 `upsample` per frame with VideoCapture/VideoWriter;
  * the quality cost of the fast path: Set5 x3 PSNR of each backend (`vsr eval`).
Writes results/cpu_realtime.json and results/cpu_realtime.md. Stop other CPU work first.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))


def whole_process(clip: Path, extra: list[str], max_frames: int | None) -> dict:
    """One `vsr run` in a fresh process, timed from outside (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        cmd = [sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", "3", *extra]
        if max_frames:
            cmd += ["--max-frames", str(max_frames)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        summary = proc.stderr.strip().splitlines()[-1]
        frames = int(summary.split(" frames")[0].split()[-1])
        return {"command": "vsr " + " ".join(cmd[3:]).replace(str(out), "out.mp4"), "frames": frames,
                "wall_seconds": round(wall, 2), "fps": round(frames / wall, 2), "summary": summary,
                "engine_lines": [line for line in proc.stderr.splitlines() if "backend" in line or "precision" in line],
                "output_bytes": out.stat().st_size}


def engine_only(clip: Path, repeats: int = 20) -> list[dict]:
    import av

    from vsr.backends import create_backend
    from vsr.pipeline.stages import upscale_luma

    with av.open(str(clip)) as container:
        luma = next(container.decode(video=0)).to_ndarray(format="gray")
    rows = []
    variants = [("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"), ("onnxruntime", "fp32"),
                ("torch", "fp32")]
    for name, precision in variants:
        try:
            backend = create_backend(name, 3, precision=precision)
        except Exception as exc:  # e.g. no native bf16 or no NNCF here: the row says so
            rows.append({"backend": f"{name} {precision}", "unavailable": str(exc)})
            continue
        label = f"{name} {getattr(backend, 'precision', 'fp32')}"
        for _ in range(3):
            upscale_luma([luma], backend)
        started = time.perf_counter()
        for _ in range(repeats):
            upscale_luma([luma], backend)
        ms = (time.perf_counter() - started) / repeats * 1000
        rows.append({"backend": label, "ms_per_frame": round(ms, 1), "fps": round(1000 / ms, 1)})
        backend.close()
    return rows


def opencv_peer(clip: Path, max_frames: int) -> dict:
    """What an OpenCV user writes: dnn_superres on BGR frames, VideoCapture in, VideoWriter out."""
    import cv2

    model = DATA / "peers" / "opencv_espcn" / "ESPCN_x3.pb"
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(model))
    sr.setModel("espcn", 3)
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    with tempfile.TemporaryDirectory() as tmp:
        writer = None
        frames = 0
        while frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            up = sr.upsample(frame)
            if writer is None:
                writer = cv2.VideoWriter(str(Path(tmp) / "peer.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (up.shape[1], up.shape[0]))
            writer.write(up)
            frames += 1
        writer.release()
    capture.release()
    wall = time.perf_counter() - started
    return {"method": "cv2.dnn_superres ESPCN x3 upsample + VideoCapture/VideoWriter(mp4v)", "frames": frames,
            "wall_seconds": round(wall, 2), "fps": round(frames / wall, 2)}


def set5_quality() -> list[dict]:
    rows = []
    for backend, precision in (("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"),
                               ("onnxruntime", "fp32")):
        proc = subprocess.run([sys.executable, "-m", "vsr", "eval", "--data", str(DATA / "set5"), "--scale", "3",
                               "--backend", backend, "--precision", precision, "--json"], capture_output=True,
                              text=True, cwd=REPO, check=True)
        rows.append({"backend": f"{backend} {precision}",
                     "set5_x3_psnr_db": round(json.loads(proc.stdout)["mean"]["vsr_psnr_db"], 4)})
    return rows


def other_load() -> dict:
    """What else ran on the machine: a shared 2-core machine makes every figure here slower."""
    proc = subprocess.run(["ps", "-eo", "pid,pcpu,stat,args", "--sort=-pcpu"], capture_output=True, text=True)
    # This benchmark itself (whichever of its processes asks) is not "other" load.
    mine = {str(os.getpid()), str(os.getppid())}
    running = [line.strip()[:120] for line in proc.stdout.splitlines()[1:]
               if line.split()[2].startswith("R") and line.split()[0] not in mine and " ps " not in line
               and Path(__file__).name not in line][:4]
    return {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "running": running}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DATA / "video" / "car_traffic_640x360.mp4")
    parser.add_argument("--max-frames", type=int, default=None, help="frames for vsr run (default: all)")
    parser.add_argument("--peer-frames", type=int, default=120)
    parser.add_argument("--rung-frames", type=int, default=150, help="frames for the balanced rows (0: skip them)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cpu_realtime")
    parser.add_argument("--no-quality", action="store_true", help="skip Set5 (untimed: run it with --quality-only)")
    parser.add_argument("--quality-only", action="store_true", help="only add Set5 quality to an existing result")
    parser.add_argument("--note", default=None, help="a sentence on the conditions, printed atop the results")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.quality_only:
        results = json.loads(args.out.with_suffix(".json").read_text())
        results["quality"] = set5_quality()
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(_markdown(results))
        print(_markdown(results))
        return
    import av
    import onnxruntime
    import openvino

    from vsr.hardware import cpu_identity, cpu_model_name

    results = {
        "machine": {"cpu": cpu_model_name(), "cpu_identity": cpu_identity(), "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "av": av.__version__, "onnxruntime": onnxruntime.__version__,
                    "openvino": openvino.__version__},
        "clip": args.clip.name,
        "target_fps": {"required": 30, "goal": 40},
        "target_speedup_over_peer": {"required": 6, "goal": 8},
    }
    if args.note:
        results["note"] = args.note
    results["conditions_before"] = other_load()
    print("engine only ...", flush=True)
    results["engine_only"] = engine_only(args.clip)
    print("vsr run ...", flush=True)
    levers = [("default (--precision auto, libx264 ultrafast, batch 1)", []),
              ("--precision int8 (NNCF)", ["--precision", "int8"])]
    results["vsr_run"] = []
    if args.rung_frames:
        levers += [("--model balanced (--precision auto)", ["--model", "balanced"]),
                   ("--model balanced --precision bf16", ["--model", "balanced", "--precision", "bf16"])]
    for label, extra in levers:
        row = whole_process(args.clip, extra, args.rung_frames if "balanced" in extra else args.max_frames)
        row["variant"] = label
        results["vsr_run"].append(row)
        print(f"  {label}: {row['fps']} fps", flush=True)
    print("opencv peer ...", flush=True)
    results["opencv_peer"] = opencv_peer(args.clip, args.peer_frames)
    results["conditions_after"] = other_load()
    default_fps = results["vsr_run"][0]["fps"]
    results["speedup_over_peer"] = {row["variant"]: round(row["fps"] / results["opencv_peer"]["fps"], 2)
                                    for row in results["vsr_run"]}
    if not args.no_quality:
        print("set5 quality ...", flush=True)
        results["quality"] = set5_quality()
    print(f"default {default_fps} fps", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(results))
    print(_markdown(results))


def _markdown(r: dict) -> str:
    lines = [f"# CPU real-time benchmark ({r['machine']['cpu']}, {r['machine']['cores']} cores)", "",
             *([f"**{r['note']}**", ""] if r.get("note") else []),
             f"CPU: {r['machine']['cpu_identity']}.", "",
             f"Clip: `{r['clip']}` (640x360 -> 1920x1080, x3). Target: >= {r['target_fps']['required']} fps "
             f"(goal {r['target_fps']['goal']}), >= {r['target_speedup_over_peer']['required']}x the OpenCV peer "
             f"(goal {r['target_speedup_over_peer']['goal']}x), measured in the same run.", "",
             "## Whole process (`vsr run`, start-up included)", "", "| variant | frames | wall s | fps |",
             "|---|---:|---:|---:|"]
    for row in r["vsr_run"]:
        lines.append(f"| {row['variant']} ({r['speedup_over_peer'][row['variant']]}x the peer) | {row['frames']} | "
                     f"{row['wall_seconds']} | **{row['fps']}** |")
    peer = r["opencv_peer"]
    lines.append(f"| OpenCV peer: {peer['method']} | {peer['frames']} | {peer['wall_seconds']} | {peer['fps']} |")
    lines += ["", "## Engine only (one 640x360 luma plane -> 1920x1080, uint8 in and out)", "",
              "| backend | ms/frame | fps |", "|---|---:|---:|"]
    lines += [f"| {row['backend']} | {row.get('ms_per_frame', '-')} | {row.get('fps', row.get('unavailable'))} |"
              for row in r["engine_only"]]
    lines += ["", "## Quality of the fast path (Set5 x3, PSNR on Y)", "", "| backend | dB |", "|---|---:|"]
    lines += [f"| {row['backend']} | {row['set5_x3_psnr_db']} |" for row in r.get("quality", [])]
    for when in ("conditions_before", "conditions_after"):
        if when in r:
            lines += ["", f"{when.replace('_', ' ').capitalize()}: load average {' '.join(r[when]['loadavg'])}; "
                      "running: " + ("; ".join(f"`{p}`" for p in r[when]["running"]) or "nothing else")]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items()
                                            if k not in ("cpu", "cores", "cpu_identity"))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
