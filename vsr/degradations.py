"""Low-resolution training data that looks like real, compressed low-resolution video.

Real LR video was blurred by a lens, downscaled by some camera or server scaler, carries
sensor noise, and went through a lossy codec; a model trained on clean bicubic LR gains
little on it and sharpens the codec's blocks. The recipe here follows the published ones
(Real-ESRGAN's and BSRGAN's blur / resize / noise / JPEG, and RealBasicVSR's and VCISR's real
video encode of the LR frames): blur -> downscale (random kernel) -> noise -> 8 bits ->
a real codec round trip (H.264, HEVC, MPEG-4 part 2 through PyAV, or JPEG).

Video codecs see *clips*, not single patches: each training sequence is a short pan over one
HR image, so inter prediction finds its references and rate control spends bits as it does
on real video. Several sequences are tiled into one mosaic frame (each in its own
macroblock-aligned cell with a replicated margin), so one encoder call degrades many
patches: the encoder's per-frame cost, not the pixels, dominates at patch sizes.

Torch-free (numpy, OpenCV, PyAV): pools are made in worker processes (``PoolProducer``)
while the trainer runs on the GPU.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import queue
import traceback
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from .children import become_worker
from .errors import InputError

__all__ = [
    "CODECS",
    "DOWNSCALE_KERNELS",
    "CompressedDegradation",
    "PoolProducer",
    "codec_round_trip",
    "degrade_clips",
    "degrade_compressed",
    "make_patch_pool",
    "pool_seed",
]

#: name -> (PyAV encoder, PyAV decoder).
VIDEO_CODECS = {"h264": ("libx264", "h264"), "hevc": ("libx265", "hevc"), "mpeg4": ("mpeg4", "mpeg4")}
#: The presets x264 and x265 share.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
CODECS = (*VIDEO_CODECS, "jpeg", "none")
DOWNSCALE_KERNELS = ("area", "bicubic", "bilinear", "aliased")

#: Cells of the mosaic are multiples of the macroblock size (16 px), with at least this many
#: replicated pixels round each sequence: the H.264/HEVC deblocking filters reach 3 px from an
#: edge, so a cell's own pixels are never blended with its neighbour's.
_CELL_MARGIN_PX = 3


@dataclass(frozen=True)
class CompressedDegradation:
    """The recipe's knobs. Defaults aim at what the compressed-clip benchmark measures (real
    clips, area-downscaled, libx264 CRF 23-37) with a margin either side, plus the other
    codecs and scalers real low-resolution video meets, so a model does not learn one
    encoder's artefacts only.

    Sampled per sequence (a short pan over one HR image, ``frames_per_clip`` patches): blur,
    downscale kernel and noise level, since a camera and its scaler do not change within a
    clip. Sampled per encode (``clips_per_encode`` sequences in one mosaic clip): the codec and
    its CRF / quantiser / quality. Noise is drawn afresh for every frame, as sensor noise is.
    """

    #: Relative weights of the codecs; "none" keeps some clean (8-bit) LR so the model still
    #: serves clean input (the issue asks for Set5 within 0.5 dB of the clean model; the CPU
    #: fine-tune above lost 1.0 dB there with 10 % "none", so 20 % here, and the trainer may
    #: still need to mix in clean bicubic patches).
    codec_weights: tuple[tuple[str, float], ...] = (
        ("h264", 0.4), ("hevc", 0.15), ("mpeg4", 0.1), ("jpeg", 0.15), ("none", 0.2),
    )
    #: x264 CRF: 18 is nearly transparent, 40 is heavy blocking; the benchmark's 23/30/37 inside.
    h264_crf: tuple[int, int] = (18, 40)
    #: x265's CRF scale sits about 5 above x264's for similar quality (x265 docs: 28 ~ x264 23).
    hevc_crf: tuple[int, int] = (22, 42)
    #: MPEG-4 part 2 fixed quantiser (2: best, 31: worst); above ~20 it is unwatchable.
    mpeg4_qscale: tuple[int, int] = (3, 20)
    #: JPEG quality (OpenCV / libjpeg scale), 30 is strongly blocky, 95 nearly clean.
    jpeg_quality: tuple[int, int] = (30, 95)
    #: x264 / x265 preset. What a CRF does depends on the preset and the clip length, so this
    #: is chosen for the training clips (``frames_per_clip`` frames) to look like real,
    #: long, medium-preset encodes at the same CRF: on the shared clips (x3 LR, CRF 23-37)
    #: superfast over 8-frame clips kept the LR within 1 dB of medium over 64 frames (mean
    #: +0.07 dB), ultrafast was 0.03-2.9 dB milder (and drops the deblocking filter), veryfast
    #: 0.7-2.4 dB harsher (benchmarks/results/degradation_throughput.md). Real encodes use every
    #: preset, so the preset is drawn per encode from these weights: superfast most of the time,
    #: veryfast for harsher coding, ultrafast for the undeblocked blocks of screen and camera
    #: recorders.
    video_presets: tuple[tuple[str, float], ...] = (("superfast", 0.6), ("veryfast", 0.2), ("ultrafast", 0.2))
    #: Keyframe interval in frames (x264 / x265 ``keyint``), drawn per encode: 8 (one GOP per
    #: sequence: the first frame intra, the rest inter), 4, or 1 (all intra, as intra-only and
    #: very short-GOP streams are): inter and intra frames carry different artefacts.
    keyint_frames: tuple[tuple[int, float], ...] = ((8, 0.6), (4, 0.25), (1, 0.15))
    #: Frames in each sequence (the first is intra, the rest inter-predicted).
    frames_per_clip: int = 8
    #: Sequences tiled into one mosaic clip (one encoder run): more is faster per patch.
    clips_per_encode: int = 16
    #: Camera motion of a sequence, HR pixels per frame, uniform in +-this per axis.
    max_motion_px: float = 4.0

    #: Probability of an (anisotropic, rotated) Gaussian blur of the HR crop before downscaling:
    #: optics and defocus soften real video beyond what the scaler's own kernel does. Kept
    #: rare and mild: blur teaches the network to sharpen, which over-sharpens sharp input. In
    #: a short CPU fine-tune of espcn x3 (benchmarks/results/compressed_cpu_finetune.md),
    #: blur_prob 0.5 up to 0.6 LR px scored worse than no blur on both the compressed clips
    #: (+0.41 against +0.56 dB over bicubic at CRF 30) and clean Set5 (31.24 against 31.60 dB).
    blur_prob: float = 0.2
    #: Blur sigma range in *LR* pixels (x scale for HR pixels), so the softness relative to
    #: the output grid is the same at every scale; 0.1-0.4 LR px is mild to soft.
    blur_sigma_lr_px: tuple[float, float] = (0.1, 0.4)
    #: Weights of the downscale kernels: "area" (box average, what the benchmark and many
    #: transcoders use), "bicubic" and "bilinear" (antialiased, Pillow), "aliased" (bilinear
    #: without antialiasing, as cheap scalers and line-skipping sensors do).
    kernel_weights: tuple[tuple[str, float], ...] = (
        ("area", 0.35), ("bicubic", 0.3), ("bilinear", 0.2), ("aliased", 0.15),
    )
    #: Probability of Gaussian noise on the LR before the codec, and its sigma in 8-bit levels.
    noise_prob: float = 0.4
    noise_sigma_levels: tuple[float, float] = (0.5, 6.0)
    #: Probability that a sequence's *scene* is soft: its HR crops, target included, are
    #: softened before anything else. Unlike ``blur_prob`` (a soft LR of a sharp target, which
    #: teaches sharpening), this teaches that soft input stays soft: much real "HD" video was
    #: upscaled from less or shot out of focus, and a network that sharpens it adds detail the
    #: original never had (on the shared cockatoo clip, 1280x720 but visibly upscaled, blurring
    #: the shipped compressed rung's x3 output by sigma 1 HR px *raised* PSNR 0.15 dB).
    soft_prob: float = 0.0
    #: How a soft scene is made, drawn per sequence: an isotropic Gaussian of sigma in
    #: ``soft_sigma_hr_px`` (defocus), or a round trip down by a factor in ``soft_upscaled_from``
    #: and back up by bicubic (video upscaled from a lower resolution).
    soft_sigma_hr_px: tuple[float, float] = (0.6, 1.6)
    soft_upscaled_from: tuple[float, float] = (1.3, 2.5)
    #: Probability that a sequence's scene is over- or under-exposed: its HR crops, target
    #: included, stretched by a gain in ``exposure_gain`` about a level drawn uniformly in 0-255
    #: and clipped to 0-255, so it has blown highlights and crushed blacks with sharp edges into
    #: them, as skies, lamps, white walls and titles do. The network must leave such plateaus
    #: flat: the shipped x3 of 2026-12-06 (soft scenes, trained on photos that rarely clip)
    #: darkened flat input above 235 by up to 3 levels, which cost the shared tennis clip, with
    #: its large white areas, most of what it lost (``training/realtime/flat_response.py``).
    exposure_prob: float = 0.0
    exposure_gain: tuple[float, float] = (1.2, 2.0)
    #: Probability that a sequence's scene was compressed video before anyone downscaled it: its
    #: HR crops, target included, go through x264 at full resolution first, at a CRF drawn from
    #: ``coded_scene_crf``. Most video that gets upscaled was encoded at its own resolution
    #: before it was scaled down and encoded again, and its originals hold that first codec's
    #: smoothing, not a photo's fine texture: the shared car and cockatoo clips are 0.007 and
    #: 0.02 bits per pixel at their own size (the tennis clip 0.29), and at CRF 30 the x3 shipped
    #: before it loses 0.04-0.08 dB on them with 20 % more detail, where tennis gains 0.07
    #: (``training/realtime/output_probe.py``, ``detail x`` rows).
    coded_scene_prob: float = 0.0
    coded_scene_crf: tuple[int, int] = (20, 36)

    def __post_init__(self) -> None:
        for name, _ in self.codec_weights:
            if name not in CODECS:
                raise ValueError(f"unknown codec {name!r}: choose from {', '.join(CODECS)}")
        for name, _ in self.video_presets:
            if name not in X264_PRESETS:
                raise ValueError(f"unknown preset {name!r}: choose from {', '.join(X264_PRESETS)}")
        if any(k < 1 for k, _ in self.keyint_frames) or sum(w for _, w in self.keyint_frames) <= 0:
            raise ValueError("keyint_frames need intervals of at least 1 and a positive total weight")
        for name, _ in self.kernel_weights:
            if name not in DOWNSCALE_KERNELS:
                raise ValueError(f"unknown downscale kernel {name!r}: choose from {', '.join(DOWNSCALE_KERNELS)}")
        if sum(w for _, w in self.codec_weights) <= 0 or sum(w for _, w in self.kernel_weights) <= 0:
            raise ValueError("codec_weights and kernel_weights need a positive total")
        if self.frames_per_clip < 1 or self.clips_per_encode < 1:
            raise ValueError("frames_per_clip and clips_per_encode must be at least 1")
        if not 1.0 <= self.exposure_gain[0] <= self.exposure_gain[1]:
            raise ValueError("exposure_gain must be (low, high) with 1 <= low <= high")
        if not 0 <= self.coded_scene_crf[0] <= self.coded_scene_crf[1] <= 51:
            raise ValueError("coded_scene_crf must be (low, high) with 0 <= low <= high <= 51 (x264's CRF)")
        for name in ("blur_prob", "noise_prob", *SCENE_CHANGES):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")

    def without_scene_changes(self) -> "CompressedDegradation":
        """This recipe with none of its scene changes (which alter the target too): what a
        held-out score about restoring the images as they are degrades them with."""
        return replace(self, **dict.fromkeys(SCENE_CHANGES, 0.0))


#: The knobs that change a sequence's scene, target included, before it is degraded.
SCENE_CHANGES = ("exposure_prob", "soft_prob", "coded_scene_prob")


def _choose(rng: np.random.Generator, weighted: tuple[tuple[str, float], ...]) -> str:
    names = [n for n, _ in weighted]
    weights = np.array([w for _, w in weighted], dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _uniform_int(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


# ---------------------------------------------------------------------------------------------
# The stages, each on float32 luma in [0, 1] (or uint8 for the codec).


def _blur_kernel(rng: np.random.Generator, recipe: CompressedDegradation, scale: int) -> np.ndarray | None:
    """An anisotropic Gaussian (two sigmas, a rotation) in HR pixels, or None (no blur)."""
    if rng.random() >= recipe.blur_prob:
        return None
    lo, hi = recipe.blur_sigma_lr_px
    sigma = rng.uniform(lo, hi, size=2) * scale
    theta = rng.uniform(0, math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag(sigma**2) @ rot.T
    radius = max(1, int(math.ceil(3 * sigma.max())))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    pts = np.stack([xx, yy], axis=-1).astype(np.float64)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, np.linalg.inv(cov), pts))
    return (kernel / kernel.sum()).astype(np.float32)


def _downscale(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    import cv2

    size = (hr.shape[1] // scale, hr.shape[0] // scale)
    if kernel == "area":
        return cv2.resize(hr, size, interpolation=cv2.INTER_AREA)
    if kernel == "aliased":
        return cv2.resize(hr, size, interpolation=cv2.INTER_LINEAR)
    from PIL import Image

    # Pillow's resize widens the kernel by the factor when shrinking (antialiased), in C on floats.
    method = Image.Resampling.BICUBIC if kernel == "bicubic" else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(hr, mode="F").resize(size, method), dtype=np.float32)


def _pre_codec(
    hr_frames: Sequence[np.ndarray], scale: int, rng: np.random.Generator, recipe: CompressedDegradation
) -> list[np.ndarray]:
    """One sequence's blur -> downscale -> noise -> 8 bits, parameters drawn once for it."""
    import cv2

    kernel = _blur_kernel(rng, recipe, scale)
    resize_kernel = _choose(rng, recipe.kernel_weights)
    noise_sigma = rng.uniform(*recipe.noise_sigma_levels) if rng.random() < recipe.noise_prob else 0.0
    out = []
    for hr in hr_frames:
        if hr.dtype != np.uint8 or hr.ndim != 2:
            raise ValueError(f"HR crops must be uint8 (H, W) luma, got {hr.dtype} {hr.shape}")
        if hr.shape[0] % scale or hr.shape[1] % scale:
            raise ValueError(f"HR crop {hr.shape} is not a multiple of the scale {scale}")
        x = hr.astype(np.float32) * np.float32(1 / 255)
        if kernel is not None:
            x = cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT)
        lr = _downscale(x, scale, resize_kernel) * 255.0
        if noise_sigma > 0:
            lr = lr + rng.normal(0.0, noise_sigma, lr.shape).astype(np.float32)
        # Real LR video is 8-bit before it is encoded.
        out.append(np.clip(np.rint(lr), 0, 255).astype(np.uint8))
    return out


