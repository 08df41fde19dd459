"""A "newest wins" hand-off between a capture thread and a slower consumer.

A live view must never fall behind its source: when the consumer is slower, a queue would
grow and every frame would be shown later than the one before. Here the capture thread
writes into a single slot; a frame nobody has taken yet is replaced (and counted as
dropped), so whatever the consumer picks up is at most one source interval old.

With ``drop=False`` the slot blocks the producer instead, so every item arrives (a file
played as fast as possible, or recorded in full).
"""
from __future__ import annotations

import threading
from typing import Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_EMPTY = object()


class NewestWins(Generic[T]):
    """Iterate ``source`` in a background thread; iterating this object yields the newest item.

    Use as a context manager (or call ``close``) so the thread stops when the consumer stops
    early. An exception raised by ``source`` is raised again in the consumer, after the
    items produced before it. ``dropped`` counts the items replaced before anyone took them.
    """

    def __init__(self, source: Iterable[T], *, drop: bool = True, name: str = "vsr-capture") -> None:
        self.drop = drop
        self.produced = 0
        self.consumed = 0
        self.dropped = 0
        self._source = source
        self._item: object = _EMPTY
        self._error: BaseException | None = None
        self._finished = False
        self._stopping = False
        self._cond = threading.Condition()
        # Daemon: a source blocked inside a device read must not keep the process alive.
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        iterator = iter(self._source)
        try:
            for item in iterator:
                with self._cond:
                    if not self.drop:
                        self._cond.wait_for(lambda: self._item is _EMPTY or self._stopping)
                    if self._stopping:
                        return
                    if self._item is not _EMPTY:
                        self.dropped += 1
                    self._item = item
                    self.produced += 1
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, which decides what it means
            with self._cond:
                self._error = exc
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # the generator's own cleanup (closing a device) runs in its thread
                try:
                    close()
                except Exception:
                    pass
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T:
        """The newest item not yet taken; waits for one. Raises StopIteration at the end."""
        with self._cond:
            ready = self._cond.wait_for(lambda: self._item is not _EMPTY or self._finished, timeout)
            if not ready:
                raise TimeoutError(f"no item within {timeout} s")
            if self._item is not _EMPTY:
                item, self._item = self._item, _EMPTY
                self.consumed += 1
                self._cond.notify_all()
                return item  # type: ignore[return-value]
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    @property
    def running(self) -> bool:
        """Whether the capture thread is still alive."""
        return self._thread.is_alive()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the capture thread; it ends after the item it is reading, within ``timeout_s``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def __enter__(self) -> "NewestWins[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
