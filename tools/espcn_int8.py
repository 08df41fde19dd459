"""Build ESPCN's int8 network (the shipped ``espcn_xS.int8.onnx``): a bicubic-skip form of the
shipped weights, fine-tuned with int8 simulated, its last layer split for exact int8 weights.

    python tools/espcn_int8.py --scales 3 [--minutes 18] [--out vsr/models/weights]

Why (benchmarks/results/int8_loss_budget.md): in plain ESPCN every int8 rounding lands on the picture, and
post-training int8 lost 0.13-0.27 dB on Set5; the int8-aware fine-tune of the plain network still
lost 0.11-0.23. Three steps, each measured in the torch simulation of OpenVINO's int8 model
(``vsr/models/int8_aware.py``), then checked in OpenVINO by ``benchmarks/int8_quality.py``:

1. ``skip_from_espcn``: the same first two layers; the last one refitted by least squares
   (ridge ``--ridge``) so that its output plus a float bicubic upscale of the input equals
   ESPCN's output. Equal in float (within 0.01 dB); int8 now rounds only the detail.
2. Fine-tune (``--minutes``, Adam at ``--lr`` on a cosine, batches of 32 LR crops of 40 px with
   their 4 px of context, flips and rotations) with every convolution's input and the first two
   layers' weights rounded as OpenVINO's int8 model rounds them; the last layer's weights stay
   exact, because step 3 makes them so. The checkpoint kept is the best by PSNR of the simulated
   int8 network on the held-out training images (every 20th; Set5 is never seen).
3. ``SplitConv2d``: the last layer written as its int8-grid half plus the remainder, so that
   per-channel int8 keeps about 16 bits of its weights for 11 % more multiply-adds.

Data: ``../shared/data/train`` (VSR_TEST_DATA), Y, MATLAB bicubic LR, as the ladder trained.
Logs every 250 steps to stdout; writes ``espcn_xS.int8.onnx`` atomically into ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))

#: LR crop (without its context), batch and logging interval of the fine-tune.
CROP_PX, BATCH, EVAL_EVERY = 40, 32, 250


def split_images(scale: int) -> tuple[list, list]:
    """(training, held-out) lists of (HR float32 in [0, 1], LR float32) luma pairs; every 20th
    image is held out, as the ladder's training holds it out."""
    from vsr.evaluate import luma_pairs
    from vsr.images import find_images

    paths = find_images(DATA / "train")
    if not paths:
        raise SystemExit(f"no training images under {DATA / 'train'} (set VSR_TEST_DATA)")
    train, held_out = [], []
    for index, (_, hr, lr) in enumerate(luma_pairs(paths, scale)):
        (held_out if index % 20 == 0 else train).append((hr.astype(np.float32) / 255, lr.astype(np.float32)))
    return train, held_out


def crops(images: list, scale: int, count: int, rng: np.random.Generator, context_px: int = 4):
    """``count`` (LR with context, HR) crops as tensors, randomly flipped and rotated."""
    import torch

    lows, highs = [], []
    side = CROP_PX + 2 * context_px
    while len(lows) < count:
        hr, lr = images[rng.integers(len(images))]
        if min(lr.shape) < side:
            continue
        y, x = (int(rng.integers(n - side + 1)) for n in lr.shape)
        low = lr[y:y + side, x:x + side]
        high = hr[(y + context_px) * scale:(y + context_px + CROP_PX) * scale,
                  (x + context_px) * scale:(x + context_px + CROP_PX) * scale]
        turns = int(rng.integers(4))
        low, high = np.rot90(low, turns), np.rot90(high, turns)
        if rng.integers(2):
            low, high = low[:, ::-1], high[:, ::-1]
        lows.append(low.copy())
        highs.append(high.copy())
    return torch.from_numpy(np.stack(lows))[:, None], torch.from_numpy(np.stack(highs))[:, None]


def held_out_psnr(network, images: list, scale: int) -> float:
    """Mean PSNR on whole held-out images, scored as ``vsr eval`` scores (uint8 output, ``scale``
    px shaved)."""
    import torch

    from vsr.color import to_uint8
    from vsr.evaluate import upscaled_uint8
    from vsr.metrics import psnr

    def upscale(luma):
        return network(torch.from_numpy(luma)[None, None]).clamp(0, 1)[0, 0].numpy()

    with torch.inference_mode():
        return float(np.mean([psnr(to_uint8(hr * 255), upscaled_uint8(upscale, lr), border_px=scale)
                              for hr, lr in images]))


