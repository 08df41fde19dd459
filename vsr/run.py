"""``vsr run`` as one library call: what a request's input and output allow (a pipe is read
once, standard output is written as frames come), then a folder of videos, or one video as one
stream or in segments. The CLI and ``vsr.upscale_video`` both come through here; ``folders``,
``segments`` and ``pipeline`` serve it, in that direction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import OptionConflict
from .pipeline.pipeline import RunConfig, RunStats, can_reopen

__all__ = ["Streams", "choose_streams", "is_folder", "run", "run_one"]


@dataclass(frozen=True)
class Streams:
    """What the input and output allow: the container for standard output (None: OUTPUT's
    extension names it), the video codec, the worker count (None: chosen from the machine) and
    the notes that explain a choice the user did not make."""

    container: str | None
    codec: str
    workers: int | None
    notes: tuple[str, ...] = ()


def choose_streams(input_path: Path | str, output_path: Path | str, *, codec: str | None = None,
                   out_format: str | None = None, workers: int | None = None, resume: bool = False,
                   ray_address: str | None = None) -> Streams:
    """The container, codec and workers a run of ``input_path`` into ``output_path`` can have.
    OUTPUT "-" is one stream written as it is encoded (y4m unless ``out_format`` says otherwise);
    a pipe or stream INPUT is read once, by the decoder, so it cannot be cut into segments or read
    again for audio. Asking for what they cannot do (``workers`` > 1, ``resume``, Ray) is an
    ``OptionConflict``."""
    from .media.encode import STDOUT_CODEC, default_codec, stdout_format

    container, notes = None, []
    if str(output_path) == "-":
        container = stdout_format(out_format)
        codec = codec or STDOUT_CODEC[container]
        if workers not in (1, None) or resume or ray_address:
            raise OptionConflict("OUTPUT - is a stream written as it is encoded: one stream only "
                                 "(--workers 1, no --resume or --ray)")
        workers = 1
    elif codec is None:
        codec = default_codec(f".{out_format}" if out_format else Path(output_path).suffix)
        if codec != "libx264":
            notes.append(f"{codec} chosen for {out_format or Path(output_path).suffix}: that container cannot hold "
                         "H.264 (choose another with --codec)")
    if not can_reopen(input_path):
        if workers != 1 and (workers is not None or resume or ray_address):
            raise OptionConflict("INPUT is a stream or pipe: it can only be upscaled as one stream "
                                 "(--workers 1, no --resume or --ray)")
        workers = 1
    return Streams(container, codec, workers, tuple(notes))


def is_folder(input_path: Path | str) -> bool:
    """Whether INPUT is a folder of videos (a URL or "/dev/stdin" stays text and never is)."""
    return isinstance(input_path, Path) and input_path.is_dir()


def run(config: RunConfig, *, out_format: str | None = None, quiet: bool = False,
        echo: Callable[[str], None] | None = None, folder_progress=None, on_start=None, on_frame=None):
    """Upscale ``config.input_path``: a folder gives ``folders.run_folder``'s failures (a list,
    empty when every video was done; ``out_format``, ``quiet``, ``echo`` and ``folder_progress``
    are its), anything else ``run_one``'s ``RunStats``."""
    if is_folder(config.input_path):
        from .folders import run_folder

        return run_folder(config, out_format=out_format, quiet=quiet, echo=echo, progress=folder_progress)
    if out_format is not None:
        raise OptionConflict("--format is for folders: OUTPUT's extension names the container")
    return run_one(config, on_start=on_start, on_frame=on_frame)


def run_one(config: RunConfig, *, on_start=None, on_frame=None) -> RunStats:
    """One video (file, URL or pipe): ``segments.upscale_video``, which runs it as one stream or
    in segments on parallel workers, and resolves ``engine.model`` "auto" first."""
    from .segments import upscale_video

    return upscale_video(config, on_start=on_start, on_frame=on_frame)
