"""int8 models for OpenVINO, made by NNCF post-training quantisation of any ONNX model of the ladder.

Why int8: CPUs without AMX (most laptops, AMD EPYC) run bf16 at a fraction of AMX's speed, but
they have VNNI int8 dot products. On a 2-core AMD EPYC (AVX-512 BF16/VNNI, no AMX), ESPCN x3 on a
640x360 luma plane took 24 ms in int8 against 38 ms in bf16 and 68 ms in fp32
(benchmarks/results/cpu_levers.md). On Set5 int8 costs every shipped network at most 0.05 dB
(benchmarks/results/int8_quality.md): the residual rungs 0.003-0.045 dB, ESPCN 0.032-0.041 dB (its
int8 network, below), espcn7 0-0.044 dB (accuracy control, below).

Calibration: NNCF only needs activation ranges, so a few dozen low-resolution luma patches do.
The package ships ``calibration_luma.npz`` (patches of the training images, never Set5, made by
``benchmarks/int8_quality.py --write-calibration``) so ``--precision int8`` works in a fresh clone
without any data; ``calibration=`` takes other patches (your own footage's luma).

What is quantised: the convolutions (weights and inputs), nothing else. Additions, the residual
scale and the bicubic skip (a fixed convolution named ``FLOAT_SKIP_NAME``) stay float: NNCF's
default also rounds both inputs of the final ``detail + bicubic`` sum to 8 bits, i.e. the picture
itself to about two grey levels, which cost ``balanced`` x3 0.10 dB on Set5 where convolutions
alone cost 0.02 dB, for no speed (element-wise work is memory-bound).

int8 networks: where a model ships ``NAME_xS.int8.onnx`` beside ``NAME_xS.onnx``, that network is
the one quantised (``int8_source``). For ESPCN it is ``ESPCNSkip`` (``tools/espcn_int8.py``):
the same layers around a float bicubic skip, so that int8 rounds only the detail, fine-tuned with
the int8 rounding simulated, its last layer split into int8-exact halves. The residual networks
need none: their skip is already float.

Accuracy control: where every convolution int8 still loses more than the bound, some stay float.
``tools/int8_accuracy_control.py`` found which, greedily on held-out training images (never
Set5), and recorded them by the network's checksum in ``int8_float_convs.json``;
``shipped_recipe`` reads them. ESPCN x2 keeps one half of its last layer float (0.066 -> 0.032 dB,
but slower than bf16 there, so ``auto`` picks bf16). espcn7's four middle convolutions are
near-identities whose small corrections int8 weights round away: it keeps all of its convolutions
float at x2 and all but the first at x3/x4, i.e. its int8 is no faster than fp32 and ``auto``
never picks it (an int8-aware fine-tune had reached only 0.20-0.50 dB).

The quantised model is cached as OpenVINO IR under ``$VSR_CACHE_DIR/openvino_int8/``, named by
the source ONNX's checksum, the calibration set's checksum, the quantisation recipe and the
NNCF/OpenVINO versions: a new model, new patches or a new NNCF never reuses a stale file.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..cache import atomic_dir, build_lock, cache_dir, file_sha256
from .base import BackendUnavailable

__all__ = ["Int8Recipe", "RECIPE", "cached_int8_model", "calibration_patches", "quantize_int8", "shipped_recipe"]

#: Shipped calibration set: uint8 LR luma patches per scale ("x2", "x3", "x4").
CALIBRATION_RESOURCE = "calibration_luma.npz"


@dataclass(frozen=True)
class Int8Recipe:
    """How a float model becomes int8.

    ``float_convs``: the convolutions left in float, by index among the network's learned
    convolutions (0 the first, -1 the last; the bicubic skip is not counted). For the shipped
    networks, the ones accuracy control found (``shipped_recipe``); the benchmarks also try the
    first and last, which see one input channel and a few output channels, so int8 saves little
    there (in ESPCN x3 the middle conv holds 81 % of the multiply-adds) while each quantised
    activation adds noise: 8 bits over tanh's [-1, 1] is about 0.3 grey levels per layer.
    ``float_precision``: what the layers left in float compute in, fp32 or bf16 (bf16 only where
    the CPU has it natively; elsewhere fp32 is used).

    Ranges are the global min/max of the calibration activations, not NNCF's default mean of
    per-sample extremes: that clipped the brightest and darkest outputs (4 dB lost on Set5)."""

    float_convs: tuple[int, ...] = ()
    float_precision: str = "fp32"
    #: Also quantise additions, multiplications and the bicubic skip (NNCF's default placement).
    quantize_elementwise: bool = False
    #: Give the first convolution's input the whole uint8 range, not the calibration patches'
    #: (``span_input_range``): else every pixel darker or brighter than the patches is clipped.
    full_input_range: bool = True

    @property
    def tag(self) -> str:
        kept = "".join(f"c{index}" for index in self.float_convs)
        placement = "all" if self.quantize_elementwise else "convs"
        return (f"int8-{placement}{'-u8in' if self.full_input_range else ''}{'-float' + kept if kept else ''}"
                f"-{self.float_precision}")

    @property
    def ignored_types(self) -> list[str]:
        """OpenVINO op types NNCF must not put a quantiser before. Pad (the mirrored border) and
        DepthToSpace (pixel shuffle) only move values: a quantiser there would clip and round
        for no speed."""
        moved = ["Pad", "DepthToSpace"]
        # A global context (reparam.GlobalContext) stays float: its codec statistics are sums of
        # luma steps under 4/255, which an 8-bit quantiser before the differences and sums erased
        # (0.08 dB on Set5), and its perceptron runs once a frame, for no speed in int8.
        context = ["Subtract", "ReduceSum", "ReduceMean", "ReduceMax", "Concat", "MatMul"]
        return [*moved, *context] if self.quantize_elementwise else [*moved, *context, "Add", "Multiply", "Interpolate"]


#: The recipe `--precision int8` uses: every convolution int8, the rest float, less the convolutions
#: accuracy control keeps float for a network (``shipped_recipe``). ``auto`` chooses int8 only for
#: a network whose recorded Set5 loss is within ``MAX_LOSS_DB`` (results/int8_quality.md):
#: post-training on the plain networks, ESPCN lost 0.17 dB at x3 and espcn7 8.5 dB.
RECIPE = Int8Recipe()


#: Set5 loss of int8 against fp32 for each shipped ONNX (by checksum), written by
#: benchmarks/int8_quality.py: ``auto`` considers int8 only for a network recorded within ``MAX_LOSS_DB``.
ACCURACY_RESOURCE = "int8_accuracy.json"
MAX_LOSS_DB = 0.05


def onnx_digest(onnx_path: os.PathLike | str) -> str:
    """The first 16 hex characters of the file's SHA-256: how the records and caches name a network."""
    return file_sha256(onnx_path, 16)


