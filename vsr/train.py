"""Training any model of the ladder on folders of HR images (``vsr train``).

Two ways to take patches (``TrainConfig.sampling``):

- ``grid``: the ESPCN paper's. The target is a 17r x 17r HR patch, taken on a grid with a
  stride of 14 LR pixels (17 minus one per odd kernel), shifted at random each epoch.
- ``random``: random aligned crops gathered on the device from whole images kept there
  (``RandomCrops``): no per-step host work, any batch size, so a GPU is never left waiting.

With ``degradation`` "compressed" (``vsr.degradations``: blur, random downscale kernels, noise
and a real codec round trip), degraded patches come from pools made ahead in worker processes
(``PoolBatches``), and ``clean_fraction`` of every batch stays clean MATLAB-bicubic random crops,
so the model still serves clean input.

Either way the LR input carries the context an unpadded network consumes (``context_px``:
4 for ESPCN, 0 for padded networks), mirrored where the patch meets the image border,
exactly as the network's ``forward`` mirrors whole frames at inference.
"""
from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import (CheckpointPaths, LastState, config_record, read_last_state, read_weights,
                         write_best_weights, write_last_state)
from .color import rgb_to_y
from .errors import InputError, OutputError
from .images import DEGRADATIONS, degrade, find_images, modcrop, read_rgb
from .metrics import psnr
from .models.registry import DEFAULT_MODEL, get_model
from .models.weights import check_scale

