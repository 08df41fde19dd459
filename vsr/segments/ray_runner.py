"""Segments as Ray tasks: the same segment function as the local pool, on a local Ray instance or a cluster.

Where the data lives: every task reads the input at ``job.input_path``, so on a cluster the
input must be on a filesystem every node sees at the same path (NFS, a shared volume). The
driver's work folder need not be: a task encodes its segment into a temporary folder on its
own node and returns the file's bytes (a segment is a few seconds of video, a few MB); the
driver writes them into the work folder under a temporary name and renames them into place,
so ``--resume`` and the join work exactly as with local workers.

Progress crosses the cluster as small messages to one actor (a task says when it starts, on
which node, and then its frame count at most 4 times a second); the driver polls the actor
between ``ray.wait`` calls of 0.25 s and turns what it finds into the same events as the local
pool. A task never calls back into the driver. A task killed by a cancel leaves its folder
behind; the next task on that node removes it.

Ray is optional (``pip install -e ".[ray]"``): it is imported only here, only when ``--ray``
is given.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..errors import BackendUnavailable, InputError, VsrError
from .pool import PROGRESS_INTERVAL_SECONDS, WorkerFailed
from ..hardware import available_cpus
from .worker import SegmentJob, SegmentResult
from .workdir import write_into

#: Seconds the driver waits for a finished task before it polls progress again.
POLL_SECONDS = 0.25
#: A task's folder on its node: ``vsr-ray-<pid of the Ray worker>-XXXXXXXX`` in the temporary folder.
TASK_FOLDER_PREFIX = "vsr-ray-"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BackendUnavailable('Ray is not installed: pip install -e ".[ray]" (or pip install ray)') from None
    return ray


def _connect(ray, address: str) -> bool:
    """Start a local instance ("local") or join a cluster; True when this call started Ray."""
    if ray.is_initialized():
        return False
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (Ray Client; plain `pip install ray` lacks it)
        except ImportError:
            raise BackendUnavailable(f'Ray Client ({address}) needs grpcio: pip install -e ".[ray]" '
                                     '(or pip install "ray[client]")') from None
    if address not in ("local", "auto"):
        _check_reachable(address)
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True)
    try:
        if address == "local":
            # address="local": always a new instance, never one a stale /tmp/ray file points to.
            ray.init(address="local", num_cpus=available_cpus(), **quiet)
        else:
            quiet.pop("include_dashboard")
            ray.init(address=address, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError ... and a bare Exception when a new node times out
        if ray.is_initialized():
            ray.shutdown()
        lines = str(exc).strip().splitlines()
        detail = lines[0] if lines else type(exc).__name__
        if address == "local":
            raise WorkerFailed(f"cannot start a local Ray instance: {detail}") from None
        raise WorkerFailed(f"cannot reach Ray at {address!r}: {detail}") from None
    return True


def _check_reachable(address: str, timeout_seconds: float = 5.0) -> None:
    """Fail fast on a wrong address: ray.init retries an unreachable one for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_seconds):
            return
    except ValueError:
        raise WorkerFailed(f"cannot reach Ray at {address!r}: expected HOST:PORT, ray://HOST:PORT, auto or local") from None
    except OSError as exc:
        raise WorkerFailed(f"cannot reach Ray at {address!r}: {exc.strerror or exc}") from None


