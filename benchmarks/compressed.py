"""Super-resolution of compressed low-resolution video: the shared real clips, downscaled x3
(``--scale 2`` or ``4`` for the other factors) and re-encoded with libx264, upscaled by bicubic
and by each model; PSNR / SSIM on Y against the original frames.

    python benchmarks/compressed.py                        # bicubic + every shipped model, x3
    python benchmarks/compressed.py --model espcn --model NAME --weights run/best.pt
    python benchmarks/compressed.py --scale 2 --out benchmarks/results/compressed_x2

For each clip in ``--data`` (default ../shared/data/video), its first ``--frames`` frames:
the original luma, cropped to a multiple of twice the scale (so the LR has the even sizes 4:2:0
needs), is the reference. The frame (luma and chroma) is downscaled with area averaging
(cv2.INTER_AREA), encoded with libx264 at each ``--crf`` (yuv420p, ``--preset`` medium, the
clip's nominal frame rate) through PyAV, decoded, and its luma upscaled by MATLAB bicubic
(``vsr.evaluate.bicubic_uint8``) and by each model. Scores: PSNR / SSIM on Y after shaving the
scale in px, per frame, averaged per clip; the mean over clips. Flicker beside them: the temporal error
``tE``, the mean absolute difference (8-bit levels, same border shaved) between the output's
change from one frame to the next and the original's, ``|(sr_t - sr_t-1) - (hr_t - hr_t-1)|``
averaged over pixels and frames 1..N-1 (TecoGAN's tOF measures the same with optical flow; on
these mostly static-camera clips the plain frame difference already tells a steady output from
one whose detail boils). Writes results/compressed.json and .md (``--out`` to name them otherwise).
"""
from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The factor every function here works at: 3, the protocol's since it was written and what
# training/realtime's probes import; main() sets it from --scale.
SCALE = 3


def clip_frames(path: Path, max_frames: int) -> tuple[list, float]:
    """The first ``max_frames`` frames (YuvFrame) of a clip and its nominal frame rate."""
    from vsr.media.decode import VideoReader

    with VideoReader(path) as reader:
        frames = list(reader.frames(max_frames))
        fps = float(reader.info.average_fps or 25)
    return frames, fps


def reference_luma(frame) -> np.ndarray:
    """The reference: original luma cropped to a multiple of 2 * SCALE."""
    m = 2 * SCALE
    h, w = frame.luma.shape
    return frame.luma[: h - h % m, : w - w % m]


