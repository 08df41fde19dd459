"""The ``vsr`` command line: thin click commands that build a config and call one library function.

Heavy modules (torch, onnxruntime, PyAV) are imported inside the commands so that
``vsr --help`` is instant.
"""
from __future__ import annotations

import contextlib
import json
import functools
import os
import signal
import sys
import time
from pathlib import Path

import click

from . import __version__
from .backends import BACKENDS, PRECISIONS
from .errors import OptionConflict, VsrError

SCALES = click.Choice(["2", "3", "4"])


def _reports_errors(command):
    """Turn the user-caused failures into one ``error:`` line and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OptionConflict as exc:
            raise click.UsageError(str(exc), ctx=click.get_current_context(silent=True)) from None
        except VsrError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(_interrupted_status())

    return wrapper


#: The stop signal a command received (SIGTERM is turned into KeyboardInterrupt by
#: ``_sigterm_as_interrupt``); None: Ctrl-C, or none.
_stop_signal: list[int | None] = [None]


def _interrupted_status() -> int:
    """The exit status of a run stopped by a signal, as a shell reports one: 128 + its number
    (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (_stop_signal[0] or signal.SIGINT)


def _set_verbosity(ctx, param, value: bool) -> None:
    from .verbosity import set_verbose

    set_verbose(value)


def _verbose_option(command):
    """--verbose: let the libraries vsr runs log (NNCF's quantisation, SVT-AV1's banner ...)."""
    return click.option("--verbose", "-v", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_verbosity,
                        help="Show the libraries' own logs (NNCF, SVT-AV1 ...); silenced by default.")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vsr")
def main() -> None:
    """vsr: real-time super-resolution of video and images with ESPCN."""
    from .verbosity import show_notes

    show_notes()
    _accept_stop_signals()


def _accept_stop_signals() -> None:
    """Unblock SIGINT and SIGTERM, which a process inherits blocked when its parent forked it
    from a thread that blocked them (Python's multiprocessing does so around starting its
    resource tracker): Ctrl-C then stayed pending for the whole run, which went on to write a
    complete OUTPUT and only stopped at the end (seen in the test suite, once on CI)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _model_option(command=None, *, auto: bool = False, default: str = "espcn"):
    """--model, shared by every command that runs or trains a network; ``auto``: the command
    also takes "auto", its default (the best model that keeps up), and --degradation."""

    def decorate(command):
        help_text = "Which model of the ladder (`vsr models` lists them)."
        if auto:
            help_text += (" auto: the best one trained for this input's degradation (--degradation) that keeps "
                          "up with --target-fps (default: the input's own frame rate), timed once on this machine; "
                          "when none does, the fastest.")
            command = click.option(
                "--degradation", type=click.Choice(["auto", "clean", "compressed"]), default="auto",
                show_default=True,
                help="With --model auto: which models to choose from. auto: from the input's codec and bits per "
                     "pixel (lossless codecs and near-lossless rates: clean; lossy video: compressed).")(command)
        return click.option("--model", "model_name", default=None if auto else default, metavar="NAME",
                            show_default="auto" if auto else True, callback=_check_model_name,
                            help=help_text)(command)

    return decorate(command) if command is not None else decorate


def _check_model_name(ctx, param, value: str) -> str:
    from .models.registry import MODELS

    accepts_auto = "target_fps" in {p.name for p in ctx.command.params}
    if value is None or value in MODELS or (value == "auto" and accepts_auto):
        return value
    known = ", ".join(MODELS) + (", auto" if accepts_auto else "")
    raise click.BadParameter(f"unknown model {value!r}: choose one of {known} (see `vsr models`)")


def _target_fps_option(command):
    return click.option("--target-fps", type=click.FloatRange(min=0, min_open=True), default=None, metavar="FPS",
                        help="Pick the best model that holds FPS frames per second here (implies --model auto).")(command)


def _pick_model(model_name: str | None, target_fps: float | None, weights) -> str:
    """--target-fps means --model auto; either conflicts with --weights, which names one model.
    No --model (None): auto, or with --weights the network those weights are."""
    if target_fps is not None:
        if model_name not in (None, "auto"):
            raise click.UsageError(f"--target-fps picks the model: drop --model {model_name}")
        model_name = "auto"
    if model_name == "auto" and weights is not None:
        raise click.UsageError("--weights names one model: it cannot be combined with --model auto / --target-fps")
    if model_name is None:
        from .models.registry import DEFAULT_MODEL

        model_name = DEFAULT_MODEL if weights is not None else "auto"
    return model_name


#: vsr train's knobs of the compressed recipe (``vsr.degradations.CompressedDegradation`` fields,
#: each a share of the training sequences; the defaults are spelled here: the CLI stays import-free).
RECIPE_OPTIONS = (
    ("soft_prob", "whose scene is soft, target included (defocus, or video upscaled from less), so soft input is "
                  "taught to stay soft. The shipped realtime-compressed-plus x3 used 0.5.", 0.0),
    ("noise_prob", "given Gaussian noise (0.5-6 levels) on the LR before the codec.", 0.4),
    ("exposure_prob", "whose scene is over- or under-exposed, target included (blown highlights, crushed "
                      "blacks), so flat white and black stay flat.", 0.0),
    ("coded_scene_prob", "whose scene was compressed video at full resolution first, target included (x264 CRF "
                         "20-36), as most video was before it was scaled down.", 0.0),
)


def _recipe_options(command):
    for name, text, default in reversed(RECIPE_OPTIONS):
        command = click.option(f"--{name.replace('_', '-')}", name, type=click.FloatRange(0, 1), default=None,
                               help=f"With --degradation compressed: share of sequences {text}  "
                                    f"[default: the recipe's, {default:g}]")(command)
    return command


@main.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, required=True, help="Upscaling factor.")
@_model_option
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Passes over the data.  [default: 100; with --budget-minutes, as many as the budget allows]")
@click.option("--sampling", type=click.Choice(["grid", "random"]), default="grid", show_default=True,
              help="grid: the paper's patch grid, one epoch = every patch once; random: random crops gathered on "
                   "the device from images kept there (fast on GPUs), --steps-per-epoch batches per epoch.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=500, show_default=True,
              help="Batches per epoch with --sampling random.")
@click.option("--loss", type=click.Choice(["l2", "l1", "l1-l2"]), default="l2", show_default=True,
              help="l1-l2: L1 for the first 80% of the run, then MSE.")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Train for this long (implies --schedule cosine, which then follows the clock; --epochs, "
                   "if given, can end it sooner).")
@click.option("--val", "val_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Validation images (folder or file; repeatable). Default: every 20th training image, held out.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder for checkpoints (MODEL_xN.pt = best, MODEL_xN_last.pt = for --resume) and the log.")
@click.option("--degradation", type=click.Choice(["bicubic", "gaussian", "compressed"]), default="bicubic",
              show_default=True,
              help="How LR inputs are made: MATLAB antialiased bicubic, the paper's Gaussian blur + subsample, or "
                   "compressed video (blur, resize kernels, noise, H.264/HEVC/MPEG-4/JPEG round trips; needs "
                   "--sampling random).")
@click.option("--clean-fraction", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="With --degradation compressed: share of each batch that is clean bicubic patches, so the "
                   "model keeps its skill on clean input.")
@_recipe_options
@click.option("--pool-patches", type=click.IntRange(min=1), default=4096, show_default=True,
              help="With --degradation compressed: patches per degraded pool (each served about once).")
@click.option("--pool-workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --degradation compressed: processes making the pools ahead of the trainer.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--jitter/--fixed-grid", default=True, show_default=True,
              help="Shift the patch grid by a random offset each epoch (more distinct patches, same stride).")
@click.option("--patch-px", type=click.IntRange(min=1), default=17, show_default=True,
              help="LR side of a training patch (the paper's 17). Larger patches spend less of each step on the 4 "
                   "pixels of context around them: 32 at batch 16 trains 1.1x-1.4x the pixels per second of 17 at "
                   "batch 64 on a CPU (benchmarks/results/train_throughput.md).")
@click.option("--margin-px", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --sampling random: LR pixels of real picture around each patch that the network sees and "
                   "the loss does not, so a padded network learns the inside of a picture rather than a patch's "
                   "zero-padded edge (12 gained the x3 compressed rung 0.03 dB at CRF 30). Even.")
@click.option("--edge-share", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="With --margin-px: share of steps whose margin is cut off, so the network keeps its skill at "
                   "a frame's edge.")
@click.option("--stride-px", type=click.IntRange(min=1), default=None,
              help="Grid step between patches, LR pixels.  [default: patch - 3, the paper's 14 for 17]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Initial Adam learning rate.")
@click.option("--schedule", type=click.Choice(["plateau", "cosine"]), default=None,
              help="plateau: halve the rate when validation stalls (the paper's); cosine: lower it smoothly "
                   "to --min-lr over --epochs or --budget-minutes.  [default: cosine with --budget-minutes, "
                   "else plateau]")
@click.option("--min-lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None,
              help="Raise the learning rate linearly over this many first steps (0: none). Keeps a ReLU network "
                   "trained from scratch from switching its units off in its first steps.  [default: 1000 for "
                   "a re-parameterised model without --init, else 0]")
@click.option("--patience", type=click.IntRange(min=1), default=6, show_default=True,
              help="Epochs without a 0.005 dB validation gain before the learning rate halves. tanh networks "
                   "plateau for a while before they improve again, so do not make this short.")
@click.option("--ema", "ema_decay", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True,
              help="Decay of the moving average of the weights that is validated and saved (0: raw weights).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/MODEL_xN_last.pt.")
@click.option("--init", type=click.Path(path_type=Path), default=None,
              help="Start from these weights (layers whose shapes match, e.g. another scale's).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--mixed-precision/--fp32", default=True, show_default=True,
              help="bf16 for the two feature layers (about 2x faster on AMX CPUs and GPUs).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: one per core). Two 1-thread runs beat one 2-thread run on 2 cores.")
@click.option("--int8-aware", is_flag=True,
              help="Fine-tune the --init network for --precision int8: its convolutions see int8 rounding while "
                   "training, so the NNCF-quantised model loses less. Use a low --lr; runs in fp32.")
@click.option("--teacher", default=None, metavar="MODEL",
              help="Distil from this shipped model: its upscale of each training image is blended into the HR "
                   "target (--sampling random).")
@click.option("--distill-weight", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="With --teacher: the teacher's share of the target.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or epoch lines.")
@_verbose_option
@_reports_errors
def train(data, scale, model_name, epochs, sampling, steps_per_epoch, loss, budget_minutes, val_dirs, out_dir,
          degradation, clean_fraction, pool_patches, pool_workers, batch_size, jitter, patch_px, margin_px,
          edge_share, stride_px, lr, schedule, min_lr, warmup_steps, patience, ema_decay, seed, resume, init, device,
          mixed_precision, threads, int8_aware, teacher, distill_weight, quiet, **recipe_flags):
    """Train a model of the ladder on folders of HR images (PNG/JPG/BMP, searched recursively)."""
    from .train import TrainConfig
    from .train import train as run_training

    # recipe_flags: RECIPE_OPTIONS' fields, None where not given.
    recipe_changes = {name: value for name, value in recipe_flags.items() if value is not None}
    if recipe_changes and degradation != "compressed":
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in recipe_changes)
        raise click.UsageError(f"{flags}: recipe flags of --degradation compressed; add it, or leave them out")
    recipe = None
    if recipe_changes:
        from .degradations import CompressedDegradation

        recipe = CompressedDegradation(**recipe_changes)
    config = TrainConfig(
        data_dirs=tuple(data), scale=int(scale), out_dir=out_dir, epochs=epochs, val_dirs=tuple(val_dirs),
        model=model_name, sampling=sampling, steps_per_epoch=steps_per_epoch, loss=loss,
        time_budget_s=(budget_minutes or 0) * 60,
        degradation=degradation, clean_fraction=clean_fraction, pool_patches=pool_patches,
        pool_workers=pool_workers, batch_size=batch_size, jitter=jitter, patch_px=patch_px, margin_px=margin_px,
        edge_share=edge_share, stride_px=stride_px,
        lr=lr, schedule=schedule or "auto", min_lr=min_lr, patience=patience, ema_decay=ema_decay, seed=seed, resume=resume,
        init=init, device=device, mixed_precision=mixed_precision, num_threads=threads, int8_aware=int8_aware,
        teacher=teacher, distill_weight=distill_weight, warmup_steps=warmup_steps, progress=not quiet,
        compressed_recipe=recipe,
    )
    result = run_training(config)
    click.echo(
        f"best: {result.best_path} (epoch {result.best_epoch}, validation {result.best_val_psnr_db:.3f} dB), "
        f"{result.wall_seconds / 60:.1f} min"
    )
    if result.below_bicubic:
        click.echo(f"WARNING: the best model scores {result.best_val_psnr_db:.2f} dB on its validation images, below "
                   f"bicubic's {result.val_bicubic_psnr_db:.2f} dB: it makes pictures worse than plain resizing. "
                   "Train longer (--budget-minutes, --epochs), or start from trained weights (--init).", err=True)


#: vsr upscale's default model (models.registry.IMAGE_MODEL, spelled here: `vsr --help` stays torch- and import-free).
IMAGE_MODEL = "realtime"

#: The library's own lists (vsr.backends imports no backend library, nor NumPy): a new backend or
#: precision reaches every command's choices from there.
BACKEND_CHOICE = click.Choice(["auto", *BACKENDS])
PRECISION_CHOICE = click.Choice(list(PRECISIONS))


def _precision_option(command):
    """--precision, shared by every command that runs the model."""
    return click.option(
        "--precision", type=PRECISION_CHOICE, default="auto", show_default=True,
        help="OpenVINO's arithmetic. auto: the fastest of fp32, bf16 (where native) and int8 (where its Set5 "
             "loss is recorded within 0.05 dB: every shipped model) on this CPU, timed once per CPU model and "
             "cached (it says which). int8: NNCF-quantised, faster without AMX, at most 0.05 dB lower on Set5 for "
             "every shipped model (accuracy control keeps float the layers that would lose more: espcn7 stays "
             "almost all float, so its int8 is no faster) (needs pip install 'vsr[int8]'). Other backends run "
             "fp32.")(command)


def _engine_options(default_backend: str, backend_help: str = "", *, auto_model: bool = False,
                    default_model: str = "espcn"):
    """--model, --backend, --device and --weights, shared by every command that runs the model."""

    def decorate(command):
        for option in reversed([
            _model_option(auto=auto_model, default=default_model),
            click.option("--backend", type=BACKEND_CHOICE, default=default_backend, show_default=True,
                         help=backend_help or None),
            click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
            click.option("--weights", type=click.Path(path_type=Path), default=None,
                         help="A .pt checkpoint or .onnx model instead of the shipped weights."),
        ]):
            command = option(command)
        return command

    return decorate


def _backend_option(command):
    """--backend-option KEY=VALUE: the named backend's own tuning (``EngineSpec.backend_options``)."""
    return click.option("--backend-option", "backend_option", multiple=True, metavar="KEY=VALUE",
                        help="Tune the named --backend beyond these flags (repeatable), e.g. --backend tensorrt "
                             "--backend-option workspace_mib=2048; the keys: docs/usage.md.")(command)


def _engine_spec(scale, model_name, backend, device, weights, precision, backend_option=(), **fields):
    """The ``EngineSpec`` the engine options describe (``--backend-option`` parsed for its backend)."""
    from .backends import EngineSpec, parse_backend_options

    return EngineSpec(scale=int(scale), model=model_name, backend=backend, device=device, weights=weights,
                      precision=precision, backend_options=parse_backend_options(backend, backend_option), **fields)


@main.command("eval")
@click.option("--data", "data_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="HR images (folder or file; repeatable).")
@click.option("--scale", type=SCALES, required=True)
@_engine_options("onnxruntime")
@_precision_option
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_verbose_option
@_reports_errors
def eval_(data_dirs, scale, model_name, backend, device, weights, precision, backend_option, as_json):
    """PSNR / SSIM on Y of vsr against bicubic (crop, MATLAB bicubic downscale, shave the border)."""
    from .backends import create_backend
    from .evaluate import evaluate

    engine = create_backend(_engine_spec(scale, model_name, backend, device, weights, precision, backend_option))
    try:
        report = evaluate(list(data_dirs), int(scale), lambda luma: engine.upscale_luma(luma)[0, 0],
                          backend_name=f"{engine.name} {engine.precision or 'fp32'}")
    finally:
        engine.close()
    click.echo(report.to_json() if as_json else report.to_table())


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, default="3", show_default=True)
@_engine_options("onnxruntime", "onnxruntime runs on the CPU without importing torch.", default_model=IMAGE_MODEL)
@_precision_option
@_backend_option
@click.option("--compare", is_flag=True,
              help="Also write NAME_compare.png: nearest | bicubic | vsr (| original with --reference).")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="The HR original(s) (file, or folder with the same names) for --compare, with PSNR.")
