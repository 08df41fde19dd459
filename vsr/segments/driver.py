"""The driver of a segment-parallel ``vsr run``: plan, schedule, report progress, join.

It never decodes or upscales a segment itself: workers (local processes or Ray tasks) run
``worker.encode_segment``; the driver keeps the work folder, turns worker events into one
progress count, and joins the finished segments at packet level into OUTPUT.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from ..backends import EngineSpec
from ..cache import file_sha256
from ..errors import InputError
from ..pipeline.pipeline import RunConfig, RunStats, check_run, run_video
from .plan import SegmentPlan, plan_segments
from .. import hardware
from ..tuning import auto_workers, resolve_clip_context, resolve_engine, resolve_run_model
from .worker import SegmentJob, SegmentResult, thread_budget

def upscale_video(
    config: RunConfig,
    *,
    on_start: Callable[[object, str, int | None], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> RunStats:
    """``vsr run`` on one video: segments on parallel workers where that can help, else one stream.

    Workers are started with multiprocessing's "spawn": a script that calls this must do so
    under ``if __name__ == "__main__":`` (the ``vsr`` command does).
    """
    check_request(config)
    notes: tuple[str, ...] = ()
    if config.model == "auto":
        config, note = resolve_run_model(config)
        notes = (note,)
    config, context_note = resolve_clip_context(config)
    if context_note is not None:
        notes += (context_note,)
    if notes:
        # The first line: which model and why, then how it reads the clip.
        on_start = _announcing(on_start, "; ".join(notes))
    stats = _upscale_video(config, on_start=on_start, on_frame=on_frame)
    return replace(stats, notes=notes + stats.notes)


def check_request(config: RunConfig, outputs: list[Path] | None = None) -> None:
    """Refuse, before any input is read or model timed, what no input could make work: an
    output format FFmpeg does not know, a codec the container cannot hold or this FFmpeg lacks,
    a CRF or pixel format the encoder refuses. The single stream's writer would refuse these at
    once too; segmented, folder and Ray runs would only meet them at the join, after all the work.
    (What depends on the input, sizes and memory, is ``check_run``'s, also before any work.)
    ``outputs``: the files to check (a folder run's); default ``config.output_path``."""
    from ..media.encode import check_encode_options

    check_encode_options(config.encode, 1, 1)  # its output_layout refuses a bad --pix-fmt
    if getattr(config.encode, "container", None):
        return  # a container named outright (--format with standard output): the writer checks it
    for output in outputs if outputs is not None else [Path(config.output_path)]:
        check_output_format(output, config.encode.codec)


def check_output_format(output: Path, codec: str) -> None:
    """The container OUTPUT's extension names exists and can hold ``codec`` (``encode.check_container``,
    the CLI's own check; standard output, whose format is given otherwise, is the writer's to check)."""
    from ..media import encode

    if encode.is_stdout(output) or output.is_dir():
        return  # a folder as OUTPUT: encode.check_output_path names that problem
    encode.check_container(output.suffix, codec)


def _announcing(on_start, note: str):
    """``on_start`` with the chosen model and why put in front of the backend it reports: the
    run's first line then says which model runs, and why."""
    if on_start is None:
        return None
    return lambda info, description, expected: on_start(info, f"{description}; {note}", expected)


def _upscale_video(config: RunConfig, *, on_start, on_frame) -> RunStats:
    from ..media.encode import is_stdout

    workers = config.workers or auto_workers(config.engine)
    if (workers == 1 and not config.resume and config.ray_address is None) or is_stdout(config.output_path):
        # Standard output is written as the frames come: segments would need a file to join into.
        return run_video(config, on_start=on_start, on_frame=on_frame)
    plan = plan_segments(config.input_path, segment_seconds=config.segment_seconds, max_frames=config.max_frames)
    if len(plan.segments) == 1 and config.ray_address is None:
        stats = run_video(config, on_start=on_start, on_frame=on_frame)
        return replace(stats, notes=stats.notes + (f"{plan.note}: ran as a single stream",))
    return run_segmented(config, plan, workers, on_start=on_start, on_frame=on_frame)


def _engine_identity(spec: EngineSpec) -> dict:
    identity = {"scale": spec.scale, "backend": spec.backend, "device": "cuda" if spec.cuda else "cpu",
                "batch_size": spec.batch_size, "precision": spec.precision}
    if spec.context is not None:
        identity["context"] = spec.context.digest  # a resumed run folds the same context
    if spec.weights is not None:
        identity["weights_sha256"] = file_sha256(spec.weights)
    else:
        from .. import __version__

        identity["weights"] = f"{spec.model} shipped with vsr {__version__}"
    if spec.backend_options is not None:
        # The backend's own options can change the pixels (an int8 calibration set): segments
        # made with others are not this run's. Their repr is their fields, in order.
        identity["backend_options"] = repr(spec.backend_options)
    return identity


def run_segmented(
    config: RunConfig,
    plan: SegmentPlan,
    workers: int,
    *,
    on_start: Callable[[object, str, int | None], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> RunStats:
    from ..media.decode import VideoReader
    from ..media.encode import check_output_path, output_layout
    from ..media.mux import join_segments
    from .workdir import WorkFolder, input_identity

    started = time.perf_counter()
    output = Path(config.output_path)
    check_output_path(output, overwrite=config.overwrite, input_path=config.input_path)
    with VideoReader(config.input_path) as reader:
        info = reader.info
    out_layout = output_layout(config.encode, info.layout)
    run_notes = check_run(config, info, workers=workers)
    spec, description = resolve_engine(config.engine)
    # On Ray without --workers, each task asks for 2 CPUs (engine and encoder) and the cluster
    # runs as many as fit; otherwise the local cores are divided among the workers.
    budget = 2 if config.ray_address is not None and config.workers is None else thread_budget(workers)
    spec = replace(spec, num_threads=budget)
    encode = replace(config.encode, encoder_threads=budget)
    out_size = (info.width * config.scale, info.height * config.scale)
    manifest = {
        "input": input_identity(Path(config.input_path)),
        "engine": _engine_identity(spec),
        "encode": {k: v for k, v in asdict(config.encode).items() if k != "encoder_threads"},
        "max_frames": config.max_frames,
        "deinterlace": config.deinterlace and info.interlaced,
        "segments": [[s.start_pts, s.end_pts, s.num_frames] for s in plan.segments],
    }
    # --overwrite is about OUTPUT; with --resume too, the finished segments are still wanted.
    work = WorkFolder(output, manifest, resume=config.resume, discard=config.overwrite and not config.resume)
    from ..media.encode import depth_note

    notes: list[str] = list(run_notes) + [note for note in [depth_note(config.encode, info.layout)] if note]
    try:
        done = {s.index for s in plan.segments if work.finished(s.index, s.num_frames)}
        if done:
            notes.append(f"resumed: {len(done)} of {len(plan.segments)} segments were already done")
        if on_start is not None:
            where = f"Ray at {config.ray_address}" if config.ray_address else f"{workers} workers"
            on_start(info, f"{description}; {len(plan.segments)} segments on {where}, {budget} threads each",
                     plan.num_frames)
        jobs = [SegmentJob(
            input_path=str(config.input_path), segment=segment, output_path=str(work.segment_path(segment.index)),
            engine=spec, encode=encode, video=info, layout=info.layout, out_layout=out_layout, out_size=out_size,
            decoder_threads=budget, queue_depth=config.queue_depth,
            in_size=(info.width, info.height), deinterlace=config.deinterlace and info.interlaced,
            decoder=config.decoder,
        ) for segment in plan.segments if segment.index not in done]
        frames_done = {s.index: s.num_frames for s in plan.segments if s.index in done}
        mismatch: list[str] = []

        def on_event(event: tuple) -> None:
            kind, index = event[0], event[1]
            if kind == "progress":
                frames_done[index] = event[2]
                if on_frame is not None:
                    on_frame(sum(frames_done.values()))
            elif kind == "done":
                result: SegmentResult = event[2]
                expected = plan.segments[index].num_frames
                if result.frames == expected:
                    work.mark_done(index, result.frames)
                else:
                    mismatch.append(f"{plan.segments[index].describe()} decoded {result.frames} frames, "
                                    f"the index lists {expected}")

        if on_frame is not None:
            on_frame(sum(frames_done.values()))
        try:
            if config.ray_address is not None:
                from .ray_runner import run_ray

                results = run_ray(jobs, address=config.ray_address, on_event=on_event)
            else:
                results = run_local_jobs(jobs, workers, on_event=on_event)
        except KeyboardInterrupt:
            note = _keep_or_remove(work)
            return RunStats(frames=sum(frames_done.values()), wall_seconds=time.perf_counter() - started,
                            backend=spec.backend, busy_seconds={}, interrupted=True, output_path=None,
                            input_size=(info.width, info.height), output_size=out_size, notes=(note,))
        if mismatch:
            # Keyframes that are not clean cut points (or a damaged index): one stream is the safe way.
            work.remove()
            stats = run_video(config, on_start=None, on_frame=on_frame)
            return replace(stats, notes=stats.notes + (f"{mismatch[0]}: upscaled as a single stream instead",))
        parts = [work.segment_path(s.index) for s in plan.segments]
        end_seconds = None
        if config.max_frames is not None and plan.segments[-1].end_pts is not None:
            end_seconds = float(plan.segments[-1].end_pts * plan.time_base)
        try:
            joined = join_segments(
                parts, output, first_pts=[s.first_pts for s in plan.segments], time_base=info.time_base,
                rotation_degrees=info.rotation_degrees, end_seconds=end_seconds,
                # Read again for its title, tags and chapters even without audio (or with --no-audio).
                audio_from=config.input_path, copy_streams=config.encode.audio,
            )
        except KeyboardInterrupt:  # every segment is done: --resume only has the join left to do
            return RunStats(frames=sum(frames_done.values()), wall_seconds=time.perf_counter() - started,
                            backend=spec.backend, busy_seconds={}, interrupted=True, output_path=None,
                            input_size=(info.width, info.height), output_size=out_size,
                            notes=(_keep_or_remove(work),))
        if joined.frames != plan.num_frames:
            raise InputError(f"{config.input_path}: joined {joined.frames} frames, expected {plan.num_frames}")
        work.remove()
    except BaseException:
        _keep_or_remove(work)
        raise
    busy: dict[str, float] = {}
    stages: dict[str, float] = {}
    for result in results.values():
        for totals, seconds in ((busy, result.busy_seconds), (stages, result.stage_seconds)):
            for stage, value in seconds.items():
                totals[stage] = totals.get(stage, 0.0) + value
    return RunStats(
        frames=joined.frames, wall_seconds=time.perf_counter() - started, backend=spec.backend,
        frames_reused=sum(s.num_frames for s in plan.segments if s.index in done),
        busy_seconds=busy, interrupted=False, output_path=output, input_size=(info.width, info.height),
        output_size=out_size, notes=tuple(notes + _decode_notes(results) + joined.notes),
        stage_seconds=stages, workers=len({r.worker for r in results.values()}) or workers,
        segments=tuple(segment_record(results[index]) for index in sorted(results)),
        decoder=next((r.decoder for r in results.values()), "cpu"), model=config.model,
    )


def segment_record(result: SegmentResult) -> dict:
    """One segment in ``RunStats.segments`` (``vsr run --stats-json``): who ran it, how long, where the time went."""
    return {"index": result.index, "frames": result.frames, "wall_seconds": round(result.wall_seconds, 3),
            "worker": result.worker, "decoder": result.decoder, "busy_seconds": dict(result.busy_seconds),
            "stage_seconds": dict(result.stage_seconds)}


def _decode_notes(results: dict) -> list[str]:
    """The workers' decode notes, said once each (every segment of an interlaced input says it)."""
    notes: list[str] = []
    for index in sorted(results):
        notes += [note for note in results[index].notes if note not in notes]
    return notes


def _keep_or_remove(work) -> str:
    """After a stop: keep the work folder when it holds finished segments (for --resume), else
    remove it, so a run that failed at once (a wrong Ray address) leaves nothing behind."""
    if work.done_indices():
        work.release()
        return f"finished segments kept in {work.path}: run again with --resume to continue"
    work.remove()
    return "no segment was finished: nothing kept"


def run_local_jobs(jobs: list[SegmentJob], workers: int, *, on_event) -> dict[int, SegmentResult]:
    """Local processes; with ``--device cuda`` and several GPUs, worker i uses ``cuda:(i mod GPUs)``."""
    from .pool import run_local

    if not jobs:
        return {}
    devices = None
    gpus = hardware.gpu_count() if jobs[0].engine.cuda and jobs[0].engine.device == "cuda" else 0
    if gpus > 1:
        devices = [f"cuda:{i}" for i in range(gpus)]
    return run_local(jobs, workers, on_event=on_event, devices=devices)


__all__ = ["upscale_video", "run_segmented"]
