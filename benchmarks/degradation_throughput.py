"""How fast the compressed-video degradation makes training patches, and whether a fast x264
preset degrades like the slow one real encodes use.

    python benchmarks/degradation_throughput.py [--count 4096] [--repeats 2]

1. Presets: each shared clip's first 64 frames, luma downscaled x3 (area), through
   ``vsr.degradations.codec_round_trip`` (h264) at CRF 23 / 30 / 37: preset medium over the
   whole 64 frames (as real video is encoded) against each preset over 8-frame pieces (as the
   training clips are); PSNR of the decoded LR against the uncompressed LR, and ms per frame.
2. Throughput: ``make_patch_pool`` of ``--count`` patches (LR 48 px + 2c, c = 0 and 4, x3,
   the default recipe) from the shared training images in one process (patches/s per
   worker, best of ``--repeats``), per codec, and through ``PoolProducer`` with 2 workers.
Writes results/degradation_throughput.json and .md.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
PRESETS = ("ultrafast", "superfast", "veryfast", "medium")


def preset_check(frames: int, clip_frames: int = 8) -> dict:
    """LR PSNR after x264 at each CRF: medium over ``frames`` frames (real video) against each
    preset over ``clip_frames``-frame pieces (the training clips)."""
    import cv2

    from vsr.degradations import codec_round_trip
    from vsr.media.decode import VideoReader
    from vsr.metrics import psnr

    out = {}
    for clip in sorted((DATA / "video").glob("*.mp4")):
        with VideoReader(clip) as reader:
            lumas = [f.luma for f in reader.frames(frames)]
        h, w = (lumas[0].shape[0] // 6) * 2, (lumas[0].shape[1] // 6) * 2
        lr = [cv2.resize(y[: h * 3, : w * 3], (w, h), interpolation=cv2.INTER_AREA) for y in lumas]
        out[clip.name] = {}
        for crf in (23, 30, 37):
            start = time.perf_counter()
            coded = codec_round_trip(lr, "h264", crf, "medium")
            out[clip.name][f"{crf}/medium, {len(lr)} frames"] = {
                "psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(lr, coded)])), 3),
                "ms_per_frame": round((time.perf_counter() - start) * 1000 / len(lr), 2),
            }
            for preset in PRESETS:
                scores, seconds = [], 0.0
                for first in range(0, len(lr) - clip_frames + 1, clip_frames):
                    piece = lr[first : first + clip_frames]
                    start = time.perf_counter()
                    coded = codec_round_trip(piece, "h264", crf, preset)
                    seconds += time.perf_counter() - start
                    scores += [psnr(a, b) for a, b in zip(piece, coded)]
                out[clip.name][f"{crf}/{preset}, {clip_frames}-frame pieces"] = {
                    "psnr_db": round(float(np.mean(scores)), 3),
                    "ms_per_frame": round(seconds * 1000 / len(scores), 2),
                }
            print(clip.name, crf, out[clip.name], flush=True)
    return out


def throughput(count: int, repeats: int) -> dict:
    from vsr.degradations import CODECS, CompressedDegradation, PoolProducer, make_patch_pool, read_luma_images
    from vsr.images import find_images

    paths = find_images(DATA / "train")
    images = read_luma_images(paths)
    out = {"images": len(images)}
    recipe = CompressedDegradation()
    for context_px in (0, 4):
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            make_patch_pool(images, 3, 48, context_px, count, seed=1, recipe=recipe)
            best = max(best, count / (time.perf_counter() - start))
        out[f"default_c{context_px}"] = round(best, 1)
        print(f"default recipe, c={context_px}: {best:.0f} patches/s per worker", flush=True)
    for codec in CODECS:
        only = replace(recipe, codec_weights=((codec, 1.0),))
        start = time.perf_counter()
        make_patch_pool(images, 3, 48, 4, count // 4, seed=2, recipe=only)
        rate = (count // 4) / (time.perf_counter() - start)
        out[f"{codec}_c4"] = round(rate, 1)
        print(f"{codec} only, c=4: {rate:.0f} patches/s per worker", flush=True)
    with PoolProducer(paths, 3, 48, 4, count, seed=1, workers=2) as producer:
        producer.get()  # start-up (spawn, reading the images) is paid once per run
        start = time.perf_counter()
        pools = 4
        for _ in range(pools):
            producer.get()
        rate = pools * count / (time.perf_counter() - start)
    out["producer_2_workers_c4"] = round(rate, 1)
    print(f"PoolProducer, 2 workers, c=4: {rate:.0f} patches/s", flush=True)
    return out


def to_markdown(report: dict) -> str:
    t = report["throughput"]
    lines = [
        "# Compressed-video degradation: speed and x264 preset",
        "",
        f"`python benchmarks/degradation_throughput.py`, {report['machine']['device']}, "
        f"load before the run: {report['load_before']}.",
        "",
        f"## Patches per second ({report['count']} patches of LR 48 px + 2c, x3, "
        f"{t['images']} training images, best of {report['repeats']})",
        "",
        "| what | patches/s |",
        "|---|---:|",
        f"| default recipe, c = 0, one worker | {t['default_c0']:.0f} |",
        f"| default recipe, c = 4, one worker | {t['default_c4']:.0f} |",
    ]
    for key, value in t.items():
        if key.endswith("_c4") and not key.startswith(("default", "producer")):
            lines.append(f"| only {key[:-3]}, c = 4, one worker | {value:.0f} |")
    lines.append(f"| `PoolProducer`, 2 workers (2 cores), c = 4 | {t['producer_2_workers_c4']:.0f} |")
    lines += ["", "## x264 preset against CRF (LR luma PSNR after the round trip, dB; ms per frame)", "",
              "Real video is encoded long and with a slow preset; training clips are short. Which preset makes "
              "8-frame clips lose what medium loses over 64 frames at the same CRF? (LR x3, area.)", ""]
    clips = list(report["presets"])
    lines.append("| CRF | preset | " + " | ".join(c.split("_")[0] for c in clips) + " |")
    lines.append("|---|---|" + "---:|" * len(clips))
    for key in report["presets"][clips[0]]:
        crf, preset = key.split("/")
        lines.append(f"| {crf} | {preset} | " + " | ".join(
            f"{report['presets'][c][key]['psnr_db']:.2f} ({report['presets'][c][key]['ms_per_frame']:.1f} ms)"
            for c in clips) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import os

    from vsr.bench import machine_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--frames", type=int, default=64)
    args = parser.parse_args()
    report = {
        "machine": machine_info("cpu"),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "count": args.count,
        "repeats": args.repeats,
        "presets": preset_check(args.frames),
        "throughput": throughput(args.count, args.repeats),
    }
    (HERE / "results" / "degradation_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    (HERE / "results" / "degradation_throughput.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