@click.option("--overwrite", "-y", is_flag=True, help="Replace outputs that exist (the input itself included).")
@click.option("--quiet", "-q", is_flag=True)
@_verbose_option
@_reports_errors
def upscale(input_path, output_path, scale, model_name, backend, device, weights, precision, backend_option, compare,
            reference, overwrite, quiet):
    """Upscale an image, or every image in a folder, to PNG (or the .jpg/.bmp OUTPUT names).

    OUTPUT is a file for one image, or a folder (created if needed) that gets the same names.
    Reads PNG, JPEG, BMP, WebP, TIFF and GIF (its first frame); applies EXIF rotation; keeps
    alpha and 16 bits in PNG outputs. Existing files are never replaced without --overwrite,
    and two inputs that would share an output (a.png, a.jpg) are refused before anything is written.
    """
    from tqdm import tqdm

    from .backends import create_backend
    from .upscale import plan_jobs, run_upscale

    jobs = plan_jobs(input_path, output_path, reference, overwrite=overwrite, compare=compare, scale=int(scale))
    engine = create_backend(_engine_spec(scale, model_name, backend, device, weights, precision, backend_option))
    try:
        # A bar redrawn in a log file is noise: only on a terminal.
        bar = tqdm(total=len(jobs), unit="img", file=sys.stderr,
                   disable=quiet or len(jobs) == 1 or not sys.stderr.isatty())

        def done(job, note):
            bar.update()
            if not quiet:
                tqdm.write(f"{job.source} -> {job.target}" + (f"  ({note})" if note else ""), file=sys.stderr)

        for _ in run_upscale(jobs, engine, compare=compare, on_done=done):
            pass
        bar.close()
    finally:
        engine.close()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of objects) instead of a table.")