INT8_SUFFIX = ".int8.onnx"


def int8_source(onnx_path: os.PathLike | str) -> Path:
    """The network int8 quantises for ``onnx_path``: its int8 network ``STEM.int8.onnx``
    where one lies beside it (the shipped models; a user's own too), else the file itself."""
    onnx_path = Path(onnx_path)
    aware = onnx_path.with_name(onnx_path.stem + INT8_SUFFIX)
    return aware if not onnx_path.name.endswith(INT8_SUFFIX) and aware.is_file() else onnx_path


def _weights_json(name: str) -> dict:
    path = Path(str(resources.files("vsr.models") / "weights" / name))
    return json.loads(path.read_text()) if path.is_file() else {}


def accuracy_records() -> dict:
    return _weights_json(ACCURACY_RESOURCE)


#: The convolutions each shipped network keeps float under ``--precision int8``, by the checksum
#: of the network quantised: found by accuracy control (tools/int8_accuracy_control.py) for
#: the networks whose every-convolution int8 lost more than the bound.
FLOAT_CONVS_RESOURCE = "int8_float_convs.json"


def shipped_recipe(onnx_path: os.PathLike | str) -> Int8Recipe:
    """The recipe ``--precision int8`` quantises ``onnx_path``'s int8 network with: ``RECIPE``,
    keeping float the convolutions accuracy control recorded for that network (none for a
    network of your own)."""
    return _recipe_for(record_digest(onnx_path))


