"""Encoding and muxing with PyAV: YuvFrames in, a finished file out, audio and subtitles carried over.

The output is written to a temporary file beside the target and renamed only when the
encoder has been flushed and the container closed, so the target path never holds a
half-written file: an error or Ctrl-C leaves either nothing or (with ``keep_partial``)
a playable file of the frames done so far.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import OutputError, unwritable_reason
from ..frames import CHROMA_SUBSAMPLING, YuvFrame, chroma_shape, layout_bit_depth, with_bit_depth
from .decode import StreamInfo, plane_array
from .mux import StreamCopier, container_accepts, partial_path

#: Encoders we expose, and the pixel formats each accepts for our planar layouts.
CODECS = ("libx264", "libx265", "libsvtav1", "mpeg4", "h264_nvenc")
#: Presets per encoder family, the fastest of each: on two cores libx264 "ultrafast" took 12 ms of
#: CPU per 1080p frame against 25 ms for "superfast" (which makes 30% smaller files).
DEFAULT_PRESET = {"libx264": "ultrafast", "libx265": "ultrafast", "libsvtav1": "12", "h264_nvenc": "p1"}
DEFAULT_CRF = {"libx264": 20, "libx265": 24, "libsvtav1": 32, "mpeg4": None, "h264_nvenc": 23}
#: The quality scale each encoder accepts (libx264 / libx265 CRF, SVT-AV1 CRF, NVENC CQ); mpeg4
#: has none (it is rate controlled by bit rate). FFmpeg would clamp a value outside silently.
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libsvtav1": (0, 63), "h264_nvenc": (0, 51)}
#: The largest frame each encoder accepts (width, height): x264 and x265 refuse sides over
#: 16384 (their level tables), SVT-AV1 over 16384 x 8704, MPEG-4 part 2 over 8191 (13-bit sizes),
#: NVENC over 8192 on the GPUs we know.
MAX_SIZE = {"libx264": (16384, 16384), "libx265": (16384, 16384), "libsvtav1": (16384, 8704),
            "mpeg4": (8191, 8191), "h264_nvenc": (8192, 8192)}
#: The codec for an output when the user chose none: libx264 plays everywhere, but WebM holds only
#: VP8, VP9 and AV1, and SVT-AV1 is the one of those fast enough for real time here.
DEFAULT_CODEC = "libx264"
CODEC_FOR_SUFFIX = {".webm": "libsvtav1"}
#: AVColorSpace values: RGB (0) describes RGB pixels and is invalid on YUV ones; BT.601 (6,
#: SMPTE 170M) is the matrix swscale converts an RGB source with (media.decode), so it is the tag.
AVCOL_SPC_RGB = 0
AVCOL_SPC_SMPTE170M = 6

#: OUTPUT "-": the stream goes to standard output in one of these containers (``--format``), by
#: the names users give and FFmpeg's own; y4m is what ``ffmpeg -f yuv4mpegpipe -i -`` reads.
STDOUT = "-"
STDOUT_FORMATS = {"y4m": "yuv4mpegpipe", "yuv4mpegpipe": "yuv4mpegpipe", "nut": "nut", "matroska": "matroska",
                  "mkv": "matroska", "mpegts": "mpegts", "ts": "mpegts"}
#: The codec of a piped stream when no ``--codec`` was given: y4m holds raw frames only (FFmpeg
#: wraps them as wrapped_avframe), NUT raw frames (lossless, as `ffmpeg -f nut -c:v rawvideo`
#: pipelines pass them), Matroska and MPEG-TS the usual H.264.
STDOUT_CODEC = {"yuv4mpegpipe": "wrapped_avframe", "nut": "rawvideo", "matroska": DEFAULT_CODEC,
                "mpegts": DEFAULT_CODEC}
#: Codecs that store frames as they are: no CRF, no preset.
RAW_CODECS = ("wrapped_avframe", "rawvideo")
_stdout_fd: int | None = None


def is_stdout(path: os.PathLike | str | None) -> bool:
    return path is not None and str(path) == STDOUT


def stdout_format(name: str | None) -> str:
    """FFmpeg's muxer for ``--format NAME`` with OUTPUT "-" (default: y4m)."""
    if name is None:
        return "yuv4mpegpipe"
    try:
        return STDOUT_FORMATS[name.lower().lstrip(".")]
    except KeyError:
        raise OutputError(f"--format {name}: standard output takes y4m, nut, matroska or mpegts") from None