def models(as_json):
    """The shipped models, fastest first: parameters, training input, Set5 PSNR per scale, and what
    --precision int8 costs on Set5 (auto runs int8 only within 0.05 dB)."""
    from .catalog import catalog, catalog_table

    rows = catalog()
    click.echo(json.dumps(rows, indent=2) if as_json else catalog_table(rows))


@main.command()
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, required=True)
@_model_option
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint (default: the shipped weights of --model).")
@click.option("--opset", type=click.IntRange(13, 23), default=17, show_default=True)
@_reports_errors
def export(output_path, scale, model_name, weights, opset):
    """Export a model to ONNX with dynamic batch, height and width."""
    from .export import export_onnx
    from .models.weights import load_model

    path = export_onnx(load_model(int(scale), weights, model_name), output_path, opset=opset)
    click.echo(f"wrote {path}")


def _workers(text: str) -> int | None:
    """--workers: 'auto' (None) or a positive count."""
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise click.BadParameter(f"{text!r}: give a number of workers, 1 or more (1: one stream), or auto",
                                 param_hint="'--workers'")
    return count


def _video_input(text: str) -> Path | str:
    """INPUT of `vsr run`: a path, a URL kept as typed (a Path would fold ``http://`` into
    ``http:/``), or ``-`` for standard input."""
    if text == "-":
        return "/dev/stdin"
    if "://" in text:
        return text
    return Path(text)


