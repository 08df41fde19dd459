"""The ``vsr`` command line: thin click commands that build a config and call one library function.

Heavy modules (torch, onnxruntime, PyAV) are imported inside the commands so that
``vsr --help`` is instant.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .errors import VsrError

SCALES = click.Choice(["2", "3", "4"])


def _reports_errors(command):
    """Turn the user-caused failures into one ``error:`` line and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VsrError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vsr")
def main() -> None:
    """vsr: real-time super-resolution of video and images with ESPCN."""


@main.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, required=True, help="Upscaling factor.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--val", "val_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Validation images (folder or file; repeatable). Default: every 20th training image, held out.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder for checkpoints (espcn_xN.pt = best, espcn_xN_last.pt = for --resume) and the log.")
@click.option("--degradation", type=click.Choice(["bicubic", "gaussian"]), default="bicubic", show_default=True,
              help="How LR inputs are made: MATLAB antialiased bicubic, or the paper's Gaussian blur + subsample.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Initial Adam learning rate; halved on validation plateaus.")
@click.option("--min-lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/espcn_xN_last.pt.")
@click.option("--init", type=click.Path(path_type=Path), default=None,
              help="Start from these weights (layers whose shapes match, e.g. another scale's).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--mixed-precision/--fp32", default=True, show_default=True,
              help="bf16 for the two feature layers (about 2x faster on AMX CPUs and GPUs).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: one per core). Two 1-thread runs beat one 2-thread run on 2 cores.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or epoch lines.")
@_reports_errors
def train(data, scale, epochs, val_dirs, out_dir, degradation, batch_size, lr, min_lr, seed, resume, init, device,
          mixed_precision, threads, quiet):
    """Train ESPCN on folders of HR images (PNG/JPG/BMP, searched recursively)."""
    from .train import TrainConfig
    from .train import train as run_training

    config = TrainConfig(
        data_dirs=tuple(data), scale=int(scale), out_dir=out_dir, epochs=epochs, val_dirs=tuple(val_dirs),
        degradation=degradation, batch_size=batch_size, lr=lr, min_lr=min_lr, seed=seed, resume=resume,
        init=init, device=device, mixed_precision=mixed_precision, num_threads=threads,
        progress=not quiet,
    )
    result = run_training(config)
    click.echo(
        f"best: {result.best_path} (epoch {result.best_epoch}, validation {result.best_val_psnr_db:.3f} dB), "
        f"{result.wall_seconds / 60:.1f} min"
    )


BACKEND_CHOICE = click.Choice(["auto", "onnxruntime", "torch"])


@main.command("eval")
@click.option("--data", "data_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="HR images (folder or file; repeatable).")
@click.option("--scale", type=SCALES, required=True)
@click.option("--backend", type=BACKEND_CHOICE, default="onnxruntime", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint or .onnx model instead of the shipped weights.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_reports_errors
def eval_(data_dirs, scale, backend, device, weights, as_json):
    """PSNR / SSIM on Y of vsr against bicubic (crop, MATLAB bicubic downscale, shave the border)."""
    from .backends import create_backend
    from .evaluate import evaluate

    engine = create_backend(backend, int(scale), weights=weights, device=device)
    try:
        report = evaluate(list(data_dirs), int(scale), lambda luma: engine.upscale_luma(luma)[0, 0],
                          backend_name=engine.name)
    finally:
        engine.close()
    click.echo(report.to_json() if as_json else report.to_table())


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, default="3", show_default=True)
@click.option("--backend", type=BACKEND_CHOICE, default="onnxruntime", show_default=True,
              help="onnxruntime runs on the CPU without importing torch.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint or .onnx model instead of the shipped weights.")
@click.option("--compare", is_flag=True,
              help="Also write NAME_compare.png: nearest | bicubic | vsr (| original with --reference).")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="The HR original(s) (file, or folder with the same names) for --compare, with PSNR.")
@click.option("--quiet", "-q", is_flag=True)
@_reports_errors
def upscale(input_path, output_path, scale, backend, device, weights, compare, reference, quiet):
    """Upscale an image, or every image in a folder, to PNG.

    OUTPUT is a file for one image, or a folder (created if needed) that gets the same names.
    """
    from tqdm import tqdm

    from .backends import create_backend
    from .upscale import plan_jobs, run_upscale

    jobs = plan_jobs(input_path, output_path, reference)
    engine = create_backend(backend, int(scale), weights=weights, device=device)
    try:
        bar = tqdm(total=len(jobs), unit="img", disable=quiet or len(jobs) == 1, file=sys.stderr)

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
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option("--scale", type=SCALES, required=True)
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint (default: the shipped weights).")
@click.option("--opset", type=click.IntRange(13, 23), default=17, show_default=True)
@_reports_errors
def export(output_path, scale, weights, opset):
    """Export ESPCN to ONNX with dynamic batch, height and width."""
    from .export import export_onnx
    from .models.weights import load_espcn

    path = export_onnx(load_espcn(int(scale), weights), output_path, opset=opset)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--source", default="0", show_default=True,
              help="Camera index (0), a device (/dev/video0), a video file, or an rtsp:// / http:// URL.")
@click.option("--scale", type=SCALES, default="3", show_default=True, help="Upscaling factor.")
@click.option("--backend", type=BACKEND_CHOICE, default="auto", show_default=True,
              help="auto picks the fastest that runs here.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="A .pt checkpoint or .onnx model instead of the shipped weights.")
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
@_reports_errors
def live(source, scale, backend, device, weights, record, headless, as_fast_as_possible, max_frames, full_view,
         divider, screenshot_dir, screenshot_at_frame):
    """Upscale a camera, file or stream live, in a window: bicubic | vsr with a movable divider.

    \b
    Keys: q/Esc quit, s split/full view, space pause, p screenshot (PNG),
          a/d or left/right arrows move the divider (or drag it with the mouse).
    When upscaling is slower than the source, stale frames are dropped: the newest wins.
    """
    from .live import LiveConfig, run_live

    config = LiveConfig(
        source=source, scale=int(scale), backend=backend, weights=weights, device=device, record=record,
        headless=headless, as_fast_as_possible=as_fast_as_possible, max_frames=max_frames, split=not full_view,
        divider=divider, screenshot_dir=screenshot_dir, screenshot_at_frame=screenshot_at_frame,
    )
    report = run_live(config, status=lambda line: click.echo(line, err=True))
    click.echo(report.summary(), err=True)