def claim_stdout() -> int:
    """Keep standard output for the video stream alone: the stream is written to a duplicate of
    file descriptor 1, and descriptor 1 itself now points at standard error, so nothing that any
    library prints (or a stray ``print``) can corrupt the stream. Once per process; returns the fd."""
    global _stdout_fd
    if _stdout_fd is None:
        import sys

        sys.stdout.flush()
        _stdout_fd = os.dup(1)
        os.dup2(2, 1)
    return _stdout_fd


#: FFmpeg's enum values (AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic).
AVCOL_UNSPECIFIED = 2
BT709 = 1
BT470BG = 5
SMPTE170M = 6


def _players_assume_709(width: int, height: int) -> bool:
    return width >= 1280 or height > 576


def implied_colour_tags(width: int, height: int, colorspace: int, primaries: int, trc: int,
                        out_size: tuple[int, int] | None = None) -> tuple[tuple[int, int, int], str | None]:
    """The colour tags for the output of an untagged (or partly tagged) source of ``width`` x
    ``height``: what players assume for the source, written out. Players guess BT.601 below HD
    and BT.709 from HD up, so an untagged SD source upscaled to HD would otherwise change colour
    (its picture decoded with the other matrix). Returns (colorspace, primaries, trc), and a note
    where the tag changes what players would have done with an untagged output of ``out_size``."""
    if AVCOL_UNSPECIFIED not in (colorspace, primaries, trc):
        return (colorspace, primaries, trc), None
    if _players_assume_709(width, height):
        guess, name = (BT709, BT709, BT709), "BT.709"
    else:
        # 625-line (PAL) SD has its own primaries; the matrix and curve are the same BT.601 ones.
        guess, name = (SMPTE170M, BT470BG if height in (576, 288) else SMPTE170M, SMPTE170M), "BT.601"
    tags = tuple(g if value == AVCOL_UNSPECIFIED else value for value, g in zip((colorspace, primaries, trc), guess))
    note = None
    if colorspace == AVCOL_UNSPECIFIED and out_size is not None and (
            _players_assume_709(*out_size) != _players_assume_709(width, height)):
        note = (f"the source has no colour matrix tag: the output is tagged {name}, what players assume for the "
                f"source's {width}x{height}, so its colours do not change at the new size")
    return tags, note


def default_codec(output_suffix: str) -> str:
    """The encoder for an output named ``*output_suffix`` when no ``--codec`` was given."""
    return CODEC_FOR_SUFFIX.get(output_suffix.lower(), DEFAULT_CODEC)


def check_encode_options(options: "EncodeOptions", width: int, height: int, source_layout: str | None = None) -> None:
    """Refuse, before any work, what the encoder would refuse (or silently change) later:
    a CRF outside its range, a pixel format it cannot encode (a 10-bit ``source_layout`` is
    written 10-bit unless --pix-fmt says otherwise), a frame larger than it takes."""
    import av

    codec = options.codec
    if codec in RAW_CODECS and (options.crf is not None or options.preset is not None):
        raise OutputError(f"--crf and --preset: {codec} stores frames as they are; leave them out")
    if codec not in RAW_CODECS:
        check_preset(codec, options.preset)
    if options.crf is not None:
        crf_range = CRF_RANGE.get(codec)
        if crf_range is None:
            raise OutputError(f"--crf: {codec} has no CRF scale (it is encoded at a fixed bit rate); "
                              "leave --crf out or choose libx264, libx265 or libsvtav1")
        low, high = crf_range
        if not low <= options.crf <= high:
            raise OutputError(f"--crf {options.crf}: {codec} takes {low} to {high}")
    layout = output_layout(options, source_layout)
    if codec in av.codecs_available:
        formats = [f.name for f in (av.Codec(codec, "w").video_formats or ())]
        if formats and layout not in formats:
            if options.pix_fmt is None:
                # Never silently 8 bits: the user says so with --pix-fmt.
                raise OutputError(f"the source is 10-bit and {codec} cannot encode 10-bit here: choose --codec "
                                  f"libx265 or libsvtav1 to keep 10 bits, or --pix-fmt {with_bit_depth(layout, 8)} "
                                  "to write 8 bits")
            ours = [f for f in formats if f in PIX_FMTS]
            raise OutputError(f"--pix-fmt {layout}: {codec} cannot encode it; it takes {', '.join(ours)}")
    max_w, max_h = MAX_SIZE.get(codec, (16384, 16384))
    if width > max_w or height > max_h:
        raise OutputError(f"the output would be {width}x{height}, larger than {codec} encodes ({max_w}x{max_h}); "
                          "use a smaller --scale")