@main.command()
@click.argument("input_path", metavar="INPUT", type=_video_input)
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, default="3", show_default=True)
@_engine_options("auto", "auto picks the fastest one available here and says which.", auto_model=True)
@_target_fps_option
@_precision_option
@_backend_option
@click.option("--codec", type=click.Choice(["libx264", "libx265", "libsvtav1", "mpeg4", "h264_nvenc"]),
              default=None, help="Video encoder. Default: libx264, or libsvtav1 for .webm (which holds only "
                                 "VP8/VP9/AV1).")
@click.option("--crf", type=int, default=None,
              help="Quality (lower is better): libx264/libx265 0-51, libsvtav1 0-63. Default: 20 for libx264, "
                   "24 libx265, 32 libsvtav1.")
@click.option("--preset", default=None,
              help="Encoder speed preset. Default: ultrafast (x264/x265), 12 (svt-av1), p1 (nvenc): real time.")
@click.option("--pix-fmt", type=click.Choice(["yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le",
                                             "yuv444p10le"]), default=None,
              help="Output chroma layout and bit depth. Default: 4:2:0 (plays everywhere) at the source's depth: "
                   "a 10-bit source stays 10-bit (libx264, libx265, libsvtav1); an 8-bit --pix-fmt writes it 8-bit.")
