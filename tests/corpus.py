"""A corpus of small inputs made with the ffmpeg CLI, and how `vsr run` is held against it.

Each ``Case`` is an ffmpeg command line that writes one input (tiny frames, about 1.6 s) in
some container and codec, with some timing trait (B-frames, open GOP, NTSC rates, variable
frame rate, a non-zero start, audio starting before or after the video, joined files whose
clock restarts, a damaged packet). ``reference`` transcodes it with the ffmpeg CLI
(``ffmpeg [-r FPS] -i IN -c:v libx264 -fps_mode passthrough -enc_time_base -1 -c:a copy REF.mp4``:
every decoded frame at the time FFmpeg gives it, in the source's time base; ``-r`` only for
index-timed inputs, see ``Case.index_timed``) and
``compare`` holds vsr's output against it: frame count, every frame's time (relative to the
audio's start, or to the first frame without audio), within 1 ms, and the audio's duration.

tests/test_corpus.py runs every case; ``python -m tests.corpus`` writes docs/corpus.md.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")
SIZE = "96x64"
SECONDS = 1.6
#: Frame times must agree to within this (seconds).
TOLERANCE = 0.001
#: Audio durations to within this: one AAC frame at 44.1 kHz is 23 ms.
AUDIO_TOLERANCE = 0.03


@dataclass(frozen=True)
class Case:
    name: str
    ext: str
    #: Video encoder options (after -c:v).
    video: tuple[str, ...]
    rate: str = "25"
    #: Audio encoder options; () for no audio.
    audio: tuple[str, ...] = ("aac",)
    #: Options before the video / audio input (e.g. -itsoffset), and the output's extra options.
    video_in: tuple[str, ...] = ()
    audio_in: tuple[str, ...] = ()
    out: tuple[str, ...] = ()
    vf: str | None = None
    #: "concat": the file twice, byte by byte (cat a.ts a.ts); "jump": then a second part whose clock is
    #: 100 s later; "damage": some bytes in the middle overwritten.
    make: str = "plain"
    #: The input stores frame numbers, not times (AVI, raw streams). With B-frames (``reorders``) the
    #: reference is made with ``-r FPS`` before ``-i``, FFmpeg's own way to time frames by their index;
    #: without, plain ffmpeg presents each frame at its decode time, as vsr does.
    index_timed: bool = False
    reorders: bool = True
    #: Why vsr's output differs from the reference, where it must (the case then checks only what is said).
    differs: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


X264 = ("libx264", "-preset", "veryfast", "-bf", "2", "-g", "12", "-keyint_min", "12", "-sc_threshold", "0")
X264_NOBF = ("libx264", "-preset", "veryfast", "-bf", "0", "-g", "12", "-keyint_min", "12", "-sc_threshold", "0")
X264_OPEN = ("libx264", "-preset", "veryfast", "-bf", "2", "-x264-params", "open-gop=1:keyint=12:min-keyint=12:scenecut=0")
X265 = ("libx265", "-preset", "ultrafast", "-x265-params", "bframes=2:keyint=12:min-keyint=12:scenecut=0:log-level=error")
MPEG4 = ("mpeg4", "-bf", "2", "-g", "12", "-q:v", "5")
MPEG2 = ("mpeg2video", "-bf", "2", "-g", "12", "-q:v", "5")
VP9 = ("libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "12", "-lag-in-frames", "0")
AV1 = ("libsvtav1", "-preset", "12", "-g", "12")
MJPEG = ("mjpeg", "-q:v", "5")
VFR = "select='not(eq(mod(n\\,5)\\,3))'"

CASES: tuple[Case, ...] = (
    Case("mp4-h264-bframes", "mp4", X264),
    Case("mp4-h264-no-bframes", "mp4", X264_NOBF),
    Case("mp4-h264-open-gop", "mp4", X264_OPEN),
    Case("mkv-h264-bframes", "mkv", X264),
    Case("mov-h264-bframes", "mov", X264),
    Case("avi-h264-bframes-10fps", "avi", X264, rate="10", index_timed=True),
    Case("avi-h264-bframes-25fps", "avi", X264, index_timed=True),
    Case("avi-h264-bframes-29.97fps", "avi", X264, rate="30000/1001", index_timed=True),
    Case("avi-h264-no-bframes", "avi", X264_NOBF, index_timed=True, reorders=False),
    Case("ts-h264-bframes", "ts", X264),
    Case("m2ts-h264-bframes", "m2ts", X264),
    Case("flv-h264-bframes", "flv", X264),
    Case("nut-h264-bframes", "nut", X264),
    Case("raw-h264-bframes", "h264", X264, audio=(), index_timed=True),
    Case("mp4-h264-23.976fps", "mp4", X264, rate="24000/1001"),
    Case("mp4-h264-29.97fps", "mp4", X264, rate="30000/1001"),
    Case("mov-h264-29.97fps", "mov", X264, rate="30000/1001"),
    Case("mkv-h264-vfr", "mkv", X264, vf=VFR, out=("-fps_mode", "vfr")),
    Case("mp4-h264-vfr", "mp4", X264, vf=VFR, out=("-fps_mode", "vfr")),
    Case("mkv-h264-start-10s", "mkv", X264, out=("-output_ts_offset", "10")),
    Case("ts-h264-start-10s", "ts", X264, out=("-output_ts_offset", "10")),
    Case("mp4-h264-audio-first", "mp4", X264, video_in=("-itsoffset", "0.3")),
    Case("mp4-h264-audio-late", "mp4", X264, audio_in=("-itsoffset", "0.3")),
    Case("mkv-h264-audio-late", "mkv", X264, audio_in=("-itsoffset", "0.3")),
    Case("ts-h264-audio-late", "ts", X264, audio_in=("-itsoffset", "0.3")),
    # Variable frame rate into AVI: the muxer writes empty "dropped frame" chunks in the gaps.
    Case("avi-h264-vfr-dropped-frames", "avi", X264_NOBF, vf=VFR, out=("-fps_mode", "vfr"), index_timed=True,
         reorders=False),
    Case("avi-h264-audio-late", "avi", X264, audio_in=("-itsoffset", "0.3"), index_timed=True),
    Case("ts-h264-concat", "ts", X264, make="concat"),
    Case("ts-h264-no-bframes-concat", "ts", X264_NOBF, make="concat"),
    Case("m2ts-h264-concat", "m2ts", X264, make="concat"),
    Case("ts-h264-jump-forward", "ts", X264, make="jump"),
    Case("mp4-h264-damaged", "mp4", X264_NOBF, make="damage"),
    Case("ts-h264-damaged", "ts", X264_NOBF, make="damage"),
    Case("mp4-hevc-bframes", "mp4", X265),
    Case("mkv-hevc-bframes", "mkv", X265),
    Case("ts-hevc-bframes", "ts", X265),
    Case("raw-hevc-bframes", "hevc", X265, audio=(), index_timed=True),
    Case("avi-mpeg4-bframes", "avi", MPEG4 + ("-vtag", "XVID"), index_timed=True),
    Case("mp4-mpeg4-bframes", "mp4", MPEG4),
    Case("raw-m4v-bframes", "m4v", MPEG4, audio=(), out=("-f", "m4v"), index_timed=True),
    Case("ts-mpeg2-bframes", "ts", MPEG2, audio=("mp2",)),
    Case("mpg-mpeg2-bframes", "mpg", MPEG2, audio=("mp2",)),
    Case("raw-m2v-bframes", "m2v", MPEG2, audio=(), index_timed=True),
    Case("webm-vp9", "webm", VP9, audio=("libopus",)),
    Case("mkv-vp9", "mkv", VP9),
    Case("mkv-av1", "mkv", AV1),
    Case("mp4-av1", "mp4", AV1),
    Case("avi-mjpeg", "avi", MJPEG, index_timed=True, reorders=False),
    Case("mov-mjpeg", "mov", MJPEG),
    Case("mkv-mjpeg-29.97fps", "mkv", MJPEG, rate="30000/1001"),
)


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()[-500:]}")


def _encode(case: Case, path: Path, *, offset: float = 0.0) -> None:
    args = [FFMPEG, "-v", "error", "-y", *case.video_in, "-f", "lavfi",
            "-i", f"testsrc2=s={SIZE}:r={case.rate}:d={SECONDS}"]
    if case.audio:
        args += [*case.audio_in, "-f", "lavfi", "-i", f"sine=f=440:d={SECONDS}"]
    if case.vf:
        args += ["-vf", case.vf]
    args += ["-pix_fmt", "yuvj420p" if case.video[0] == "mjpeg" else "yuv420p", "-c:v", *case.video]
    if case.audio:
        args += ["-c:a", *case.audio]
    if offset:
        args += ["-output_ts_offset", str(offset)]
    _run(args + list(case.out) + [str(path)])


def make_input(case: Case, folder: Path) -> Path:
    """The case's input file, made once in ``folder``."""
    path = folder / f"{case.name}.{case.ext}"
    if path.exists():
        return path
    tmp = folder / f"part-{case.name}.{case.ext}"
    _encode(case, tmp)
    data = tmp.read_bytes()
    if case.make == "concat":
        data = data + data
    elif case.make == "jump":
        later = folder / f"later-{case.name}.{case.ext}"
        _encode(case, later, offset=100.0)
        data = data + later.read_bytes()
        later.unlink()
    elif case.make == "damage":
        # Overwrite a run of bytes at 60% of the file: one or two packets' payload.
        at = int(len(data) * 0.6)
        if case.ext == "ts":
            at -= at % 188
            data = data[:at + 8] + bytes(180) + data[at + 188:]  # keep the TS header, zero the payload
        else:
            data = data[:at] + bytes(200) + data[at + 200:]
    tmp.unlink()
    path.write_bytes(data)
    return path