def fit_conv(conv, inputs, targets, ridge: float) -> None:
    """Set ``conv`` (unpadded, stride 1) to the ridge least-squares map from ``inputs`` to
    ``targets`` (matching lists of batches), in place. ``ridge`` is relative to the number of
    output pixels, so it means the same whatever the batches."""
    import torch

    with torch.no_grad():
        gram, cross = 0, 0
        for x, y in zip(inputs, targets):
            columns = torch.nn.functional.unfold(x, conv.kernel_size).transpose(1, 2).reshape(-1, conv.weight[0].numel())
            design = torch.cat([columns, torch.ones(len(columns), 1)], 1).double()
            gram = gram + design.T @ design
            cross = cross + design.T @ y.flatten(2).transpose(1, 2).reshape(len(design), -1).double()
        samples = float(gram[-1, -1])  # the constant column's sum of squares
        gram = gram + ridge * samples * torch.eye(len(gram), dtype=gram.dtype)
        solution = torch.linalg.solve(gram, cross).float()
        conv.weight.copy_(solution[:-1].T.reshape(conv.weight.shape))
        conv.bias.copy_(solution[-1])


def skip_from_espcn(espcn, luma_with_context, ridge: float = 1e-6, chunk: int = 64):
    """The ``ESPCNSkip`` form of trained ``espcn``: its first two layers as they are, the last
    refitted by least squares on ``luma_with_context`` (LR patches with their 4 px of context) so
    that ``conv3'(features) + skip`` reproduces ``conv3(features) + 0.5``. ``ridge`` (times the
    number of samples) keeps the refitted weights small: the features are strongly correlated,
    and an unregularised fit buys a 0.001 dB closer float copy with weights that magnify int8's
    rounding."""
    import torch

    from vsr.models.espcn import ESPCNSkip

    model = ESPCNSkip(espcn.scale)
    model.load_state_dict(espcn.state_dict(), strict=False)
    with torch.no_grad():
        batches = luma_with_context.split(chunk)
        features = [espcn.features(patches) for patches in batches]
        targets = [espcn.conv3(f) + 0.5 - model.bicubic_skip(patches) for f, patches in zip(features, batches)]
        fit_conv(model.conv3, features, targets, ridge)
    return model


def simulate_int8(network, scale: int, split: bool = True):
    """``network`` with OpenVINO's int8 rounding simulated, except, where ``split``, the last
    layer's weights (exported split, so int8 holds them exactly)."""
    import torch

    from vsr.backends.int8 import calibration_patches
    from vsr.models import int8_aware

    int8_aware.make_int8_aware(network, [torch.from_numpy(calibration_patches(scale))], forward=network.forward)
    if isinstance(network.conv3, int8_aware.Int8AwareConv2d):
        network.conv3.round_weight = not split
    return network


def shipped_skip_network(scale: int):
    """The float ``ESPCNSkip`` the shipped ``espcn_xS.int8.onnx`` holds (its split last layer
    summed back into one convolution): the starting point of ``--start shipped``."""
    import onnx
    import torch
    from onnx import numpy_helper

    from vsr.models.espcn import ESPCNSkip

    weights = {init.name: torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
               for init in onnx.load(str(REPO / "vsr" / "models" / "weights" / f"espcn_x{scale}.int8.onnx")).graph.initializer}
    network = ESPCNSkip(scale)
    with torch.no_grad():
        for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
            network.get_parameter(name).copy_(weights[name])
        network.conv3.weight.copy_(weights["conv3.on_grid.weight"] + weights["conv3.remainder.weight"])
        network.conv3.bias.copy_(weights["conv3.on_grid.bias"])
    return network.eval()


def refit_for_int8(network, espcn, patches, ridge: float, chunk: int = 16) -> None:
    """Refit the int8-simulated ``network``'s conv2 and conv3, layer by layer, to what the float
    ``espcn`` computes from the same patches, given the rounded inputs int8 feeds them: each
    layer absorbs what it can predict of the rounding before it (the correlated part; the rest is
    noise the ridge keeps from being amplified). Closed form, seconds; the fine-tune starts here."""
    import torch

    from vsr.models.int8_aware import fake_quantize_activation

    batches = list(patches.split(chunk))
    with torch.no_grad():
        conv2, conv3 = network.conv2, network.conv3
        rounded = [fake_quantize_activation(torch.tanh(network.conv1(x - 0.5)), conv2.input_amax, conv2.input_signed)
                   for x in batches]
        fit_conv(conv2, rounded, [espcn.conv2(torch.tanh(espcn.conv1(x - 0.5))) for x in batches], ridge)
        rounded = [fake_quantize_activation(network.features(x), conv3.input_amax, conv3.input_signed)
                   for x in batches]
        targets = [espcn.conv3(espcn.features(x)) + 0.5 - network.bicubic_skip(x) for x in batches]
        fit_conv(conv3, rounded, targets, ridge)