@click.option("--no-audio", is_flag=True, help="Drop audio and subtitle streams.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames (previews).")
@click.option("--batch-size", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Frames per network call.")
@click.option("--workers", "workers_text", default="auto", show_default=True, metavar="N|auto",
              help="Processes upscaling keyframe-aligned segments side by side. auto: one per CPU core, "
                   "up to 8 per GPU with --device cuda; 1: one stream.")
@click.option("--segment-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Segment length: each segment ends at the first keyframe this far from its start.")
@click.option("--resume", is_flag=True, help="Continue an interrupted segmented run from its finished segments.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run the segments as Ray tasks: a new local Ray instance, 'auto' (the running cluster) or "
                   "ray://HOST:PORT. Needs pip install -e \".[ray]\".")
@click.option("--format", "out_format", default=None, metavar="EXT",
              help="Folders: the container of every output (mp4, mkv ...). Default: each input's own. "
                   "OUTPUT -: the container on standard output: y4m (default, raw frames), nut (raw frames), "
                   "matroska or mpegts (--codec, default libx264).")
@click.option("--strict", is_flag=True,
              help="Fail on a frame that cannot be decoded or a truncated input (default: skip it, with a note).")
@click.option("--deinterlace/--no-deinterlace", default=True, show_default=True,
              help="Deinterlace interlaced input with yadif before upscaling; progressive input is never touched.")
@click.option("--overwrite", "-y", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--decoder", type=click.Choice(["auto", "cpu", "nvdec"]), default="cpu", show_default=True,
              help="cpu: FFmpeg's software decoder. nvdec: NVIDIA's hardware decoder (h264, hevc, av1, vp9, "
                   "through FFmpeg's *_cuvid decoders); where it cannot run (no NVIDIA GPU or driver, another "
                   "codec) the CPU decodes instead and one note says why. auto: nvdec with --device cuda, else cpu.")
@click.option("--stats-json", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="Also write the run's statistics to PATH as JSON: frames, wall time, fps, each thread's busy "
                   "seconds (decode, engine, encode), inside the engine each stage's (upload, engine, chroma, "
                   "download, startup), and every segment with its worker.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--gpus", default=None, metavar="0,2",
              help="The GPUs the workers share (implies --device cuda), numbered as nvidia-smi does, or as "
                   "positions in CUDA_VISIBLE_DEVICES when that is set; default: every visible GPU.")
@click.option("--progress", "progress_mode", type=click.Choice(["auto", "json"]), default="auto", show_default=True,
              help="auto: a bar on a terminal, a plain line every 30 s elsewhere. json: one JSON object per line "
                   "on standard error, at least once a second and at the end (frames_done, frames_total, fps, "
                   "eta_seconds, state running|done|failed, file); see docs/usage.md.")
@_verbose_option
@_reports_errors
def run(input_path, output_path, scale, degradation, model_name, target_fps, backend, device, weights, precision,
        backend_option, codec, crf, preset, pix_fmt, no_audio, max_frames,
        batch_size, workers_text, segment_seconds, resume, ray_address, strict, deinterlace, out_format, overwrite,
        quiet, progress_mode, decoder, stats_json, gpus=None):
    """Upscale a video (or every video in a folder): PyAV decode -> ESPCN on luma + bicubic
    chroma -> PyAV encode.

    The output container follows OUTPUT's extension; timestamps, colour metadata, rotation,
    audio and subtitles are kept. OUTPUT appears only when it is complete. Long videos are cut
    at keyframes into segments that several workers upscale at once, joined without re-encoding.
    """
    from .media.encode import EncodeOptions
    from .pipeline.pipeline import RunConfig
    from .progress import JsonProgress, Progress, error_text
    from .verbosity import notes_after
    from .run import choose_streams, is_folder, run as run_request

    if gpus is not None:
        from .backends import visible_gpus

        # Before anything starts CUDA: the workers (and a local Ray) inherit it, and see only these.
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpus(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        device = "cuda" if device == "cpu" else device
    if device != "cpu":
        from .backends import check_cuda_device

        check_cuda_device(device)  # a missing GPU is one line, before any model is timed or loaded
    if input_path == "/dev/stdin" and sys.stdin.isatty():
        raise click.UsageError("INPUT - reads a stream from standard input, which is a terminal here: pipe one in, "
                               "e.g. ffmpeg -i in.mp4 -f yuv4mpegpipe - | vsr run - out.mp4")
    if str(output_path) == "-" and sys.stdout.isatty():
        raise click.UsageError("OUTPUT - writes a video stream to standard output, which is a terminal here: "
                               "pipe it into a program (e.g. | ffmpeg -f yuv4mpegpipe -i - out.mp4)")
    streams = choose_streams(input_path, output_path, codec=codec, out_format=out_format,
                             workers=_workers(workers_text), resume=resume, ray_address=ray_address)
    if streams.container is not None:
        from .media.encode import claim_stdout

        out_format = None  # it named the stream's container
        claim_stdout()
    notes = list(streams.notes)
    # What no input could make work (output format, codec and container, CRF, preset, pixel
    # format) is refused by the library itself before any work, on every path
    # (segments.driver.check_request, called first by upscale_video and run_folder).
    engine = _engine_spec(scale, _pick_model(model_name, target_fps, weights), backend, device, weights, precision,
                          backend_option, batch_size=batch_size)
    config = RunConfig(
        input_path=input_path, output_path=output_path, engine=engine, target_fps=target_fps, degradation=degradation,
        encode=EncodeOptions(codec=streams.codec, crf=crf, preset=preset, pix_fmt=pix_fmt, audio=not no_audio,
                             container=streams.container),
        max_frames=max_frames, overwrite=overwrite, workers=streams.workers, segment_seconds=segment_seconds,
        resume=resume, ray_address=ray_address, strict=strict, deinterlace=deinterlace, decoder=decoder,
    )
    with _sigterm_as_interrupt():
        if is_folder(input_path):
            if stats_json is not None:
                raise click.UsageError("--stats-json is for one video, not a folder")
            _run_folder(config, out_format, quiet, progress_mode)
            return
        started = time.perf_counter()
        first_frame_seconds = []

        progress = JsonProgress(str(input_path)) if progress_mode == "json" else Progress(quiet, pix_fmt)
        run_notes: list[str] = []  # the library's notes, kept here with --progress json
        try:
            def on_frame(frames_done: int) -> None:
                if frames_done and not first_frame_seconds:
                    first_frame_seconds.append(time.perf_counter() - started)
                progress.update(frames_done)

            # With --progress json, the notes of the run go into its last object, not onto their own lines.
            with notes_after(into=run_notes if progress_mode == "json" else None) as release_notes:
                def on_start(*args) -> None:
                    progress.start(*args)  # the first line: the input, the model and why
                    release_notes()

                stats = run_request(config, out_format=out_format, on_start=on_start, on_frame=on_frame)
        except BaseException as exc:
            if progress_mode == "json":
                progress.finish("failed", error=error_text(exc))
            raise
        finally:
            progress.close()
    if stats_json is not None:
        from .cache import write_atomic

        record = stats.to_dict()
        record.update(command_seconds=round(time.perf_counter() - started, 3),
                      first_frame_seconds=round(first_frame_seconds[0], 3) if first_frame_seconds else None,
                      notes=notes + record["notes"])
        write_atomic(stats_json, (json.dumps(record, indent=2) + "\n").encode(), shared=True)
    if progress_mode == "json":
        progress.finish("failed" if stats.interrupted else "done", frames_done=stats.frames,
                        error="interrupted" if stats.interrupted else None,
                        output=str(stats.output_path) if stats.output_path else None,
                        notes=notes + run_notes + list(stats.notes))
        quiet = True  # every line of ours on standard error is a JSON object
    if not quiet:
        # The model and why (and how it reads the clip) opened the run: not repeated at its end.
        for note in notes + list(stats.notes):
            if note not in getattr(progress, "first_line", ""):
                click.echo(f"note: {note}", err=True)
        click.echo(stats.summary(), err=True)
    if stats.interrupted:
        sys.exit(_interrupted_status())


def _run_folder(config, out_format: str | None, quiet: bool, progress_mode: str) -> None:
    """`vsr run` on a folder: its files' lines (or JSON objects), exit 1 if any failed."""
    from .progress import JsonProgress, error_text
    from .run import run as run_request
    from .verbosity import notes_after

    json_progress = JsonProgress() if progress_mode == "json" else None
    run_notes: list[str] = []  # the library's notes, kept for the last object with --progress json
    try:
        # Without --progress json the notes show as they come (each file has its own first line).
        with notes_after(into=run_notes) if json_progress is not None else contextlib.nullcontext():
            failures = run_request(config, out_format=out_format, quiet=quiet or json_progress is not None,
                                   echo=lambda line: click.echo(line, err=True), folder_progress=json_progress)
    except BaseException as exc:
        if json_progress is not None:
            json_progress.finish("failed", error=error_text(exc))
        raise
    if json_progress is not None:
        json_progress.finish("failed" if failures else "done", file=None, failed_files=len(failures),
                             **({"notes": run_notes} if run_notes else {}))
    if failures:
        sys.exit(1)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (what `kill` and service managers send) stops a run as Ctrl-C does: workers
    stopped, partial work kept or discarded cleanly, instead of dying with files half written."""
    def interrupt(signum, frame):
        _stop_signal[0] = signum
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a library caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _size(text: str | None) -> tuple[int, int] | None:
    """'640x360' -> (640, 360)."""
    if text is None:
        return None
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected WIDTHxHEIGHT, e.g. 640x360") from None
    if width < 5 or height < 5:
        raise click.BadParameter(f"{text!r}: frames must be at least 5x5")
    return width, height


@main.command()
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None,
              help="A clip to decode (its first --frames frames). Default: synthetic frames of --size.")
@click.option("--size", default=None, metavar="WxH", help="Synthetic frame size when no --input [default: 640x360].")
@click.option("--scale", type=SCALES, default="3", show_default=True)
@_model_option
@click.option("--backend", type=BACKEND_CHOICE, default="auto",
              show_default=True, help="auto or torch with --device cuda: the GPU-resident frame path, as vsr run.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint or .onnx model instead of the shipped weights.")
@click.option("--batch-size", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Frames per network call, as vsr run's --batch-size.")
@_precision_option
@_backend_option
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="Engine CPU threads (0: every core), as each of vsr run's workers gets.")
@click.option("--frames", type=click.IntRange(min=1), default=60, show_default=True, help="Frames per timed loop.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed frames first.")
@click.option("--preset", default="ultrafast", show_default=True, help="libx264 preset for the encode stage.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Also write the results as JSON to FILE (nothing is written without it).")
@_verbose_option
@_reports_errors
def bench(input_path, size, scale, model_name, backend, device, weights, batch_size, precision, backend_option, threads,
          frames, warmup, preset, json_path):
    """Frames per second: the engine alone, each stage (decode, upload, engine, chroma, download,
    encode) and end to end, next to the ESPCN paper's target (1080p at x3 in 0.038 s on a K2)."""
    from .bench import BenchConfig, run_bench
    from .media.encode import check_preset

    check_preset("libx264", preset)
    if input_path is not None and size is not None:
        raise click.UsageError("give --input or --size, not both")
    engine = _engine_spec(scale, model_name, backend, device, weights, precision, backend_option,
                          batch_size=batch_size, num_threads=threads)
    config = BenchConfig(engine=engine, input=input_path, size=None if input_path is not None else (_size(size) or (640, 360)),
                         frames=frames, warmup_frames=warmup, encoder_preset=preset)
    report = run_bench(config)
    click.echo(report.to_table())
    if json_path is not None:
        json_path.write_text(report.to_json() + "\n")
        click.echo(f"wrote {json_path}")


@main.command("build-engine")
@click.option("--scale", type=SCALES, required=True)
@click.option("--size", required=True, metavar="WxH", help="Frame size the plan is tuned for (opt), e.g. 640x360.")
@click.option("--min-size", default=None, metavar="WxH", help="Smallest size the plan accepts [default: --size].")
@click.option("--max-size", default=None, metavar="WxH", help="Largest size the plan accepts [default: --size].")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
@_model_option
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint or .onnx model instead of the shipped weights.")
@click.option("--device", default="cuda", show_default=True)
@click.option("--workspace-mib", type=click.IntRange(min=16), default=1024, show_default=True)
@click.option("--engine-dir", type=click.Path(path_type=Path), default=None,
              help="Plan cache folder [default: $VSR_ENGINE_DIR, else $VSR_CACHE_DIR/engines (~/.cache/vsr/engines)].")
@_reports_errors
def build_engine(scale, size, min_size, max_size, precision, model_name, weights, device, workspace_mib, engine_dir):
    """Build (or find cached) the TensorRT plan for a frame size, so the first video starts at once."""
    from .backends import onnx_for
    from .backends.engine_cache import ShapeRange
    from .backends.tensorrt import TensorRTBackend, TensorRTOptions

    def shape(text, default):
        width, height = _size(text) if text else default
        return (1, 1, height, width)

    opt = _size(size)
    try:
        shapes = ShapeRange(shape(min_size, opt), shape(None, opt), shape(max_size, opt))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    options = TensorRTOptions(precision=precision, device=device, workspace_mib=workspace_mib, engine_dir=engine_dir)
    with TensorRTBackend(int(scale), onnx_for(int(scale), weights, model_name), options) as engine:
        cached = engine.plan_path(shapes).is_file()
        path = engine.build(shapes)
    click.echo(f"{'cached' if cached else 'built'}: {path}")


@main.command()
@click.option("--source", default="0", show_default=True,
              help="Camera index (0), a device (/dev/video0), a video file, or an rtsp:// / http:// URL.")
@click.option("--scale", type=SCALES, default="3", show_default=True, help="Upscaling factor.")
@_engine_options("auto", "auto picks the fastest that runs here.", auto_model=True)
@_target_fps_option
@_precision_option
@_backend_option
@click.option("--record", type=click.Path(path_type=Path), default=None,
              help="Also record the upscaled stream to this file (H.264, e.g. out.mp4).")
@click.option("--headless", is_flag=True,
              help="No window (machines without a display); combine with --record.")
@click.option("--as-fast-as-possible", is_flag=True,
              help="File sources: process every frame as fast as possible instead of at the file's frame rate.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after processing N frames.")
@click.option("--full", "full_view", is_flag=True, help="Start with the full vsr view instead of the split view.")
@click.option("--divider", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Where the split view's divider starts, as a fraction of the width.")
@click.option("--screenshot-dir", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder for the PNGs the p key saves.")
@click.option("--screenshot-at-frame", type=click.IntRange(min=1), default=None,
              help="Save a screenshot of the view after processing frame N (works headless too).")
@_verbose_option
@_reports_errors
def live(source, scale, degradation, model_name, target_fps, backend, device, weights, precision, backend_option, record,
         headless, as_fast_as_possible, max_frames, full_view, divider, screenshot_dir, screenshot_at_frame):
    """Upscale a camera, file or stream live, in a window: bicubic | vsr with a movable divider.

    \b
    Keys: q/Esc quit, s split/full view, space pause, p screenshot (PNG),
          a/d or left/right arrows move the divider (or drag it with the mouse).
    When upscaling is slower than the source, stale frames are dropped: the newest wins.
    """
    from .live import LiveConfig, run_live

    engine = _engine_spec(scale, _pick_model(model_name, target_fps, weights), backend, device, weights, precision,
                          backend_option)
    config = LiveConfig(
        source=source, engine=engine, target_fps=target_fps, degradation=degradation, record=record,
        headless=headless, as_fast_as_possible=as_fast_as_possible, max_frames=max_frames, split=not full_view,
        divider=divider, screenshot_dir=screenshot_dir, screenshot_at_frame=screenshot_at_frame,
    )
    with _sigterm_as_interrupt():
        report = run_live(config, status=lambda line: click.echo(line, err=True))
    click.echo(report.summary(), err=True)
    if report.interrupted:
        sys.exit(_interrupted_status())


@main.group()
def data() -> None:
    """Download training data sets."""


@data.command("div2k")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--only", type=click.Choice(["train", "valid"]), default=None,
              help="Fetch one split (800 train or 100 valid HR images); default both.")
@click.option("--keep-archives/--remove-archives", default=False, show_default=True,
              help="Keep the verified .zip files next to the unpacked folders.")
@click.option("--base-url", default=None, metavar="URL",
              help="Fetch the same archives from a mirror (sizes and SHA-256 are still checked).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              hidden=True, help="JSON archive specs replacing the built-in ones (tests, other mirrors).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_reports_errors
def div2k(dest, only, keep_archives, base_url, manifest, quiet):
    """Download, verify and unpack the DIV2K HR archives into DEST/DIV2K_{train,valid}_HR.

    A broken download resumes where it stopped on the next run; a finished one is skipped.
    """
    from .data import FetchOptions, div2k_archives, fetch_div2k

    options = FetchOptions(dest=dest, splits=(only,) if only else ("train", "valid"),
                           keep_archives=keep_archives, progress=not quiet and sys.stderr.isatty())
    specs = div2k_archives(base_url=base_url, manifest=manifest)
    for result in fetch_div2k(specs, options, say=lambda line: click.echo(line, err=True)):
        state = "already there" if result.skipped else "verified and unpacked"
        click.echo(f"{result.name}: {result.image_count} images in {result.folder} ({state})")


if __name__ == "__main__":
    main()