@dataclass(frozen=True)
class EncodeOptions:
    """How the output video is encoded.

    Defaults favour real time: libx264 ``ultrafast`` at CRF 20 encodes 1080p in 12 ms of CPU
    per frame on this project's 2-core machine, leaving the cores to the network, and CRF 20
    keeps the upscaled detail (CRF 23+ smears it again). For smaller files, ``--preset veryfast``.
    ``pix_fmt`` None keeps 4:2:0 for every source (plays everywhere); ask for ``yuv444p``
    to keep a 4:4:4 source's full chroma.
    """

    codec: str = "libx264"
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    audio: bool = True
    encoder_threads: int = 0
    #: FFmpeg's muxer name (``yuv4mpegpipe``, ``nut`` ...); None: from OUTPUT's extension.
    container: str | None = None

    def resolved_crf(self) -> int | None:
        return self.crf if self.crf is not None else DEFAULT_CRF.get(self.codec)

    def resolved_preset(self) -> str | None:
        return self.preset if self.preset is not None else DEFAULT_PRESET.get(self.codec)


@dataclass(frozen=True)
class VideoSpec:
    """What the writer copies from its source: timing, colour metadata (FFmpeg enum values)
    and rotation. ``StreamInfo`` carries the same fields; live sources make one of these."""

    time_base: Fraction
    average_fps: float | None
    color_range: int = 0
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2
    rotation_degrees: float = 0.0
    #: Pixel shape; None: square. Upscaling both axes by one factor keeps it.
    sample_aspect_ratio: Fraction | None = None


#: What --pix-fmt takes: 8-bit and 10-bit planar YUV.
PIX_FMTS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")


def output_layout(options: EncodeOptions, source_layout: str | None = None) -> str:
    """The layout frames are written in: ``--pix-fmt`` where given; otherwise 4:2:0 (plays
    everywhere) at the source's bit depth, so a 10-bit source stays 10-bit."""
    if options.pix_fmt is None:
        bits = layout_bit_depth(source_layout) if source_layout else 8
        return with_bit_depth("yuv420p", bits)
    pix_fmt = options.pix_fmt
    layout = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p"}.get(pix_fmt, pix_fmt)
    if layout not in PIX_FMTS:
        raise OutputError(f"--pix-fmt {pix_fmt}: choose one of {', '.join(PIX_FMTS)}")
    return layout


def depth_note(options: EncodeOptions, source_layout: str | None) -> str | None:
    """The note for a 10-bit source written 8-bit (only ever by an explicit --pix-fmt)."""
    if (options.pix_fmt is not None and source_layout and layout_bit_depth(source_layout) > 8
            and layout_bit_depth(output_layout(options)) == 8):
        return (f"the 10-bit source is written as 8-bit {output_layout(options)} (--pix-fmt); leave --pix-fmt out, "
                f"or give {with_bit_depth(output_layout(options), 10)}, to keep 10 bits")
    return None


def _units(scale: int):
    return lambda value: str(round(value * scale))


def _decimals(places: int):
    return lambda value: f"{value:.{places}f}"


