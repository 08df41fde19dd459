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
CLIPS = {"360p->1080p": "car_traffic_640x360.mp4", "720p->4K": "cockatoo_1280x720.mp4",
         "480p->1440p (keyframe every 1.2 s)": "tennis_640x480.mp4"}


def machine(device: str) -> dict:
    from vsr.bench import machine_info

    info = machine_info(device)
    info["cpu_cores"] = len(os.sched_getaffinity(0))
    info["python"] = platform.python_version()
    return info


def run_once(clip: Path, workers: str, extra: list[str], segment_seconds: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        cmd = [sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", "3", "--workers", workers,
               "--segment-seconds", segment_seconds, *extra]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        lines = proc.stderr.strip().splitlines()
        summary = lines[-1]
        frames = int(summary.split(" frames")[0].split()[-1])
        return {"command": "vsr " + " ".join(cmd[3:]).replace(str(out), "out.mp4").replace(str(DATA) + "/", ""),
                "workers": workers, "segment_seconds": float(segment_seconds), "frames": frames, "wall_seconds": round(wall, 2), "fps": round(frames / wall, 2),
                "stderr": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", nargs="+", default=["1", "2", "4", "auto"])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS)[:2], choices=list(CLIPS))
    parser.add_argument("--segment-seconds", nargs="+", default=["5"],
                        help="Segment lengths to try (each with every --workers value).")
    parser.add_argument("--repeats", type=int, default=2,
                        help="Rounds; each round runs every --workers value once, in turn, so a slow spell "
                             "of the machine hits them alike. The table shows each one's best round.")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More `vsr run` options.")
    args = parser.parse_args()
    extra = ["--device", args.device, *args.extra]
    rows = []
    for label in args.clips:
        clip = DATA / "video" / CLIPS[label]
        for round_number in range(args.repeats):
            configs = [(w, seconds) for seconds in args.segment_seconds for w in args.workers]
            for workers, seconds in configs if round_number % 2 == 0 else configs[::-1]:
                row = run_once(clip, workers, extra, seconds)
                row.update(clip=label, round=round_number)
                rows.append(row)
                print(f"{label:<12} round {round_number} workers {workers:>4} segments {seconds:>4} s: "
                      f"{row['fps']:7.1f} fps ({row['frames']} frames, {row['wall_seconds']} s)", flush=True)
    best = {}
    for row in rows:
        key = (row["clip"], row["workers"], row["segment_seconds"])
        if key not in best or row["fps"] > best[key]["fps"]:
            best[key] = row
    info = machine(args.device)
    tag = ("cuda" if args.device.startswith("cuda") else "cpu") + ("_segment_seconds" if len(args.segment_seconds) > 1 else "")
    results = HERE / "results"
    (results / f"segments_{tag}.json").write_text(json.dumps({"machine": info, "runs": rows}, indent=1) + "\n")
    where = info["cpu"] + f", {info['cpu_cores']} cores" + (f", {info['gpu']}" if "gpu" in info else "")
    lines = [f"# `vsr run` fps against --workers ({where})", "",
             "Whole process, start-up and join included; `python benchmarks/segments.py "
             + " ".join(sys.argv[1:]) + "`.", "",
             f"Best of {args.repeats} rounds (every round in the JSON).", "",
             "| clip | workers | segment s | frames | wall s | fps | fps, every round |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for (clip, workers, seconds), r in best.items():
        every = ", ".join(str(x["fps"]) for x in rows
                          if (x["clip"], x["workers"], x["segment_seconds"]) == (clip, workers, seconds))
        lines.append(f"| {clip} | {workers} | {seconds:g} | {r['frames']} | {r['wall_seconds']} | **{r['fps']}** "
                     f"| {every} |")
    (results / f"segments_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
