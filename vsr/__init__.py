"""vsr: real-time super-resolution of video and images.

The Python API (docs/api.md)::

    import vsr

    with vsr.Upscaler(2) as upscaler:
        big = upscaler.upscale_image(rgb)            # (H, W, 3) uint8 -> (2H, 2W, 3)
    stats = vsr.upscale_video("in.mp4", "out.mp4", scale=2)

Importing ``vsr`` stays light (``vsr --help`` is instant): the API and its libraries (NumPy,
PyAV, the backends) load on first use of a name.
"""
from .errors import BackendUnavailable, InputError, OutputError, UnsupportedScale, VsrError

__version__ = "0.1.0"

#: Public names loaded on first use, and the module that holds each.
_LAZY = {"Upscaler": ".api", "upscale_video": ".api", "RunStats": ".pipeline.pipeline"}

__all__ = ["Upscaler", "upscale_video", "RunStats", "VsrError", "InputError", "OutputError", "UnsupportedScale",
           "BackendUnavailable", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vsr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