def plain_copy(network, scale: int):
    """A plain ``ESPCNSkip`` holding ``network``'s weights (the simulation's convolutions undone)."""
    from vsr.models.espcn import ESPCNSkip

    plain = ESPCNSkip(scale)
    plain.load_state_dict(network.state_dict())
    return plain.eval()


#: The last layer as exported: ``split`` (its int8-grid half plus the exact remainder, a second
#: 3x3; what ships) or ``whole`` (its weights int8-rounded in the fine-tune too). A third form, its
#: int8-grid half plus a 1x1 correction fitted by least squares (cheaper, inexact), lost 0.0511 dB
#: on Set5 x3 and was removed (benchmarks/results/cpu_levers.md; docs/results.md#one-off-studies).
LAST_LAYERS = ("split", "whole")


def build(scale: int, minutes: float, lr: float, ridge: float, seed: int, out: Path, refit: bool = False,
          last_layer: str = "split", start: str = "espcn") -> dict:
    import torch

    from vsr.export import export_onnx
    from vsr.models.weights import load_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train, held_out = split_images(scale)
    espcn = load_model(scale, model="espcn").eval()
    fit_patches, _ = crops(train, scale, 1024, rng)
    network = (skip_from_espcn(espcn, fit_patches, ridge=ridge) if start == "espcn"
               else shipped_skip_network(scale))
    log = {"scale": scale, "minutes": minutes, "lr": lr, "ridge": ridge, "seed": seed, "refit": refit,
           "last_layer": last_layer, "start": start,
           "held_out_psnr_db": {"espcn_float": held_out_psnr(espcn, held_out, scale),
                                "skip_float": held_out_psnr(network.eval(), held_out, scale)}}
    simulate_int8(network, scale, split=last_layer == "split")
    if refit:
        log["held_out_psnr_db"]["skip_int8_before_refit"] = held_out_psnr(network, held_out, scale)
        refit_for_int8(network, espcn, fit_patches[:600], ridge)
    best = held_out_psnr(network, held_out, scale)
    best_state, best_step = copy.deepcopy(network.state_dict()), 0
    log["held_out_psnr_db"]["skip_int8_start"] = best
    print(json.dumps(log), flush=True)

    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    started, step = time.monotonic(), 0
    network.train()
    while (elapsed := time.monotonic() - started) < minutes * 60:
        for group in optimizer.param_groups:  # cosine to zero over the time budget
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * elapsed / (minutes * 60)))
        low, high = crops(train, scale, BATCH, rng)
        loss = torch.nn.functional.mse_loss(network.body(low), high)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % EVAL_EVERY == 0:
            score = held_out_psnr(network.eval(), held_out, scale)
            network.train()
            if score > best:
                best, best_state, best_step = score, copy.deepcopy(network.state_dict()), step
            print(json.dumps({"step": step, "seconds": round(elapsed), "loss": round(loss.item(), 7),
                              "held_out_int8_psnr_db": round(score, 4)}), flush=True)
    network.load_state_dict(best_state)
    log.update(steps=step, best_step=best_step, seconds=round(time.monotonic() - started))
    log["held_out_psnr_db"]["skip_int8_best"] = best

    final = plain_copy(network, scale)
    if last_layer == "split":
        final.split_last_conv()
    target = out / f"espcn_x{scale}.int8.onnx"
    export_onnx(final, target)
    log["wrote"] = str(target)
    print(json.dumps(log), flush=True)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--minutes", type=float, default=18.0, help="fine-tune time budget per scale")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--ridge", type=float, default=1e-5)
    parser.add_argument("--refit", action="store_true",
                        help="refit conv2 and conv3 to the float network under simulated int8 before the fine-tune")
    parser.add_argument("--last-layer", choices=LAST_LAYERS, default="split",
                        help="split: int8-grid half plus exact remainder (ships); whole: rounded in the fine-tune "
                             "too (faster, less exact)")
    parser.add_argument("--start", choices=["espcn", "shipped"], default="espcn",
                        help="espcn: refit the shipped ESPCN (step 1); shipped: the shipped espcn_xS.int8.onnx's weights")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "vsr" / "models" / "weights")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for scale in args.scales:
        build(scale, args.minutes, args.lr, args.ridge, args.seed, args.out, args.refit, args.last_layer, args.start)


if __name__ == "__main__":
    main()
