"""Muxing that does not encode video: copying the input's audio and subtitles into an output
(``StreamCopier``, used by the single-stream writer and by the join), and joining finished
segment files into one video stream at packet level (``join_segments``).
"""
from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..cache import file_mode
from ..errors import OutputError
from .decode import ClockJumps, clock_may_restart, clock_streams, frame_duration


#: Muxers whose codec query (``supported_codecs``) names only their default codecs although they
#: hold more: MPEG-TS answers "mpeg2video, mp2" but carries H.264, HEVC, AAC ... (FFmpeg's mpegtsenc).
_QUERY_INCOMPLETE = {
    "mpegts": {"h264", "hevc", "mpeg4", "mpeg2video", "aac", "mp3", "mp2", "ac3", "eac3", "opus"},
}


#: Muxers that store chapters (FFmpeg's Matroska/WebM, MP4/MOV family and Ogg muxers write them).
CHAPTER_FORMATS = {"matroska", "webm", "mp4", "mov", "ipod", "3gp", "3g2", "ismv", "ogg", "ffmetadata"}
#: Tags that describe the old encode, not the content: the muxer and encoder write their own, and
#: Matroska's statistics tags (mkvmerge's BPS, DURATION ...) would be wrong for the new video.
_STALE_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "vendor_id", "bps", "duration",
               "number_of_frames", "number_of_bytes", "_statistics_writing_app", "_statistics_writing_date_utc",
               "_statistics_tags"}


def _kept_tags(metadata) -> dict[str, str]:
    # Matroska's statistics tags may carry a language suffix ("BPS-eng").
    return {key: value for key, value in metadata.items() if key.lower().split("-")[0] not in _STALE_TAGS}


def copy_metadata(source, container, streams: dict, notes: list[str]) -> None:
    """What ``ffmpeg -map_metadata 0 -map_chapters 0`` keeps: the title and other tags of the
    file and of each stream (``streams``: source stream index -> output stream), each stream's
    dispositions (default, forced ...) and the chapters, where the output container holds them
    (a note says what it cannot hold). Call before the first packet is muxed (the header)."""
    container.metadata.update(_kept_tags(source.metadata))
    for index, out in streams.items():
        stream = source.streams[index]
        out.metadata.update(_kept_tags(stream.metadata))
        try:
            out.disposition = stream.disposition
        except (AttributeError, TypeError, ValueError):  # a PyAV without settable dispositions
            pass
    chapters = source.chapters()
    if chapters:
        if container.format.name in CHAPTER_FORMATS:
            container.set_chapters(chapters)
        else:
            notes.append(f"{len(chapters)} chapters dropped: {Path(container.name).suffix} files cannot hold chapters "
                         "(.mkv and .mp4 can)")


#: Audio codecs a muxer writes but the container's usual players (browsers, phones, QuickTime)
#: refuse: FFmpeg puts Vorbis into MP4, which next to nothing plays. Re-encoded (AAC), with a note.
PLAYERS_REFUSE = {"mp4": {"vorbis"}, "mov": {"vorbis"}, "ipod": {"vorbis", "opus", "flac"}, "3gp": {"vorbis"}}


#: Samples per frame of the audio encoders we re-encode with (AAC-LC; Opus at 48 kHz, 20 ms).
_AUDIO_FRAME_SIZE = {"aac": 1024, "libopus": 960}


def container_accepts(container, codec_name: str) -> bool:
    """Whether the output ``container`` can hold a stream of ``codec_name`` (an encoder or codec name)."""
    if codec_name in container.supported_codecs:
        return True
    extra = _QUERY_INCOMPLETE.get(container.format.name)
    if not extra:
        return False
    import av

    for mode in ("w", "r"):
        try:
            return av.Codec(codec_name, mode).canonical_name in extra
        except (ValueError, av.error.FFmpegError):
            continue
    return False


def partial_path(target: Path) -> str:
    """A new empty file beside ``target`` to write into and rename over it when complete
    (same filesystem, so the rename is atomic). Hidden, and named ``.vsr-XXXXXXXX.partial.EXT``."""
    import tempfile

    parent = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vsr-", suffix=f".partial{target.suffix}", dir=parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write in {parent} ({exc.strerror})") from None
    os.close(fd)
    os.chmod(tmp, file_mode())  # mkstemp's 0600 would hide the output from other users
    return tmp


