"""Peak memory of `vsr run` on a 10-second and a 10-minute 360p input: streaming must not grow with length.

    python benchmarks/memory.py [--clip ../shared/data/video/car_traffic_640x360.mp4] [--scale 3]

The 10-minute input is the clip's packets repeated (remuxed, not re-encoded) to 600 s; the
10-second one is its first 10 s. Each `vsr run` is a child process whose peak RSS is read
with getrusage. Requirement: peak(10 min) <= 1.5 x peak(10 s). Writes results/memory.json/.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))


def loop_clip(src: Path, dst: Path, seconds: float) -> int:
    """Copy ``src``'s video packets, looping with shifted timestamps, until ``seconds``; returns frames."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        packets = [p for p in inp.demux(in_stream) if p.size]
        tb = in_stream.time_base
        period = max(p.pts for p in packets) - min(p.pts for p in packets) + packets[0].duration
        original = [(p.pts, p.dts) for p in packets]
        frames, loop = 0, 0
        while True:
            for p, (pts, dts) in zip(packets, original):
                p.pts, p.dts = pts + loop * period, dts + loop * period
                if float(p.pts * tb) >= seconds:
                    return frames
                p.stream = out_stream
                out.mux(p)
                frames += 1
            loop += 1


def peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh child of a fresh child, so RUSAGE_CHILDREN holds that run alone."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True, cwd=REPO)
    return int(out.stdout.strip()) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DATA / "video" / "car_traffic_640x360.mp4")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, seconds in (("10 s", 10), ("10 min", 600)):
            clip = Path(tmp) / f"input_{seconds}s.mp4"
            frames = loop_clip(args.clip, clip, seconds)
            out = Path(tmp) / "out.mp4"
            cmd = [sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", str(args.scale),
                   "--overwrite", "-q"]
            rss, wall = peak_rss_mib(cmd)
            rows.append({"input": label, "frames": frames, "peak_rss_mib": round(rss, 1),
                         "wall_seconds": round(wall, 1), "fps": round(frames / wall, 1)})
            print(rows[-1], flush=True)
    ratio = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    result = {"clip": args.clip.name, "scale": args.scale, "runs": rows, "ratio_10min_to_10s": round(ratio, 3),
              "requirement": "ratio <= 1.5", "passed": ratio <= 1.5}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Peak memory of `vsr run`: 10 s vs 10 min of 360p", "",
          f"Input: `{args.clip.name}` looped (remuxed), x{args.scale}.", "",
          "| input | frames | peak RSS MiB | wall s | fps |", "|---|---:|---:|---:|---:|"]
    md += [f"| {r['input']} | {r['frames']} | {r['peak_rss_mib']} | {r['wall_seconds']} | {r['fps']} |" for r in rows]
    md += ["", f"Ratio 10 min / 10 s: **{ratio:.3f}** (requirement <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})."]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
