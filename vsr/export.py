"""ONNX export (``vsr export``): dynamic batch, height and width."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from pathlib import Path

from .cache import cache_dir, cached_file, file_sha256
from .errors import BackendUnavailable, OutputError

OPSET = 17


def export_onnx(model, path: os.PathLike | str, *, opset: int = OPSET) -> Path:
    """Write ``model`` (any network of the ladder) as ONNX with input ``luma`` (N, 1, H, W) and output ``upscaled``."""
    import torch

    from .images import atomic_output

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    if hasattr(model, "collapse"):
        model = model.collapse()  # a re-parameterised network exports its plain inference form
    example = torch.rand(1, 1, 32, 48)
    with atomic_output(path) as tmp:
        # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency.
        with warnings.catch_warnings():
            # The reflect padding's Slice nodes cannot be constant-folded; harmless, and noisy.
            warnings.filterwarnings("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model.eval(),
                (example,),
                str(tmp),
                input_names=["luma"],
                output_names=["upscaled"],
                dynamic_axes={"luma": {0: "batch", 2: "height", 3: "width"},
                              "upscaled": {0: "batch", 2: "out_height", 3: "out_width"}},
                opset_version=opset,
                dynamo=False,
            )
    return path


#: Part of the cached export's name, raised when the exported graph changes for the same weights
#: (2: the residual networks' bicubic skip became a convolution, vsr.models.bicubic; 3: codec
#: statistics read per 64-pixel tile, vsr.models.reparam.CODEC_TILE_PX).
GRAPH_VERSION = 3


def cached_onnx_export(weights: os.PathLike | str, scale: int) -> Path:
    """Export a .pt checkpoint once; later calls reuse the file, keyed by the checkpoint's hash."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise BackendUnavailable("running .pt weights with onnxruntime needs torch to export them") from None
    from .checkpoint import read_weights
    from .models.weights import checkpoint_model, load_model

    name = checkpoint_model(read_weights(weights)).name
    digest = file_sha256(weights, 16)
    cache = cache_dir("onnx")
    cache.mkdir(parents=True, exist_ok=True)

    return cached_file(cache / f"{name}_x{scale}_{digest}_g{GRAPH_VERSION}.onnx",
                       lambda target: export_onnx(load_model(scale, weights), target))


#: Beside a folded export: the checksum of the network it was folded from, whose int8 records
#: (``backends.int8``: the convolutions kept float, the Set5 loss) hold for every fold of it.
SOURCE_SUFFIX = ".source"


def cached_folded_export(weights: os.PathLike | str, scale: int, context, source_digest: str) -> Path:
    """The ONNX of ``weights`` (a .pt of a network with a context) with ``context`` (a
    ``models.clip_context.ClipContext``) folded in (``RepSRPlain.folded``), exported once per
    context; ``source_digest`` (the unfolded network's ONNX checksum) is written beside it."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("folding a clip's context into a network needs torch") from None
    from .checkpoint import read_weights
    from .images import atomic_output
    from .models.weights import checkpoint_model, load_model

    name = checkpoint_model(read_weights(weights)).name
    cache = cache_dir("onnx")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{name}_x{scale}_{file_sha256(weights, 16)}_fold{context.digest}_g{GRAPH_VERSION}.onnx"

    def build(path: Path) -> None:
        network = load_model(scale, weights)
        if getattr(network, "context", None) is None:
            raise ValueError(f"{weights}: the network has no context to fold")
        folded = network.folded(torch.tensor(context.pooled, dtype=torch.float32))
        with atomic_output(Path(str(path) + SOURCE_SUFFIX)) as tmp:
            Path(tmp).write_text(source_digest)
        export_onnx(folded, path)

    built = not target.exists()
    cached_file(target, build)
    if built:
        prune_folds()
    else:
        with contextlib.suppress(OSError):
            os.utime(target)  # recently used: pruning keeps it
    return target


#: How many clips' folds the cache keeps (each about 0.6 MB: its ONNX and its int8 model; a
#: TensorRT plan on a GPU); the least recently used go when a new one is made. Every vsr process
#: running at once uses one of the newest, so none loses the fold it runs.
FOLDS_KEPT = 32
#: A cached file or folder of one fold: its name starts with the fold's ONNX stem.
_FOLD_NAME = re.compile(r"^\.?(.+_fold[0-9a-f]{12}_g\d+)")


def prune_folds(keep: int | None = None) -> list[str]:
    """Remove from vsr's cache every file of all but the ``keep`` (``FOLDS_KEPT``) most recently
    used folds (by their ONNX's time); returns the stems removed."""
    keep = FOLDS_KEPT if keep is None else keep
    onnx = cache_dir("onnx")
    def used_at(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # pruned by another process meanwhile
            return 0.0

    folds = sorted(onnx.glob("*_fold*.onnx"), key=used_at, reverse=True)
    stale = {path.name[:-len(".onnx")] for path in folds[keep:]}
    if not stale:
        return []
    for folder in (onnx, cache_dir("openvino_int8"), cache_dir("engines")):
        for entry in folder.iterdir() if folder.is_dir() else ():
            match = _FOLD_NAME.match(entry.name)
            if match is None or match.group(1) not in stale:
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return sorted(stale)