#: A record's ``measured`` for a network with a global context: its loss was measured with each
#: picture's context folded into it (``benchmarks/int8_quality.py``), and holds for folds only.
FOLDED = "context folded"


def record_digest(onnx_path: os.PathLike | str) -> str:
    """The checksum the records name ``onnx_path``'s network by: its int8 network's, or, for a
    clip's context folded into a network, the unfolded network's (``fold_source``): its recipe and
    Set5 loss were measured folding each image's context."""
    return fold_source(onnx_path) or onnx_digest(int8_source(onnx_path))


def fold_source(onnx_path: os.PathLike | str) -> str | None:
    """The checksum of the network ``onnx_path`` was folded from (``export.cached_folded_export``
    writes it beside the fold), or None for a network that is not a fold."""
    from ..export import SOURCE_SUFFIX

    source = Path(str(onnx_path) + SOURCE_SUFFIX)
    return source.read_text().strip() if source.is_file() else None


def _recipe_for(source_digest: str) -> Int8Recipe:
    record = _weights_json(FLOAT_CONVS_RESOURCE).get(source_digest)
    return RECIPE if record is None else dataclasses.replace(RECIPE, float_convs=tuple(record["float_convs"]))


#: The record's field for each kind of int8 arithmetic (``vsr.hardware.int8_arithmetic``): a CPU
#: with VNNI or AMX sums u8 x s8 products exactly in int32; one without sums pairs of them in
#: saturating int16 first (vpmaddubsw), which loses more: ESPCN x3 0.041 dB on an AMD EPYC Zen 4,
#: 0.072 dB on a Zen 1 (AVX2 only), so a loss recorded on one kind does not hold on the other.
LOSS_FIELD = {"vnni": "loss_db", "no-vnni": "loss_db_no_vnni"}


def recorded_loss_db(onnx_path: os.PathLike | str, recipe: Int8Recipe | None = None,
                     arithmetic: str | None = None) -> float | None:
    """The Set5 dB int8 (``recipe``, by default ``shipped_recipe``) lost against fp32 for this
    network (its fp32 ``onnx_path`` against the int8 of ``int8_source``) with this CPU's int8
    ``arithmetic`` (by default this machine's), or None where never measured on that kind of CPU."""
    from ..hardware import int8_arithmetic

    digest = record_digest(onnx_path)
    recipe = _recipe_for(digest) if recipe is None else recipe
    record = accuracy_records().get(digest)
    if record is None or record.get("recipe") != recipe.tag:
        return None
    if record.get("measured") == FOLDED and fold_source(onnx_path) is None:
        # Measured with each picture's context folded in, as vsr run runs it; the same network
        # reading its context per frame (an image, a camera's first seconds) lost 0.055 dB on Set5
        # against 0.012 folded (x3, sixteenth session): its int8 was never measured within the bound.
        return None
    return record.get(LOSS_FIELD[arithmetic or int8_arithmetic()])


NO_NNCF = "int8 needs NNCF: pip install 'vsr[int8]' (or pip install nncf)"


def nncf_module():
    """NNCF itself, for quantising (a cache miss) only: see ``nncf_version``."""
    try:
        import nncf
    except ImportError:
        raise BackendUnavailable(NO_NNCF) from None
    return nncf


def nncf_version() -> str | None:
    """The installed NNCF's version, from its package metadata, or None where it is not installed.
    Not ``nncf.__version__``: importing NNCF imports torch, which took 3.3 s of every segment
    worker's start-up and of the driver's on the 2-core AMD EPYC (about 6 s of a 36 s run), while
    a cached int8 model needs only NNCF's version for its cache key."""
    from importlib import metadata

    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError:
        return None


def calibration_patches(scale: int, path: os.PathLike | str | None = None) -> np.ndarray:
    """float32 (N, 1, H, W) LR luma patches in [0, 1] for ``scale``: the shipped set, or ``path``
    (an .npz written the same way: uint8 arrays named x2/x3/x4, or one array for every scale)."""
    from ..errors import InputError

    source = Path(path) if path is not None else _shipped_calibration()
    try:
        with np.load(source) as data:
            key = f"x{scale}" if f"x{scale}" in data.files else data.files[0]
            patches = data[key]
    except (OSError, ValueError, AttributeError, IndexError) as exc:
        # A user's file (--backend-option calibration=): one line, never NumPy's traceback.
        raise InputError(f"{source}: not a calibration set (an .npz of uint8 luma patches): {exc}") from None
    if patches.ndim != 3 or patches.dtype != np.uint8:
        raise InputError(f"{source}: expected uint8 (N, H, W) luma patches, got {patches.dtype} {patches.shape}")
    return (patches.astype(np.float32) / 255.0)[:, None]