def downscale_frame(frame) -> np.ndarray:
    """Area-downscaled (by ``SCALE``) frame as one yuv420p buffer ((3/2 h, w) uint8, as PyAV takes it)."""
    import cv2

    luma = reference_luma(frame)
    h, w = luma.shape[0] // SCALE, luma.shape[1] // SCALE
    y = cv2.resize(luma, (w, h), interpolation=cv2.INTER_AREA)
    # Chroma planes of any layout, cropped in proportion, straight to the LR's 4:2:0 size.
    sub_y, sub_x = frame.luma.shape[0] // frame.chroma_u.shape[0], frame.luma.shape[1] // frame.chroma_u.shape[1]
    planes = []
    for plane in (frame.chroma_u, frame.chroma_v):
        plane = plane[: luma.shape[0] // sub_y, : luma.shape[1] // sub_x]
        planes.append(cv2.resize(plane, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    # PyAV reads the buffer flat (Y, then U, then V), so an LR height that is not a multiple of 4 is fine.
    return np.concatenate([y.ravel(), planes[0].ravel(), planes[1].ravel()]).reshape(h * 3 // 2, w)


def encode_decode(lr_frames: list[np.ndarray], crf: int, preset: str, fps: float) -> tuple[list[np.ndarray], int]:
    """yuv420p buffers through libx264 at ``crf`` and back (PyAV, in memory): the decoded buffers, encoded bytes."""
    import av

    height, width = lr_frames[0].shape[0] * 2 // 3, lr_frames[0].shape[1]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    rate = Fraction(fps).limit_denominator(1001)
    encoder.framerate, encoder.time_base = rate, 1 / rate
    encoder.options = {"crf": str(crf), "preset": preset}
    packets = []
    for index, buffer in enumerate(lr_frames):
        frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
        frame.pts = index
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    decoder = av.CodecContext.create("h264", "r")
    out = []
    for packet in packets:
        out.extend(decoder.decode(packet))
    out.extend(decoder.decode(None))
    assert len(out) == len(lr_frames), (len(out), len(lr_frames))
    return [f.to_ndarray() for f in out], sum(p.size for p in packets)


def protocol_clips(data: Path) -> list[Path]:
    """The clips the protocol scores: every video file in ``data``, by name."""
    return sorted(p for p in Path(data).iterdir() if p.suffix in (".mp4", ".mkv", ".mov"))


def coded_clip(clip: Path, max_frames: int, crf: int, preset: str = "medium") -> tuple[list, list]:
    """(reference lumas, decoded LR lumas) of one clip at one CRF, made as ``run`` makes them:
    what training/realtime's probes start from."""
    frames, fps = clip_frames(clip, max_frames)
    references = [reference_luma(f) for f in frames]
    decoded, _ = encode_decode([downscale_frame(f) for f in frames], crf, preset, fps)
    h_lr = references[0].shape[0] // SCALE
    return references, [buffer[:h_lr] for buffer in decoded]


def probe_parser(doc: str) -> argparse.ArgumentParser:
    """The options training/realtime's probes share: one network (``--model`` or ``--weights``)
    on the protocol's clips at one CRF, over their first ``--frames``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="realtime-compressed-plus")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--crf", type=int, default=30)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "video")
    return parser


def make_upscaler(model: str | None, weights: Path | None, backend: str, precision: str = "auto"):
    """A backend for ``model`` (a registry name) or ``weights`` (.pt / .onnx)."""
    from vsr.backends import create_backend

    if weights is not None:
        return create_backend(backend, SCALE, weights=weights, precision=precision)
    # The shipped ONNX itself, as the protocol has always scored it (folded_for_clip names the model).
    from vsr.models.registry import get_model

    return create_backend(backend, SCALE, weights=None if model == "espcn" else get_model(model).weights_path(SCALE),
                          precision=precision)


def clip_context_lumas(lumas: list[np.ndarray], points: int) -> list[np.ndarray]:
    """The frames ``vsr run`` reads a clip's context from (``media.decode.sample_frames``): two at
    the middle of each of ``points`` equal spans (here no keyframe but the first is among them)."""
    from vsr.media.decode import span_middles

    picked = sorted({min(len(lumas) - 1, middle + k) for middle in span_middles(len(lumas), points) for k in (0, 1)})
    return [lumas[i] for i in picked]


def folded_for_clip(method, backend_name: str, lumas: list[np.ndarray], precision: str = "auto"):
    """``method`` (a ``make_upscaler`` backend) for this clip: where its network reads a global
    context, the network with the clip's context folded in, as ``vsr run`` runs it."""
    from vsr.backends import create_backend
    from vsr.backends.files import has_global_context
    from vsr.models.clip_context import CLIP_SAMPLES, measure_context
    from vsr.models.weights import load_model

    name, weights = method
    if not has_global_context(SCALE, name or "espcn", weights):
        return None
    model = name or "espcn"
    context = measure_context(load_model(SCALE, weights, model), clip_context_lumas(lumas, CLIP_SAMPLES))
    return create_backend(backend_name, SCALE, model=model, weights=weights, context=context, precision=precision)


def upscale_uint8(backend, lr_luma: np.ndarray) -> np.ndarray:
    from vsr.color import to_uint8

    out = backend.upscale_luma(lr_luma.astype(np.float32)[None, None] / np.float32(255))
    return to_uint8(np.asarray(out[0, 0], dtype=np.float64) * 255)


def temporal_error(sr_before: np.ndarray, sr: np.ndarray, hr_before: np.ndarray, hr: np.ndarray) -> float:
    """Mean |(sr - sr_before) - (hr - hr_before)| in 8-bit levels, ``SCALE`` px shaved: how much the
    output changes between two frames where the original did not (flicker), or fails to follow it."""
    b = SCALE
    change = sr.astype(np.int16) - sr_before.astype(np.int16)
    truth = hr.astype(np.int16) - hr_before.astype(np.int16)
    return float(np.abs(change - truth)[b:-b, b:-b].mean())


def default_models() -> list[str]:
    from vsr.models.registry import shipped_models

    return [m.name for m in shipped_models()]


def run(args, clips: list[Path]) -> dict:
    from vsr.bench import machine_info
    from vsr.evaluate import bicubic_uint8
    from vsr.metrics import psnr, ssim

    methods: list[tuple[str, object]] = [("bicubic", None)]
    sources: dict[str, tuple] = {}  # each method's (model, weights): what a clip's context is folded into
    for name in args.model or ([] if args.weights else default_models()):
        methods.append((name, make_upscaler(name, None, args.backend, args.precision)))
        sources[name] = (name, None)
    paths = [Path(p) for p in args.weights or []]
    stems = [p.stem for p in paths]
    for path in paths:
        # Runs name their checkpoints alike (MODEL_xN.pt): then the folder tells them apart.
        label = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}/{path.stem}"
        if label in [n for n, _ in methods]:
            raise SystemExit(f"{path}: two methods would be called {label!r}")
        methods.append((label, make_upscaler(None, path, args.backend, args.precision)))
        sources[label] = (None, path)
    results: dict = {}
    started = time.perf_counter()
    for clip in clips:
        frames, fps = clip_frames(clip, args.frames)
        references = [reference_luma(f) for f in frames]
        lr_buffers = [downscale_frame(f) for f in frames]
        h_lr = references[0].shape[0] // SCALE
        results[clip.name] = {"frames": len(frames), "size": f"{references[0].shape[1]}x{references[0].shape[0]}",
                              "crf": {}}
        for crf in args.crf:
            decoded, encoded_bytes = encode_decode(lr_buffers, crf, args.preset, fps)
            clip_methods = methods
            if args.fold_context:
                folded = {name: folded_for_clip(sources[name], args.backend, [b[:h_lr] for b in decoded],
                                                       args.precision)
                          for name, _ in methods if name in sources}
                clip_methods = [(name, folded.get(name) or backend) for name, backend in methods]
            scores = {name: {"psnr_db": [], "ssim": [], "temporal_error": []} for name, _ in methods}
            lr_psnr = []
            previous: dict = {}
            previous_reference = None
            for reference, lr_buffer, buffer in zip(references, lr_buffers, decoded):
                lr = buffer[:h_lr]
                lr_psnr.append(psnr(lr_buffer[:h_lr], lr))
                for name, backend in clip_methods:
                    sr = bicubic_uint8(lr / 255.0, SCALE) if backend is None else upscale_uint8(backend, lr)
                    scores[name]["psnr_db"].append(psnr(reference, sr, border_px=SCALE))
                    scores[name]["ssim"].append(ssim(reference, sr, border_px=SCALE))
                    if name in previous:
                        scores[name]["temporal_error"].append(
                            temporal_error(previous[name], sr, previous_reference, reference))
                    previous[name] = sr
                previous_reference = reference
            for (_, backend), (_, base) in zip(clip_methods, methods):
                if backend is not base:
                    backend.close()
            results[clip.name]["crf"][str(crf)] = {
                "lr_psnr_db_vs_uncompressed": round(float(np.mean(lr_psnr)), 3),
                "kbit_per_frame": round(encoded_bytes * 8 / 1000 / len(frames), 2),
                **{name: {k: round(float(np.mean(v)), 4) for k, v in s.items()} for name, s in scores.items()},
            }
            row = results[clip.name]["crf"][str(crf)]
            print(f"{clip.name} CRF {crf}: " + ", ".join(f"{n} {row[n]['psnr_db']:.2f} dB" for n, _ in methods),
                  flush=True)
    for _, backend in methods:
        if backend is not None:
            backend.close()
    mean = {}
    for crf in map(str, args.crf):
        mean[crf] = {}
        for name, _ in methods:
            p = float(np.mean([results[c]["crf"][crf][name]["psnr_db"] for c in results]))
            s = float(np.mean([results[c]["crf"][crf][name]["ssim"] for c in results]))
            t = float(np.mean([results[c]["crf"][crf][name]["temporal_error"] for c in results]))
            mean[crf][name] = {"psnr_db": round(p, 4), "ssim": round(s, 4), "temporal_error": round(t, 4)}
        for name, _ in methods:
            mean[crf][name]["gain_db"] = round(mean[crf][name]["psnr_db"] - mean[crf]["bicubic"]["psnr_db"], 3)
    for clip in results.values():
        for row in clip["crf"].values():
            for name, _ in methods:
                row[name]["gain_db"] = round(row[name]["psnr_db"] - row["bicubic"]["psnr_db"], 3)
    return {
        "what": f"x{SCALE} SR of compressed LR video: area downscale, libx264 re-encode, PSNR/SSIM on Y vs "
                f"original, {SCALE}px shaved",
        "machine": machine_info("cpu"),
        "settings": {"scale": SCALE, "frames_per_clip": args.frames, "crf": args.crf, "preset": args.preset,
                     "pix_fmt": "yuv420p", "downscale": "cv2.INTER_AREA", "backend": args.backend,
                     "precision": args.precision,
                     "context": "per clip, folded" if args.fold_context else "per frame",
                     "methods": [n for n, _ in methods]},
        "clips": results,
        "mean": mean,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def to_markdown(report: dict) -> str:
    s = report["settings"]
    methods = s["methods"]
    precision = f" {s['precision']}" if s.get("precision", "auto") != "auto" else ""
    clips = list(report["clips"])
    lines = [
        f"# Compressed low-resolution video, x{s['scale']}",
        "",
        f"`python benchmarks/compressed.py` — first {s['frames_per_clip']} frames of each shared clip, "
        f"downscaled x{s['scale']} ({s['downscale']}), libx264 {s['pix_fmt']} preset {s['preset']}, "
        f"upscaled on {s['backend']}{precision}; PSNR (dB) / SSIM on Y against the original frames, "
        f"{s['scale']} px shaved. "
        f"Gain: dB over bicubic. Measured on {report['machine']['device']}.",
        "",
        "| CRF | method | " + " | ".join(c.split("_")[0] for c in clips) + " | mean | gain | tE (levels) |",
        "|---|---|" + "---:|" * (len(clips) + 3),
    ]
    for crf, row in report["mean"].items():
        for name in methods:
            cells = [f"{report['clips'][c]['crf'][crf][name]['psnr_db']:.2f} / {report['clips'][c]['crf'][crf][name]['ssim']:.4f}"
                     for c in clips]
            lines.append(f"| {crf} | {name} | " + " | ".join(cells)
                         + f" | **{row[name]['psnr_db']:.2f}** / {row[name]['ssim']:.4f} | {row[name]['gain_db']:+.2f} "
                         f"| {row[name]['temporal_error']:.3f} |")
    lines += ["", "tE: the temporal error (flicker), mean |(sr_t - sr_t-1) - (hr_t - hr_t-1)| in 8-bit levels over "
              "frames 1..N-1; lower is steadier. Gain and tE are over the mean of the clips.",
              "", "The codec's loss: PSNR (dB) of the decoded LR luma against the uncompressed LR, and kbit per frame:", "",
              "| CRF | " + " | ".join(c.split("_")[0] for c in clips) + " |", "|---|" + "---:|" * len(clips)]
    for crf in report["mean"]:
        lines.append(f"| {crf} | " + " | ".join(
            f"{report['clips'][c]['crf'][crf]['lr_psnr_db_vs_uncompressed']:.2f} dB, "
            f"{report['clips'][c]['crf'][crf]['kbit_per_frame']:.1f} kbit" for c in clips) + " |")
    lines.append("")
    lines.append("Clips: " + ", ".join(f"{c} ({v['size']} reference, {v['frames']} frames)"
                                       for c, v in report["clips"].items()) + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "video")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=3)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--crf", type=int, nargs="+", default=[23, 30, 37])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--model", action="append", help="a model name (repeatable); default: every shipped model")
    parser.add_argument("--weights", action="append", type=Path, help="a .pt / .onnx to score too (repeatable)")
    parser.add_argument("--backend", default="onnxruntime", help="fp32 ONNX Runtime: bf16 would blur the comparison")
    parser.add_argument("--precision", default="auto",
                        help="the backend's precision (openvino: fp32, bf16, int8; auto: what vsr run picks here, "
                             "which a busy machine may time differently: name one to be sure)")
    parser.add_argument("--fold-context", action=argparse.BooleanOptionalAction, default=True,
                        help="a network with a global context runs each clip with the clip's context folded in, "
                             "as vsr run does (default); --no-fold-context: each frame reads its own")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compressed")
    args = parser.parse_args()
    global SCALE
    SCALE = args.scale
    clips = protocol_clips(args.data) if args.data.is_dir() else []
    if not clips:
        parser.error(f"{args.data}: no video clips (.mp4, .mkv, .mov) to score")
    report = run(args, clips)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