if TYPE_CHECKING:  # only for the annotation: the pools' module loads with compressed training
    from .degradations import CompressedDegradation


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run.

    ``batch_size`` 64 and ``lr`` 1e-3 suit Adam on this small network. With ``schedule``
    "plateau" (the paper's "decay when the improvement is below a threshold") the rate halves
    whenever validation PSNR gains less than ``plateau_db`` over ``patience`` epochs, down to
    ``min_lr``; "cosine" lowers it from ``lr`` to ``min_lr`` along a half cosine over ``epochs``,
    which spends a fixed budget better than waiting for noisy plateaus.

    ``patch_px`` is the LR side of a patch (the paper's 17). Each patch also carries 4 pixels of
    context on every side, so larger patches spend less of each step on context (32 px at batch
    16: 1.1x-1.4x the output pixels per second of 17 px at batch 64 on CPUs, see
    ``benchmarks/results/train_throughput.md``). Images smaller than a patch are skipped.
    """

    data_dirs: tuple[Path, ...]
    scale: int
    out_dir: Path
    #: None: as many as ``time_budget_s`` allows (100 without a budget).
    epochs: int | None = 100
    #: Which model of the ladder (``vsr models``) to train.
    model: str = DEFAULT_MODEL
    #: "grid": the paper's patch grid (one epoch = every patch once); "random": random crops
    #: gathered on the device, ``steps_per_epoch`` batches per epoch.
    sampling: str = "grid"
    steps_per_epoch: int = 500
    #: "l2" (MSE, what PSNR measures), "l1" (converges faster on deep networks), or "l1-l2":
    #: L1 for the first 80% of the run, then MSE to polish PSNR.
    loss: str = "l2"
    #: Stop after this much training time (seconds, 0: no limit), with the cosine schedule
    #: then following time instead of epochs, so a fixed budget still ends at ``min_lr``.
    time_budget_s: float = 0.0
    val_dirs: tuple[Path, ...] = ()
    #: "bicubic", "gaussian" (LR made once per image) or "compressed" (codec-degraded patch
    #: pools, needs ``sampling`` "random"; validation then scores the compressed LR).
    degradation: str = "bicubic"
    #: With "compressed": the share of each batch that is clean MATLAB-bicubic crops. A CPU
    #: fine-tune of espcn on compressed pools alone lost ~1 dB on clean Set5
    #: (benchmarks/results/compressed_cpu_finetune.md); a quarter clean keeps the clean skill.
    clean_fraction: float = 0.25
    #: With "compressed": patches per pool, and the processes making pools ahead. A pool is
    #: replaced after it has served as many patches as it holds (each seen about once).
    pool_patches: int = 4096
    pool_workers: int = 1
    #: With "compressed": the pools' recipe (``vsr.degradations.CompressedDegradation``); None:
    #: its defaults. The shipped realtime-compressed-plus x2, x3 and x4 were last fine-tuned with
    #: ``soft_prob`` 0.5, ``noise_prob`` 0.1, ``exposure_prob`` 0.25 and ``coded_scene_prob`` 0.6.
    compressed_recipe: CompressedDegradation | None = None
    #: With ``sampling`` "random": LR pixels of real picture around each patch that the network
    #: sees and the loss does not (its output there is cropped off). Why: a padded network's
    #: reach (the stride-2 rungs': 12 LR pixels) makes most of a small patch's output depend on
    #: the zero padding at the patch's edge, which in a frame only the frame's own edge does. The
    #: x3 compressed rung fine-tuned with 12 gained 0.03 dB at CRF 30 over the same fine-tune
    #: without, in half the steps (benchmarks/results/compressed_plus_margin.md). Even, so a
    #: stride-2 body keeps its phase.
    margin_px: int = 0
    #: With ``margin_px``: the share of steps whose margin is cut off instead, the patch's edge
    #: then zero padded as a frame's edge is, so the network keeps that skill.
    edge_share: float = 0.25
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    patience: int = 6
    plateau_db: float = 0.005
    #: "plateau", "cosine", or "auto": cosine with a time budget (the only schedule that can aim
    #: at one), else plateau.
    schedule: str = "auto"
    patch_px: int = 17
    #: Grid step in LR pixels; None: the paper's, ``patch_px - 3`` (14 for 17).
    stride_px: int | None = None
    #: Shift the patch grid by a random offset (under one stride) every epoch after the first.
    jitter: bool = True
    seed: int = 0
    resume: bool = False
    init: Path | None = None
    device: str = "cpu"
    #: bf16 for the two feature layers (2x faster on CPUs with AMX, and on GPUs); the last layer,
    #: the loss and the weights stay fp32, so the final precision is not limited by bf16.
    mixed_precision: bool = True
    #: Validate and keep an exponential moving average of the weights (0: the raw weights). The
    #: average removes most of the step-to-step noise of small batches without lowering the rate.
    ema_decay: float = 0.999
    #: CPU threads for torch (None: torch's default, one per core).
    num_threads: int | None = None
    #: Fine-tune for int8: every convolution sees its input and weights rounded as NNCF's int8
    #: model for OpenVINO rounds them (``models/int8_aware.py``), so the quantised network loses
    #: less. Needs ``init`` (the float weights); meant with a low ``lr``; computes in fp32.
    #: (Distilling from the float network instead of fitting HR was tried on the H100 and gained
    #: nothing: training/int8_aware/README.md.)
    int8_aware: bool = False
    #: Distillation: a shipped model (``vsr models``) whose upscale of each clean training image,
    #: computed once before training, is blended into the HR target with ``distill_weight``
    #: (``sampling`` "random" only; the compressed pools keep their HR targets). For the MSE
    #: loss, fitting the blend is the same as (1 - w) x MSE to HR + w x MSE to the teacher.
    teacher: str | None = None
    distill_weight: float = 0.5
    #: Steps over which the learning rate rises linearly from ~0 to its scheduled value. None:
    #: ``AUTO_WARMUP_STEPS`` for a re-parameterised (ReLU) network trained from scratch, else 0.
    #: Why: the last layer starts at zero, so the first Adam steps move the body's weights by a
    #: full learning rate each along directions the near-zero last layer makes up; at 1e-3 that
    #: switched off all but 0.1 % of the last ReLU layer's units of a half-resolution network
    #: within 50 steps, which then never learned (stuck at its bicubic skip). With 300 steps of
    #: warm-up a quarter or more stay alive (training/realtime/warmup.md).
    warmup_steps: int | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    best_path: Path
    best_val_psnr_db: float
    best_epoch: int
    epochs_run: int
    wall_seconds: float
    #: Optimizer steps taken by this call, and the seconds they took: time inside the step loops
    #: only (batch sampling, forward, backward, update), without loading or degrading images,
    #: building grid patches, validating or saving (what ``benchmarks/train_throughput.py`` reports).
    steps_run: int = 0
    train_seconds: float = 0.0
    #: Bicubic's PSNR on the same validation images: a best model under it makes pictures worse
    #: than plain resizing (``below_bicubic``).
    val_bicubic_psnr_db: float | None = None

    @property
    def below_bicubic(self) -> bool:
        return self.val_bicubic_psnr_db is not None and self.best_val_psnr_db < self.val_bicubic_psnr_db


def degraded_images(
    paths: list[Path], scale: int, degradation: str, progress: bool = False, context_px: int = 4,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each image as (LR luma with ``context_px`` mirrored pixels of context, float32; HR luma, uint8)."""
    from tqdm import tqdm

    context = context_px
    pairs = []
    for path in tqdm(paths, desc=f"degrading x{scale}", unit="img", disable=not progress, leave=False):
        hr = modcrop(rgb_to_y(read_rgb(path)), scale)
        lr = degrade(hr / 255.0, scale, degradation).astype(np.float32)
        if min(lr.shape) > context:
            pairs.append((np.pad(lr, context, mode="reflect"), hr))
    return pairs


TRAIN_DEGRADATIONS = (*DEGRADATIONS, "compressed")
#: ``epochs`` when a time budget alone sets the length: never reached, the budget ends first.
EPOCHS_WITHOUT_LIMIT = 1_000_000
SCHEDULES = ("auto", "plateau", "cosine")
SAMPLINGS = ("grid", "random")
LOSSES = ("l2", "l1", "l1-l2")


def grid_patches(
    pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, patch_px: int, stride_px: int,
    origin_px: tuple[int, int] = (0, 0), context_px: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """LR patches with context (N, P+2c, P+2c) float32 and HR targets (N, P*s, P*s) uint8.

    The grid starts at ``origin_px`` (LR rows, columns): shifting it between epochs shows the
    network other patches of the same images at the paper's stride.
    """
    context = context_px
    lr_patches, hr_patches = [], []
    for lr_ctx, hr in pairs:
        h_lr, w_lr = lr_ctx.shape[0] - 2 * context, lr_ctx.shape[1] - 2 * context
        for top in range(origin_px[0], h_lr - patch_px + 1, stride_px):
            for left in range(origin_px[1], w_lr - patch_px + 1, stride_px):
                lr_patches.append(lr_ctx[top : top + patch_px + 2 * context, left : left + patch_px + 2 * context])
                hr_patches.append(
                    hr[top * scale : (top + patch_px) * scale, left * scale : (left + patch_px) * scale]
                )
    if not lr_patches:
        raise InputError(f"no training patches: every image is smaller than {patch_px * scale}px")
    return np.stack(lr_patches), np.stack(hr_patches)


def extract_patches(
    paths: list[Path], scale: int, degradation: str, patch_px: int, stride_px: int, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's patches of these images, on a grid from the top-left corner."""
    return grid_patches(degraded_images(paths, scale, degradation, progress), scale, patch_px, stride_px)


def distilled_pairs(pairs, scale: int, context_px: int, teacher: str, weight: float, threads: int | None = None):
    """``pairs`` with each HR target replaced by ``(1 - weight) * HR + weight * teacher(LR)``, float16
    in [0, 1]: the teacher (a shipped model) upscales each clean LR image once, on OpenVINO fp32."""
    from .backends.openvino import OpenVinoBackend, OpenVinoOptions
    from .models.weights import shipped_weights

    engine = OpenVinoBackend(scale, shipped_weights(scale, "onnx", teacher),
                             OpenVinoOptions(precision="fp32", num_threads=threads))
    blended = []
    try:
        for lr, hr in pairs:
            c = context_px
            plain = lr[c:lr.shape[0] - c, c:lr.shape[1] - c] if c else lr
            taught = engine.upscale_luma(np.ascontiguousarray(plain)[None, None])[0, 0]
            mix = (1.0 - weight) * (hr.astype(np.float32) / 255.0) + weight * taught
            blended.append((lr, mix.astype(np.float16)))
    finally:
        engine.close()
    return blended


def _dihedral(batch, k: int):
    """One of the 8 flips/rotations (k in 0..7) applied to an (N, 1, H, W) tensor."""
    import torch

    if k >= 4:
        batch = torch.flip(batch, dims=(3,))
    return torch.rot90(batch, k % 4, dims=(2, 3))


def _torch_upscaler(model, device):
    import torch

    def upscale(luma: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[None, None].to(device)
            return model(x).clamp_(0, 1)[0, 0].cpu().numpy()

    return upscale


class RandomCrops:
    """Random aligned (LR with context, HR) patches gathered on the device from whole images
    kept there, as flat tensors with per-image offsets: a batch is two index computations and
    two gathers, with no host work and no host-device copy per step.

    Every LR position whose patch fits is equally likely (images are drawn by their number of
    positions), so large images are not under-sampled as a per-image draw would do.
    """

    def __init__(self, pairs, scale: int, patch_px: int, context_px: int, device, seed: int) -> None:
        import torch

        usable = [(lr, hr) for lr, hr in pairs if min(lr.shape) - 2 * context_px >= patch_px]
        if not usable:
            raise InputError(f"no training patches: every image is smaller than {patch_px * scale}px")
        self.scale, self.patch_px, self.context_px = scale, patch_px, context_px
        as_long = lambda values: torch.tensor(values, dtype=torch.int64, device=device)  # noqa: E731
        lr_sizes = [lr.size for lr, _ in usable]
        hr_sizes = [hr.size for _, hr in usable]
        self.lr_flat = torch.from_numpy(np.concatenate([lr.ravel() for lr, _ in usable])).to(device)
        self.hr_flat = torch.from_numpy(np.concatenate([hr.ravel() for _, hr in usable])).to(device)
        self.lr_offset = as_long(np.cumsum([0] + lr_sizes[:-1]).tolist())
        self.hr_offset = as_long(np.cumsum([0] + hr_sizes[:-1]).tolist())
        self.lr_width = as_long([lr.shape[1] for lr, _ in usable])
        self.hr_width = as_long([hr.shape[1] for _, hr in usable])
        rows = [lr.shape[0] - 2 * context_px - patch_px + 1 for lr, _ in usable]
        cols = [lr.shape[1] - 2 * context_px - patch_px + 1 for lr, _ in usable]
        self.rows, self.cols = as_long(rows), as_long(cols)
        self.weights = torch.tensor([r * c for r, c in zip(rows, cols)], dtype=torch.float32, device=device)
        side = patch_px + 2 * context_px
        self.lr_grid = torch.arange(side, device=device)
        self.hr_grid = torch.arange(patch_px * scale, device=device)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.images = len(usable)

    def batch(self, n: int):
        """(LR (n, 1, P+2c, P+2c) float32, HR (n, 1, P*s, P*s) float32 in [0, 1])."""
        import torch

        g = self.generator
        image = torch.multinomial(self.weights, n, replacement=True, generator=g)
        top = (torch.rand(n, device=self.weights.device, generator=g) * self.rows[image]).long()
        left = (torch.rand(n, device=self.weights.device, generator=g) * self.cols[image]).long()
        lr_index = (self.lr_offset[image, None, None]
                    + (top[:, None, None] + self.lr_grid[None, :, None]) * self.lr_width[image, None, None]
                    + left[:, None, None] + self.lr_grid[None, None, :])
        s = self.scale
        hr_index = (self.hr_offset[image, None, None]
                    + (top[:, None, None] * s + self.hr_grid[None, :, None]) * self.hr_width[image, None, None]
                    + left[:, None, None] * s + self.hr_grid[None, None, :])
        hr = self.hr_flat[hr_index][:, None].float()
        # uint8 HR, or float16 targets in [0, 1] already (distillation's blends).
        return self.lr_flat[lr_index][:, None], hr.div_(255.0) if self.hr_flat.dtype == torch.uint8 else hr


class PoolBatches:
    """Random batches from the current codec-degraded patch pool of a ``PoolProducer``.

    The next pool replaces the current one once it has served ``swap_after`` patches, always
    at the same step, so a run is reproducible from its seed whatever the workers' speed; the
    producer has made it meanwhile, so the wait is normally nil (``waited_s`` says; the first
    pool's wait, while the workers start and read the images, is ``first_pool_s``).
    """

    def __init__(self, producer, device, seed: int, swap_after: int | None = None) -> None:
        import torch

        self.producer, self.device = producer, device
        self.generator = torch.Generator().manual_seed(seed)
        self.pools = 0
        self.waited_s = 0.0
        self._load()
        self.first_pool_s, self.waited_s = self.waited_s, 0.0
        self.swap_after = swap_after or len(self.lr)

    def _load(self) -> None:
        import torch

        started = time.perf_counter()
        lr, hr = self.producer.get()
        self.waited_s += time.perf_counter() - started
        self.lr = torch.from_numpy(lr)[:, None].to(self.device)
        self.hr = torch.from_numpy(hr)[:, None].to(self.device)
        self.served, self.pools = 0, self.pools + 1

    def batch(self, n: int):
        """(LR (n, 1, P+2c, P+2c) float32, HR (n, 1, P*s, P*s) float32 in [0, 1])."""
        import torch

        if self.served >= self.swap_after:
            self._load()
        self.served += n
        index = torch.randint(len(self.lr), (n,), generator=self.generator).to(self.device)
        return self.lr[index], self.hr[index].float().div_(255.0)


#: ``TrainConfig.warmup_steps`` None: the warm-up of a re-parameterised network from scratch.
AUTO_WARMUP_STEPS = 1000


def warmup_steps(config: "TrainConfig", arch: str) -> int:
    """The warm-up ``config`` asks for: its own, or, for None, ``AUTO_WARMUP_STEPS`` where a
    ReLU network (``reparam``) starts from scratch (no ``init``; a resumed run has its steps)."""
    if config.warmup_steps is not None:
        return config.warmup_steps
    return AUTO_WARMUP_STEPS if arch == "reparam" and config.init is None else 0


def _warmup_factor(steps_done: int, warmup: int) -> float:
    """The share of the scheduled rate step ``steps_done + 1`` runs at: (steps_done + 1) / warmup
    during the warm-up, 1 after it (and without one)."""
    return min(1.0, (steps_done + 1) / warmup) if warmup else 1.0


def _cosine(progress: float, floor: float) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` as ``config`` says: the library's one entry point for training
    (``vsr train`` only builds the config). Every option is checked before any work; the data
    is prepared, then a ``Trainer`` runs; pool workers, if any, are closed however it ends."""
    config = _resolved(config)
    info = _checked_model(config)
    _check_combinations(config)
    device = _training_device(config.device)
    out_dir = _output_folder(Path(config.out_dir))
    generator = _set_up_torch(config)
    train_paths, val_paths = _split_images(config)
    files = CheckpointPaths(out_dir, f"{info.name}_x{config.scale}")
    log = _Logger(out_dir / f"{files.stem}_log.jsonl", config.progress)
    log.say(f"{info.name} x{config.scale}: {len(train_paths)} training images, {len(val_paths)} validation images")
    source, (validator, clean_validator) = _prepare_data(config, info, device, generator, train_paths, val_paths,
                                                         log)
    try:
        trainer = Trainer(config, info, device=device, source=source, generator=generator, log=log, files=files,
                          validator=validator, clean_validator=clean_validator)
        return trainer.run()
    finally:
        source.close()


def _resolved(config: TrainConfig) -> TrainConfig:
    """``config`` with its "auto" schedule and open epoch count made definite."""
    if config.schedule == "auto":
        config = replace(config, schedule="cosine" if config.time_budget_s else "plateau")
    if config.epochs is None:
        # No --epochs: a time budget alone decides the length (epochs would cut it short).
        config = replace(config, epochs=EPOCHS_WITHOUT_LIMIT if config.time_budget_s else 100)
    return config


def _checked_model(config: TrainConfig):
    """The ``ModelInfo`` to train, once the scale, the model and every named choice are valid."""
    check_scale(config.scale)
    info = get_model(config.model)
    if config.scale not in info.scales:
        raise InputError(f"model {info.name} has no x{config.scale}")
    for value, allowed, what in ((config.degradation, TRAIN_DEGRADATIONS, "degradation"),
                                 (config.schedule, SCHEDULES, "schedule"), (config.sampling, SAMPLINGS, "sampling"),
                                 (config.loss, LOSSES, "loss")):
        if value not in allowed:
            raise InputError(f"{what} must be one of {', '.join(allowed)}")
    return info


def _check_combinations(config: TrainConfig) -> None:
    """Options that only work together, and ranges the dataclass cannot enforce."""
    if config.degradation == "compressed" and config.sampling != "random":
        raise InputError("--degradation compressed needs --sampling random (patches come from pools, not a grid)")
    if not 0.0 <= config.clean_fraction <= 1.0:
        raise InputError("clean_fraction must be in [0, 1]")
    if config.time_budget_s and config.schedule != "cosine":
        raise InputError("--budget-minutes needs the cosine schedule (a plateau schedule has no end to aim at): "
                         "leave --schedule out or give --schedule cosine")
    if config.teacher is not None and config.sampling != "random":
        raise InputError("--teacher needs --sampling random (targets are blended into whole images)")
    if not 0.0 < config.distill_weight <= 1.0:
        raise InputError("distill_weight must be in (0, 1]")
    if config.margin_px and config.sampling != "random":
        raise InputError("--margin-px needs --sampling random (the grid's patches carry no margin)")
    if config.margin_px < 0 or config.margin_px % 2:
        raise InputError("--margin-px must be even and not negative (a stride-2 body keeps its phase)")
    if not 0.0 <= config.edge_share <= 1.0:
        raise InputError("edge_share must be in [0, 1]")
    if config.int8_aware and config.init is None:
        raise InputError("--int8-aware fine-tunes a trained network: give its weights with --init")


def _training_device(name: str):
    """The torch device ``name`` (cpu, cuda, cuda:N), set up for training."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to torch")
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


def _output_folder(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create output directory ({exc.strerror})") from None
    return out_dir


def _set_up_torch(config: TrainConfig):
    """Threads, and every random generator seeded from ``config.seed``; returns the generator of
    the batch order and flips (saved and restored apart, for ``--resume``)."""
    import torch

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    return torch.Generator().manual_seed(config.seed)


def _split_images(config: TrainConfig) -> tuple[list[Path], list[Path]]:
    """(training images, validation images)."""
    train_paths = find_images(*config.data_dirs)
    if not train_paths:
        raise InputError(f"no training images found in {', '.join(map(str, config.data_dirs))}")
    if config.val_dirs:
        return train_paths, find_images(*config.val_dirs)
    # Hold out every 20th image so validation measures generalisation, not memory.
    val_paths = train_paths[::20]
    return [p for p in train_paths if p not in set(val_paths)] or val_paths, val_paths


def _prepare_data(config, info, device, generator, train_paths, val_paths, log):
    """(the batch source, (validator, clean validator or None)). The training images are held
    here only, so they are freed once on the device (random crops)."""
    context_px = info.context_px + config.margin_px  # Trainer.step crops the margin off the output
    # With "compressed", the whole images serve the clean share of each batch.
    clean_degradation = "bicubic" if config.degradation == "compressed" else config.degradation
    pairs = degraded_images(train_paths, config.scale, clean_degradation, config.progress, context_px)
    too_small = sum(min(lr.shape) - 2 * context_px < config.patch_px for lr, _ in pairs)
    if too_small:
        log.say(f"{too_small} image(s) smaller than a {config.patch_px * config.scale}px patch: not used")
    validators = _validators(config, val_paths)
    if config.sampling == "grid":
        return _grid_source(config, device, generator, pairs, context_px, log), validators
    if config.teacher is not None:
        pairs = distilled_pairs(pairs, config.scale, context_px, config.teacher, config.distill_weight,
                                config.num_threads)
        log.say(f"distilling from {config.teacher}: targets are {1 - config.distill_weight:g} x HR + "
                f"{config.distill_weight:g} x its upscale")
    crops = RandomCrops(pairs, config.scale, config.patch_px, context_px, device, config.seed)
    del pairs  # on the device now
    log.say(f"random {config.patch_px * config.scale}px crops of {crops.images} images on {device}, "
            f"{config.steps_per_epoch} batches of {config.batch_size} per epoch ({config.degradation} degradation)")
    return _random_source(config, device, generator, crops, train_paths, context_px, log), validators


def _validators(config: TrainConfig, val_paths: list[Path]):
    """(validator of the training degradation, validator on clean input or None): compressed
    training is also scored on clean input, the skill ``clean_fraction`` is there to keep."""
    validator = _Validator(val_paths, config.scale, config.degradation, config.seed, config.compressed_recipe)
    if config.degradation != "compressed":
        return validator, None
    return validator, _Validator(val_paths, config.scale, "bicubic")


def _grid_source(config, device, generator, pairs, context_px: int, log) -> "_BatchSource":
    import torch

    stride_px = config.stride_px or max(1, config.patch_px - 3)

    def cut(origin_px):
        lr_np, hr_np = grid_patches(pairs, config.scale, config.patch_px, stride_px, origin_px, context_px)
        # The whole epoch's patches live on the device (tens of MB): on a GPU, batches are then
        # gathered there instead of copied over PCIe at every step.
        return torch.from_numpy(lr_np)[:, None].to(device), torch.from_numpy(hr_np)[:, None].to(device)

    lr_all, hr_all = cut((0, 0))
    log.say(
        f"{len(lr_all)} patches of {config.patch_px * config.scale}px ({config.degradation} degradation)"
        + (", grid shifted at random each epoch" if config.jitter else "")
    )
    return _BatchSource(config, device, generator, grid=(cut, lr_all, hr_all, stride_px))


def _random_source(config, device, generator, crops, train_paths, context_px: int, log) -> "_BatchSource":
    """Random crops, with compressed training some of each batch from codec-degraded pools."""
    if config.degradation != "compressed":
        return _BatchSource(config, device, generator, crops=crops, n_clean=config.batch_size)
    from .degradations import CompressedDegradation, PoolProducer

    n_clean = round(config.batch_size * config.clean_fraction)
    producer = PoolProducer(train_paths, config.scale, config.patch_px, context_px, config.pool_patches,
                            config.seed, workers=config.pool_workers,
                            recipe=config.compressed_recipe or CompressedDegradation())
    try:
        pools = PoolBatches(producer, device, config.seed)
    except BaseException:
        producer.close()
        raise
    log.say(f"compressed pools of {config.pool_patches} patches from {config.pool_workers} worker(s), "
            f"the first after {pools.first_pool_s:.1f}s; {n_clean} of each {config.batch_size} clean bicubic")
    return _BatchSource(config, device, generator, crops=crops, pools=pools, n_clean=n_clean)


class _BatchSource:
    """Where training batches come from, one seam for the loop: the whole epoch's grid patches
    (re-cut at a random origin each epoch with ``jitter``, shuffled), or random crops, some of
    each batch replaced by compressed pool patches."""

    def __init__(self, config, device, generator, *, crops=None, pools=None, n_clean: int = 0, grid=None) -> None:
        self.config, self.device, self.generator = config, device, generator
        self.crops, self.pools, self.n_clean = crops, pools, n_clean
        if grid is not None:
            self._cut, self.lr_all, self.hr_all, self._stride_px = grid
        self._order = None
    def start_epoch(self, epoch: int) -> int:
        """Batches in this epoch."""
        import torch

        if self.crops is not None:
            return self.config.steps_per_epoch
        if self.config.jitter and epoch > 1:
            origin = torch.randint(0, self._stride_px, (2,), generator=self.generator).tolist()
            self.lr_all, self.hr_all = self._cut(tuple(origin))
        n = len(self.lr_all)
        self._order = torch.randperm(n, generator=self.generator).to(self.device)
        return -(-n // self.config.batch_size)

    def batch(self, index: int):
        """(LR with context, HR in [0, 1]) for batch ``index`` of the epoch."""
        import torch

        size = self.config.batch_size
        if self.crops is None:
            idx = self._order[index * size:(index + 1) * size]
            return self.lr_all[idx], self.hr_all[idx].float().div_(255.0)
        if self.pools is None:
            return self.crops.batch(size)
        parts = [self.crops.batch(self.n_clean)] if self.n_clean else []
        if self.n_clean < size:
            parts.append(self.pools.batch(size - self.n_clean))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def calibration_batches(self, count: int = 8):
        """Up to ``count`` LR batches, for measuring activation ranges (fewer where the grid
        holds fewer patches); the epoch's order is untouched."""
        size = self.config.batch_size
        for i in range(count):
            if self.crops is not None:
                yield self.crops.batch(size)[0]
            elif i * size < len(self.lr_all):
                yield self.lr_all[i * size:(i + 1) * size]

    def rng_state(self):
        """The random crops' generator state (None for the grid, which draws from ``generator``)."""
        return self.crops.generator.get_state() if self.crops is not None else None

    def set_rng_state(self, state) -> None:
        if self.crops is not None and state is not None:
            self.crops.generator.set_state(state)

    def close(self) -> None:
        """Stop the pool workers, if any."""
        if self.pools is not None:
            self.pools.producer.close()


class Trainer:
    """One training run: the network, the moving average of its weights (``ema``, what is
    validated and kept), Adam, the learning-rate schedule and its warm-up, fed by a batch source
    and scored by validators, with where the run stands (``epoch``, ``steps``, the best so far) as
    attributes that the last-state file saves and ``resume`` restores.

    ``run`` trains epoch after epoch: ``run_epoch`` (``step`` per batch), then ``finish_epoch``
    (``validate``, the schedule, ``save_best`` / ``save_last``, the log line)."""

    def __init__(self, config: TrainConfig, info, *, device, source: _BatchSource, generator, log: "_Logger",
                 files: CheckpointPaths, validator: "_Validator", clean_validator: "_Validator | None") -> None:
        import torch

        self.config, self.info, self.device = config, info, device
        self.source, self.generator, self.log, self.files = source, generator, log, files
        self.validator, self.clean_validator = validator, clean_validator
        self.model = self._build_model()
        # The int8 simulation rounds in fp32; bf16 autocast would add a second, different rounding.
        self.mixed_precision = config.mixed_precision and not config.int8_aware
        self.ema = copy.deepcopy(self.model) if config.ema_decay else self.model
        self._model_params, self._ema_params = list(self.model.parameters()), list(self.ema.parameters())
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        #: ``min_lr`` as a share of ``lr``: where the cosine ends.
        self.lr_floor = min(config.min_lr / config.lr, 1.0)
        self.scheduler = self._make_scheduler()
        self.warmup_steps = warmup_steps(config, info.arch)
        # Where the run stands: epochs done (then the current one), optimiser steps over the whole
        # run, the best validation, and the wall time of earlier (resumed) parts of the run.
        self.epoch, self.steps, self.best_val_psnr_db, self.best_epoch = 0, 0, -math.inf, 0
        self.wall_before_s = 0.0
        # This call's: steps and seconds inside the step loops, when it started, and the batch
        # the current epoch is at (``progress`` reads them).
        self.steps_run, self.train_seconds, self.started_s = 0, 0.0, 0.0
        self.batch_index, self.batches = 0, 0

    def _build_model(self):
        import torch

        # channels_last: oneDNN's and cuDNN's convolutions (forward and backward) run faster in it.
        model = self.info.build(self.config.scale).to(self.device, memory_format=torch.channels_last)
        if self.config.init is not None:
            _transfer(model, read_weights(self.config.init)["state_dict"])
        if self.config.int8_aware:
            from .models.int8_aware import make_int8_aware

            ranges = make_int8_aware(model, self.source.calibration_batches())
            self.log.say("int8-aware: input ranges " + ", ".join(
                f"{name} {'±' if signed else '0..'}{amax:.3g}" for name, (amax, signed) in ranges.items()))
        return model

    def _make_scheduler(self):
        import torch

        config = self.config
        if config.schedule == "cosine":
            # Closed form in the progress (LambdaLR saves no curve): a run resumed with a larger
            # --epochs follows the longer cosine from where it stands.
            epochs, floor = config.epochs, self.lr_floor
            return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda epoch: _cosine(epoch / epochs, floor))
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=0.5, patience=config.patience, threshold=config.plateau_db,
            threshold_mode="abs", min_lr=config.min_lr,
        )

    def resume(self) -> None:
        """Continue from the run folder's last-state file (any version's), if it has one."""
        import torch

        path = self.files.last
        if not path.exists():
            self.log.say(f"--resume: no {path.name} in {self.files.out_dir}, starting afresh")
            return
        state = read_last_state(path)
        self.model.load_state_dict(state.state_dict)
        if self.ema is not self.model:
            self.ema.load_state_dict(state.ema_state_dict)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.generator.set_state(state.generator)
        torch.set_rng_state(state.torch_rng)
        self.source.set_rng_state(state.crops_rng)
        self.epoch, self.best_val_psnr_db, self.best_epoch = state.epoch, state.best_val_psnr_db, state.best_epoch
        self.wall_before_s, self.steps = state.wall_seconds, state.steps
        self.log.say(f"resumed from {path} after epoch {self.epoch} (best {self.best_val_psnr_db:.3f} dB)")

    def run(self) -> TrainResult:
        if self.config.resume:
            self.resume()
        if self.warmup_steps:
            self.log.say(f"learning rate warm-up over {self.warmup_steps} steps")
        self.started_s = time.perf_counter()
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            self.epoch = epoch
            mean_loss, train_seconds = self.run_epoch()
            if self.finish_epoch(mean_loss, train_seconds):
                break
        return TrainResult(self.files.best, self.best_val_psnr_db, self.best_epoch, self.epoch, self.wall_seconds(),
                           self.steps_run, self.train_seconds, val_bicubic_psnr_db=self.validator.bicubic_psnr_db)

    def wall_seconds(self) -> float:
        """Wall time of the whole run so far, resumed parts included."""
        return self.wall_before_s + time.perf_counter() - self.started_s

    def progress(self) -> float:
        """How far through the run (0..1): epochs, or the time budget if that ends first."""
        by_epochs = (self.epoch - 1 + self.batch_index / max(self.batches, 1)) / self.config.epochs
        if not self.config.time_budget_s:
            return by_epochs
        return max(by_epochs, self.wall_seconds() / self.config.time_budget_s)

    def run_epoch(self) -> tuple[float, float]:
        """Train for epoch ``self.epoch``: (mean loss, seconds inside the step loop)."""
        import torch

        self.model.train()
        self.batches = self.source.start_epoch(self.epoch)
        flips = torch.randint(0, 8, (self.batches,), generator=self.generator).tolist()
        # Summed on the device: reading the loss back at every step would make a GPU wait for it.
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        bar = self._progress_bar()
        loop_started_s = time.perf_counter()
        for index in bar:
            self.batch_index = index
            total_loss += self.step(*self.source.batch(index), flips[index])
            if self.config.progress and index % 50 == 0:
                bar.set_postfix(loss=f"{total_loss.item() / (index + 1):.2e}", best=f"{self.best_val_psnr_db:.2f}dB")
            if self.config.time_budget_s and self.progress() >= 1.0:
                self.batches = index + 1  # the budget ends the epoch here
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # a GPU runs behind the host: time the work, not the queueing
        train_seconds = time.perf_counter() - loop_started_s
        self.steps_run += self.batches
        self.train_seconds += train_seconds
        return total_loss.item() / max(self.batches, 1), train_seconds

    def _progress_bar(self):
        from tqdm import tqdm

        of_epochs = f"/{self.config.epochs}" if self.config.epochs < EPOCHS_WITHOUT_LIMIT else ""
        return tqdm(range(self.batches), desc=f"epoch {self.epoch}{of_epochs}", unit="batch",
                    disable=not self.config.progress, leave=False, file=sys.stderr)

    def step(self, lr_batch, hr_batch, flip: int):
        """One optimiser step on a batch shown in flip/rotation ``flip`` (0..7); returns its loss,
        detached, on the device."""
        import torch

        x = _dihedral(lr_batch, flip).contiguous(memory_format=torch.channels_last)
        y = _dihedral(hr_batch, flip)
        if self.config.time_budget_s:
            self._set_rate(self.config.lr * _cosine(self.progress(), self.lr_floor))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            output = self._body(x)
        loss = self._loss(output.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer_step()
        self.steps += 1
        self._update_average()
        return loss.detach()

    def _body(self, x):
        """The network's output for the patches in ``x``, without their ``margin_px`` (see TrainConfig)."""
        import torch

        margin = self.config.margin_px
        if not margin:
            return self.model.body(x)
        # Drawn from the batch generator, whose state --resume restores.
        if torch.rand((), generator=self.generator).item() < self.config.edge_share:
            return self.model.body(x[..., margin:-margin, margin:-margin])
        crop = margin * self.config.scale
        return self.model.body(x)[..., crop:-crop, crop:-crop]

    def _loss(self, output, target):
        """MSE or L1 as ``config.loss`` says; "l1-l2" switches to MSE for the last 20% of the run."""
        from torch.nn import functional

        loss = self.config.loss
        if loss == "l2" or (loss == "l1-l2" and self.progress() >= 0.8):
            return functional.mse_loss(output, target)
        return functional.l1_loss(output, target)

    def _optimizer_step(self) -> None:
        """Adam's step, at a share of the scheduled rate during the warm-up, for this step only:
        the schedulers never see the warm-up."""
        warm = _warmup_factor(self.steps, self.warmup_steps)
        if warm >= 1.0:
            self.optimizer.step()
            return
        groups = self.optimizer.param_groups
        scheduled = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] *= warm
        self.optimizer.step()
        for group, rate in zip(groups, scheduled):
            group["lr"] = rate

    def _update_average(self) -> None:
        import torch

        if self.ema is self.model:
            return
        # Warm-up: a short memory at first, so the average does not drag in the initial weights.
        decay = min(self.config.ema_decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            torch._foreach_lerp_(self._ema_params, self._model_params, 1.0 - decay)

    def _set_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def finish_epoch(self, mean_loss: float, train_seconds: float) -> bool:
        """Validate, update the schedule, save and log the epoch; True when the time budget is spent."""
        val_psnr_db, extra = self.validate()
        self._schedule_epoch(val_psnr_db)
        improved = val_psnr_db > self.best_val_psnr_db
        if improved:
            self.best_val_psnr_db, self.best_epoch = val_psnr_db, self.epoch
            self.save_best(val_psnr_db)
        wall_s = self.wall_seconds()
        self.save_last(wall_s)
        self.log.epoch(
            epoch=self.epoch,
            loss=mean_loss,
            val_psnr_db=round(val_psnr_db, 4),
            val_bicubic_psnr_db=round(self.validator.bicubic_psnr_db, 4),
            # The rate the epoch's last step ran at (warm-up included).
            lr=self.optimizer.param_groups[0]["lr"] * _warmup_factor(self.steps - 1, self.warmup_steps),
            wall_seconds=round(wall_s, 1),
            steps=self.batches,
            train_seconds=round(train_seconds, 3),
            best="*" if improved else "",
            **extra,
        )
        budget_s = self.config.time_budget_s
        if budget_s and wall_s >= budget_s:
            self.log.say(f"time budget of {budget_s:.0f}s spent after epoch {self.epoch}")
            return True
        return False

    def validate(self) -> tuple[float, dict]:
        """The weight average's validation PSNR (dB), and the log's extra fields: with compressed
        training, its PSNR on clean input and the pools' counters."""
        self.model.eval()
        upscale = _torch_upscaler(self.ema, self.device)
        val_psnr_db = self.validator(upscale)
        if self.clean_validator is None:
            return val_psnr_db, {}
        pools = self.source.pools
        return val_psnr_db, {"val_clean_psnr_db": round(self.clean_validator(upscale), 4),
                             "pools": pools.pools, "pool_wait_s": round(pools.waited_s, 2)}

    def _schedule_epoch(self, val_psnr_db: float) -> None:
        """The epoch's learning-rate update: plateau's on the validation PSNR, or the cosine's by
        epochs, or with a time budget by the time spent (as each step set it)."""
        if self.config.schedule != "cosine":
            self.scheduler.step(val_psnr_db)
            return
        self.scheduler.step()
        if self.config.time_budget_s:
            self._set_rate(self.config.lr * _cosine(self.progress(), self.lr_floor))

    def save_best(self, val_psnr_db: float) -> None:
        config = self.config
        write_best_weights(self.files.best, self.info, config.scale, self.ema.state_dict(), epoch=self.epoch,
                           val_psnr_db=val_psnr_db, degradation=config.degradation, int8_aware=config.int8_aware)

    def save_last(self, wall_s: float) -> None:
        import torch

        write_last_state(self.files.last, LastState(
            scale=self.config.scale, model=self.info.name,
            state_dict=self.model.state_dict(), ema_state_dict=self.ema.state_dict(),
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            generator=self.generator.get_state(), torch_rng=torch.get_rng_state(), crops_rng=self.source.rng_state(),
            epoch=self.epoch, best_val_psnr_db=self.best_val_psnr_db, best_epoch=self.best_epoch,
            wall_seconds=wall_s, steps=self.steps, config=config_record(self.config),
            arch=self.info.arch, options=self.info.options_at(self.config.scale),
        ))


class _Validator:
    """Mean PSNR on Y of a luma upscaler over the validation images, exactly as ``vsr eval``
    scores it; the images are degraded and the bicubic baseline scored once, not every epoch."""

    def __init__(self, paths: list[Path], scale: int, degradation: str, seed: int = 0,
                 recipe: CompressedDegradation | None = None) -> None:
        from .evaluate import bicubic_uint8, luma_pairs

        self.scale = scale
        if degradation == "compressed":
            self.pairs = _compressed_pairs(paths, scale, seed, recipe)
        else:
            self.pairs = [(hr, lr) for _, hr, lr in luma_pairs(paths, scale, degradation)]
        self.bicubic_psnr_db = float(np.mean([
            psnr(hr, bicubic_uint8(lr, scale), border_px=scale) for hr, lr in self.pairs
        ]))

    def __call__(self, upscale_luma) -> float:
        from .evaluate import upscaled_uint8

        return float(np.mean([
            psnr(hr, upscaled_uint8(upscale_luma, lr), border_px=self.scale) for hr, lr in self.pairs
        ]))


def _compressed_pairs(paths: list[Path], scale: int, seed: int,
                      recipe: CompressedDegradation | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(HR luma uint8, LR float64) with the LR made by the run's compressed recipe (None: the
    default one), each image a one-frame clip with its own seeded draw: the same validation set
    for every epoch of a run, and for every run of one recipe.

    The run's own recipe, because this score picks the checkpoint: scored on the default
    recipe's LR (noise on 40 % of images), a run trained with less noise looked worse the longer
    it trained (an x2 fine-tune with noise_prob 0.1 peaked at epoch 8 of 43 while its clean
    Set5 rose 0.33 dB). Its scene changes (soft, exposed and coded scenes) are left out: they
    change the target, and the held-out score is about restoring the images as they are."""
    from .degradations import CompressedDegradation, degrade_compressed, read_luma_images

    recipe = (recipe or CompressedDegradation()).without_scene_changes()
    pairs = []
    for index, luma in enumerate(read_luma_images(paths)):
        hr = modcrop(luma, scale)
        # A stream apart from the pools' (which are seeded [seed, pool index]).
        rng = np.random.default_rng((seed & 0xFFFFFFFF, 1, index))
        pairs.append((hr, degrade_compressed([hr], scale, rng, recipe)[0].astype(np.float64)))
    return pairs


def _transfer(model, state_dict) -> None:
    """Copy every tensor whose name and shape match: the first layers carry over between scales."""
    own = model.state_dict()
    own.update({k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape})
    model.load_state_dict(own)



class _Logger:
    def __init__(self, path: Path, verbose: bool) -> None:
        self.path, self.verbose = path, verbose

    def say(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr, flush=True)

    def epoch(self, **row) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        self.say(
            f"epoch {row['epoch']}: loss {row['loss']:.3e}  val {row['val_psnr_db']:.3f} dB "
            f"(bicubic {row['val_bicubic_psnr_db']:.3f})  lr {row['lr']:.1e}  {row['wall_seconds']:.0f}s {row['best']}"
        )