def _expose(crops: list[np.ndarray], rng: np.random.Generator, recipe: CompressedDegradation) -> list[np.ndarray]:
    """One sequence's HR crops (uint8), over- or under-exposed with probability
    ``recipe.exposure_prob`` (one gain and pivot for every frame: one camera setting). No random
    draw when ``exposure_prob`` is 0, so the default recipe's pools stay as they were."""
    if recipe.exposure_prob <= 0 or rng.random() >= recipe.exposure_prob:
        return crops
    gain = float(rng.uniform(*recipe.exposure_gain))
    pivot = float(rng.uniform(0, 255))
    return [np.clip(np.rint(pivot + (c.astype(np.float32) - pivot) * gain), 0, 255).astype(np.uint8) for c in crops]


def _soften(crops: list[np.ndarray], rng: np.random.Generator, recipe: CompressedDegradation) -> list[np.ndarray]:
    """One sequence's HR crops (uint8), made a soft scene with probability ``recipe.soft_prob``
    (the same softening for every frame, as one camera and one upscaler made the clip). No
    random draw when ``soft_prob`` is 0, so the default recipe's pools stay as they were."""
    import cv2

    if recipe.soft_prob <= 0 or rng.random() >= recipe.soft_prob:
        return crops
    if rng.random() < 0.5:
        sigma = float(rng.uniform(*recipe.soft_sigma_hr_px))
        return [np.clip(np.rint(cv2.GaussianBlur(c.astype(np.float32), (0, 0), sigma,
                                                 borderType=cv2.BORDER_REFLECT)), 0, 255).astype(np.uint8)
                for c in crops]
    factor = float(rng.uniform(*recipe.soft_upscaled_from))
    out = []
    for c in crops:
        h, w = c.shape
        small = cv2.resize(c, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


def _code_scene(crops: list[np.ndarray], rng: np.random.Generator, recipe: CompressedDegradation) -> list[np.ndarray]:
    """One sequence's HR crops (uint8), round-tripped through x264 at full resolution with
    probability ``recipe.coded_scene_prob`` (one encode, the first frame intra: the source video
    the LR was later made from). No random draw when ``coded_scene_prob`` is 0, so the default
    recipe's pools stay as they were."""
    if recipe.coded_scene_prob <= 0 or rng.random() >= recipe.coded_scene_prob:
        return crops
    crf = _uniform_int(rng, recipe.coded_scene_crf)
    return codec_round_trip(crops, "h264", crf, "superfast", keyint=len(crops))


def _cell_px(side_px: int) -> int:
    return -(-(side_px + 2 * _CELL_MARGIN_PX) // 16) * 16


def _video_round_trip(frames: list[np.ndarray], codec: str, quality: int, preset: str,
                      keyint: int | None = None) -> list[np.ndarray]:
    """Encode uint8 luma frames (grey chroma) as one clip with PyAV and decode them back."""
    import av

    encoder_name, decoder_name = VIDEO_CODECS[codec]
    height, width = frames[0].shape
    encoder = av.CodecContext.create(encoder_name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.framerate = Fraction(25, 1)
    # One thread: workers are processes already, and a single-threaded encoder is deterministic.
    encoder.thread_count = 1
    if codec == "h264":
        encoder.options = {"crf": str(quality), "preset": preset}
        if keyint:
            # min-keyint too: x264 would otherwise place the next keyframe where it likes.
            encoder.options = {**encoder.options, "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
    elif codec == "hevc":
        params = "log-level=none:pools=none:frame-threads=1"
        if keyint:
            params += f":keyint={keyint}:min-keyint={keyint}:scenecut=0"
        encoder.options = {"crf": str(quality), "preset": preset, "x265-params": params}
    else:  # MPEG-4 part 2 has no CRF: a fixed quantiser is how it is run at a quality (ffmpeg -q:v).
        # qmin = qmax pins it; the "qscale" option alone is ignored here and the 200 kbit/s default rules.
        encoder.options = {"qmin": str(quality), "qmax": str(quality)}
        if keyint:
            encoder.gop_size = keyint
    grey = np.full((height // 2, width), 128, np.uint8)  # the two half-size chroma planes, stacked
    packets = []
    for index, luma in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.concatenate([luma, grey]), format="yuv420p")
        frame.pts = index
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    decoder = av.CodecContext.create(decoder_name, "r")
    decoder.thread_count = 1
    decoded = []
    for packet in packets:
        decoded.extend(decoder.decode(packet))
    decoded.extend(decoder.decode(None))
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} round trip gave {len(decoded)} frames for {len(frames)}")
    return [np.ascontiguousarray(f.to_ndarray()[:height]) for f in decoded]


#: The smallest frame side handed to a video encoder (x265's coding tree unit); smaller clips are
#: padded by replication and cropped back after decoding.
MIN_VIDEO_SIDE_PX = 64


def codec_round_trip(frames: list[np.ndarray], codec: str, quality: int, preset: str = "superfast",
                     keyint: int | None = None) -> list[np.ndarray]:
    """uint8 luma frames of one clip through ``codec`` and back. ``quality``: CRF (h264, hevc),
    quantiser (mpeg4) or JPEG quality; ignored for "none". ``keyint``: frames between keyframes
    (video codecs; None: the encoder's default). Odd sizes, and sides under ``MIN_VIDEO_SIDE_PX``,
    are padded (replicated) and cropped back."""
    import cv2

    if codec == "none":
        return [f.copy() for f in frames]
    if codec == "jpeg":
        out = []
        for f in frames:
            ok, data = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            out.append(cv2.imdecode(data, cv2.IMREAD_GRAYSCALE))
        return out
    if codec not in VIDEO_CODECS:
        raise ValueError(f"unknown codec {codec!r}: choose from {', '.join(CODECS)}")
    height, width = frames[0].shape
    # 4:2:0 needs even sizes; x265 also needs a frame of at least one 64 px coding tree unit:
    # smaller ones (32x32 test crops) corrupted the heap inside libx265 (free(): invalid next size).
    pad_h = max(height % 2, MIN_VIDEO_SIDE_PX - height)
    pad_w = max(width % 2, MIN_VIDEO_SIDE_PX - width)
    if pad_h or pad_w:
        frames = [cv2.copyMakeBorder(f, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE) for f in frames]
    return [f[:height, :width] for f in _video_round_trip(frames, codec, quality, preset, keyint)]


def _sample_codec(rng: np.random.Generator, recipe: CompressedDegradation) -> tuple[str, int]:
    codec = _choose(rng, recipe.codec_weights)
    bounds = {"h264": recipe.h264_crf, "hevc": recipe.hevc_crf, "mpeg4": recipe.mpeg4_qscale,
              "jpeg": recipe.jpeg_quality}.get(codec, (0, 0))
    return codec, _uniform_int(rng, bounds)


def degrade_clips(
    clips: Sequence[Sequence[np.ndarray]], scale: int, rng: np.random.Generator,
    recipe: CompressedDegradation = CompressedDegradation(),
) -> list[list[np.ndarray]]:
    """Several sequences of HR luma crops (uint8 (H, W), all the same size, a multiple of
    ``scale``) -> their LR, float32 in [0, 1]. Each sequence gets its own blur, kernel and
    noise; all go through one codec run, tiled side by side in a mosaic (video codecs) or
    one by one (JPEG)."""
    import cv2

    if not clips or not clips[0]:
        return [[] for _ in clips]
    lengths = {len(c) for c in clips}
    shapes = {f.shape for c in clips for f in c}
    if len(lengths) != 1 or len(shapes) != 1:
        raise ValueError("every sequence needs the same number of frames of the same size")
    lr_clips = [_pre_codec(c, scale, rng, recipe) for c in clips]
    codec, quality = _sample_codec(rng, recipe)
    preset = _choose(rng, recipe.video_presets)
    keyint = int(_choose(rng, tuple((str(k), w) for k, w in recipe.keyint_frames)))
    frames = lengths.pop()
    h, w = lr_clips[0][0].shape
    if codec in VIDEO_CODECS:
        cell_h, cell_w = _cell_px(h), _cell_px(w)
        top, left = (cell_h - h) // 2, (cell_w - w) // 2
        columns = math.ceil(math.sqrt(len(clips)))
        rows = math.ceil(len(clips) / columns)
        mosaics = []
        for t in range(frames):
            canvas = np.full((rows * cell_h, columns * cell_w), 128, np.uint8)
            for i, clip in enumerate(lr_clips):
                y, x = (i // columns) * cell_h, (i % columns) * cell_w
                canvas[y : y + cell_h, x : x + cell_w] = cv2.copyMakeBorder(
                    clip[t], top, cell_h - h - top, left, cell_w - w - left, cv2.BORDER_REPLICATE)
            mosaics.append(canvas)
        decoded = codec_round_trip(mosaics, codec, quality, preset, keyint)
        coded = [
            [decoded[t][(i // columns) * cell_h + top : (i // columns) * cell_h + top + h,
                        (i % columns) * cell_w + left : (i % columns) * cell_w + left + w] for t in range(frames)]
            for i in range(len(clips))
        ]
    else:
        coded = [codec_round_trip(clip, codec, quality) for clip in lr_clips]
    return [[f.astype(np.float32) * np.float32(1 / 255) for f in clip] for clip in coded]


def degrade_compressed(
    hr_crops: list[np.ndarray], scale: int, rng: np.random.Generator,
    recipe: CompressedDegradation = CompressedDegradation(),
) -> list[np.ndarray]:
    """HR luma crops (uint8, (H, W), H and W multiples of scale) -> LR luma float32 in [0, 1],
    (H/scale, W/scale): blur -> downscale (random kernel) -> noise -> 8 bits -> codec round
    trip, parameters drawn from ``rng`` per ``recipe``. The crops are the frames of one clip
    in order (a video codec predicts each from the previous ones, as in real video)."""
    return degrade_clips([hr_crops], scale, rng, recipe)[0]


# ---------------------------------------------------------------------------------------------
# Patch pools.


def pool_seed(seed: int, pool_index: int) -> int:
    """The seed of pool ``pool_index`` of a run seeded ``seed``: independent streams per pool."""
    return int(np.random.SeedSequence([seed, pool_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _pan(rng: np.random.Generator, image: np.ndarray, side_px: int, frames: int, max_motion_px: float):
    """Top-left corners of a straight pan of ``frames`` crops inside ``image``."""
    h, w = image.shape
    velocity = rng.uniform(-max_motion_px, max_motion_px, size=2)
    span = np.abs(velocity) * (frames - 1)
    room = np.array([h - side_px, w - side_px], dtype=np.float64)
    # Slower where the image has no room for the whole pan (small images, big crops).
    velocity = np.where(span > room, velocity * room / np.maximum(span, 1e-9), velocity)
    span = np.abs(velocity) * (frames - 1)
    start = rng.uniform(0, room - span + 1e-9) + np.where(velocity < 0, span, 0)
    corners = np.rint(start[None] + velocity[None] * np.arange(frames)[:, None]).astype(np.int64)
    return np.clip(corners, 0, room.astype(np.int64))


def make_patch_pool(
    images: list[np.ndarray], scale: int, lr_patch_px: int, context_px: int, count: int, seed: int,
    recipe: CompressedDegradation = CompressedDegradation(),
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random (LR, HR) patch pairs from HR luma images (uint8 (H, W)).

    LR: float32 (count, P+2c, P+2c) in [0, 1], a degraded HR crop of side (P+2c)*scale, so its
    context is real neighbouring content (seen through the same codec). HR: uint8
    (count, P*s, P*s), the centre of that crop. Patches come in sequences of
    ``recipe.frames_per_clip`` consecutive pool entries (one pan over one image); images are
    drawn in proportion to their area, so large images are not under-sampled. The same
    arguments give byte-identical pools.
    """
    side_lr = lr_patch_px + 2 * context_px
    side_hr = side_lr * scale
    usable = [np.asarray(im) for im in images if min(im.shape[:2]) >= side_hr]
    if not usable:
        raise InputError(f"no training patches: every image is smaller than {side_hr}px (x{scale}, "
                         f"{lr_patch_px}px patches with {context_px}px of context)")
    rng = np.random.default_rng(seed)
    area = np.array([im.shape[0] * im.shape[1] for im in usable], dtype=np.float64)
    chance = area / area.sum()
    frames = recipe.frames_per_clip
    sequences = math.ceil(count / frames)
    lr_pool = np.empty((sequences * frames, side_lr, side_lr), np.float32)
    hr_pool = np.empty((sequences * frames, lr_patch_px * scale, lr_patch_px * scale), np.uint8)
    inner = slice(context_px * scale, (context_px + lr_patch_px) * scale)
    done = 0
    while done < sequences:
        group = min(recipe.clips_per_encode, sequences - done)
        clips = []
        for _ in range(group):
            image = usable[int(rng.choice(len(usable), p=chance))]
            corners = _pan(rng, image, side_hr, frames, recipe.max_motion_px)
            # The scene first: the camera's exposure, then softness (optics, or an upscale from
            # less), then the source's own encode.
            crops = _expose([image[y : y + side_hr, x : x + side_hr] for y, x in corners], rng, recipe)
            clips.append(_code_scene(_soften(crops, rng, recipe), rng, recipe))
        for i, (hr_clip, lr_clip) in enumerate(zip(clips, degrade_clips(clips, scale, rng, recipe))):
            base = (done + i) * frames
            lr_pool[base : base + frames] = lr_clip
            hr_pool[base : base + frames] = [crop[inner, inner] for crop in hr_clip]
        done += group
    return lr_pool[:count], hr_pool[:count]


def read_luma_images(paths: Sequence[os.PathLike | str]) -> list[np.ndarray]:
    """BT.601 luma (uint8) of image files, as training reads them."""
    from .color import rgb_to_y
    from .images import read_rgb

    return [rgb_to_y(read_rgb(p)) for p in paths]


def _pool_worker(worker: int, workers: int, args: tuple, out: "multiprocessing.Queue", stop, parent_pid: int) -> None:
    """Make pools worker, worker + workers, ... until told to stop; errors go to the consumer."""
    become_worker(parent_pid)  # a trainer killed outright must not leave its pool makers running
    try:
        import cv2

        cv2.setNumThreads(1)  # one core per worker: parallelism is the processes'
        paths, scale, lr_patch_px, context_px, pool_size, seed, recipe = args
        images = read_luma_images(paths)
        index = worker
        while not stop.is_set():
            pool = make_patch_pool(images, scale, lr_patch_px, context_px, pool_size, pool_seed(seed, index), recipe)
            while not stop.is_set():
                try:
                    out.put((index, pool), timeout=0.2)
                    break
                except queue.Full:
                    continue
            index += workers
    except BaseException:  # reported to the consumer, which raises it in the trainer
        out.put((-1, traceback.format_exc()))


class PoolProducer:
    """Patch pools made ahead in ``workers`` spawn processes, so the trainer never waits for
    the codecs. Pool k is ``make_patch_pool(images, ..., seed=pool_seed(seed, k))``; worker w
    makes pools w, w + workers, ...; ``get`` returns pools 0, 1, 2, ... in that order whatever
    the workers' speeds, so a run is reproducible from its seed. Each worker keeps up to
    ``prefetch`` finished pools waiting. Pools are meant to be reused for several epochs: the
    trainer samples from the current pool and swaps in the next when ``ready()``.

    Images are read in each worker as BT.601 luma (``vsr.images.read_rgb`` + ``rgb_to_y``).
    """

    def __init__(
        self, image_paths: Sequence[os.PathLike | str], scale: int, lr_patch_px: int, context_px: int,
        pool_size: int, seed: int, workers: int = 1, recipe: CompressedDegradation = CompressedDegradation(),
        prefetch: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        paths = [str(Path(p)) for p in image_paths]
        if not paths:
            raise InputError("no training images given")
        context = multiprocessing.get_context("spawn")  # fork would copy the trainer's threads and CUDA state
        self._stop = context.Event()
        self._queues = [context.Queue(maxsize=max(1, prefetch)) for _ in range(workers)]
        args = (paths, scale, lr_patch_px, context_px, pool_size, seed, recipe)
        self._processes = [
            context.Process(target=_pool_worker, args=(w, workers, args, self._queues[w], self._stop, os.getpid()),
                            name=f"vsr-pool-{w}", daemon=True)
            for w in range(workers)
        ]
        for process in self._processes:
            process.start()
        self._next = 0
        self._closed = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def ready(self) -> bool:
        """Whether ``get`` would return at once."""
        return not self._queues[self._next % len(self._queues)].empty()

    def get(self, timeout_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The next pool (LR float32, HR uint8), blocking up to ``timeout_s`` (None: forever)."""
        if self._closed:
            raise RuntimeError("PoolProducer is closed")
        w = self._next % len(self._queues)
        waited_s = 0.0
        while True:
            try:
                index, payload = self._queues[w].get(timeout=0.5)
                break
            except queue.Empty:
                waited_s += 0.5
                if not self._processes[w].is_alive():
                    raise RuntimeError(f"patch pool worker {w} exited (code {self._processes[w].exitcode})") from None
                if timeout_s is not None and waited_s >= timeout_s:
                    raise TimeoutError(f"no patch pool within {timeout_s} s") from None
        if index < 0:
            raise RuntimeError(f"patch pool worker {w} failed:\n{payload}")
        assert index == self._next, (index, self._next)
        self._next += 1
        return payload

    def close(self) -> None:
        """Stop the workers and wait for them (killed if they do not stop within seconds)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for q, process in zip(self._queues, self._processes):
            # Drain so a worker blocked in put() (its feeder thread) can exit.
            process.join(timeout=0.1)
            while process.is_alive():
                try:
                    while True:
                        q.get_nowait()
                except queue.Empty:
                    pass
                process.join(timeout=0.5)
                if process.is_alive() and process.exitcode is None:
                    process.terminate()
                    process.join(timeout=5)
        for q in self._queues:
            q.close()
            q.cancel_join_thread()

    def __enter__(self) -> "PoolProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
