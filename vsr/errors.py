"""Named errors for failures a user can cause; the CLI prints them as one line."""
from __future__ import annotations


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
