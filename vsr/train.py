"""Training ESPCN on folders of HR images (``vsr train``).

Patches as in the paper: the target is a 17r x 17r HR patch, taken on a grid with a
stride of 14 LR pixels (17 minus one per odd kernel); the LR input carries the 4 pixels
of context the unpadded network consumes, mirrored where the patch meets the image
border, exactly as ``ESPCN.forward`` mirrors whole frames at inference.
"""
from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .color import rgb_to_y
from .errors import InputError, OutputError
from .images import DEGRADATIONS, degrade, find_images, modcrop, read_rgb
from .metrics import psnr
from .models.espcn import ESPCN
from .models.weights import check_scale, load_checkpoint


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
    16: 1.4x the output pixels per second of 17 px at batch 64 on a CPU, see
    ``benchmarks/train_throughput.py``). Images smaller than a patch are skipped.
    """

    data_dirs: tuple[Path, ...]
    scale: int
    out_dir: Path
    epochs: int = 100
    val_dirs: tuple[Path, ...] = ()
    degradation: str = "bicubic"
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    patience: int = 6
    plateau_db: float = 0.005
    schedule: str = "plateau"
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
    head_lr_factor: float = 1.0
    #: Validate and keep an exponential moving average of the weights (0: the raw weights). The
    #: average removes most of the step-to-step noise of small batches without lowering the rate.
    ema_decay: float = 0.999
    #: CPU threads for torch (None: torch's default, one per core).
    num_threads: int | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    best_path: Path
    best_val_psnr_db: float
    best_epoch: int
    epochs_run: int
    wall_seconds: float


def degraded_images(
    paths: list[Path], scale: int, degradation: str, progress: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each image as (LR luma with 4 mirrored pixels of context, float32; HR luma, uint8)."""
    from tqdm import tqdm

    context = ESPCN.CONTEXT_PX
    pairs = []
    for path in tqdm(paths, desc=f"degrading x{scale}", unit="img", disable=not progress, leave=False):
        hr = modcrop(rgb_to_y(read_rgb(path)), scale)
        lr = degrade(hr / 255.0, scale, degradation).astype(np.float32)
        if min(lr.shape) > context:
            pairs.append((np.pad(lr, context, mode="reflect"), hr))
    return pairs


SCHEDULES = ("plateau", "cosine")


