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
        state = folded.state_dict()
        stem = path.name[:path.name.index("_fold")]
        templates = sorted((p for p in cache.glob(f"{stem}_fold*_g{GRAPH_VERSION}.onnx")
                            if p != path and Path(str(p) + OFFSETS_SUFFIX).is_file()), key=_used_at, reverse=True)
        for template in templates[:1]:
            with contextlib.suppress(OSError, ValueError):  # pruned meanwhile, or another graph: export it
                refill_onnx(template, state, path)
                return
        export_onnx(folded, path)
        offsets = weight_offsets(path, state)
        if offsets is not None:
            _write_offsets(path, offsets)

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


def _used_at(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # pruned by another process meanwhile
        return 0.0


#: Beside a fold exported by torch: where each weight's bytes lie in the file (``refill_onnx``).
OFFSETS_SUFFIX = ".offsets.json"


def weight_offsets(path: Path, state_dict: dict) -> dict[str, list[int]] | None:
    """Where in the ONNX file ``path`` each of ``state_dict``'s tensors is stored (its float32 bytes,
    found once each), or None where one is not found exactly once."""
    import numpy as np

    data = path.read_bytes()
    offsets = {}
    for name, tensor in state_dict.items():
        raw = np.ascontiguousarray(tensor.detach().to("cpu").float().numpy(), "<f4").tobytes()
        at = data.find(raw)
        if at < 0 or data.find(raw, at + 1) >= 0:
            return None
        offsets[name] = [at, len(raw)]
    return offsets


def refill_onnx(template: Path, state_dict: dict, path: Path) -> Path:
    """Write ``template`` (a fold exported by torch, with its ``OFFSETS_SUFFIX`` file) with its weights
    replaced by ``state_dict``'s (the same network folded with another context) at ``path``, byte for
    byte what the export writes. Every fold of one network is the same graph with other weights: this
    takes milliseconds where torch's export took 1.4 s on two Zen 4 cores and held Python's lock for a
    second of it (a stall in `vsr live`'s loop); the onnx package would take 1.3 s to import.
    Raises ValueError where the parameters do not fit the template's."""
    import json

    import numpy as np

    from .images import atomic_output

    offsets = json.loads(Path(str(template) + OFFSETS_SUFFIX).read_text())
    if set(offsets) != set(state_dict):
        raise ValueError(f"{template}: its weights are not the network's parameters")
    data = bytearray(template.read_bytes())
    for name, (at, size) in offsets.items():
        raw = np.ascontiguousarray(state_dict[name].detach().to("cpu").float().numpy(), "<f4").tobytes()
        if len(raw) != size:
            raise ValueError(f"{template}: {name} holds {size} bytes, the network's {len(raw)}")
        data[at:at + size] = raw
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(bytes(data))
    _write_offsets(path, offsets)
    return path


def _write_offsets(path: Path, offsets: dict) -> None:
    import json

    from .images import atomic_output

    with atomic_output(Path(str(path) + OFFSETS_SUFFIX)) as tmp:
        Path(tmp).write_text(json.dumps(offsets))


def prune_folds(keep: int | None = None) -> list[str]:
    """Remove from vsr's cache every file of all but the ``keep`` (``FOLDS_KEPT``) most recently
    used folds (by their ONNX's time); returns the stems removed."""
    keep = FOLDS_KEPT if keep is None else keep
    onnx = cache_dir("onnx")
    folds = sorted(onnx.glob("*_fold*.onnx"), key=_used_at, reverse=True)
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
