"""Local worker processes for segments: a task queue in, small event messages out.

Our own small pool rather than ``concurrent.futures``: the driver must know which segment a
worker was on when it died (to say so in one line), stop every worker at once on Ctrl-C or
SIGTERM, and never leave one behind. Workers ignore SIGINT (the terminal sends it to the
whole process group; the driver decides), and die with the driver even if it is SIGKILLed
(Linux parent-death signal, plus a check of the parent's pid for other systems).

Events are tuples: ("start", index, pid), ("progress", index, frames_done),
("done", index, SegmentResult), ("error", index, message, is_user_error).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import time
from typing import Callable, Iterable

from ..children import become_worker
from ..errors import VsrError
from .worker import SegmentJob, SegmentResult

#: Seconds between two progress messages from one worker: often enough for a smooth bar.
PROGRESS_INTERVAL_SECONDS = 0.25


class WorkerFailed(VsrError):
    """A segment failed in a worker, or a worker died."""


def _worker_main(tasks, events, parent_pid: int, device: str | None, holding, slot: int) -> None:
    become_worker(parent_pid)
    from .worker import close_upscalers, encode_segment

    try:
        while True:
            job = tasks.get()
            if job is None:
                return
            if device is not None:
                job = dataclasses.replace(job, engine=dataclasses.replace(job.engine, device=device))
            index = job.segment.index
            # Shared memory, written at once: a queued "start" still sits in this process's
            # feeder thread when a SIGKILL comes right after, and the driver never hears it.
            holding[slot] = index
            events.put(("start", index, os.getpid()))
            last = [0.0]

            def progress(frames_done: int, index=index, last=last) -> None:
                now = time.monotonic()
                if now - last[0] >= PROGRESS_INTERVAL_SECONDS:
                    last[0] = now
                    events.put(("progress", index, frames_done))

            try:
                result = encode_segment(job, progress)
            except VsrError as exc:
                events.put(("error", index, str(exc), True))
                return
            except Exception as exc:  # a bug: reported with its type, the driver stops the run
                import traceback

                detail = traceback.format_exc(limit=-3).strip().splitlines()
                events.put(("error", index, f"{type(exc).__name__}: {exc} [{' | '.join(detail[-3:])}]", False))
                return
            events.put(("progress", index, result.frames))
            events.put(("done", index, result))
    finally:
        close_upscalers()


def run_local(
    jobs: Iterable[SegmentJob],
    num_workers: int,
    *,
    on_event: Callable[[tuple], None],
    devices: list[str] | None = None,
) -> dict[int, SegmentResult]:
    """Run ``jobs`` on ``num_workers`` processes; ``on_event`` sees every event in the driver.
    With ``devices``, worker i runs its engine on ``devices[i % len(devices)]`` (one GPU each).

    Returns the results by segment index. A failed segment or a dead worker raises
    ``WorkerFailed`` naming the segment; any exception here (KeyboardInterrupt included)
    terminates every worker before it propagates.
    """
    jobs = list(jobs)
    by_index = {job.segment.index: job for job in jobs}
    context = multiprocessing.get_context("spawn")  # fork would copy the driver's threads and locks
    tasks, events = context.Queue(), context.Queue()
    for job in jobs:
        tasks.put(job)
    num_workers = max(1, min(num_workers, len(jobs)))
    for _ in range(num_workers):
        tasks.put(None)
    holding = context.Array("i", [-1] * num_workers, lock=False)  # the segment each worker holds
    workers = [context.Process(target=_worker_main,
                               args=(tasks, events, os.getpid(), devices[i % len(devices)] if devices else None,
                                     holding, i),
                               name=f"vsr-worker-{i}", daemon=True) for i in range(num_workers)]
    results: dict[int, SegmentResult] = {}
    try:
        for worker in workers:
            worker.start()
        while len(results) < len(jobs):
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                _check_alive(workers, holding, by_index, results)
                continue
            kind, index = event[0], event[1]
            if kind == "done":
                results[index] = event[2]
            elif kind == "error":
                what = by_index[index].segment.describe()
                raise WorkerFailed(f"{what}: {event[2]}" if event[3] else f"{what}: worker failed: {event[2]}")
            on_event(event)
    finally:
        _stop(workers)
        for q in (tasks, events):
            q.cancel_join_thread()  # never block the driver's exit on a queue feeder
            q.close()
    return results


def _check_alive(workers, holding, by_index: dict, results: dict) -> None:
    for slot, worker in enumerate(workers):
        if worker.exitcode not in (None, 0):
            index = holding[slot] if holding[slot] >= 0 else None
            code = worker.exitcode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            if index is not None and index not in results:
                raise WorkerFailed(f"{by_index[index].segment.describe()}: its worker process {how} "
                                   "(out of memory?)")
            raise WorkerFailed(f"a worker process {how}")
    if all(worker.exitcode is not None for worker in workers):
        missing = sorted(set(by_index) - set(results))
        if missing:
            raise WorkerFailed(f"the workers stopped with segments {missing} not done")


def _stop(workers, grace_seconds: float = 3.0) -> None:
    """Terminate every worker still running (SIGTERM, then SIGKILL) and reap them all."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + grace_seconds
    for worker in workers:
        if worker.pid is None:
            continue
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)