def interrupted_path(target: Path) -> Path:
    """Where an interrupted run keeps the frames it finished: ``NAME.partial.EXT`` beside
    ``target`` (``NAME.partial-2.EXT`` ... when taken), visible and playable, but never at
    ``target`` itself, where a shortened file would pass for a complete one."""
    target = Path(target)
    candidate = target.with_name(f"{target.stem}.partial{target.suffix}")
    number = 2
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}.partial-{number}{target.suffix}")
        number += 1
    return candidate


@dataclass
class JoinResult:
    frames: int
    notes: list[str] = field(default_factory=list)


def join_segments(
    parts: list[Path],
    output: Path,
    *,
    first_pts: list[int],
    time_base: Fraction,
    rotation_degrees: float = 0.0,
    audio_from: os.PathLike | str | None = None,
    end_seconds: float | None = None,
    copy_streams: bool = True,
) -> JoinResult:
    """Concatenate the video packets of ``parts`` (encoded with the same settings, each
    starting with an IDR frame) into ``output`` without re-encoding, with the audio and
    subtitles of ``audio_from`` copied once over the whole duration (to ``end_seconds``).

    ``first_pts[i]`` is the source pts (in ``time_base``) of part i's first frame. Within a
    part, timestamps are exact (an MP4's time scale is the source's denominator times a power
    of two), but MP4 stores a stream's start in milliseconds: each part is shifted so that its
    first frame lands exactly on ``first_pts[i]``. Decode timestamps are nudged where two segments' B-frame delays overlap,
    so they stay strictly increasing. ``output`` appears only when complete.
    """
    import av

    if not parts:
        raise OutputError(f"{output}: no segments to join")
    tmp = partial_path(output)
    notes: list[str] = []
    frames = 0
    copier = container = None
    try:
        container = av.open(tmp, "w")
        inputs = [av.open(str(part), "r") for part in parts]
        try:
            template = inputs[0].streams.video[0]
            if not container_accepts(container, template.codec_context.name):
                raise OutputError(f"{output.suffix} files cannot hold {template.codec_context.name} video; "
                                  "choose another --codec or container")
            # The template's codec is named after its decoder ("libdav1d" for AV1), which has no
            # encoder of that name: then take the decoder's codec as it is (nothing is encoded here).
            try:
                av.Codec(template.codec_context.codec.name, "w")
                out = container.add_stream_from_template(template)
            except av.codec.codec.UnknownCodecError:
                out = container.add_stream_from_template(template, opaque=True)
            out.time_base = time_base
            if rotation_degrees:
                out.set_display_rotation(rotation_degrees)
            if audio_from is not None:
                copier = StreamCopier(audio_from, container, notes, streams=copy_streams)
            extradata = template.codec_context.extradata
            last_dts = None
            for part, source, part_first_pts in zip(parts, inputs, first_pts):
                stream = source.streams.video[0]
                if stream.codec_context.extradata != extradata:
                    raise OutputError(f"{part.name}: encoded with other settings than the first segment; cannot join")
                offset = part_first_pts - _first_pts(part, time_base)
                for packet in source.demux(stream):
                    if packet.size == 0:
                        continue
                    pts = _shift(_rescale(packet.pts, stream.time_base, time_base), offset)
                    dts = _shift(_rescale(packet.dts, stream.time_base, time_base), offset)
                    if dts is not None and last_dts is not None and dts <= last_dts:
                        dts = last_dts + 1
                    if pts is not None and dts is not None and dts > pts:
                        raise OutputError(f"{output}: the segments' B-frame delays do not fit the time base "
                                          f"{time_base}; use the default --preset or --workers 1")
                    last_dts = dts if dts is not None else last_dts
                    if copier is not None and pts is not None:
                        copier.copy_until(float(pts * time_base))
                    packet.stream = out
                    packet.time_base = time_base
                    packet.pts, packet.dts = pts, dts
                    container.mux(packet)
                    frames += 1
            if copier is not None:
                copier.copy_until(end_seconds)
                copier.finish()
        finally:
            for source in inputs:
                source.close()
            if copier is not None:
                copier.close()
        container.close()
    except BaseException as exc:
        try:
            if container is not None:
                container.close()
        except Exception:  # the file is being thrown away; its container state no longer matters
            pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            # A full disk is the output's problem, whether FFmpeg or Python met it.
            raise OutputError(f"{output}: cannot write ({os.strerror(exc.errno)}); nothing was written there") from None
        if isinstance(exc, OSError) and not isinstance(exc, av.error.FFmpegError):
            raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
        if isinstance(exc, av.error.FFmpegError):
            raise OutputError(f"{output}: joining the segments failed ({exc.strerror or exc})") from None
        raise
    os.replace(tmp, output)
    return JoinResult(frames, notes)


