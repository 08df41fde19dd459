"""The real-time rungs against ESPCN, engine alone and whole `vsr run`, on one machine in one run.

    python benchmarks/realtime_rungs.py [--clip ../shared/data/video/car_traffic_640x360.mp4] [--rounds 2]
        [--models espcn realtime ...] [--max-frames N] [--scales 2 3 4] [--process-scale 3]

1. Engine: each model's ONNX on OpenVINO at the precision ``--precision auto`` picks here (the
   precision probe's own timing, fp32 / bf16 / int8 on a 320x180 plane, cached), then that
   precision timed on a 640x360 uint8 luma plane at x3 (the 1080p-output case), best of 10 calls.
2. Whole process: `vsr run CLIP out.mp4 --scale 3` (``--process-scale``) in a fresh process, start-up included, with no
   --model (the default: --model auto, --degradation auto), and with --model espcn, realtime and
   realtime-compressed; the runs interleaved over ``--rounds`` rounds so that drift in the
   machine's speed hits every configuration alike. The default's calibration (each candidate
   timed once on this machine, then cached) is timed separately, in a first run on an empty cache.
Writes results/realtime_rungs.json and .md. Stop other CPU work first.
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
MODELS = ["espcn", "realtime", "realtime-compressed", "realtime-compressed-plus"]


def whole_process(clip: Path, extra: list[str], env: dict, scale: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        cmd = [sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", str(scale), *extra]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        lines = proc.stderr.strip().splitlines()
        frames = int(lines[-1].split(" frames")[0].split()[-1])
        return {"args": extra, "frames": frames, "wall_seconds": round(wall, 2), "fps": round(frames / wall, 2),
                "first_line": lines[0], "summary": lines[-1]}


def engine_ms(name: str, scale: int) -> dict:
    from vsr.backends.openvino import OpenVinoOptions
    from vsr.backends.precision import choose_precision, time_plane_ms
    from vsr.backends.files import onnx_for
    from vsr.models.clip_context import timing_context
    from vsr.models.registry import get_model

    # A network with a global context is timed as `vsr run` runs it: a clip's context folded in.
    onnx = onnx_for(scale, None, name, timing_context(get_model(name), scale))
    precision, note = choose_precision(onnx, scale)
    import numpy as np

    yy, xx = np.mgrid[0:360, 0:640]
    luma = ((xx * 255 // 640 + 40 * np.sin(yy / 3.0)) % 256).astype(np.uint8)[None]
    ms = time_plane_ms(onnx, scale, OpenVinoOptions(precision=precision), luma, calls=10)
    return {"model": name, "scale": scale, "precision": precision, "ms_per_640x360_plane": ms, "auto_note": note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DATA / "video" / "car_traffic_640x360.mp4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "realtime_rungs")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--max-frames", type=int, default=None, help="frames of the clip each vsr run takes")
    parser.add_argument("--process-scale", type=int, default=3, help="the scale of the whole-process runs")
    args = parser.parse_args()
    models = args.models
    frames = ["--max-frames", str(args.max_frames)] if args.max_frames else []
    sys.path.insert(0, str(REPO))
    from vsr.hardware import cpu_identity

    engine = [engine_ms(name, scale) for scale in args.scales for name in models]
    for row in engine:
        print(json.dumps({k: v for k, v in row.items() if k != "auto_note"}), flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "VSR_CACHE_DIR": cache}
        first = whole_process(args.clip, frames, env, args.process_scale)
        print("first default run (calibrating):", first["fps"], "fps;", first["first_line"], flush=True)
        configs = [frames] + [[*frames, "--model", name] for name in models]
        runs = {json.dumps(c): [] for c in configs}
        for _ in range(args.rounds):
            for config in configs:
                row = whole_process(args.clip, config, env, args.process_scale)
                runs[json.dumps(config)].append(row)
                print(" ".join(config) or "(default)", row["fps"], "fps", flush=True)
    whole = [{"args": json.loads(key), "fps_each": [r["fps"] for r in rows],
              "fps_mean": round(sum(r["fps"] for r in rows) / len(rows), 2), "first_line": rows[0]["first_line"],
              "frames": rows[0]["frames"]} for key, rows in runs.items()]
    record = {"machine": cpu_identity(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "clip": args.clip.name, "process_scale": args.process_scale, "engine": engine,
              "first_default_run": first, "whole_process": whole}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Real-time rungs against ESPCN ({record['date']})", "",
             f"{record['machine']}; `python benchmarks/realtime_rungs.py`.", "",
             "Engine alone, OpenVINO at the precision `--precision auto` picks, ms per 640x360 uint8 luma plane:", "",
             "| scale | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for scale in args.scales:
        cells = [next(r for r in engine if r["model"] == m and r["scale"] == scale) for m in models]
        lines.append(f"| x{scale} | " + " | ".join(f"{c['ms_per_640x360_plane']:.1f} ({c['precision']})" for c in cells)
                     + " |")
    scale = args.process_scale
    lines += ["", f"Whole process, `vsr run {args.clip.name} out.mp4 --scale {scale}` ({whole[0]['frames']} frames, "
              f"640x360 -> {640 * scale}x{360 * scale}), start-up included, {args.rounds} interleaved rounds:", "",
              "| options | fps (each round) | mean | first line |", "|---|---|---:|---|"]
    for row in whole:
        options = " ".join(a for a in row["args"] if a not in frames) or "(none: the default)"
        lines.append(f"| {options} | "
                     f"{', '.join(f'{f:.1f}' for f in row['fps_each'])} | **{row['fps_mean']:.1f}** | "
                     f"`{row['first_line']}` |")
    lines += ["", f"The default's first run on an empty cache (it times the candidates once): {first['fps']:.1f} fps "
              f"({first['wall_seconds']:.1f} s)."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