#: How each encoder spells HDR10 static metadata: its parameter option, the names of mastering
#: display and content light, and how it writes a chromaticity and a luminance (x264 and x265
#: count in units of 0.00002 and 0.0001 cd/m^2; SVT-AV1 takes decimals).
_HDR_SPELLING = {
    "libx264": ("x264-params", "mastering-display", "cll", _units(50000), _units(10000)),
    "libx265": ("x265-params", "master-display", "max-cll", _units(50000), _units(10000)),
    "libsvtav1": ("svtav1-params", "mastering-display", "content-light", _decimals(5), _decimals(4)),
}


def hdr_settings(codec: str, mastering_display: tuple | None, content_light: tuple | None) -> dict[str, str]:
    """The encoder's own parameters that write HDR10 static metadata into the bitstream (SEI for
    HEVC and H.264, metadata OBUs for AV1), where players and the next encoder read it."""
    if (mastering_display is None and content_light is None) or codec not in _HDR_SPELLING:
        return {}
    option, display_name, light_name, chroma, luminance = _HDR_SPELLING[codec]
    params = []
    if mastering_display is not None:
        (rx, ry), (gx, gy), (bx, by), (wx, wy), (high, low) = mastering_display
        xy = lambda x, y: f"({chroma(x)},{chroma(y)})"  # noqa: E731
        params.append(f"{display_name}=G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}"
                      f"L({luminance(high)},{luminance(low)})")
    if content_light is not None:
        params.append(f"{light_name}={content_light[0]},{content_light[1]}")
    return {option: ":".join(params)}


def check_output_path(path: os.PathLike | str, *, overwrite: bool, input_path: os.PathLike | str | None = None) -> None:
    """The one check of an OUTPUT file before anything is written (the writer's, and the run's
    before any work): a name, not a folder, not existing unless ``overwrite``, in a folder that
    exists and can be written, and never ``input_path`` itself. Standard output passes."""
    if is_stdout(path):
        return
    target = Path(path)
    if not str(path) or str(path) == ".":  # Path("") is "."
        raise OutputError("the output name is empty; give a file name such as out.mp4")
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file name for the output video")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists (use --overwrite to replace it)")
    if input_path is not None and Path(input_path).exists() and target.exists() and os.path.samefile(input_path, target):
        raise OutputError(f"{target}: is the input file")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{target}: cannot write in {parent} ({unwritable_reason(parent)})")