def _shipped_calibration() -> Path:
    return Path(str(resources.files("vsr.models") / "weights" / CALIBRATION_RESOURCE))


def quantize_int8(onnx_path: os.PathLike | str, calibration: np.ndarray, recipe: Int8Recipe = RECIPE):
    """The OpenVINO model of ``onnx_path`` with int8 weights and activations (``ov.Model``).
    ``calibration``: float32 (N, 1, H, W) patches, all one size."""
    nncf = nncf_module()
    import openvino as ov

    from ..verbosity import quiet_nncf

    model = ov.Core().read_model(str(onnx_path))
    with quiet_nncf():
        quantized = nncf.quantize(model, calibration_dataset(calibration),
                                  **quantize_settings(model, recipe, len(calibration)))
    if recipe.full_input_range:
        span_input_range(quantized)
    return quantized


def calibration_dataset(calibration: np.ndarray):
    return nncf_module().Dataset([patch[None] for patch in calibration])


def quantize_settings(model, recipe: Int8Recipe, subset_size: int) -> dict:
    """The keyword arguments of ``nncf.quantize`` for ``model`` (``ov.Model``) under ``recipe``,
    calibrating on ``subset_size`` patches. tools/int8_accuracy_control.py passes the same to
    ``nncf.quantize_with_accuracy_control`` (which names ``advanced_parameters``
    ``advanced_quantization_parameters``)."""
    nncf = nncf_module()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    convs = [op.get_friendly_name() for op in _learned_convs(model)]
    ignored = [op.get_friendly_name() for op in model.get_ordered_ops() if _is_float_skip(op)]
    ignored += [convs[index] for index in recipe.float_convs]
    return dict(
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=subset_size,
        ignored_scope=nncf.IgnoredScope(names=ignored, types=recipe.ignored_types, validate=False),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
    )


#: Module name of a network's bicubic skip written as a fixed convolution (``models.bicubic.
#: BicubicSkip``, in ESPCNSkip and the residual networks): it carries the picture itself, so it
#: always stays float, as an Interpolate skip does (``Int8Recipe.ignored_types``).
FLOAT_SKIP_NAME = "bicubic_skip"


def _is_float_skip(op) -> bool:
    return op.get_type_name() == "Convolution" and FLOAT_SKIP_NAME in op.get_friendly_name()


