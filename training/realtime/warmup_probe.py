"""How many of a ReLU network's last-layer units stay on in its first training steps, with and
without a learning-rate warm-up (training/realtime/warmup.md).

    python training/realtime/warmup_probe.py STRIDE TAIL WARMUP_STEPS

STRIDE 1 or 2 (the body at LR or half resolution), TAIL "zero" (the shipped initialisation: the
untrained network is its bicubic skip) or a factor on PyTorch's default initialisation of the last
layer. s*c48b4, x3, Adam 1e-3, batch 16 of 40 px LR crops from the first 40 T91 images.
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from vsr.models.reparam import RepSRPlain
from vsr.train import RandomCrops

torch.set_num_threads(2)
torch.manual_seed(0)
stride, tail, warmup = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
pairs = []
images = [p for p in sorted(Path("../shared/data/train/t91").glob("*")) if p.suffix.lower() in (".png", ".bmp", ".jpg")]
for path in images[:40]:
    y = np.asarray(Image.open(path).convert("YCbCr"))[..., 0].astype(np.float32) / 255
    h, w = (y.shape[0] // 6) * 6, (y.shape[1] // 6) * 6
    hr = torch.from_numpy(y[:h, :w])[None, None]
    lr = F.interpolate(hr, scale_factor=1 / 3, mode="bicubic", antialias=True, align_corners=False)
    pairs.append((lr[0, 0].numpy(), hr[0, 0].numpy()))
crops = RandomCrops(pairs, 3, 40, 0, torch.device("cpu"), 0)
net = RepSRPlain(3, channels=48, blocks=4, stride=stride, act="relu").to(memory_format=torch.channels_last)
with torch.no_grad():
    if tail == "zero":
        net.tail.weight.zero_()
    else:
        net.tail.weight.mul_(float(tail))
    net.tail.bias.zero_()
opt = torch.optim.Adam(net.parameters(), 1e-3)
for step in range(401):
    for group in opt.param_groups:
        group["lr"] = 1e-3 * min(1.0, (step + 1) / warmup) if warmup else 1e-3
    x, y = crops.batch(16)
    loss = F.l1_loss(net.body(x.contiguous(memory_format=torch.channels_last)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        with torch.no_grad():
            features = x - 0.5
            for conv, act in zip(net._convs(), net._acts()):
                features = act(conv(features))
        print(f"step {step}: loss {loss.item():.5f}, last layer units on {(features > 0).float().mean().item():.2%}",
              flush=True)
