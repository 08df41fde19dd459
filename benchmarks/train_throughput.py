"""Training speed of `vsr train`'s own loop, per model of the ladder and way of sampling patches.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--models espcn quality]
        [--seconds 8] [--threads 1] [--data ../shared/data/train] [--out benchmarks/results]

Each configuration runs `vsr.train.train()` itself (not a copy of its step) on a few of the
training images, for a time budget of ``--seconds``, after a one-step warm-up run in the same
process (oneDNN primitives and cuDNN's kernel choice are made once per shape). The trainer
reports the steps it took and the seconds spent inside its step loop only (sampling the batch
on the device, forward, backward, Adam, the weight average), so loading and degrading images,
building grid patches, validating and saving checkpoints are excluded.

Configurations, per model:

- ``grid 17/64``: the ESPCN paper's 17 px patches on a grid, batch 64 (the baseline);
- ``grid 32/16``: larger grid patches, for unpadded networks only (espcn, espcn7);
- ``random P/B``: random crops gathered on the device at the ladder recipe's patch and batch
  (``RECIPES`` in ``tools/train_ladder.py``, what made the shipped weights);
- ``random P/kB``: the same crops at ``--batch-factor`` times the batch (what a GPU wants).

Reported: steps/s, output LR pixels/s (patch_px^2 x batch x steps/s: the pixels the loss sees)
and HR pixels/s (x scale^2). Unpadded networks (espcn, espcn7) also compute ``context_px`` of
mirrored context around every patch that the loss never sees: the "input/output px" column is
that overhead, which is why larger patches train faster per output pixel than the paper's 17 px.
Writes OUT/train_throughput.json and .md (.md names the machine and the command).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "train"

#: The paper's patches and `vsr train`'s default batch: the baseline every model is compared to.
GRID_PATCH_PX, GRID_BATCH = 17, 64
#: Larger grid patches for unpadded networks, whose context is then a smaller share of each step
#: (what stage 5 of the shipped ESPCN used, see vsr/models/weights/MODEL_CARD.md).
LARGE_GRID_PATCH_PX, LARGE_GRID_BATCH = 32, 16


def ladder_recipes() -> dict[str, dict[str, str]]:
    """Per model, the `vsr train` options of tools/train_ladder.py's RECIPES, as a dict."""
    spec = importlib.util.spec_from_file_location("train_ladder", HERE.parent / "tools" / "train_ladder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recipes = {}
    for model, options in module.RECIPES.items():
        words = shlex.split(options)
        recipes[model] = {words[i].lstrip("-"): words[i + 1] for i in range(0, len(words) - 1, 2)}
    return recipes


def configurations(model: str, batch_factor: int) -> list[dict]:
    """(sampling, LR patch px, batch, loss) to time for ``model``: grid baseline, larger grid
    patches where the network has context to amortise, recipe crops, recipe crops at a larger batch."""
    from vsr.models.registry import get_model

    recipe = ladder_recipes()[model]
    patch_px, batch, loss = int(recipe["patch-px"]), int(recipe["batch-size"]), recipe["loss"]
    configs = [dict(sampling="grid", patch_px=GRID_PATCH_PX, batch=GRID_BATCH, loss=loss)]
    if get_model(model).context_px:
        configs.append(dict(sampling="grid", patch_px=LARGE_GRID_PATCH_PX, batch=LARGE_GRID_BATCH, loss=loss))
    configs.append(dict(sampling="random", patch_px=patch_px, batch=batch, loss=loss))
    if batch_factor > 1:
        configs.append(dict(sampling="random", patch_px=patch_px, batch=batch * batch_factor, loss=loss))
    return configs


def pick_images(data_dir: Path, count: int) -> tuple[list[Path], Path]:
    """``count`` training images spread evenly over the folder's sorted list, and the smallest
    of them (by file size) to validate on: validation is excluded from the timing, but it runs
    after every epoch, so a small image keeps the benchmark short."""
    from vsr.images import find_images

    if not data_dir.is_dir():
        sys.exit(f"{data_dir}: no such folder of training images (pass --data DIR)")
    paths = find_images(data_dir)
    if not paths:
        sys.exit(f"{data_dir}: no training images in it (pass --data DIR)")
    step = max(1, len(paths) // count)
    chosen = paths[::step][:count]
    return chosen, min(chosen, key=lambda p: p.stat().st_size)


def measure(images: list[Path], val_image: Path, model: str, sampling: str, patch_px: int, batch: int,
            device: str = "cpu", seconds: float = 8.0, scale: int = 3, threads: int | None = 1,
            loss: str = "l2", mixed_precision: bool = True, work_dir: Path | None = None) -> dict:
    """Time `vsr.train.train()` for one configuration: one row of the results."""
    from vsr.models.registry import get_model
    from vsr.train import TrainConfig, train

    def run(budget_s: float, out_dir: Path):
        return train(TrainConfig(
            data_dirs=tuple(images), val_dirs=(val_image,), scale=scale, out_dir=out_dir, model=model,
            sampling=sampling, patch_px=patch_px, batch_size=batch, loss=loss, device=device,
            mixed_precision=mixed_precision, num_threads=threads, progress=False,
            # The budget ends the run: epochs only shape the cosine schedule, which costs nothing.
            schedule="cosine", epochs=1_000_000, time_budget_s=budget_s,
            # Random crops: one long epoch, so validation does not interrupt the timed steps.
            steps_per_epoch=1_000_000,
        ))

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        # Any budget under one step's time stops after exactly one step: the warm-up.
        run(1e-6, Path(tmp) / "warmup")
        started = time.perf_counter()
        result = run(seconds, Path(tmp) / "timed")
        wall_s = time.perf_counter() - started
    steps_per_s = result.steps_run / result.train_seconds
    lr_px_per_s = steps_per_s * batch * patch_px**2
    context_px = get_model(model).context_px
    return {
        "model": model,
        "sampling": sampling,
        "patch_px": patch_px,
        "batch": batch,
        "precision": "bf16 autocast" if mixed_precision else "fp32",
        "steps": result.steps_run,
        "train_s": round(result.train_seconds, 3),
        "call_wall_s": round(wall_s, 2),
        "steps_per_s": steps_per_s,
        "output_lr_px_per_s": lr_px_per_s,
        "hr_px_per_s": lr_px_per_s * scale**2,
        "input_per_output_px": ((patch_px + 2 * context_px) / patch_px) ** 2,
    }


def _significant(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if value < 10 ** digits else f"{value:.0f}"


def _machine(device: str) -> str:

    from vsr.tuning.model_choice import machine_name

    cpu = machine_name("cpu")
    return f"{machine_name(device)}, host CPU {cpu}" if device.startswith("cuda") else cpu


def write_results(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Training throughput of `vsr train`, x{result['scale']} on {result['device']}",
        "",
        f"- Machine: {result['machine']}; torch {result['torch']}; {result['threads']} thread(s).",
        f"- Command: `{result['command']}`",
        f"- {len(result['images'])} training images from {result['data']}; each configuration ran "
        f"`vsr.train.train()` for a {result['seconds']:g} s budget after a one-step warm-up run.",
        "- steps/s and pixels/s count the trainer's step loop only (batch sampling on the device, "
        "forward, backward, Adam, weight average): no image loading, no validation, no checkpoints.",
        "- output LR px/s = patch_px² × batch × steps/s (the pixels the loss sees); HR px/s = that × scale². "
        "Grid epochs end with one short batch, counted as full (under 1/(batches per epoch) too high).",
        "- input/output px: LR pixels the network computes per output pixel (mirrored context of unpadded "
        "networks); \"vs grid\": output px/s over the same model's grid 17 px, batch 64.",
        "- This replaces a hand-timed ESPCN step on random tensors (no sampling, no flips, no weight average), "
        "whose table compared 17 px patches at batch 64 with larger ones: the espcn and espcn7 rows "
        "\"grid 32/16\" and \"vs grid 17/64\" carry that comparison, now on the real loop.",
        "",
        "| model | sampling | patch (LR px) | batch | steps | steps/s | output LR Mpx/s | HR Mpx/s "
        "| input/output px | vs grid 17/64 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['sampling']} | {r['patch_px']} | {r['batch']} | {r['steps']} "
            f"| {_significant(r['steps_per_s'])} | {_significant(r['output_lr_px_per_s'] / 1e6)} "
            f"| {_significant(r['hr_px_per_s'] / 1e6)} | {r['input_per_output_px']:.2f} "
            f"| {r['vs_grid']:.2f}x |")
    (out_dir / "train_throughput.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    from vsr.models.registry import MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (as `vsr train --device`).")
    parser.add_argument("--models", nargs="+", default=[m for m in MODELS if MODELS[m].degradation == "bicubic"],
                        choices=[m for m in MODELS if MODELS[m].degradation == "bicubic"])
    parser.add_argument("--seconds", type=float, default=8.0, help="Training budget per configuration.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--batch-factor", type=int, default=4,
                        help="The larger-batch configuration's batch, in recipe batches (1: none).")
    parser.add_argument("--fp32", action="store_true", help="Train without bf16 autocast.")
    parser.add_argument("--images", type=int, default=24, help="How many training images to use.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import torch

    images, val_image = pick_images(args.data, args.images)
    rows = []
    for model in args.models:
        for config in configurations(model, args.batch_factor):
            row = measure(images, val_image, model, device=args.device, seconds=args.seconds, scale=args.scale,
                          threads=args.threads, mixed_precision=not args.fp32, **config)
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    for row in rows:
        grid = next(r for r in rows if r["model"] == row["model"]
                    and (r["sampling"], r["patch_px"], r["batch"]) == ("grid", GRID_PATCH_PX, GRID_BATCH))
        row["vs_grid"] = row["output_lr_px_per_s"] / grid["output_lr_px_per_s"]
    write_results({
        "device": args.device,
        "machine": _machine(args.device),
        "torch": torch.__version__,
        "threads": args.threads,
        "scale": args.scale,
        "seconds": args.seconds,
        "data": str(args.data),
        "images": [str(p.relative_to(args.data)) for p in images],
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
        "rows": rows,
    }, args.out)


if __name__ == "__main__":
    main()
