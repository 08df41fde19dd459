"""Fold a near-constant global context into the plain re-parameterised network (no context).

    python training/realtime/fold_context.py CHECKPOINT OUT [--ema]

The context's modulations (per body layer: y * (1 + gain) + shift; detail * (1 + gain)) are averaged
over training pictures (x3 bicubic LR of div2k_subset, clean and after an x264 CRF-30 round trip) and
written into each RepConv's branches: every branch's output scales by (1 + gain) (conv3, conv1,
expand_out, the edge scales and biases), the identity's extra gain goes on conv3's centre tap, the
shift on conv3's bias. Prints how far the per-picture modulations spread around the mean."""
import sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from context_probe import coded  # noqa: E402  (x264 round trip of an LR luma plane)
from vsr.checkpoint import read_weights
from vsr.color import rgb_to_y
from vsr.images import read_rgb
from vsr.imresize import imresize
from vsr.models.reparam import RepSR

src, out = Path(sys.argv[1]), Path(sys.argv[2])
ck = read_weights(src)
state = ck["ema_state_dict"] if "--ema" in sys.argv else ck["state_dict"]
options = dict(ck["options"]); scale = ck["scale"]
net = RepSR(scale, **options).eval(); net.load_state_dict({k: v.float() for k, v in state.items()})
vectors = []
paths = sorted(Path("../shared/data/train/div2k_subset").glob("*.png"))[:40]
with torch.no_grad():
    for i, p in enumerate(paths):
        hr = rgb_to_y(read_rgb(p)) / 255.0
        lr = np.clip(imresize(hr, 1 / scale), 0, 1)
        if i % 2:
            lr, _ = coded(lr, crf=30)
        x = torch.from_numpy(lr.astype(np.float32))[None, None] - 0.5
        feats = net.acts[0](net.head(x))
        layers, detail = net.context(feats, x + 0.5)  # the codec statistics read the luma in [0, 1]
        vectors.append(torch.cat([t for pair in layers for t in pair] + [detail], dim=1)[0, :, 0, 0])
v = torch.stack(vectors); mean = v.mean(0)
print(f"{len(paths)} pictures: modulation mean |.| {mean.abs().mean():.4f}, spread (std over pictures) "
      f"mean {v.std(0).mean():.5f}, max {v.std(0).max():.5f}")
c, blocks = net.channels, net.blocks
plain_options = {k: val for k, val in options.items() if k not in ("context", "codec_stats")}
folded = RepSR(scale, **plain_options).eval()
folded.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("context.")})

def fold(block, gain, shift):
    g = 1 + gain
    with torch.no_grad():
        for conv in (block.conv3, block.conv1, block.expand_out):
            conv.weight.mul_(g[:, None, None, None]); conv.bias.mul_(g)
        block.edge_scale.mul_(g[None]); block.edge_bias.mul_(g[None])
        if block.identity:
            idx = torch.arange(block.cout)
            block.conv3.weight[idx, idx, 1, 1] += gain
        block.conv3.bias.add_(shift)

for i, block in enumerate(folded.body_convs):
    fold(block, mean[2 * c * i:2 * c * i + c], mean[2 * c * i + c:2 * c * (i + 1)])
fold(folded.tail, mean[2 * c * blocks:], torch.zeros_like(mean[2 * c * blocks:]))
# check: the folded network equals the context network with the mean modulation
x = torch.rand(1, 1, 61, 77)
fixed = net.context.forward
layers = [(mean[2 * c * i:2 * c * i + c][None, :, None, None], mean[2 * c * i + c:2 * c * (i + 1)][None, :, None, None])
          for i in range(blocks)]
net.context.forward = lambda *args: (layers, mean[2 * c * blocks:][None, :, None, None])
with torch.no_grad():
    print("folded against fixed-context network: max diff", (folded(x) - net(x)).abs().max().item())
net.context.forward = fixed
torch.save({"arch": ck["arch"], "model": ck["model"], "options": plain_options,
            "scale": scale, "state_dict": folded.state_dict(), "epoch": ck.get("epoch"), "val_psnr_db": None,
            "degradation": "compressed", "int8_aware": False}, out)
print("->", out)
