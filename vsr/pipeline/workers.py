"""Threads that wrap iterators: a bounded prefetch queue with a sentinel, errors re-raised downstream.

Only this module starts threads. Each stage stays a plain iterator, so the same chain runs
single-threaded in a test; wrapping a stage in ``Prefetch`` lets it run ahead of its
consumer by at most ``depth`` items, which bounds memory whatever the video's length.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Generic, Iterable, TypeVar

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Timed(Generic[T]):
    """An iterator that adds up the seconds spent producing its items."""

    def __init__(self, source: Iterable[T]) -> None:
        self._source = iter(source)
        self.seconds = 0.0
        self.count = 0

    def __iter__(self) -> "Timed[T]":
        return self

    def __next__(self) -> T:
        started = time.perf_counter()
        try:
            item = next(self._source)
        finally:
            self.seconds += time.perf_counter() - started
        self.count += 1
        return item


class Prefetch(Generic[T]):
    """Runs ``source`` in a daemon thread, ``depth`` items ahead of the consumer.

    An exception in the source is raised again in the consumer's ``next()``. ``close()``
    stops the producer: it drains the queue so a producer blocked on a full queue can see
    the stop flag and exit, then joins it.
    """

    def __init__(self, source: Iterable[T], *, depth: int = 4, name: str = "prefetch") -> None:
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._done = False
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
            return
        self._put(_END)

    def __iter__(self) -> "Prefetch[T]":
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        return item

    def close(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
            timeout_seconds -= 0.05
            if timeout_seconds <= 0:
                break
        source_close = getattr(self._source, "close", None)
        if source_close is not None and not self._thread.is_alive():
            source_close()

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