def reference(case: Case, source: Path, folder: Path) -> Path:
    """``ffmpeg -i SOURCE -c:v libx264 REF.mp4``, every decoded frame kept at FFmpeg's time."""
    path = folder / f"{case.name}.ref.mp4"
    if not path.exists():
        import av

        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
        timing = ["-r", str(rate)] if case.index_timed and case.reorders else []
        _run([FFMPEG, "-v", "error", "-y", *timing, "-i", str(source), "-map", "0:v:0", "-map", "0:a:0?",
              "-c:v", "libx264", "-preset", "ultrafast", "-fps_mode", "passthrough", "-enc_time_base", "-1",
              "-c:a", "copy", str(path)])
    return path


@dataclass
class Timing:
    frames: list[float]
    audio_start: float | None
    audio_seconds: float | None

    @property
    def origin(self) -> float:
        return self.audio_start if self.audio_start is not None else self.frames[0]

    def relative(self) -> list[float]:
        return [t - self.origin for t in self.frames]


def timing(path: Path) -> Timing:
    """Every video frame's presentation time (packets in presentation order) and the audio's span."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames, audio_packets = [], []
        for packet in container.demux([video] + ([audio] if audio else [])):
            if not packet.size or packet.pts is None:
                continue
            if packet.stream.type == "video":
                frames.append(float(packet.pts * packet.time_base))
            else:
                audio_packets.append((float(packet.pts * packet.time_base), float((packet.duration or 0) * packet.time_base)))
    frames.sort()
    if audio_packets:
        start = min(t for t, _ in audio_packets)
        end = max(t + d for t, d in audio_packets)
        return Timing(frames, start, end - start)
    return Timing(frames, None, None)


@dataclass
class Comparison:
    frames: int
    ref_frames: int
    worst_seconds: float
    offset: float | None
    ref_offset: float | None
    audio_seconds: float | None
    ref_audio_seconds: float | None

    @property
    def same_frames(self) -> bool:
        return self.frames == self.ref_frames

    @property
    def same_times(self) -> bool:
        # Rounded to the microsecond: an MP4 edit list counts whole milliseconds, so 1 ms is a real reading.
        return self.same_frames and round(self.worst_seconds, 6) <= TOLERANCE

    @property
    def same_audio(self) -> bool:
        if self.ref_audio_seconds is None or self.audio_seconds is None:
            return self.ref_audio_seconds is None and self.audio_seconds is None
        return abs(self.audio_seconds - self.ref_audio_seconds) <= AUDIO_TOLERANCE

    @property
    def matches(self) -> bool:
        return self.same_times and self.same_audio

    def describe(self) -> str:
        parts = [f"{self.frames} frames (ffmpeg {self.ref_frames})"]
        if self.same_frames:
            parts.append(f"worst frame time {self.worst_seconds * 1000:.2f} ms off")
        if self.offset is not None or self.ref_offset is not None:
            parts.append(f"first frame {_ms(self.offset)} after the audio (ffmpeg {_ms(self.ref_offset)})")
        if self.audio_seconds is not None or self.ref_audio_seconds is not None:
            parts.append(f"audio {_s(self.audio_seconds)} (ffmpeg {_s(self.ref_audio_seconds)})")
        return ", ".join(parts)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def compare(output: Path, ref: Path) -> Comparison:
    ours, theirs = timing(output), timing(ref)
    worst = max((abs(a - b) for a, b in zip(ours.relative(), theirs.relative())), default=0.0)
    offset = ours.frames[0] - ours.audio_start if ours.audio_start is not None else None
    ref_offset = theirs.frames[0] - theirs.audio_start if theirs.audio_start is not None else None
    return Comparison(len(ours.frames), len(theirs.frames), worst, offset, ref_offset, ours.audio_seconds,
                      theirs.audio_seconds)


def run_vsr(source: Path, output: Path, *, workers: int):
    """`vsr run SOURCE OUTPUT --scale 2 --model espcn --backend onnxruntime --workers N`, in-process,
    with segments of 0.5 s (the clips are 1.6 s, keyframes every 12 frames)."""
    from tests.conftest import run_config
    from vsr.segments import upscale_video

    config = run_config(source, output, scale=2, model="espcn", backend="onnxruntime",
                       workers=workers, segment_seconds=0.4, overwrite=True)
    return upscale_video(config)


def available(case: Case) -> str | None:
    """Why ``case`` cannot be made here (an encoder missing from the ffmpeg CLI), or None."""
    if FFMPEG is None:
        return "the ffmpeg CLI is not installed"
    encoders = _encoders()
    for codec in (case.video[0],) + ((case.audio[0],) if case.audio else ()):
        if codec not in encoders:
            return f"this ffmpeg has no {codec} encoder"
    return None


_ENCODERS: set[str] | None = None


def _encoders() -> set[str]:
    global _ENCODERS
    if _ENCODERS is None:
        listing = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
        _ENCODERS = {line.split()[1] for line in listing.splitlines()[10:] if len(line.split()) > 1}
    return _ENCODERS


def main() -> None:
    """Run every case both ways and write docs/corpus.md."""
    import tempfile
    import time

    rows = []
    with tempfile.TemporaryDirectory(prefix="vsr-corpus-") as tmp:
        folder = Path(tmp)
        for case in CASES:
            why = available(case)
            if why:
                rows.append((case, why, None, None))
                continue
            source = make_input(case, folder)
            ref = reference(case, source, folder)
            results = []
            try:
                for workers in (1, 2):
                    out = folder / f"{case.name}.w{workers}.mp4"
                    started = time.perf_counter()
                    stats = run_vsr(source, out, workers=workers)
                    results.append((compare(out, ref), time.perf_counter() - started, stats))
            except Exception as exc:  # recorded in the table: the test shows the traceback
                rows.append((case, f"vsr failed with --workers {workers}: {exc}", None, None))
                print(case.name, "failed", exc, flush=True)
                continue
            rows.append((case, None, results[0], results[1]))
            print(case.name, results[0][0].matches, results[1][0].matches, results[0][0].describe(), flush=True)
    write_table(rows, Path(__file__).resolve().parent.parent / "docs" / "corpus.md")


def write_table(rows, path: Path) -> None:
    import subprocess as sp

    version = sp.run([FFMPEG, "-version"], capture_output=True, text=True).stdout.splitlines()[0] if FFMPEG else "-"
    import av

    matched = sum(1 for _, why, one, two in rows if not why and one[0].matches and two[0].matches)
    made = sum(1 for _, why, _, _ in rows if not why or why.startswith("vsr failed"))
    lines = [
        "# Frame times against the ffmpeg CLI",
        "",
        "Written by `python -m tests.corpus` (cases in tests/corpus.py, run by tests/test_corpus.py).",
        f"Each input is made by the ffmpeg CLI ({version}); vsr (PyAV {av.__version__}, FFmpeg "
        f"{'.'.join(map(str, av.library_versions['libavformat']))} libavformat) runs it with `--scale 2 --model espcn` "
        "as one stream and with `--workers 2` (0.4 s segments), and the reference is "
        "`ffmpeg [-r FPS] -i IN -c:v libx264 -fps_mode passthrough -enc_time_base -1 -c:a copy REF.mp4`.",
        "Frame times are compared relative to the audio's first packet (to the first frame without audio), "
        f"within {TOLERANCE * 1000:g} ms; audio durations within {AUDIO_TOLERANCE * 1000:g} ms.",
        "",
        f"**{matched} of {made} cases match ffmpeg on both paths** ({len(rows)} cases listed).",
        "",
        "| case | one stream | --workers 2 | detail (one stream) | segments |",
        "|---|---|---|---|---|",
    ]
    for case, why, one, two in rows:
        if why:
            state = "**failed**" if why.startswith("vsr failed") else "not run"
            lines.append(f"| {case.name} | {state} | {state} | {why} | |")
            continue
        def verdict(result):
            comparison = result[0]
            return "match" if comparison.matches else "**differs**"
        whole = next((note for note in two[2].notes if "one segment" in note), None)
        fallback = next((note for note in two[2].notes if "single stream instead" in note), None)
        if whole:
            seg = "one stream (" + whole.split(": ", 1)[1].split(": ran")[0] + ")"
        elif fallback:
            seg = "cut, then one stream (" + fallback.split(": upscaled")[0] + ")"
        else:
            seg = "segmented"
        lines.append(f"| {case.name} | {verdict(one)} | {verdict(two)} | {one[0].describe()} | {seg} |")
    lines += ["", "## Where vsr must differ from the ffmpeg CLI", "", DIFFERENCES.strip(), ""]
    path.write_text("\n".join(lines))


DIFFERENCES = """
- **Index-timed inputs (AVI, raw H.264/HEVC/MPEG-4/MPEG-2 streams) with B-frames.** These store frame
  numbers in decode order, not presentation times. vsr presents frame i at i / fps (AVI: the i-th
  smallest decode time, so an empty dropped-frame chunk keeps its gap), as `ffmpeg -r FPS -i IN` does;
  that is the reference above. Plain `ffmpeg -i IN.avi` instead times each frame by the packet that made
  the decoder put it out: every frame lands the decoder's delay (2 frames with x264's defaults) late
  against the audio, and its CFR output fills the start by repeating the first frame (30 input frames
  of a 10 fps AVI become 32, input frame 0 shown at 0.0, 0.1 and 0.2 s). vsr does not copy that.
