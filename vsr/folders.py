"""``vsr run IN_DIR OUT_DIR``: every video of a folder, one overall progress bar, a summary table.

Each video goes through the same ``segments.upscale_video`` as a single ``vsr run``. Outputs
that already exist are complete (a run only ever renames finished files into place), so they
are skipped: rerunning the command after a crash continues where it stopped. A file that
fails is reported and the others still run; the exit status says something failed.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .errors import InputError, OutputError, VsrError
from .pipeline.pipeline import RunConfig, input_notes

#: What counts as a video in a folder: the containers FFmpeg's CLI users meet most.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg",
                    ".flv", ".wmv", ".3gp", ".ogv", ".y4m")


@dataclass
class FileOutcome:
    source: Path
    target: Path
    status: str  # "done", "skipped", "failed", "interrupted"
    frames: int = 0
    seconds: float = 0.0
    message: str = ""


def find_videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def plan_folder(in_dir: Path, out_dir: Path, out_format: str | None) -> list[tuple[Path, Path]]:
    """(input, output) pairs, checked before anything is written: no two inputs may share an
    output, and OUT_DIR may not be IN_DIR (outputs would replace or mix with the inputs)."""
    if out_dir.suffix.lower() in VIDEO_EXTENSIONS and not out_dir.is_dir():
        raise OutputError(f"{in_dir}: is a directory, so OUTPUT must be a folder too, not a video file ({out_dir})")
    videos = find_videos(in_dir)
    if not videos:
        raise InputError(f"{in_dir}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder (INPUT is a folder)")
    if out_dir.exists() and out_dir.resolve() == in_dir.resolve():
        raise OutputError(f"{out_dir}: is the input folder; give another folder for the outputs")
    suffix = None if out_format is None else "." + out_format.lstrip(".").lower()
    pairs = [(video, out_dir / (video.name if suffix is None else video.stem + suffix)) for video in videos]
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if target in seen:
            raise OutputError(f"{seen[target].name} and {source.name} would both be written to {target}; "
                              "leave out --format or rename one")
        seen[target] = source
    return pairs


def _frame_estimate(path: Path) -> int:
    """Frames of a video from its header (no decoding), 0 when it does not say."""
    import av

    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            if stream.frames:
                return stream.frames
            rate = stream.average_rate or stream.guessed_rate
            if container.duration and rate:
                return round(container.duration / 1_000_000 * float(rate))
    except (av.error.FFmpegError, IndexError, OSError):
        pass
    return 0


def run_folder(
    config: RunConfig,
    *,
    out_format: str | None = None,
    quiet: bool = False,
    echo: Callable[[str], None] | None = None,
    progress=None,
) -> list[FileOutcome]:
    """Upscale every video of ``config.input_path`` into the folder ``config.output_path``.
    Returns the failed files' outcomes (empty when all went well). ``echo`` takes the summary's
    lines (None: ``print``). ``progress`` (the CLI's ``--progress json`` reporter) hears of each
    file's start, frames and end."""
    echo = echo or print
    from tqdm import tqdm

    from .segments import upscale_video

    in_dir, out_dir = Path(config.input_path), Path(config.output_path)
    pairs = plan_folder(in_dir, out_dir, out_format)
    # Before any video is read: what no input could make work (format, codec, CRF, pixel format).
    from .segments.driver import check_request

    check_request(config, outputs=[target for _, target in pairs])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create folder ({exc.strerror})") from None
    todo = [(s, t) for s, t in pairs if config.overwrite or not t.exists()]
    outcomes = [FileOutcome(s, t, "skipped", message="output exists") for s, t in pairs if (s, t) not in todo]
    estimates = {s: _frame_estimate(s) for s, _ in todo}
    bar = tqdm(total=sum(estimates.values()) or None, unit="frame", dynamic_ncols=True, file=sys.stderr,
               disable=quiet or not sys.stderr.isatty())
    base = 0
    try:
        for number, (source, target) in enumerate(todo, 1):
            bar.set_description(f"{number}/{len(todo)} {source.name}")
            started = time.perf_counter()

            def on_frame(frames_done: int, base=base) -> None:
                bar.update(base + frames_done - bar.n)
                if progress is not None:
                    progress.update(frames_done)

            if progress is not None:
                progress.start_file(source, number, len(todo), estimates[source])
            # The notes a single run prints on its first line (a 4:4:4 source written 4:2:0 ...), per file.
            first_notes: list[str] = []

            def on_start(info, backend: str, expected, first_notes=first_notes) -> None:
                first_notes.extend(input_notes(info, config.encode, backend))

            try:
                stats = upscale_video(replace(config, input_path=source, output_path=target), on_frame=on_frame,
                                      on_start=on_start)
            except VsrError as exc:
                outcomes.append(FileOutcome(source, target, "failed", seconds=time.perf_counter() - started,
                                            message=str(exc)))
                if progress is not None:
                    progress.end_file("failed", 0, error=str(exc))
                if not quiet:
                    tqdm.write(f"error: {source.name}: {exc}", file=sys.stderr)
            else:
                status = "interrupted" if stats.interrupted else "done"
                outcomes.append(FileOutcome(source, target, status, stats.frames, stats.wall_seconds,
                                            "; ".join(first_notes + list(stats.notes))))
                if progress is not None:
                    progress.end_file("failed" if stats.interrupted else "done", stats.frames,
                                      error="interrupted" if stats.interrupted else None)
                if stats.interrupted:
                    raise KeyboardInterrupt
            base += estimates[source]
            bar.update(base - bar.n)
    finally:
        bar.close()
        if not quiet:
            for line in summary_table(outcomes):
                echo(line)
    return [o for o in outcomes if o.status == "failed"]


def summary_table(outcomes: list[FileOutcome]) -> list[str]:
    width = max([len(o.source.name) for o in outcomes] + [4])
    lines = [f"{'file':<{width}}  {'status':<11}{'frames':>8}{'fps':>8}  note"]
    for o in sorted(outcomes, key=lambda o: o.source.name):
        fps = f"{o.frames / o.seconds:.1f}" if o.seconds and o.frames else "-"
        lines.append(f"{o.source.name:<{width}}  {o.status:<11}{o.frames:>8}{fps:>8}  {o.message}")
    counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "failed")}
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return lines
