"""End-to-end `vsr run` fps against --workers, whole process (start-up, planning and the join included).

    python benchmarks/segments.py                       # CPU: workers 1, 2, 4 and auto
    python benchmarks/segments.py --device cuda --workers 1 2 4 8 16

Clips: the shared 640x360 clip (x3: 1920x1080 out) and the 1280x720 one (x3: 3840x2160 out).
Every configuration runs in the same session, one after another, on an otherwise idle machine.
Writes results/segments_<device>.json (raw: every command, its stderr summary, wall time) and
results/segments_<device>.md, naming the CPU model (and GPU) the figures come from.
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
CLIPS = {"360p->1080p": "car_traffic_640x360.mp4", "720p->4K": "cockatoo_1280x720.mp4"}


def machine(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}
    if device.startswith("cuda"):
        import torch

        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def run_once(clip: Path, workers: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        cmd = [sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", "3", "--workers", workers, *extra]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        lines = proc.stderr.strip().splitlines()
        summary = lines[-1]
        frames = int(summary.split(" frames")[0].split()[-1])
        return {"command": "vsr " + " ".join(cmd[3:]).replace(str(out), "out.mp4").replace(str(DATA) + "/", ""),
                "workers": workers, "frames": frames, "wall_seconds": round(wall, 2), "fps": round(frames / wall, 2),
                "stderr": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", nargs="+", default=["1", "2", "4", "auto"])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More `vsr run` options.")
    args = parser.parse_args()
    extra = ["--device", args.device, *args.extra]
    rows = []
    for label in args.clips:
        clip = DATA / "video" / CLIPS[label]
        for workers in args.workers:
            row = run_once(clip, workers, extra)
            row["clip"] = label
            rows.append(row)
            print(f"{label:<12} workers {workers:>4}: {row['fps']:7.1f} fps ({row['frames']} frames, "
                  f"{row['wall_seconds']} s)", flush=True)
    info = machine(args.device)
    tag = "cuda" if args.device.startswith("cuda") else "cpu"
    results = HERE / "results"
    (results / f"segments_{tag}.json").write_text(json.dumps({"machine": info, "runs": rows}, indent=1) + "\n")
    where = info["cpu"] + f", {info['cpu_cores']} cores" + (f", {', '.join(info['gpus'])}" if "gpus" in info else "")
    lines = [f"# `vsr run` fps against --workers ({where})", "",
             "Whole process, start-up and join included; `python benchmarks/segments.py "
             + " ".join(sys.argv[1:]) + "`.", "",
             "| clip | workers | frames | wall s | fps |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['clip']} | {r['workers']} | {r['frames']} | {r['wall_seconds']} | **{r['fps']}** |" for r in rows]
    (results / f"segments_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