def _first_pts(part: Path, time_base: Fraction) -> int:
    """The smallest presentation time among ``part``'s video packets, in ``time_base``."""
    import av

    with av.open(str(part), "r") as source:
        stream = source.streams.video[0]
        values = [packet.pts for packet in source.demux(stream) if packet.size and packet.pts is not None]
        if not values:
            raise OutputError(f"{part.name}: a segment without frames")
        return _rescale(min(values), stream.time_base, time_base)


def _shift(value: int | None, offset: int) -> int | None:
    return None if value is None else value + offset


def _rescale(value: int | None, source: Fraction, target: Fraction) -> int | None:
    """``value`` ticks of ``source`` in ticks of ``target``: exact when ``target`` divides it
    (segments are MP4s, whose time scale is the source's denominator times a power of two)."""
    if value is None:
        return None
    return round(value * source / target)


class StreamCopier:
    """Copies (or, where the container refuses the codec, re-encodes) the input's audio and
    subtitle packets into the output, in step with the video so the muxer never has to
    buffer a whole track."""

    def __init__(self, source: os.PathLike | str, container, notes: list[str], *, streams: bool = True) -> None:
        """``streams`` False (``--no-audio``): only the file's and the video's tags and the chapters."""
        import av

        self._input = av.open(str(source), "r")
        self._container = container
        self._outputs = {}
        self._encoders = {}
        #: Re-encoded streams: the pts (in 1/sample rate) of the next sample out of the resampler.
        self._next_pts: dict[int, int | None] = {}
        #: Copied streams: the decode time of the last packet muxed (the source's time base).
        self._last_dts: dict[int, int] = {}
        for stream in (list(self._input.streams.audio) + list(self._input.streams.subtitles)) if streams else []:
            # canonical_name is the codec ("mp3"), name the decoder ("mp3float").
            name = stream.codec_context.codec.canonical_name
            refused_by_players = name in PLAYERS_REFUSE.get(container.format.name, ())
            if container_accepts(container, name) and not refused_by_players:
                self._outputs[stream.index] = container.add_stream_from_template(stream)
            elif stream.type == "audio":
                codec = ("aac" if container_accepts(container, "aac")
                         else "libopus" if container_accepts(container, "libopus") else None)
                if codec is None:
                    notes.append(f"audio stream {stream.index} ({name}) dropped: the container takes no audio we encode")
                    continue
                why = (f"players of {Path(container.name).suffix} files do not play {name}" if refused_by_players
                       else f"the container refuses {name}")
                notes.append(f"audio stream {stream.index} ({name}) re-encoded to {codec}: {why}")
                # Opus runs at 48 kHz (or 24, 16, 12, 8), never at a source's 44.1 kHz.
                rate = 48000 if codec == "libopus" else stream.codec_context.sample_rate or 48000
                out = container.add_stream(codec, rate=rate)
                if stream.codec_context.layout is not None:
                    out.layout = stream.codec_context.layout
                self._outputs[stream.index] = out
                # Both encoders take only whole frames of their own size (known once they open, which
                # is later): an MP3 source's 1152-sample frames would be refused as they are.
                self._encoders[stream.index] = av.AudioResampler(format=out.format, layout=out.layout, rate=out.rate,
                                                                 frame_size=_AUDIO_FRAME_SIZE[codec])
                self._next_pts[stream.index] = None
            else:
                # Converting subtitle formats (e.g. SubRip to MP4's mov_text) is not done.
                notes.append(f"subtitle stream {stream.index} ({name}) dropped: {Path(container.name).suffix} "
                             "files cannot hold it (use .mkv)")
        copied = dict(self._outputs)
        if self._input.streams.video and container.streams.video:
            copied[self._input.streams.video[0].index] = container.streams.video[0]
        copy_metadata(self._input, container, copied, notes)
        streams = [self._input.streams[i] for i in self._outputs]
        #: Where the input's clock may restart (MPEG-TS), the video's packets are read too (and
        #: dropped) so the copied streams are closed up with the very offsets the video gets.
        self._clock = self._video = None
        if streams and clock_may_restart(self._input) and self._input.streams.video:
            self._clock, self._video = ClockJumps(), self._input.streams.video[0]
            streams = [s for s in clock_streams(self._input, self._video) if s not in streams] + streams
        self._packets = self._input.demux(streams) if streams else iter(())
        self._pending = None

    def copy_until(self, seconds: float | None) -> None:
        """Mux every packet that starts before ``seconds`` (all remaining ones for None)."""
        while True:
            packet = self._pending or self._next_packet()
            self._pending = None
            if packet is None:
                return
            if packet.dts is None and packet.size == 0:
                continue
            start = float(packet.pts * packet.time_base) if packet.pts is not None else None
            if seconds is not None and start is not None and start > seconds:
                self._pending = packet
                return
            self._mux(packet)

    def _next_packet(self):
        for packet in self._packets:
            if self._clock is None:
                return packet
            is_video = packet.stream.index == self._video.index
            self._clock.fix(packet, frame_duration(self._video) if is_video else None)
            if packet.stream.index in self._outputs:
                return packet
        return None

    def _mux(self, packet) -> None:
        out = self._outputs[packet.stream.index]
        index = packet.stream.index
        if index in self._encoders:
            resampler = self._encoders[index]
            for frame in packet.decode():
                if frame.pts is not None and frame.time_base:
                    source_pts = round(frame.pts * frame.time_base * out.rate)
                    # The first frame sets where the track starts (audio that starts late stays late);
                    # later, only a real gap in the source (over 0.1 s) moves it on, not rounding.
                    if self._next_pts[index] is None or source_pts - self._next_pts[index] > out.rate // 10:
                        self._next_pts[index] = source_pts
                for resampled in resampler.resample(frame):
                    self._encode(index, resampled)
        else:
            if packet.stream.type == "audio" and packet.pts is not None:
                # Audio is never reordered, so its decode time is its presentation time. Some files
                # (the shared tennis clip) store dts from 0 and pts from the real start (0.39 s):
                # MP4 muxers place audio by dts, and it would then start 0.39 s early and end short.
                packet.dts = packet.pts
            last = self._last_dts.get(index)
            if packet.dts is not None and last is not None and packet.dts <= last:
                # Overlapping audio where joined files met (its clock closed up by ClockJumps):
                # the muxer needs increasing decode times; FFmpeg's CLI moves them on the same way.
                # One tick of the output's time base (MP4 audio counts samples), not of the source's.
                tick = out.time_base / packet.time_base if out.time_base and packet.time_base else 1
                packet.dts = last + max(1, math.ceil(tick))
                packet.pts = max(packet.pts, packet.dts) if packet.pts is not None else None
            if packet.dts is not None:
                self._last_dts[index] = packet.dts
            packet.stream = out
            self._container.mux(packet)

    def _encode(self, index: int, frame) -> None:
        # The encoders would number samples from 0 (pts None), losing the source's start offset.
        out = self._outputs[index]
        frame.pts = self._next_pts[index] or 0
        frame.time_base = Fraction(1, out.rate)
        self._next_pts[index] = frame.pts + frame.samples
        self._container.mux(out.encode(frame))

    def finish(self) -> None:
        """Flush the resamplers and audio encoders (after the last copy_until)."""
        for index, resampler in self._encoders.items():
            for frame in resampler.resample(None):
                self._encode(index, frame)
            self._container.mux(self._outputs[index].encode(None))
        self._encoders = {}

    def close(self) -> None:
        self._input.close()