- **Variable frame rate into MP4.** `ffmpeg -i IN -c:v libx264 OUT.mp4` makes MP4 output constant-rate
  (it repeats and drops frames); vsr keeps every frame at its own time, as `-fps_mode passthrough`
  (the reference above) or a Matroska output does.
- **Frame times rounded to the frame rate.** ffmpeg 5.1's CLI encodes in a time base of 1/fps by default,
  so every frame time is rounded to a multiple of the frame duration: a Matroska, FLV, NUT or MPEG-TS
  video whose first frame is 23 ms after the audio's comes out 40 ms after it at 25 fps (17 ms later
  than the source says). vsr keeps the source's own times, as `-enc_time_base -1` does (the reference
  above); on MP4 and MOV sources, whose times are already on that grid, the two agree either way.
- **Cuts that the index cannot promise.** A segment must decode exactly the frames the plan gives it. Where
  a GOP is open (MPEG-4 part 2 and MPEG-2 encoders leave them open by default) the B-frames that lead
  a keyframe cannot be decoded from it: the worker then counts fewer frames than the index, and the
  driver upscales the video as one stream instead (the note says so), so the output is still frame-exact,
  at the cost of the segments' work. MPEG program streams, raw elementary streams and MPEG-TS files whose
  clock restarts always run as one stream (nothing exact to cut by).
- **Frames whose times go backwards** (damaged or badly muxed inputs): vsr keeps every frame, moved one
  tick after the frame before; ffmpeg's passthrough mode keeps them out of order and its muxer then
  moves them.
"""


if __name__ == "__main__":
    main()