class VideoWriter:
    """Encode upscaled frames to ``path``; the container follows the extension.

    ``source`` gives the colour metadata and rotation to preserve and, with
    ``audio_from``, the input whose audio and subtitle streams are copied (re-encoded to
    AAC, or Opus for WebM, where the container refuses the original codec).
    """

    def __init__(
        self,
        path: os.PathLike | str,
        *,
        width: int,
        height: int,
        source: StreamInfo | VideoSpec,
        options: EncodeOptions = EncodeOptions(),
        audio_from: os.PathLike | str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.options = options
        self.layout = output_layout(options, getattr(source, "layout", None))
        self._passthrough = None
        #: What the user should know about the output (streams dropped or re-encoded, tags changed).
        self.notes: list[str] = []
        self.frames_written = 0
        self._closed = False
        self.to_stdout = is_stdout(path)
        self._tmp = None
        if not self.to_stdout:
            check_output_path(path, overwrite=overwrite)
            # Unique per run (two runs to one OUTPUT never share it), short whatever OUTPUT's name
            # length, and with the target's suffix so FFmpeg picks the same container format.
            self._tmp = Path(partial_path(self.path))
        # Encoders cannot subsample an odd size: the last row / column is left out (say x3 of 427x241).
        sub_x, sub_y = CHROMA_SUBSAMPLING[self.layout]
        self.width, self.height = width - width % sub_x, height - height % sub_y
        self._container = self._open_container()
        try:
            self._stream = self._add_video(self.width, self.height, source)
            if audio_from and self.to_stdout and options.audio and self._container.format.name == "yuv4mpegpipe":
                self.notes.append("audio and subtitles dropped: y4m holds video only (--format nut or matroska "
                                  "carries them)")
            elif audio_from and (options.audio or not self.to_stdout):
                # With --no-audio a file still gets the input's title, tags and chapters.
                self._passthrough = StreamCopier(audio_from, self._container, self.notes, streams=options.audio)
        except BaseException:
            self._abort()
            raise

    def _open_container(self):
        """The output container: the temporary file beside OUTPUT, or for OUTPUT "-" standard
        output itself (no temporary file: a pipe cannot be renamed into place; a reader sees the
        frames as they are encoded)."""
        import av

        if not self.to_stdout:
            try:
                return av.open(str(self._tmp), "w")
            except (av.error.FFmpegError, ValueError) as exc:
                os.unlink(self._tmp)
                raise OutputError(f"{self.path}: no container format for {self.path.suffix!r} ({exc})") from None
        fmt = self.options.container or "yuv4mpegpipe"
        fd = _stdout_fd if _stdout_fd is not None else 1
        # y4m's own spec knows 8-bit formats only; FFmpeg writes and reads the 10-bit extension
        # ("C420p10") when told not to be strict.
        try:
            return av.open(f"pipe:{fd}", "w", format=fmt, options={"strict": "-1"})
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"standard output: cannot write {fmt} ({exc})") from None

    def _add_video(self, width: int, height: int, source: StreamInfo | VideoSpec):
        import av

        opts = self.options
        if opts.codec not in av.codecs_available:
            raise OutputError(f"encoder {opts.codec} is not available in this FFmpeg build")
        if not container_accepts(self._container, opts.codec) and opts.codec not in RAW_CODECS:
            where = self._container.format.name if self.to_stdout else self.path.suffix
            raise OutputError(_container_refuses(where, opts.codec))
        check_encode_options(opts, width, height, getattr(source, "layout", None))
        if opts.codec == "libsvtav1":
            from ..verbosity import quiet_svt

            quiet_svt()  # its banner and warnings, for every encoder, unless --verbose
        stream = self._container.add_stream(opts.codec, rate=_rate(source))
        stream.width, stream.height = width, height
        stream.pix_fmt = self.layout
        stream.time_base = source.time_base
        ctx = stream.codec_context
        ctx.time_base = source.time_base
        ctx.thread_count = opts.encoder_threads
        ctx.color_range = source.color_range
        ctx.colorspace = source.colorspace
        if source.colorspace == AVCOL_SPC_RGB:
            # The frames were converted to YUV: the RGB "matrix" tag would be invalid (and make
            # players show wrong colours); tag the matrix the conversion used.
            ctx.colorspace = AVCOL_SPC_SMPTE170M
            self.notes.append("the RGB source was converted to YUV with the BT.601 matrix, and is tagged so")
        ctx.color_primaries = source.color_primaries
        ctx.color_trc = source.color_trc
        if getattr(source, "width", None) and source.colorspace != AVCOL_SPC_RGB:
            tags, note = implied_colour_tags(source.width, source.height, ctx.colorspace, ctx.color_primaries,
                                             ctx.color_trc, out_size=(width, height))
            ctx.colorspace, ctx.color_primaries, ctx.color_trc = tags
            if note:
                self.notes.append(note)
        if source.sample_aspect_ratio:
            ctx.sample_aspect_ratio = source.sample_aspect_ratio
        settings = {}
        if opts.codec in ("libx264", "libx265", "libsvtav1") and opts.resolved_crf() is not None:
            settings["crf"] = str(opts.resolved_crf())
        if opts.codec == "h264_nvenc" and opts.resolved_crf() is not None:
            settings["cq"] = str(opts.resolved_crf())
        if opts.resolved_preset() is not None:
            settings["preset"] = opts.resolved_preset()
        if opts.codec == "mpeg4":
            ctx.bit_rate = max(2_000_000, width * height * 4)
        if opts.codec == "libx265":
            settings["x265-params"] = "log-level=error"
        for key, value in hdr_settings(opts.codec, getattr(source, "mastering_display", None),
                                       getattr(source, "content_light", None)).items():
            settings[key] = f"{settings[key]}:{value}" if key in settings else value
        note = depth_note(opts, getattr(source, "layout", None))
        if note:
            self.notes.append(note)
        stream.options = settings
        if source.rotation_degrees:
            stream.set_display_rotation(source.rotation_degrees)
        return stream

    def write(self, frame: YuvFrame) -> None:
        """Encode one frame (its layout must match ``self.layout``) and mux its packets."""
        import av

        if frame.layout != self.layout:
            raise ValueError(f"frame layout {frame.layout} != writer layout {self.layout}")
        out = yuv_frame_to_av(frame, self.width, self.height)
        out.color_range = self._stream.codec_context.color_range
        try:
            # The first mux writes the header, which opens every encoder: errors surface here.
            if self._passthrough is not None and frame.pts_seconds is not None:
                self._passthrough.copy_until(frame.pts_seconds)
            self._container.mux(self._stream.encode(out))
        except av.error.FFmpegError as exc:
            self._raise_write_error(exc)
        self.frames_written += 1
        if frame.pts_seconds is not None:
            self._end_seconds = frame.pts_seconds + 1 / float(self._stream.average_rate or 30)

    _end_seconds: float | None = None

    def close(self, *, keep: bool = True, complete: bool = True, to: Path | None = None) -> None:
        """Flush the encoder, finish the file and move it to ``path`` (or delete it if not ``keep``).

        ``complete`` False (a preview or an interrupted run) cuts the copied audio where the video ends.
        ``to``: move the finished file there instead of ``path`` (an interrupted run's frames, kept
        under a name that cannot pass for a complete OUTPUT).
        """
        if self._closed:
            return
        if not keep:
            self._abort()
            return
        import av

        try:
            try:
                self._container.mux(self._stream.encode(None))
                if self._passthrough is not None:
                    self._passthrough.copy_until(None if complete else self._end_seconds)
                    self._passthrough.finish()
                self._container.close()
            except (av.error.FFmpegError, OSError) as exc:
                self._raise_write_error(exc)
            self._closed = True
        except BaseException:
            self._abort()
            raise
        if self.to_stdout:
            if self.frames_written == 0:
                raise OutputError("standard output: no frames to write")
            return
        if self.frames_written == 0:
            os.unlink(self._tmp)
            raise OutputError(f"{self.path}: no frames to write")
        os.replace(self._tmp, to or self.path)

    def _raise_write_error(self, exc: BaseException) -> None:
        """A failed encode or mux as one OutputError: a full disk (or a file size limit) is the
        output's problem, not the encoder's, and is named as such."""
        if self.to_stdout and getattr(exc, "errno", None) == errno.EPIPE:
            raise OutputError("standard output was closed by the reading program") from None
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            reason = os.strerror(exc.errno)
            raise OutputError(f"{self.path}: cannot write ({reason}); nothing was written there") from None
        if isinstance(exc, OSError) and not hasattr(exc, "log"):
            raise OutputError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        hint = " (it needs an NVIDIA GPU with NVENC)" if "nvenc" in self.options.codec else ""
        raise OutputError(f"encoder {self.options.codec} failed{hint}: {exc.strerror or exc}") from None

    def _abort(self) -> None:
        self._closed = True
        try:
            self._container.close()
        except Exception:  # the file is being thrown away; its container state no longer matters
            pass
        if self._passthrough is not None:
            self._passthrough.close()
        if self._tmp is not None and self._tmp.exists():
            os.unlink(self._tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep=exc_type is None)