def _run_task(job: SegmentJob, progress) -> tuple[SegmentResult, bytes]:
    """In a Ray worker: encode the segment on this node; its result (naming the node) and bytes."""
    import ray

    from .worker import encode_segment

    node = ray.get_runtime_context().get_node_id()
    progress.started.remote(job.segment.index, node)
    if not os.path.isfile(job.input_path):
        raise InputError(f"{job.input_path} is not on Ray node {ray.util.get_node_ip_address()}: the input must be "
                         "on a filesystem every node sees, at the same path")
    folder = _task_folder()
    try:
        local = dataclasses.replace(job, output_path=os.path.join(folder, Path(job.output_path).name))
        last = [0.0]

        def on_progress(frames_done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_SECONDS:
                last[0] = now
                progress.report.remote(job.segment.index, frames_done)

        result = encode_segment(local, on_progress)
        data = Path(local.output_path).read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return dataclasses.replace(result, worker=node), data


def _task_folder() -> str:
    """A new folder for one task's segment file, in the node's temporary folder, named after
    this worker process; folders of processes that no longer exist (tasks killed by a cancel
    or a crash, whose own cleanup never ran) are removed first."""
    root = tempfile.gettempdir()
    _sweep_task_folders(root)
    return tempfile.mkdtemp(prefix=f"{TASK_FOLDER_PREFIX}{os.getpid()}-", dir=root)


def _sweep_task_folders(root: str) -> None:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(TASK_FOLDER_PREFIX):].split("-", 1)[0]
        if entry.name.startswith(TASK_FOLDER_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


class _ProgressBox:
    """A Ray actor holding which segments started (on which node) and the newest frame count
    of each, until the driver takes them."""

    def __init__(self) -> None:
        self._started: dict[int, str] = {}
        self._latest: dict[int, int] = {}

    def started(self, index: int, node: str) -> None:
        self._started[index] = node

    def report(self, index: int, frames_done: int) -> None:
        self._latest[index] = frames_done

    def take(self) -> tuple[dict[int, str], dict[int, int]]:
        taken = self._started, self._latest
        self._started, self._latest = {}, {}
        return taken


def _take_progress(ray, progress) -> tuple[dict[int, str], dict[int, int]]:
    """What the actor holds; nothing if it is unreachable (progress is news, not results)."""
    try:
        return ray.get(progress.take.remote(), timeout=10)
    except Exception:  # the actor's node went away, a slow cluster: the tasks' results still count
        return {}, {}


def run_ray(
    jobs: list[SegmentJob],
    *,
    address: str,
    on_event: Callable[[tuple], None],
) -> dict[int, SegmentResult]:
    """Run ``jobs`` as Ray tasks (contract of ``pool.run_local``); ``on_event`` runs in the driver.

    Each task asks for the job's engine threads as CPUs, and one GPU with ``--device cuda``
    (Ray gives the task its own ``CUDA_VISIBLE_DEVICES``, so it runs on "cuda"). Results name
    the node that ran them (``SegmentResult.worker``).
    """
    ray = _import_ray()
    started_here = _connect(ray, address)
    pending: dict = {}
    try:
        task = ray.remote(_run_task)
        progress = ray.remote(_ProgressBox).options(num_cpus=0).remote()
        by_index = {job.segment.index: job for job in jobs}
        for job in jobs:
            engine = job.engine
            if engine.cuda:
                engine = dataclasses.replace(engine, device="cuda")
            # SPREAD: segments go to every node, not first to fill the driver's (Ray's default).
            options = {"num_cpus": max(1, engine.num_threads), "num_gpus": 1 if engine.cuda else 0, "max_retries": 0,
                       "scheduling_strategy": "SPREAD"}
            ref = task.options(**options).remote(dataclasses.replace(job, engine=engine), progress)
            pending[ref] = job.segment.index
        results: dict[int, SegmentResult] = {}
        started: set[int] = set()

        def start(index: int, worker: str) -> None:
            if index not in started:
                started.add(index)
                on_event(("start", index, worker))

        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            starts, latest = _take_progress(ray, progress)
            for index, node in starts.items():
                start(index, node)
            for index, frames_done in latest.items():
                if index not in results and index in started:
                    on_event(("progress", index, frames_done))
            for ref in ready:
                index = pending.pop(ref)
                what = by_index[index].segment.describe()
                try:
                    result, data = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, VsrError):
                        raise WorkerFailed(f"{what}: {cause}") from None
                    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).splitlines()[0]
                    raise WorkerFailed(f"{what}: Ray task failed: {detail}") from None
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.RayError) as exc:
                    raise WorkerFailed(f"{what}: its Ray worker died ({type(exc).__name__})") from None
                write_into(Path(by_index[index].output_path), data)
                results[index] = dataclasses.replace(result, path=by_index[index].output_path)
                start(index, result.worker)
                on_event(("progress", index, result.frames))
                on_event(("done", index, results[index]))
        return results
    finally:
        for ref in pending:  # Ctrl-C, SIGTERM or a failed segment: stop the rest now
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