def _learned_convs(model) -> list:
    """The model's convolutions in order, less the fixed bicubic skip."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution" and not _is_float_skip(op)]


#: Ops between the model input and its centring that only move pixels (the mirrored border).
_MOVING_OPS = {"Pad", "Slice", "Concat", "Reshape", "Split", "VariadicSplit", "Gather", "StridedSlice"}


def _constant(node) -> np.ndarray | None:
    return node.get_data().astype(np.float32) if node.get_type_name() == "Constant" else None


def _input_centring(model):
    """(the ``Subtract`` node, its constant c) of the ``input - c`` that feeds the model's first
    convolution (through NNCF's quantiser, if there is one), or None where it has another shape.
    Every network of the ladder centres its [0, 1] luma on mid-grey there."""
    if len(model.get_parameters()) != 1:
        return None
    first = next(iter(_learned_convs(model)), None)
    if first is None:
        return None
    subtract = first.input_value(0).get_node()
    if subtract.get_type_name() == "FakeQuantize":
        subtract = subtract.input_value(0).get_node()
    if subtract.get_type_name() != "Subtract":
        return None
    centre = _constant(subtract.input_value(1).get_node())
    if centre is None or centre.size != 1 or not _reads_only_input(subtract.input_value(0).get_node()):
        return None
    return subtract, float(centre.ravel()[0])


def _reads_only_input(node) -> bool:
    """Whether ``node`` is the model's input, or that input only moved about."""
    if node.get_type_name() == "Parameter":
        return True
    if node.get_type_name() not in _MOVING_OPS:
        return node.get_type_name() == "Constant"
    # Data is the first input (the others say how to move it), except for Concat's.
    data = range(node.get_input_size()) if node.get_type_name() == "Concat" else range(1)
    return all(_reads_only_input(node.input_value(i).get_node()) for i in data)


def span_input_range(model) -> None:
    """Set the range of the quantiser before the first convolution to the whole [0, 1] input
    (minus its centre), not the calibration patches' extremes: NNCF clips to what it saw, and
    the shipped patches span 12-247 of 255, so int8 ESPCN turned a white 255 into 246 and a
    black 0 into 9. Symmetric, as NNCF makes it, with the smallest step that covers [-c, 1 - c]
    (c = 0.5: 0.5/127, about one uint8 step; centring on 128/255 instead would make the steps
    exactly the uint8 grid, but that measured no better on Set5, 0.1665 against 0.1667 dB)."""
    from openvino import opset13 as ops

    found = _input_centring(model)
    if found is None:
        return
    subtract, centre = found
    quantizer = next((t.get_node() for t in subtract.output(0).get_target_inputs()
                      if t.get_node().get_type_name() == "FakeQuantize"), None)
    if quantizer is None or quantizer.get_attributes()["levels"] != 256:
        return
    # Signed symmetric on 256 levels: [-a * 128 / 127, a] in steps of a / 127.
    amax = max(1.0 - centre, centre * 127 / 128)
    low, high = np.float32(-amax * 128 / 127), np.float32(amax)
    for index, value in ((1, low), (2, high), (3, low), (4, high)):
        shape = quantizer.input_value(index).get_shape()
        quantizer.input(index).replace_source_output(ops.constant(np.full(shape, value, np.float32)).output(0))


#: Bumped when where quantisers go changes without the recipe's tag changing (2: a global
#: context stays float), so that no cache holds a model quantised the old way. The tag itself
#: stays: the Set5 records keyed by it hold for every network quantised the same as before.
PLACEMENT_REVISION = 2


def int8_cache_key(onnx_path: os.PathLike | str, calibration_path: Path, recipe: Int8Recipe) -> str:
    """Checksums of the model and of the calibration set, the recipe, the placement revision and
    the tool versions."""
    import openvino as ov

    nncf = nncf_version()
    if nncf is None:
        raise BackendUnavailable(NO_NNCF)
    calibration_digest = file_sha256(calibration_path, 8)
    versions = f"nncf{nncf}-ov{ov.__version__.split('-')[0]}"
    return (f"{Path(onnx_path).stem}_{onnx_digest(onnx_path)}_cal{calibration_digest}_{recipe.tag}"
            f"-p{PLACEMENT_REVISION}_{versions}")


def int8_cache_dir() -> Path:
    return cache_dir("openvino_int8")


def cached_int8_model(
    onnx_path: os.PathLike | str,
    scale: int,
    *,
    calibration_path: os.PathLike | str | None = None,
    recipe: Int8Recipe | None = None,
) -> tuple[Path, bool]:
    """(path of the int8 IR .xml for ``onnx_path``, whether it was already cached), quantised by
    ``recipe`` (by default ``shipped_recipe``). Built once under a lock: segment workers starting
    together quantise once and never read a half-written model."""
    recipe = shipped_recipe(onnx_path) if recipe is None else recipe
    calibration = Path(calibration_path) if calibration_path is not None else _shipped_calibration()
    if not calibration.is_file():
        from ..errors import InputError

        raise InputError(f"{calibration}: no such calibration file")
    onnx_path = int8_source(onnx_path)
    folder = int8_cache_dir() / int8_cache_key(onnx_path, calibration, recipe)
    xml = folder / "model.xml"
    if xml.is_file():
        return xml, True
    with build_lock(folder):
        if xml.is_file():
            return xml, True
        import openvino as ov

        model = quantize_int8(onnx_path, calibration_patches(scale, calibration), recipe)
        # Save into a unique folder, then rename it into place: the .xml and .bin appear together.
        with atomic_dir(folder) as tmp:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    return xml, False