def grid_patches(
    pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, patch_px: int, stride_px: int,
    origin_px: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """LR patches with context (N, P+8, P+8) float32 and HR targets (N, P*s, P*s) uint8.

    The grid starts at ``origin_px`` (LR rows, columns): shifting it between epochs shows the
    network other patches of the same images at the paper's stride.
    """
    context = ESPCN.CONTEXT_PX
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


def train(config: TrainConfig) -> TrainResult:
    import torch
    from tqdm import tqdm

    check_scale(config.scale)
    if config.degradation not in DEGRADATIONS:
        raise InputError(f"degradation must be one of {', '.join(DEGRADATIONS)}")
    if config.schedule not in SCHEDULES:
        raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}")
    stride_px = config.stride_px or max(1, config.patch_px - 3)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to torch")
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest kernels once
    out_dir = Path(config.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create output directory ({exc.strerror})") from None

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    train_paths = find_images(*config.data_dirs)
    if not train_paths:
        raise InputError(f"no training images found in {', '.join(map(str, config.data_dirs))}")
    if config.val_dirs:
        val_paths = find_images(*config.val_dirs)
    else:
        # Hold out every 20th image so validation measures generalisation, not memory.
        val_paths = train_paths[::20]
        train_paths = [p for p in train_paths if p not in set(val_paths)] or val_paths
    log = _Logger(out_dir / f"espcn_x{config.scale}_log.jsonl", config.progress)
    log.say(f"x{config.scale}: {len(train_paths)} training images, {len(val_paths)} validation images")

    pairs = degraded_images(train_paths, config.scale, config.degradation, config.progress)
    too_small = sum(min(lr.shape) - 2 * ESPCN.CONTEXT_PX < config.patch_px for lr, _ in pairs)
    if too_small:
        log.say(f"{too_small} image(s) smaller than a {config.patch_px * config.scale}px patch: not used")
    validate = _Validator(val_paths, config.scale, config.degradation)

    def patches(origin_px):
        lr_np, hr_np = grid_patches(pairs, config.scale, config.patch_px, stride_px, origin_px)
        # The whole epoch's patches live on the device (tens of MB): on a GPU, batches are then
        # gathered there instead of copied over PCIe at every step.
        return torch.from_numpy(lr_np)[:, None].to(device), torch.from_numpy(hr_np)[:, None].to(device)

    lr_all, hr_all = patches((0, 0))
    log.say(
        f"{len(lr_all)} patches of {config.patch_px * config.scale}px ({config.degradation} degradation)"
        + (", grid shifted at random each epoch" if config.jitter else "")
    )

    # channels_last: oneDNN's convolutions (forward and backward) run ~1.6x faster in it on CPUs.
    model = ESPCN(config.scale).to(device, memory_format=torch.channels_last)
    if config.init is not None:
        _transfer(model, load_checkpoint(config.init)["state_dict"])
    ema = copy.deepcopy(model) if config.ema_decay else model
    head_params = list(model.conv3.parameters())
    feature_params = [p for p in model.parameters() if all(p is not q for q in head_params)]
    optimizer = torch.optim.Adam(
        [{"params": feature_params, "lr": config.lr}, {"params": head_params, "lr": config.lr * config.head_lr_factor}]
    )
    if config.schedule == "cosine":
        # Closed form in the epoch number (LambdaLR saves no curve): a run resumed with a larger
        # --epochs follows the longer cosine from where it stands.
        floor = min(config.min_lr / config.lr, 1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(epoch / config.epochs, 1)))
        )
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=0.5,
            patience=config.patience,
            threshold=config.plateau_db,
            threshold_mode="abs",
            min_lr=config.min_lr,
        )
    last_path = out_dir / f"espcn_x{config.scale}_last.pt"
    best_path = out_dir / f"espcn_x{config.scale}.pt"
    start_epoch, best_psnr, best_epoch, wall_before, steps = 0, -math.inf, 0, 0.0, 0
    if config.resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["state_dict"])
        if ema is not model:
            ema.load_state_dict(state.get("ema_state_dict", state["state_dict"]))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best_psnr, best_epoch = state["epoch"], state["best_val_psnr_db"], state["best_epoch"]
        wall_before = state["wall_seconds"]
        steps = state.get("steps", 0)
        log.say(f"resumed from {last_path} after epoch {start_epoch} (best {best_psnr:.3f} dB)")
    elif config.resume:
        log.say(f"--resume: no {last_path.name} in {out_dir}, starting afresh")

    model_params, ema_params = list(model.parameters()), list(ema.parameters())
    started = time.perf_counter()
    n = len(lr_all)
    batches = -(-n // config.batch_size)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        model.train()
        if config.jitter and epoch > 1:
            origin = torch.randint(0, stride_px, (2,), generator=generator).tolist()
            lr_all, hr_all = patches(tuple(origin))
            n = len(lr_all)
            batches = -(-n // config.batch_size)
        order = torch.randperm(n, generator=generator).to(device)
        flips = torch.randint(0, 8, (batches,), generator=generator).tolist()
        # Summed on the device: reading the loss back at every step would make a GPU wait for it.
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        bar = tqdm(
            range(batches), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
            disable=not config.progress, leave=False, file=sys.stderr,
        )
        for b in bar:
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            k = flips[b]
            x = _dihedral(lr_all[idx], k).contiguous(memory_format=torch.channels_last)
            y = _dihedral(hr_all[idx], k).float().div_(255.0)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
                features = model.features(x)
            loss = torch.nn.functional.mse_loss(model.head(features.float()), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not model:
                steps += 1
                # Warm-up: a short memory at first, so the average does not drag in the initial weights.
                decay = min(config.ema_decay, (1 + steps) / (10 + steps))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
            total_loss += loss.detach()
            if config.progress and b % 50 == 0:
                bar.set_postfix(loss=f"{total_loss.item() / (b + 1):.2e}", best=f"{best_psnr:.2f}dB")
        model.eval()
        val_psnr = validate(_torch_upscaler(ema, device))
        if config.schedule == "cosine":
            scheduler.step()
        else:
            scheduler.step(val_psnr)
        improved = val_psnr > best_psnr
        if improved:
            best_psnr, best_epoch = val_psnr, epoch
            _save(best_path, {
                "arch": "espcn",
                "scale": config.scale,
                "state_dict": ema.state_dict(),
                "epoch": epoch,
                "val_psnr_db": val_psnr,
                "degradation": config.degradation,
            })
        wall = wall_before + time.perf_counter() - started
        _save(last_path, {
            "scale": config.scale,
            "state_dict": model.state_dict(),
            "ema_state_dict": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch,
            "best_val_psnr_db": best_psnr,
            "best_epoch": best_epoch,
            "wall_seconds": wall,
            "steps": steps,
            "config": {k: str(v) for k, v in asdict(config).items()},
        })
        log.epoch(
            epoch=epoch,
            loss=total_loss.item() / max(batches, 1),
            val_psnr_db=round(val_psnr, 4),
            val_bicubic_psnr_db=round(validate.bicubic_psnr_db, 4),
            lr=optimizer.param_groups[0]["lr"],
            wall_seconds=round(wall, 1),
            best="*" if improved else "",
        )
    return TrainResult(best_path, best_psnr, best_epoch, config.epochs, wall_before + time.perf_counter() - started)


class _Validator:
    """Mean PSNR on Y of a luma upscaler over the validation images, exactly as ``vsr eval``
    scores it; the images are degraded and the bicubic baseline scored once, not every epoch."""

    def __init__(self, paths: list[Path], scale: int, degradation: str) -> None:
        from .evaluate import bicubic_uint8, luma_pairs

        self.scale = scale
        self.pairs = [(hr, lr) for _, hr, lr in luma_pairs(paths, scale, degradation)]
        self.bicubic_psnr_db = float(np.mean([
            psnr(hr, bicubic_uint8(lr, scale), border_px=scale) for hr, lr in self.pairs
        ]))

    def __call__(self, upscale_luma) -> float:
        from .evaluate import upscaled_uint8

        return float(np.mean([
            psnr(hr, upscaled_uint8(upscale_luma, lr), border_px=self.scale) for hr, lr in self.pairs
        ]))


def _transfer(model, state_dict) -> None:
    """Copy every tensor whose name and shape match: the first layers carry over between scales."""
    own = model.state_dict()
    own.update({k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape})
    model.load_state_dict(own)


def _save(path: Path, obj: dict) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


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