def yuv_frame_to_av(frame: YuvFrame, width: int | None = None, height: int | None = None):
    """A ``YuvFrame`` as an ``av.VideoFrame`` of its layout (cropped to ``width`` x ``height``,
    default its own size), pts and time base kept."""
    import av

    width, height = width or frame.width, height or frame.height
    out = av.VideoFrame(width, height, frame.layout)
    c_shape = chroma_shape((height, width), frame.layout)
    for plane, data, shape in zip(out.planes, (frame.luma, frame.chroma_u, frame.chroma_v),
                                  ((height, width), c_shape, c_shape)):
        plane_array(plane, shape, data.dtype)[...] = data[: shape[0], : shape[1]]
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


def _container_refuses(suffix: str, codec: str, fitting: list[str] | None = None) -> str:
    if suffix.lower() in (".mpg", ".mpeg", ".vob"):
        return (f"{suffix} files (MPEG-PS) hold MPEG-1/2 video, which vsr does not encode; "
                "write .ts (MPEG-TS), .mp4 or .mkv instead")
    if suffix.lower() == ".webm":
        return f".webm files hold only VP8, VP9 and AV1 video, not {codec}: use --codec libsvtav1 (or leave --codec out)"
    if fitting == []:
        return (f"{suffix} files cannot hold any video vsr encodes (H.264, HEVC, AV1, MPEG-4); "
                "name OUTPUT .mp4, .mkv, .mov or .webm")
    if fitting:
        return f"{suffix} files cannot hold {codec} video; choose --codec {' or '.join(fitting)}"
    return f"{suffix} files cannot hold {codec} video; choose another --codec"


