"""Whether the libraries vsr runs may talk: NNCF's INFO lines and progress bar while it quantises,
SVT-AV1's banner and warnings for every AV1 encoder. They are noise to a user of vsr unless asked
for (``--verbose``), and on standard output they would even corrupt a piped stream.

The choice travels in the environment (``VSR_VERBOSE``), so segment workers started later
follow it; SVT-AV1 reads its own ``SVT_LOG`` when its first encoder opens in a process.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys

ENV = "VSR_VERBOSE"
#: SVT-AV1's log level when quiet: errors only (0 fatal, 1 error, 2 warn, 3 info).
SVT_QUIET_LEVEL = "1"


#: What the library has to tell a user (``precision auto``'s first measurement ...): logged at INFO
#: on this logger, never printed by the library itself; the CLI shows it as ``note:`` lines, a
#: script that wants it configures logging.
NOTES = logging.getLogger("vsr")


class _NoteLines(logging.StreamHandler):
    """``note: ...`` lines on standard error; held back while ``notes_after`` says so."""

    vsr_notes = True

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.held: list[logging.LogRecord] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None:
            self.held.append(record)
        else:
            super().emit(record)

    def take_held(self) -> list[logging.LogRecord]:
        """Stop holding; the records held so far (under the handler's lock: notes may come from threads)."""
        self.acquire()
        try:
            held, self.held = self.held, None
        finally:
            self.release()
        return held or []

    def show_held(self) -> None:  # not "release": logging.Handler's release() frees its lock
        for record in self.take_held():
            self.handle(record)


def show_notes() -> None:
    """The ``vsr`` command's notes on the current standard error as ``note: ...`` lines (once:
    a second call replaces the handler, so a test runner's swapped stream is the one used)."""
    for handler in [h for h in NOTES.handlers if getattr(h, "vsr_notes", False)]:
        NOTES.removeHandler(handler)
    handler = _NoteLines(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    NOTES.addHandler(handler)
    NOTES.setLevel(logging.INFO)


@contextlib.contextmanager
def notes_after(into: list[str] | None = None):
    """Hold the notes logged inside the block until the ``release`` it yields is called (or the
    block ends). Why: `vsr run`'s first line says which model runs and why; the notes of setting it
    up (a first ``precision auto`` measurement ...) come while it is chosen, and belong after it.

    ``into``: keep every note of the block as text in that list instead, printing none (`vsr run
    --progress json`, every line of which is a JSON object: its last one carries them)."""
    handlers = [h for h in NOTES.handlers if isinstance(h, _NoteLines)]
    for handler in handlers:
        handler.held = []

    def release() -> None:
        if into is None:
            for handler in handlers:
                handler.show_held()

    try:
        yield release
    finally:
        if into is None:
            release()
        else:
            for index, handler in enumerate(handlers):
                held = handler.take_held()
                if index == 0:  # each handler held the same records
                    into.extend(record.getMessage() for record in held)


def verbose() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """For this process and the workers it starts."""
    os.environ[ENV] = "1" if on else "0"
    quiet_svt()


def quiet_svt() -> None:
    """SVT-AV1 to errors only, unless verbose or the user set ``SVT_LOG`` themselves; call before
    the first AV1 encoder of the process opens."""
    if verbose():
        if os.environ.get("SVT_LOG") == SVT_QUIET_LEVEL:
            del os.environ["SVT_LOG"]
        return
    os.environ.setdefault("SVT_LOG", SVT_QUIET_LEVEL)


@contextlib.contextmanager
def quiet_nncf():
    """NNCF at warnings only, and its progress bar (rich, on standard output) unseen, unless verbose."""
    if verbose():
        yield
        return
    from nncf.common.logging.logger import nncf_logger, set_log_level

    level = nncf_logger.level
    set_log_level(30)  # logging.WARNING
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        set_log_level(level)
