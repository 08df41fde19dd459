"""Where `vsr run`'s milliseconds go on a small CPU, and what each lever gives, one fresh process per variant.

    python benchmarks/cpu_levers.py [--clip ...] [--max-frames 300] [--only NAME ...]

Each variant runs `vsr run CLIP out.mp4 --scale 3` through the library (`upscale_video`, as the
command does) in its own Python process, with one setting changed from the baseline, and reports
whole-process frames per second (start-up included) and each stage's busy seconds. Stop other CPU
work first. Writes results/cpu_levers.json and .md (variants from earlier calls are kept, so the
list can be run in parts).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))

#: name -> (what changes, RunConfig fields, EncodeOptions fields). The baseline is `vsr run`'s
#: defaults before this work: OpenVINO bf16 (auto on this CPU), every library's default threads.
VARIANTS = {
    "fp32": ("OpenVINO fp32", {"precision": "fp32"}, {}),
    "bf16": ("OpenVINO bf16 (baseline: auto's choice within 0.05 dB)", {"precision": "bf16"}, {}),
    "int8": ("OpenVINO int8 (NNCF)", {"precision": "int8"}, {}),
    "int8_enc1": ("int8, libx264 1 thread", {"precision": "int8"}, {"encoder_threads": 1}),
    "int8_enc2": ("int8, libx264 2 threads", {"precision": "int8"}, {"encoder_threads": 2}),
    "int8_ov1": ("int8, OpenVINO 1 thread (unpinned)", {"precision": "int8", "engine_threads": 1}, {}),
    "int8_ov1_enc1": ("int8, OpenVINO 1 thread, libx264 1 thread",
                      {"precision": "int8", "engine_threads": 1}, {"encoder_threads": 1}),
    "int8_ov2": ("int8, OpenVINO 2 threads unpinned", {"precision": "int8", "engine_threads": 2}, {}),
    "int8_dec1": ("int8, decoder 1 thread", {"precision": "int8", "decoder_threads": 1}, {}),
    "int8_batch2": ("int8, 2 frames per network call", {"precision": "int8", "batch_size": 2}, {}),
    "int8_workers2": ("int8, 2 segment workers of 1 thread each", {"precision": "int8", "workers": 2}, {}),
    "int8_workers1": ("int8, one stream (--workers 1)", {"precision": "int8", "workers": 1}, {}),
    "bf16_workers1": ("bf16, one stream (--workers 1)", {"precision": "bf16", "workers": 1}, {}),
    "int8_superfast": ("int8, libx264 superfast", {"precision": "int8"}, {"preset": "superfast"}),
    "bf16_enc1": ("bf16, libx264 1 thread", {"precision": "bf16"}, {"encoder_threads": 1}),
    "bf16_workers2": ("bf16, 2 segment workers of 1 thread each", {"precision": "bf16", "workers": 2}, {}),
}

CHILD = """
import json, sys, time, tempfile, dataclasses
from pathlib import Path
started = time.perf_counter()
from vsr.pipeline.pipeline import RunConfig
from vsr.media.encode import EncodeOptions
from vsr.segments import upscale_video
run, enc, clip, max_frames = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    config = RunConfig(input_path=Path(clip), output_path=Path(tmp) / "out.mp4", scale=3,
                       encode=EncodeOptions(**enc), max_frames=max_frames, **{"workers": 1, **run})
    stats = upscale_video(config)
    size = config.output_path.stat().st_size
wall = time.perf_counter() - started
print(json.dumps({"frames": stats.frames, "wall_seconds": round(wall, 2), "fps": round(stats.frames / wall, 2),
                  "busy_seconds": {k: round(v, 2) for k, v in stats.busy_seconds.items()}, "output_bytes": size}))
"""


def run_variant(name: str, clip: Path, max_frames: int | None) -> dict:
    label, run, enc = VARIANTS[name]
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([run, enc, str(clip), max_frames])],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"variant": name, "change": label, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DATA / "video" / "car_traffic_640x360.mp4")
    parser.add_argument("--max-frames", type=int, default=300, help="0: the whole clip")
    parser.add_argument("--only", nargs="+", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cpu_levers")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from vsr.cpu import cpu_identity

    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    results.update({"cpu": cpu_identity(), "clip": args.clip.name})
    for name in args.only:
        row = run_variant(name, args.clip, args.max_frames or None)
        row["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results["rows"][f"{name}@{args.max_frames or 'all'}"] = row
        print(f"{name}: {row['fps']} fps  busy {row['busy_seconds']}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        args.out.with_suffix(".table.md").write_text(_markdown(results))


def _markdown(results: dict) -> str:
    """The measured rows as a table (cpu_levers.md quotes it, with the reading)."""
    lines = [f"CPU: {results['cpu']}. Clip: `{results['clip']}`, x3 to 1920x1080, whole process per variant.", "",
             "| variant | frames | wall s | fps | busy s: decode / engine / encode | measured |",
             "|---|---:|---:|---:|---|---|"]
    for key, row in results["rows"].items():
        busy = row["busy_seconds"]
        lines.append(f"| `{key}`: {row['change']} | {row['frames']} | {row['wall_seconds']} | **{row['fps']}** | "
                     f"{busy.get('decode', 0)} / {busy.get('engine', 0)} / {busy.get('encode', 0)} | "
                     f"{row.get('measured_at', '')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