#: The presets of the encoders whose preset is a word x264 / x265 check only when they open.
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
#: SVT-AV1's presets: numbers, fastest last (FFmpeg's libsvtav1 takes -2 to 13).
SVTAV1_PRESETS = range(-2, 14)
NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "default", "slow", "medium", "fast", "hp", "hq", "bd",
                 "ll", "llhq", "llhp", "lossless", "losslesshp")


def check_preset(codec: str, preset: str | None) -> None:
    """Refuse a ``--preset`` the encoder does not have, before any work (the encoder itself would
    say so only once it opens, after the model has loaded and frames were decoded)."""
    if preset is None:
        return
    if codec in ("libx264", "libx265"):
        allowed = X26X_PRESETS
    elif codec == "libsvtav1":
        allowed = tuple(str(n) for n in SVTAV1_PRESETS)
    elif codec == "h264_nvenc":
        allowed = NVENC_PRESETS
    else:
        raise OutputError(f"--preset {preset}: {codec} has no presets; leave --preset out")
    if preset not in allowed:
        shown = f"{allowed[0]} (slowest) to {allowed[-1]} (fastest)" if codec == "libsvtav1" else ", ".join(allowed)
        raise OutputError(f"--preset {preset}: {codec} has no such preset; choose one of {shown}")


def check_container(suffix: str, codec: str, *, what: str = "OUTPUT", codec_is_fixed: bool = False) -> None:
    """Refuse, before any work, an OUTPUT extension with no container, or whose container cannot
    hold ``codec``; the message names the codecs that fit, or the containers to use when none does."""
    import tempfile

    import av

    if not suffix:
        raise OutputError(f"{what} has no extension to name its container: give one such as out.mp4 or out.mkv")
    try:
        # Opening for writing creates nothing until the header is written.
        container = av.open(os.path.join(tempfile.gettempdir(), f"vsr-probe{suffix}"), "w")
    except (av.error.FFmpegError, ValueError):
        raise OutputError(f"no container format for {suffix!r}: name {what} .mp4, .mkv, .mov, .ts or .webm") from None
    try:
        if container_accepts(container, codec):
            return
        fitting = [c for c in CODECS if c in av.codecs_available and container_accepts(container, c)]
    finally:
        container.close()
    if codec_is_fixed:  # no --codec to choose (vsr live --record writes H.264)
        raise OutputError(f"{suffix} files cannot hold the {codec} video {what} writes; name {what} .mp4, .mkv or .mov")
    raise OutputError(_container_refuses(suffix, codec, fitting).replace("name OUTPUT", f"name {what}"))


def _rate(source: StreamInfo | VideoSpec) -> Fraction:
    if source.average_fps:
        return Fraction(source.average_fps).limit_denominator(1001)
    return Fraction(30)


__all__ = ["VideoWriter", "VideoSpec", "EncodeOptions", "CODECS", "output_layout", "check_encode_options",
           "default_codec", "yuv_frame_to_av", "PIX_FMTS", "depth_note", "hdr_settings", "is_stdout", "stdout_format", "claim_stdout", "STDOUT_FORMATS", "STDOUT_CODEC"]
