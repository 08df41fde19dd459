"""Named errors for failures a user can cause; the CLI prints them as one line."""
from __future__ import annotations

import os


class VsrError(Exception):
    """Base class: anything the CLI reports as ``error: <message>`` with a non-zero exit."""


class InputError(VsrError):
    """An input path is missing, unreadable, or not the kind of file expected."""


class OutputError(VsrError):
    """An output path cannot be written."""


class UnsupportedScale(VsrError):
    """No model exists for the requested upscaling factor."""


class BackendUnavailable(VsrError):
    """An inference backend cannot run here (library missing, no GPU ...)."""


class OptionConflict(VsrError):
    """Options that cannot go together, or that the input or output cannot honour (the CLI
    reports it as a usage error)."""


def unwritable_reason(folder: os.PathLike | str) -> str:
    """Why ``folder`` cannot be written, in the words a user acts on: a read-only filesystem
    (a mount, a write-protected card) is not a question of permissions."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only filesystem; write the output elsewhere"
    except OSError:
        pass
    return "permission denied"
