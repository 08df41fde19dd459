"""What every worker process vsr starts does first: leave Ctrl-C to its parent, and die with it.

The terminal sends SIGINT to the whole process group; the parent (the segment driver, the
trainer) decides what an interrupt means and stops its workers itself, so a worker that raised
KeyboardInterrupt on its own would only race it. A parent killed outright (SIGKILL, the OOM
killer) runs no clean-up at all: without the parent-death signal its workers would go on
encoding or making patch pools for nobody, holding cores and memory.
"""
from __future__ import annotations

import os
import signal
import threading
import time

#: Seconds between two looks at the parent's pid where the parent-death signal is missing.
PARENT_POLL_SECONDS = 1.0


def become_worker(parent_pid: int) -> None:
    """Call first in a worker process: ignore SIGINT, and exit when ``parent_pid`` does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    # Also where prctl worked: the parent may have died before it was set.
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="vsr-parent-watch", daemon=True).start()
